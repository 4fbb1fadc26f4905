"""Every exception fusembed raises on purpose, in one tree. Each message says what was wrong, with
the value, and what to do.

    FusembedError                    base of them all: `except FusembedError` catches any of them
    ├── ArgumentError (ValueError)   a bad argument to a public call; `.param` names it
    ├── InputError (ValueError)      texts, token ids, or input rows that cannot be embedded
    ├── BundleError (ValueError)     a bundle is missing, incomplete, damaged or of an unknown format
    ├── HubError (RuntimeError)      a bundle could not be fetched from, or pushed to, the hub
    ├── ExportError (RuntimeError)   a model could not be exported, or failed its parity check
    ├── ProviderUnavailableError (RuntimeError)
    │                                the device asked for has no onnxruntime provider here
    ├── ServerBusy (RuntimeError)    the server took no new work
    │   ├── Overloaded               its queue is full
    │   ├── Stopping                 it is shutting down
    │   └── ModelUnavailable         its model process is gone (`serve --workers N`)
    ├── ServerProcessError (RuntimeError)
    │                                a process of `serve --workers N` exited on its own
    ├── ApiError                     an HTTP request failed: status and OpenAI-style error object
    └── CommandError                 the `fusembed` command failed (exit status 1)

Library messages name parameters (`threads`, `id_field`); the CLI names the flags instead: it
turns an `ArgumentError` for `threads` into one about `--threads`.
"""

from __future__ import annotations


class FusembedError(Exception):
    """Base class of every error fusembed raises on purpose."""


class ArgumentError(FusembedError, ValueError):
    """A public call got an argument it does not accept. `param` is the argument's name and
    `problem` what is wrong with it, e.g. `ArgumentError("threads", "must be a positive int, got 0")`,
    whose message reads "threads must be a positive int, got 0"."""

    def __init__(self, param: str, problem: str) -> None:
        super().__init__(f"{param} {problem}")
        self.param = param
        self.problem = problem


def check_positive_int(param: str, value: object, *, none_ok: bool = False) -> None:
    """`value` counts something: an int of at least 1 (not a bool, not a float), or None when
    `none_ok` (the default is then chosen elsewhere). Else an `ArgumentError` naming `param`."""
    if none_ok and value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ArgumentError(param, f"must be a positive int{' or None' if none_ok else ''}, got {value!r}")


class InputError(FusembedError, ValueError):
    """Texts, token ids or input rows given to fusembed are not what it accepts."""


class BundleError(FusembedError, ValueError):
    """A bundle directory is missing, incomplete, damaged or of an unknown format."""


class HubError(FusembedError, RuntimeError):
    """A bundle could not be fetched from, or pushed to, a Hugging Face hub: the repository or
    revision does not exist or is not accessible, the hub cannot be reached, or (offline) the bundle
    is not in the cache."""


class ExportError(FusembedError, RuntimeError):
    """A model could not be exported, or the export failed its parity check."""


class ProviderUnavailableError(FusembedError, RuntimeError):
    """The requested device has no onnxruntime execution provider on this machine."""


class ServerBusy(FusembedError, RuntimeError):
    """The server's batcher did not take the request; it was not run. The server answers 503."""


class Overloaded(ServerBusy):
    """The queue is full: the request was not taken."""


class Stopping(ServerBusy):
    """The batcher is stopping: the request was not taken."""


class ModelUnavailable(ServerBusy):
    """A worker of a multi-worker server cannot reach its model process, which has exited: the
    request was not run, or its answer was lost. The server answers 503 and stops."""


class ServerProcessError(FusembedError, RuntimeError):
    """A process of a multi-worker server (`serve --workers N`) exited on its own; the others were
    stopped."""


class ApiError(FusembedError):
    """A failed HTTP request: the status and the OpenAI-style error object that explains it."""

    def __init__(
        self, status: int, message: str, *, param: str | None = None, code: str | None = None,
        type: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = status, message, param, code, type


class CommandError(FusembedError):
    """A `fusembed` command failed in a way its message explains; the CLI prints it and exits 1."""
