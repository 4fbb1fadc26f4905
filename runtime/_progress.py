"""A one-line progress bar on stderr, for long encodes and corpus runs: items done, rate, time left."""

from __future__ import annotations

import sys
import time


class Progress:
    """Redrawn at most 10 times a second; the last draw ends the line.

    Args:
        total: items expected, including `done`.
        unit: what an item is, as the bar prints it ("texts", "rows").
        done: items already done before this run (a resumed job): counted in the bar, not in the
            rate, so the time left is not flattered by work this run did not do.
    """

    def __init__(self, total: int, *, unit: str = "texts", done: int = 0) -> None:
        self.total, self.unit, self.done, self._skipped = total, unit, done, done
        self.start = self.drawn = time.perf_counter()

    def advance(self, count: int) -> None:
        self.done += count
        now = time.perf_counter()
        if now - self.drawn < 0.1 and self.done < self.total:
            return
        self.drawn = now
        rate = (self.done - self._skipped) / max(now - self.start, 1e-9)
        filled = 30 * self.done // max(self.total, 1)
        left = (self.total - self.done) / rate if rate > 0 else 0.0
        end = "\n" if self.done >= self.total else ""
        sys.stderr.write(f"\rfusembed [{'#' * filled}{'.' * (30 - filled)}] {self.done}/{self.total} "
                         f"{self.unit}, {rate:,.0f} {self.unit}/s, {left:.0f}s left{end}")
        sys.stderr.flush()
