"""Warm-up on a thread of its own, for `Encoder(warmup="background")`: the encoder is usable at
once, and a call that meets a shape not yet warmed only pays for that one shape.

The thread is a daemon, so that it never keeps a process alive, and an exit handler stops it
between two shapes and waits for the shape in progress: onnxruntime is never torn down under a
running call.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Callable


class BackgroundWarmup:
    """Runs `work(stop)` on a daemon thread; `work` should return soon after `stop` is set."""

    def __init__(self, work: Callable[[threading.Event], object]) -> None:
        self._stop = threading.Event()
        self.error: Exception | None = None
        self._thread = threading.Thread(target=self._main, args=(work,), name="fusembed-warmup", daemon=True)
        atexit.register(self.stop)
        self._thread.start()

    def _main(self, work: Callable[[threading.Event], object]) -> None:
        try:
            work(self._stop)
        except Exception as exc:  # kept for `wait`: a thread has no caller to raise to
            self.error = exc
        finally:
            atexit.unregister(self.stop)  # nothing left to stop at exit

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        """True once the warm-up has finished (False if `timeout` seconds pass first).

        Raises:
            Exception: what the warm-up raised, if it failed.
        """
        self._thread.join(timeout)
        if self._thread.is_alive():
            return False
        if self.error is not None:
            raise self.error
        return True

    def stop(self) -> None:
        """Stop after the shape in progress, and wait for it."""
        self._stop.set()
        self._thread.join()
