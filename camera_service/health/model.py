"""Cached component health and start-up readiness.

Components (``mediamtx``, ``cameras``, ``storage``) push their state here when their
inputs change; the health endpoints and ``get_status`` read only this cache, so they
never wait on MediaMTX, a process or the disk (media.md §6.1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from twisted.internet.interfaces import IReactorTime

HEALTHY = "healthy"
DEGRADED = "degraded"
UNHEALTHY = "unhealthy"
_SEVERITY = {HEALTHY: 0, DEGRADED: 1, UNHEALTHY: 2}

COMPONENT_ORDER = ("mediamtx", "cameras", "storage")


def worst(statuses: list[str]) -> str:
    result = HEALTHY
    for status in statuses:
        if _SEVERITY[status] > _SEVERITY[result]:
            result = status
    return result


@dataclass(frozen=True)
class ComponentHealth:
    name: str
    status: str
    message: str
    last_checked: float
    details: dict[str, Any] = field(default_factory=dict)


class HealthRegistry:
    """Latest known health of each component, with change observers."""

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._components: dict[str, ComponentHealth] = {}
        self._observers: list[Callable[[ComponentHealth, ComponentHealth | None], None]] = []

    def set(self, name: str, status: str, message: str, details: dict[str, Any] | None = None) -> None:
        if status not in _SEVERITY:
            raise ValueError(f"unknown health status {status!r}")
        previous = self._components.get(name)
        current = ComponentHealth(name, status, message, self._clock.seconds(), dict(details or {}))
        self._components[name] = current
        if previous is None or previous.status != status:
            for observer in list(self._observers):
                observer(current, previous)

    def get(self, name: str) -> ComponentHealth | None:
        return self._components.get(name)

    def components(self) -> list[ComponentHealth]:
        known = [self._components[n] for n in COMPONENT_ORDER if n in self._components]
        extra = [c for n, c in sorted(self._components.items()) if n not in COMPONENT_ORDER]
        return known + extra

    def overall(self) -> str:
        return worst([c.status for c in self._components.values()])

    def observe(self, observer: Callable[[ComponentHealth, ComponentHealth | None], None]) -> None:
        self._observers.append(observer)


class Readiness:
    """Start-up readiness for ``get_system_status``, the readiness gate and ``/health/ready``.

    Components that must finish something before start-up counts as complete call
    ``require(name)`` when they are built and ``satisfy(name)`` when done. Once every
    condition has been met the state latches to ``ready`` for the life of the process
    (api.md §4.22).
    """

    def __init__(self) -> None:
        self._pending: set[str] = set()
        self._latched = False
        self._started = False
        self.shutting_down = False
        # Providers are replaced by the camera monitor once it exists.
        self.available_cameras: Callable[[], list[str]] = lambda: []
        self.discovery_active: Callable[[], bool] = lambda: False

    def require(self, condition: str) -> None:
        if not self._latched:
            self._pending.add(condition)

    def satisfy(self, condition: str) -> None:
        self._pending.discard(condition)
        self._check()

    def mark_started(self) -> None:
        """Called once every service has been started."""
        self._started = True
        self._check()

    def _check(self) -> None:
        if self._started and not self._pending:
            self._latched = True

    @property
    def pending(self) -> frozenset[str]:
        return frozenset(self._pending)

    def status(self) -> str:
        if self._latched:
            return "ready"
        if self.available_cameras():
            return "partial"
        return "starting"
