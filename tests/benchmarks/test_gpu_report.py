"""benchmarks/gpu.py's bookkeeping, without a GPU: the default budget against the others in
turns, and the report that states the comparison."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import gpu
import pytest


class _Encoder:
    """Records each `encode` call and moves a clock: a call takes 1 s, 2 s with a batch size set,
    and the very first timed default call 100 s (a stall the median must leave out)."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int | None, int | None]] = []
        self.now = 0.0

    def encode(self, texts: list[str], *, batch_size: int | None, max_tokens: int | None) -> None:
        stalled = batch_size is None and len(texts) == 3000 and (3000, None, None) not in self.calls
        self.calls.append((len(texts), batch_size, max_tokens))
        self.now += 100.0 if stalled else 1.0 if batch_size is None else 2.0


def test_the_default_and_every_budget_take_turns_and_report_medians(monkeypatch: pytest.MonkeyPatch) -> None:
    encoder = _Encoder()
    monkeypatch.setattr(gpu.time, "perf_counter", lambda: encoder.now)
    short, long = [f"s{i}" for i in range(3000)], [f"l{i}" for i in range(2500)]
    result = gpu.budgets(encoder, short, long, rounds=3)

    budgets = len(gpu.BUDGETS)
    assert [n for n, *_ in encoder.calls].count(2048) == 2 * budgets  # untimed: each budget warms up
    timed_short = [budget for n, *budget in encoder.calls if n == 3000]
    assert len(timed_short) == 3 * budgets and [n for n, *_ in encoder.calls].count(2500) == 3 * budgets
    rounds = [timed_short[i:i + budgets] for i in range(0, len(timed_short), budgets)]
    assert all(sorted(r, key=str) == sorted(map(list, gpu.BUDGETS), key=str) for r in rounds)
    assert len({tuple(r[0]) for r in rounds}) == 3, "each round starts with another budget"
    assert result["budget_rounds"] == 3
    assert result["default_encode_texts_per_s"] == {"short": 3000.0, "long": 2500.0}
    assert [(w["batch_size"], w["max_tokens"]) for w in result["defaults_sweep"]] == list(gpu.BUDGETS[1:])
    assert all(w["short"] == 1500.0 and w["long"] == 1250.0 for w in result["defaults_sweep"])


def test_the_report_compares_the_default_with_the_best_batch_size_and_budget() -> None:
    table = {"fusembed fp16": {1: 500.0, 512: 50_000.0}}
    report: dict[str, Any] = {
        "throughput": {"short": table, "long": {"fusembed fp16": {1: 400.0, 512: 6000.0}}},
        "default_batch": {"batch_size": 512, "max_tokens": 65536},
        "default_encode_texts_per_s": {"short": 45_000.0, "long": 6000.0},
        "budget_rounds": 5,
        "defaults_sweep": [{"batch_size": 512, "max_tokens": 131072, "short": 60_000.0, "long": 5000.0}],
    }
    text = "\n".join(gpu.throughput_markdown(report))
    assert "45,000 texts/s, 90% of the best batch size" in text
    assert "and 75% of the best other budget below" in text  # 45,000 of 60,000
    assert "6,000 texts/s, 100% of the best batch size" in text and "and 120% of the best other" in text
    assert "medians of 5 rounds" in text
    assert "| default (512) | default (65536) | 45,000 | 6,000 |" in text
