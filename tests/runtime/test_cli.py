"""The `fusembed` command as a shell user meets it: outputs, exit codes, messages on stderr."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from fusembed import Encoder
from fusembed.cli import main

DOCS = ["Around 9 Million people live in London", "London is known for its financial district"]


@pytest.fixture
def docs_file(tmp_path: Path) -> Path:
    path = tmp_path / "docs.txt"
    path.write_text("\n".join(DOCS) + "\n", encoding="utf-8")
    return path


def test_search_prints_scores_like_the_seed_example(
    minilm_bundle: Path, docs_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["search", str(minilm_bundle), "--query", "How many people live in London?",
                 "--docs", str(docs_file), "--top-k", "2"])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert lines[0] == "Query: How many people live in London?"
    first_score, first_doc = lines[1].split(" ", 1)
    assert first_doc == DOCS[0] and float(first_score) > 0.8
    assert lines[2].endswith(DOCS[1])


def test_search_json(minilm_bundle: Path, docs_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["search", str(minilm_bundle), "--query", "finance", "--docs", str(docs_file),
                 "--top-k", "1", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert hits == [{"score": pytest.approx(hits[0]["score"]), "corpus_id": 1, "document": DOCS[1]}]


def test_encode_lines_to_npy(minilm_bundle: Path, tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("first\n\nthird line\n", encoding="utf-8")  # the empty line is a text too
    out = tmp_path / "out.npy"
    assert main(["encode", str(minilm_bundle), "--input", str(src), "--output", str(out)]) == 0
    got = np.load(out)
    np.testing.assert_allclose(got, Encoder(minilm_bundle).encode(["first", "", "third line"]), atol=1e-6)


def test_encode_jsonl_field(minilm_bundle: Path, tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps({"id": i, "body": d}) for i, d in enumerate(DOCS)) + "\n")
    out = tmp_path / "out.npy"
    assert main(["encode", str(minilm_bundle), "--input", str(src), "--field", "body",
                 "--output", str(out)]) == 0
    assert np.load(out).shape == (2, 384)


@pytest.mark.parametrize("command", ["encode", "search"])
def test_field_is_refused_where_the_input_has_no_fields(
    tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    src = tmp_path / "in.txt"
    src.write_text("a\n")
    rest = ["--output", str(tmp_path / "o.npy")] if command == "encode" else ["--query", "q"]
    flag = "--input" if command == "encode" else "--docs"
    assert main([command, str(tiny_bundle), flag, str(src), "--field", "body", *rest]) == 2
    err = capsys.readouterr().err
    assert f"fusembed {command}: error: --field applies to JSONL input" in err, err
    assert "in.txt is read as one text per line" in err, err
    assert not (tmp_path / "o.npy").exists()


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (b'{"text": "a"}\n{"txt": "b"}\n', "in.jsonl", "line 2 has no field 'text'"),
        (b'{"text": "a"}\nnot json\n', "in.jsonl", "line 2 is not valid JSON"),
        (b'["a"]\n', "in.jsonl", "line 1 is not a JSON object (list)"),
        (b'{"text": "a", "n": ' + b"9" * 5000 + b"}\n", "in.jsonl",
         "line 1 is not readable JSON (ValueError)"),
        (b'{"text": 5}\n', "in.jsonl", "field 'text' is int, expected a string"),
        (b"ok\n\xff\xfe broken\n", "in.txt", "line 2 is not valid UTF-8"),
    ],
)
def test_encode_bad_input_files(
    minilm_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    content: bytes, name: str, message: str,
) -> None:
    src = tmp_path / name
    src.write_bytes(content)
    out = tmp_path / "out.npy"
    assert main(["encode", str(minilm_bundle), "--input", str(src), "--output", str(out)]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()


def test_encode_missing_input_and_bad_output(
    minilm_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["encode", str(minilm_bundle), "--input", str(tmp_path / "none.txt"),
                 "--output", str(tmp_path / "o.npy")]) == 1
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "in.txt").write_text("a\n")
    assert main(["encode", str(minilm_bundle), "--input", str(tmp_path / "in.txt"),
                 "--output", str(tmp_path / "o.csv")]) == 1
    assert "must end in .npy" in capsys.readouterr().err
    assert main(["encode", str(minilm_bundle), "--input", str(tmp_path / "in.txt"),
                 "--output", str(tmp_path / "no" / "o.npy")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_encode_stdin_to_json_lines_on_stdout(minilm_bundle: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "fusembed", "encode", str(minilm_bundle), "--input", "-",
                           "--output", "-"], input="\n".join(DOCS) + "\n", capture_output=True, text=True,
                          check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["index"] for r in rows] == [0, 1]
    np.testing.assert_allclose(np.array([r["embedding"] for r in rows], dtype=np.float32),
                               Encoder(minilm_bundle).encode(DOCS), atol=1e-6)


def test_encode_to_a_jsonl_file(minilm_bundle: Path, docs_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    assert main(["encode", str(minilm_bundle), "--input", str(docs_file), "--output", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["index"] for r in rows] == [0, 1] and len(rows[1]["embedding"]) == 384
    assert not list(tmp_path.glob(".*partial"))


def test_search_docs_from_stdin(minilm_bundle: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO("\n".join(DOCS).encode())))
    assert main(["search", str(minilm_bundle), "--query", "finance", "--docs", "-", "--top-k", "1",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["document"] == DOCS[1]


def test_stdin_that_is_not_utf8_names_the_line(minilm_bundle: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"fine\nbad \xff\n")))
    assert main(["encode", str(minilm_bundle), "--input", "-", "--output", "-"]) == 1
    assert "standard input: line 2 is not valid UTF-8" in capsys.readouterr().err


def test_stdout_closed_early_stops_quietly(minilm_bundle: Path) -> None:
    with subprocess.Popen([sys.executable, "-m", "fusembed", "encode", str(minilm_bundle), "--input", "-",
                           "--output", "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE) as reader:
        assert reader.stdin is not None and reader.stdout is not None and reader.stderr is not None
        reader.stdin.write("".join(f"text {i}\n" for i in range(3000)).encode())
        reader.stdin.close()
        assert reader.stdout.readline().startswith(b'{"index": 0, ')
        reader.stdout.close()  # as `| head -1` does
        assert reader.wait(timeout=120) == 141
        assert reader.stderr.read() == b""


@pytest.mark.parametrize("who", ["query", "doc"])
def test_search_names_the_prompt_flag_that_is_wrong(
    tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], who: str
) -> None:
    (tmp_path / "docs.txt").write_text("a\nb\n")
    assert main(["search", str(tiny_bundle), "--query", "q", "--docs", str(tmp_path / "docs.txt"),
                 f"--{who}-prompt-name", "nope"]) == 2
    assert f"fusembed search: error: --{who}-prompt-name is 'nope', which this model does not define" in \
        capsys.readouterr().err


def test_search_with_empty_docs_file(minilm_bundle: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty.txt").write_text("")
    assert main(["search", str(minilm_bundle), "--query", "q", "--docs",
                 str(tmp_path / "empty.txt")]) == 1
    assert "no documents" in capsys.readouterr().err
    (tmp_path / "blank.txt").write_text("\n  \n\n")  # blank lines are no documents either
    assert main(["search", str(minilm_bundle), "--query", "q", "--docs", str(tmp_path / "blank.txt")]) == 1
    assert "no documents" in capsys.readouterr().err


def test_search_leaves_blank_lines_out_and_keeps_line_numbers(
    minilm_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "docs.txt").write_text(f"\n{DOCS[0]}\n   \n{DOCS[1]}\n", encoding="utf-8")
    assert main(["search", str(minilm_bundle), "--query", "finance", "--docs", str(tmp_path / "docs.txt"),
                 "--top-k", "5", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert [(h["corpus_id"], h["document"]) for h in hits] == [(3, DOCS[1]), (1, DOCS[0])]


def test_info(minilm_bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(minilm_bundle)]) == 0
    out = capsys.readouterr().out
    assert "similarity  cosine" in out and "fp32" in out and "Attention 6" in out
    assert main(["info", str(minilm_bundle), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["dim"] == 384


def test_info_shows_a_damaged_bundle_and_names_the_damage(
    tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    assert main(["info", str(bundle)]) == 0
    assert "files       all 3 match their sha256" in capsys.readouterr().out
    (bundle / "model.onnx").unlink()
    assert main(["info", str(bundle)]) == 1
    out = capsys.readouterr().out
    assert "dim         32" in out and "files       1 of 3 damaged" in out
    assert re.search(r"PROBLEM     .*model\.onnx: listed in the manifest but missing", out), out
    assert main(["info", str(bundle), "--json"]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out)["dim"] == 32
    assert "fusembed info: damaged: " in captured.err and "model.onnx" in captured.err


def test_bad_bundle_is_one_line_on_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("fusembed info: error:") and "no manifest" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    "argv",
    [[], ["frobnicate"], ["search", "b", "--docs", "d"], ["search", "b", "--query", "q", "--docs", "d",
                                                          "--top-k", "zero"],
     ["encode", "b", "--input", "i", "--output", "o.npy", "--device", "tpu"],
     ["export", "m", "out", "--variants", "int4"]],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "usage: fusembed" in capsys.readouterr().err


@pytest.mark.parametrize("budget", [["--min-cosine", "99.999"], ["--int8-min-top10", "nan"]])
def test_export_refuses_a_budget_outside_0_to_1_before_any_work(
    budget: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", "all-MiniLM-L6-v2", str(tmp_path / "out"), *budget]) == 2
    assert f"fusembed export: error: {budget[0]} must be a number from 0 to 1" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_console_script_and_module_entry(minilm_bundle: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "fusembed", "info", str(minilm_bundle)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0 and "dim         384" in result.stdout
    result = subprocess.run([Path(sys.executable).parent / "fusembed", "--version"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0 and result.stdout.startswith("fusembed ")


class _Recording(Encoder):
    """An Encoder that records how the CLI built and called it."""

    made: ClassVar[list[dict[str, object]]] = []
    calls: ClassVar[list[dict[str, object]]] = []

    def __init__(self, bundle: Path, **kwargs: object) -> None:
        _Recording.made.append(kwargs)
        super().__init__(bundle, **kwargs)  # type: ignore[arg-type]

    def encode(self, texts, **kwargs):  # type: ignore[no-untyped-def, override]
        _Recording.calls.append(kwargs)
        return super().encode(texts, **kwargs)


@pytest.mark.parametrize("command", ["encode", "search", "serve", "embed-corpus"])
def test_every_command_honours_the_encoder_options(
    command: str, minilm_bundle: Path, docs_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fusembed.cli._options
    import fusembed.server

    _Recording.made.clear()
    _Recording.calls.clear()
    monkeypatch.setattr(fusembed.cli._options, "Encoder", _Recording)
    monkeypatch.setattr(fusembed.server, "run", lambda *a, **k: None)  # serve: build, do not listen
    common = ["--device", "cpu", "--precision", "fp32", "--threads", "1", "--truncate-dim", "8"]
    prompt = ["--prompt", "p: "]
    argv = {
        "encode": ["encode", str(minilm_bundle), "--input", str(docs_file), "--output",
                   str(tmp_path / "o.npy"), "--batch-size", "3", *prompt],
        "search": ["search", str(minilm_bundle), "--query", "q", "--docs", str(docs_file),
                   "--batch-size", "3", "--query-prompt", "q: ", "--doc-prompt", "d: "],
        "serve": ["serve", str(minilm_bundle), *prompt],
        "embed-corpus": ["embed-corpus", str(docs_file), str(tmp_path / "out"),
                         "--bundle", str(minilm_bundle), "--batch-size", "3", "--no-progress", *prompt],
    }[command]
    assert main([*argv, *common]) == 0
    built = {"device": "cpu", "precision": "fp32", "threads": 1, "truncate_dim": 8, "prompt_name": None,
             "prompt": None if command == "search" else "p: ",
             "thread_spinning": command != "serve"}  # the server's event loop needs the cores
    assert _Recording.made == [built]
    if command == "search":  # the query and the documents each get their own prompt
        assert {c.get("prompt") for c in _Recording.calls} == {"q: ", "d: "}
    if command != "serve":
        assert {call.get("batch_size") for call in _Recording.calls if "batch_size" in call} == {3}
    if command == "encode":
        assert np.load(tmp_path / "o.npy").shape[1] == 8


def test_a_bad_argument_is_reported_by_its_flag(
    minilm_bundle: Path, docs_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The library names its parameter (`batch_size`); the user typed a flag (`--batch-size`)."""
    from fusembed import ArgumentError

    def refuse(*_a: object, **_k: object) -> None:
        raise ArgumentError("batch_size", "must be a positive int, got 0")

    monkeypatch.setattr(Encoder, "encode", refuse)
    assert main(["encode", str(minilm_bundle), "--input", str(docs_file), "--output",
                 str(tmp_path / "o.npy")]) == 2
    assert capsys.readouterr().err == "fusembed encode: error: --batch-size must be a positive int, got 0\n"


