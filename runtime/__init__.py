"""fusembed: sentence embeddings from fused ONNX graphs, with no torch at run time.

Example:
    >>> from fusembed import Encoder, dot_score            # doctest: +SKIP
    >>> enc = Encoder("bundles/all-MiniLM-L6-v2")           # doctest: +SKIP
    >>> dot_score(enc.encode("query"), enc.encode(["a", "b"]))  # doctest: +SKIP
"""

from __future__ import annotations

from ._auto import Choice
from ._cpu import CpuInfo, cpu_info
from ._doctor import DoctorReport, doctor
from ._encoder import Encoder
from ._errors import (
    ApiError,
    ArgumentError,
    BundleError,
    CommandError,
    ExportError,
    FusembedError,
    HubError,
    InputError,
    Overloaded,
    ProviderUnavailableError,
    ServerBusy,
    Stopping,
)
from ._manifest import Manifest, read_manifest
from ._similarity import cos_sim, dot_score, semantic_search

__version__ = "0.1.0"

__all__ = [
    "ApiError",
    "ArgumentError",
    "BundleError",
    "Choice",
    "CommandError",
    "CpuInfo",
    "DoctorReport",
    "Encoder",
    "ExportError",
    "FusembedError",
    "HubError",
    "InputError",
    "Manifest",
    "Overloaded",
    "ProviderUnavailableError",
    "ServerBusy",
    "Stopping",
    "__version__",
    "cos_sim",
    "cpu_info",
    "doctor",
    "dot_score",
    "read_manifest",
    "semantic_search",
]
