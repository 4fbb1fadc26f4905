"""benchmarks/cold_start.py on the CPU provider with the tiny bundle: each warm-up choice runs in
a process of its own, in turn, and the table reads what was measured."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import cold_start


def test_each_warmup_choice_is_measured_in_a_fresh_process(tiny_bundle: Path) -> None:
    measured = cold_start.measure(tiny_bundle, "cpu", calls=6, rounds=2)
    assert list(measured["modes"]) == ["at load", "background", "off"]
    for name, s in measured["modes"].items():
        assert 0 < s["import_s"] < s["load_s"] <= s["first_s"] <= s["warm_s"], (name, s)
        assert s["cold_p50_ms"] <= s["cold_p99_ms"] <= s["cold_max_ms"] and s["cold_total_s"] > 0
        assert 0 < s["warm_p50_ms"] <= s["warm_p99_ms"]
    # Warm-up at load or off leaves nothing running once the first calls are done.
    assert measured["modes"]["at load"]["warming_after_calls"] == 0
    assert measured["modes"]["off"]["warming_after_calls"] == 0
    rows = [line for line in cold_start.table(measured) if line.startswith("| ")]
    assert [row.split(" | ")[0] for row in rows[1:]] == ["| at load", "| background", "| off"]
    at_load = measured["modes"]["at load"]
    assert f"{at_load['first_s']:.2f} s" in rows[1]


def test_mixed_texts_alternate_short_and_long() -> None:
    texts = cold_start.mixed_texts(6)
    assert len(texts) == 6 and len(set(texts)) == 6
    assert all(len(texts[i]) < len(texts[i + 1]) for i in (0, 2, 4))


def test_a_failed_run_names_its_warmup_choice_and_the_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"(?s)warmup='background' run failed.*manifest"):
        cold_start.run_once(tmp_path / "no-bundle", "cpu", "background", ["a text"])


def test_calls_and_rounds_must_be_positive(monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["cold_start.py", "bundle", "--calls", "0"])
    with pytest.raises(SystemExit):
        cold_start.main()
    assert "--calls and --rounds must be at least 1" in capsys.readouterr().err