def test_an_argument_with_no_flag_keeps_the_librarys_name(
    minilm_bundle: Path, docs_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from fusembed import ArgumentError

    def refuse(*_a: object, **_k: object) -> None:
        raise ArgumentError("max_tokens", "must be a positive int, got 0")  # encode has no --max-tokens

    monkeypatch.setattr(Encoder, "encode", refuse)
    assert main(["encode", str(minilm_bundle), "--input", str(docs_file), "--output",
                 str(tmp_path / "o.npy")]) == 2
    assert capsys.readouterr().err == "fusembed encode: error: max_tokens must be a positive int, got 0\n"


def test_parquet_is_for_embed_corpus(minilm_bundle: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    docs = tmp_path / "docs.parquet"
    docs.write_bytes(b"PAR1")
    assert main(["search", str(minilm_bundle), "--query", "q", "--docs", str(docs)]) == 1
    assert capsys.readouterr().err == (
        f"fusembed search: error: {docs}: Parquet input is read by embed-corpus; here give text or JSONL\n")


def test_revision_is_for_hub_ids(tiny_bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A BUNDLE that exists is a folder, whatever it looks like; --revision is for hub ids only."""
    assert main(["info", str(tiny_bundle), "--revision", "main"]) == 2
    assert capsys.readouterr().err == (f"fusembed info: error: --revision is for a hub repository id; "
                                       f"{str(tiny_bundle)!r} is a local path\n")
