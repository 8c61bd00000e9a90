"""Request accounting for ``get_metrics``, ``get_status`` and ``/metrics``.

Latency samples are kept in bounded rings, so memory stays flat however long the
service runs.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Callable

# Error classes that count against the get_status error-rate band (api.md §4.21).
SERVER_ERROR_CODES = frozenset({-32603, -32050})
_WINDOW_SECONDS = 300.0
_SAMPLES_PER_METHOD = 2048
_WINDOW_CAP = 100_000


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, int(round(fraction * (len(sorted_values) - 1)))))
    return sorted_values[index]


@dataclass
class MethodStats:
    requests: int = 0
    errors: int = 0
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=_SAMPLES_PER_METHOD))
    errors_by_code: dict[int, int] = field(default_factory=dict)
    latency_sum_ms: float = 0.0


class RequestMetrics:
    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now
        self.methods: dict[str, MethodStats] = {}
        # (time, latency_ms, counts_as_server_error) for the 5-minute bands.
        self._window: deque[tuple[float, float, bool]] = deque(maxlen=_WINDOW_CAP)
        self.connections_total = 0
        self.connections_open = 0
        self.connections_refused: dict[str, int] = {}
        self.notifications_sent = 0
        self.notifications_dropped = 0

    def record(self, method: str, latency_ms: float, error_code: int | None) -> None:
        stats = self.methods.get(method)
        if stats is None:
            stats = self.methods[method] = MethodStats()
        stats.requests += 1
        stats.latencies_ms.append(latency_ms)
        stats.latency_sum_ms += latency_ms
        if error_code is not None:
            stats.errors += 1
            stats.errors_by_code[error_code] = stats.errors_by_code.get(error_code, 0) + 1
        self._window.append((self._now(), latency_ms, error_code in SERVER_ERROR_CODES))

    def refused(self, reason: str) -> None:
        self.connections_refused[reason] = self.connections_refused.get(reason, 0) + 1

    def _recent(self) -> list[tuple[float, float, bool]]:
        horizon = self._now() - _WINDOW_SECONDS
        while self._window and self._window[0][0] < horizon:
            self._window.popleft()
        return list(self._window)

    def recent_error_rate(self) -> float:
        """Share (0..1) of requests in the last 5 minutes answered -32603 or -32050."""
        recent = self._recent()
        if not recent:
            return 0.0
        return sum(1 for _, _, bad in recent if bad) / len(recent)

    def recent_mean_latency_ms(self) -> float:
        recent = self._recent()
        if not recent:
            return 0.0
        return sum(latency for _, latency, _ in recent) / len(recent)

    def summary(self, method: str) -> dict[str, float | int]:
        stats = self.methods[method]
        ordered = sorted(stats.latencies_ms)
        return {
            "requests": stats.requests,
            "errors": stats.errors,
            "p50_ms": round(percentile(ordered, 0.50), 3),
            "p95_ms": round(percentile(ordered, 0.95), 3),
            "p99_ms": round(percentile(ordered, 0.99), 3),
        }
