"""fusembed.export: turn a sentence-transformers model into a verified fusembed bundle.

Needs the `export` extra (torch, transformers, sentence-transformers, onnx):
`pip install 'fusembed[export]'`. The pipeline's steps each live in their own module:
resolve -> graph -> optimize -> quantize -> bundle -> verify, orchestrated by
`pipeline.export_model`; `options` holds `ExportOptions` and imports nothing heavy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .options import ExportOptions

if TYPE_CHECKING:
    from .pipeline import ExportReport, export_model

__all__ = ["ExportOptions", "ExportReport", "export_model"]


def __getattr__(name: str) -> Any:
    # The pipeline imports onnx and onnxruntime's tools: only when it is used, so that
    # reading the options (the CLI's --help) needs none of the export extra.
    if name in ("ExportReport", "export_model"):
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
