"""`fusembed bench`: it measures, writes JSON, markdown and a plot, and rejects bad options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fusembed._bench import builtin_texts, run_bench, write_outputs
from fusembed.cli import main


def test_bench_measures_and_writes(tiny_bundle: Path, tmp_path: Path) -> None:
    result = run_bench(tiny_bundle, texts=builtin_texts(48), batch_sizes=(1, 16), repeats=30, warmup=5)
    b1 = result.batch1_ms
    assert 0 < b1["p50"] <= b1["p95"] <= b1["p99"]
    assert [b.batch_size for b in result.batches] == [1, 16]
    assert all(b.texts_per_s > 0 and b.p50_ms <= b.p95_ms <= b.p99_ms for b in result.batches)
    assert 0 < result.import_s < result.cold_start_s and result.peak_rss_mb > 10
    # The cold-start child's own peak, not this test process's (which holds torch after the export
    # tests): ru_maxrss would carry the parent's peak over exec.
    assert result.peak_rss_mb < 400
    assert len(result.batch1_samples_ms) == 30 and 8 < result.mean_tokens < 40

    written = write_outputs(result, tmp_path / "out")
    data = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert data["batch1_ms"]["p99"] == b1["p99"] and data["precision"] == "fp32"
    assert "| 16 |" in (tmp_path / "out" / "bench.md").read_text()
    pytest.importorskip("matplotlib")
    png = tmp_path / "out" / "bench.png"
    assert png in written and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_cli(tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    texts = tmp_path / "t.txt"
    texts.write_text("\n".join(builtin_texts(20)) + "\n")
    assert main(["bench", str(tiny_bundle), "--texts", str(texts), "--batch-sizes", "1,4",
                 "--repeats", "10", "--output-dir", str(tmp_path / "b")]) == 0
    out = capsys.readouterr()
    assert "batch 1: p50" in out.out and "cold start" in out.out
    assert (tmp_path / "b" / "bench.json").is_file()


@pytest.mark.parametrize("sizes", ["0", "1,x", ""])
def test_bench_bad_batch_sizes(tiny_bundle: Path, sizes: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["bench", str(tiny_bundle), "--batch-sizes", sizes])
    assert info.value.code == 2 and "positive integers" in capsys.readouterr().err


def test_failed_cold_start_is_a_clear_error(tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fusembed import FusembedError, _bench

    monkeypatch.setattr(_bench, "_COLD_START", "import sys; sys.exit('cannot load the bundle')")
    with pytest.raises(FusembedError, match="cold-start process failed: cannot load the bundle"):
        run_bench(tiny_bundle, texts=builtin_texts(8), batch_sizes=(1,), repeats=3, warmup=1)


def test_bench_with_an_empty_texts_file(tiny_bundle: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty.txt").write_text("")
    assert main(["bench", str(tiny_bundle), "--texts", str(tmp_path / "empty.txt")]) == 1
    assert "no texts to benchmark with" in capsys.readouterr().err


def test_bench_field_needs_jsonl_texts(tiny_bundle: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", str(tiny_bundle), "--field", "body"]) == 2
    assert "--field applies to JSONL input given with --texts" in capsys.readouterr().err
    (tmp_path / "texts.txt").write_text("a\n")
    assert main(["bench", str(tiny_bundle), "--texts", str(tmp_path / "texts.txt"), "--field", "body"]) == 2
    assert "--field applies to JSONL input" in capsys.readouterr().err
