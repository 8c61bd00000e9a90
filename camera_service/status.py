"""The ``get_status`` evaluation (api.md §4.21) and the ``system.health`` event (media.md §6.4).

Every input is a cached value (system sample, request metrics, MediaMTX probe
state), so evaluating never waits on anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

HEALTHY = "HEALTHY"
DEGRADED = "DEGRADED"
UNHEALTHY = "UNHEALTHY"
_RANK = {HEALTHY: 0, DEGRADED: 1, UNHEALTHY: 2}


def band(value: float, degraded_at: float, unhealthy_above: float, *, inclusive_degraded: bool = True) -> str:
    """HEALTHY below ``degraded_at``, UNHEALTHY above ``unhealthy_above``, else DEGRADED."""
    if value > unhealthy_above:
        return UNHEALTHY
    if value > degraded_at or (inclusive_degraded and value == degraded_at):
        return DEGRADED
    return HEALTHY


@dataclass(frozen=True)
class StatusReport:
    status: str
    components: dict[str, str]
    reasons: tuple[str, ...]


class StatusEvaluator:
    def __init__(self, *, system: Any, request_metrics: Any, connections_open: Callable[[], int],
                 max_connections: int, mediamtx: Any, camera_monitor_state: Callable[[], str],
                 shutting_down: Callable[[], bool],
                 disk_usage_percent: Callable[[], float | None] = lambda: None) -> None:
        self._system = system
        self._requests = request_metrics
        self._connections_open = connections_open
        self._max_connections = max_connections
        self._mediamtx = mediamtx
        self._camera_monitor_state = camera_monitor_state
        self._shutting_down = shutting_down
        # The storage service's own reading of the recordings filesystem, fresher than the
        # periodic system sample right after a threshold crossing.
        self._disk_usage_percent = disk_usage_percent

    def evaluate(self) -> StatusReport:
        sample = self._system.latest
        measures: list[tuple[str, str]] = []
        measures.append(("memory", band(sample.memory_usage, 90.0, 95.0)))
        measures.append(("error_rate", band(self._requests.recent_error_rate() * 100.0, 5.0, 10.0)))
        measures.append(("latency", band(self._requests.recent_mean_latency_ms(), 1000.0, 2000.0)))
        load = 100.0 * self._connections_open() / max(1, self._max_connections)
        measures.append(("connections", band(load, 90.0, 95.0)))
        measured = self._disk_usage_percent()
        if measured is not None:
            free = 100.0 - measured
        else:
            free = 100.0 - sample.disk_usage if sample.sampled_at else 100.0
        if free < 15.0:
            measures.append(("disk", UNHEALTHY))
        elif free <= 30.0:
            measures.append(("disk", DEGRADED))
        else:
            measures.append(("disk", HEALTHY))
        mediamtx_component = "STOPPED"
        if self._mediamtx.enabled:
            failures = self._mediamtx.consecutive_failures
            measures.append(("mediamtx_failures",
                             UNHEALTHY if failures >= 5 else DEGRADED if failures >= 3 else HEALTHY))
            latency = self._mediamtx.last_latency
            if latency is not None:
                measures.append(("mediamtx_latency", band(latency, 5.0, 10.0, inclusive_degraded=False)))
            mediamtx_component = self._mediamtx.component_state()
        worst = HEALTHY
        for _, level in measures:
            if _RANK[level] > _RANK[worst]:
                worst = level
        reasons = tuple(name for name, level in measures if level != HEALTHY)
        components = {
            "websocket_server": "STOPPING" if self._shutting_down() else "RUNNING",
            "camera_monitor": self._camera_monitor_state(),
            "mediamtx": mediamtx_component,
        }
        return StatusReport(worst, components, reasons)


class HealthEventService(Service):
    """Re-evaluates ``get_status`` periodically and publishes ``system.health`` on change."""

    _log = Logger()

    def __init__(self, evaluator: StatusEvaluator, publish: Callable[[str, dict[str, Any]], None],
                 system: Any, clock: IReactorTime, interval: float = 5.0) -> None:
        self._evaluator = evaluator
        self._publish = publish
        self._system = system
        self._loop = LoopingCall(self.check)
        self._loop.clock = clock
        self._interval = interval
        self._last: str | None = None

    def startService(self) -> None:
        super().startService()
        self._loop.start(self._interval, now=True).addErrback(
            lambda failure: self._log.failure("health loop stopped", failure=failure))

    def stopService(self) -> None:
        if self._loop.running:
            self._loop.stop()
        return super().stopService()

    def check(self) -> None:
        try:
            status = self._evaluator.evaluate().status
            if status != self._last:
                previous, self._last = self._last, status
                sample = self._system.latest
                self._publish("system.health", {
                    "status": status,
                    "metrics": {"cpu_usage": round(sample.cpu_usage, 1),
                                "memory_usage": round(sample.memory_usage, 1),
                                "disk_usage": round(sample.disk_usage, 1)},
                })
                self._log.info("service status {previous} -> {status}", previous=previous, status=status)
        except Exception:
            self._log.failure("health evaluation failed")
