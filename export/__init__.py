"""fusembed.export: turn a sentence-transformers model into a verified fusembed bundle.

Needs the `export` extra (torch, transformers, sentence-transformers, onnx, optimum-onnx):
`pip install 'fusembed[export]'`. The pipeline's steps each live in their own module:
resolve -> graph -> optimize -> bundle -> verify, orchestrated by `pipeline.export_model`.
"""

from __future__ import annotations

from .pipeline import ExportOptions, ExportReport, export_model

__all__ = ["ExportOptions", "ExportReport", "export_model"]
