"""Fixed-window counters used per connection (api.md §1.5)."""

from __future__ import annotations

import math
from typing import Callable


class FixedWindow:
    """Allows ``limit`` hits per ``window`` seconds; the window starts at its first hit."""

    def __init__(self, limit: int, window: float, now: Callable[[], float]) -> None:
        self._limit = limit
        self._window = window
        self._now = now
        self._started = -math.inf
        self._count = 0

    def hit(self) -> int | None:
        """Count one hit. None when allowed, else milliseconds until the window ends."""
        now = self._now()
        if now - self._started >= self._window:
            self._started = now
            self._count = 0
        self._count += 1
        if self._count <= self._limit:
            return None
        return self.retry_after_ms()

    def exhausted(self) -> int | None:
        """Like ``hit`` but without counting: None while hits remain."""
        now = self._now()
        if now - self._started >= self._window or self._count < self._limit:
            return None
        return self.retry_after_ms()

    def retry_after_ms(self) -> int:
        remaining = self._started + self._window - self._now()
        return max(1, math.ceil(remaining * 1000))
