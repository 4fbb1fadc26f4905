"""What `export_model` can be asked to do, and the defaults the CLI shows. Imports nothing heavy,
so `fusembed export --help` works without the export extra."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fusembed._errors import ArgumentError, check_positive_int

from .texts import EDGE_TEXTS

# The variants a bundle may hold, and their file names.
FILES = {"fp32": "model.onnx", "int8": "model.int8.onnx", "fp16": "model.fp16.onnx"}


@dataclass(frozen=True)
class ExportOptions:
    """Choices for `export_model`. Defaults are what the CLI uses."""

    revision: str | None = None
    cache_dir: str | Path | None = None
    similarity: str | None = None  # override when the model's files do not say
    optimize: bool = True
    min_cosine: float = 0.99999  # fp32 parity gate against sentence-transformers
    overwrite: bool = False
    parity_texts: tuple[str, ...] = EDGE_TEXTS
    # The variants the bundle keeps. fp32 is always built and verified (it is the reference the
    # others are measured against); leave it out for a smaller bundle, e.g. ("int8",) for the edge.
    variants: tuple[str, ...] = ("fp32", "int8", "fp16")
    quality_texts: int = 1000  # held-out texts the int8/fp16 budgets are measured on
    # Held-out texts stored with their torch embeddings in the bundle's check set, after the
    # parity texts; `fusembed doctor` re-checks and times every variant on them.
    check_texts: int = 35
    calibration_texts: int = 256
    int8_min_mean_cosine: float = 0.997
    int8_min_cosine: float = 0.99
    int8_min_top10: float = 0.9
    min_batch_invariance: float = 0.9999
    fp16_min_cosine: float = 0.999

    def __post_init__(self) -> None:
        if not self.variants or set(self.variants) - set(FILES):
            raise ArgumentError("variants",
                                f"must be a non-empty subset of {sorted(FILES)}, got {self.variants}")
        # A budget out of range would fail every export after minutes of work (99.99 for
        # 0.9999), or, as NaN, pass every check: both are refused before anything runs.
        for name in ("min_cosine", "int8_min_mean_cosine", "int8_min_cosine", "int8_min_top10",
                     "min_batch_invariance", "fp16_min_cosine"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ArgumentError(name, f"must be a number from 0 to 1, got {value!r}")
        check_positive_int("quality_texts", self.quality_texts)
        check_positive_int("calibration_texts", self.calibration_texts)
        check = self.check_texts
        if isinstance(check, bool) or not isinstance(check, int) or check < 0:
            raise ArgumentError("check_texts", f"must be an int of at least 0, got {check!r}")
