"""Per-user sliding-window rate limit: at most `max_calls` questions in any `per_seconds`."""
from __future__ import annotations

import time
from collections import deque
from typing import Callable


class RateLimiter:
    """Remembers when each user asked; `hit` both checks and counts a question."""

    def __init__(self, max_calls: int, per_seconds: float, clock: Callable[[], float] = time.monotonic):
        self.max_calls = max_calls
        self.per_seconds = per_seconds
        self._clock = clock
        self._calls: dict[int, deque[float]] = {}

    def hit(self, user_id: int) -> float:
        """Count a question by `user_id`. Returns 0 if allowed, else the seconds until it would be."""
        if self.max_calls <= 0:
            return 0.0
        now = self._clock()
        calls = self._calls.setdefault(user_id, deque())
        while calls and calls[0] <= now - self.per_seconds:
            calls.popleft()
        if len(calls) >= self.max_calls:
            return max(calls[0] + self.per_seconds - now, 0.1)
        calls.append(now)
        if len(self._calls) > 10_000:  # forget users who have been quiet for a whole window
            self._calls = {u: c for u, c in self._calls.items() if c and c[-1] > now - self.per_seconds}
        return 0.0
