"""The runtime imports and encodes with torch, transformers and sentence-transformers unimportable."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.blocker import run_blocked


def test_runtime_encodes_without_torch(minilm_bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "emb.npy"
    result = run_blocked(
        """
        import sys
        import numpy as np
        from fusembed import Encoder, dot_score, semantic_search
        enc = Encoder(sys.argv[1])
        emb = enc.encode(["How many people live in London?", "Around 9 Million people live in London"])
        np.save(sys.argv[2], emb)
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers",
                       "sentence_transformers", "optimum", "onnx"))
        print("heavy modules:", heavy)
        """,
        str(minilm_bundle), str(out),
    )
    assert result.returncode == 0, result.stderr
    assert "heavy modules: []" in result.stdout
    emb = np.load(out)
    assert emb.shape == (2, 384)
    assert float(emb[0] @ emb[1]) > 0.8


def test_the_blocker_really_blocks() -> None:
    result = run_blocked("import torch")
    assert result.returncode != 0 and "blocked for this test: torch" in result.stderr


def test_export_without_the_extra_names_the_extra(tmp_path: Path) -> None:
    result = run_blocked(
        "import sys; from fusembed.cli import main; sys.exit(main(sys.argv[1:]))",
        "export", "all-MiniLM-L6-v2", str(tmp_path / "out"),
    )
    assert result.returncode == 1
    assert "pip install 'fusembed[export]'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()
