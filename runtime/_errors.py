"""The exceptions fusembed raises. Each says what was wrong, with the value, and what to do."""

from __future__ import annotations


class FusembedError(Exception):
    """Base class of every error fusembed raises on purpose."""


class BundleError(FusembedError, ValueError):
    """A bundle directory is missing, incomplete, damaged or of an unknown format."""


class ExportError(FusembedError, RuntimeError):
    """A model could not be exported, or the export failed its parity check."""


class ProviderUnavailableError(FusembedError, RuntimeError):
    """The requested device has no onnxruntime execution provider on this machine."""


class InputError(FusembedError, ValueError):
    """Texts given to `Encoder.encode` (or the CLI) are not what it accepts."""
