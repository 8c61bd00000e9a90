"""The health HTTP site (port 8003, api.md §7.1).

Every answer is built from cached state only (the health registry, the readiness latch,
the last system sample behind ``render_metrics``), so an endpoint never waits on
MediaMTX, a process or the disk, and stays far below the 100 ms budget.

Routing is on the full request path because the paths are configurable
(``http_health.*_endpoint``) and may have any depth.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any, Callable

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from camera_service.health.model import DEGRADED, HEALTHY, UNHEALTHY, ComponentHealth, HealthRegistry, Readiness, worst
from camera_service.health.prometheus import CONTENT_TYPE as PROMETHEUS_CONTENT_TYPE
from camera_service.timeutil import rfc3339, uptime_string

log = Logger()

JSON_CONTENT_TYPE = b"application/json"
# Sent on every response, whatever the status (api.md §7.1); Content-Type is added per
# response because /metrics is text.
_COMMON_HEADERS = (
    (b"Cache-Control", b"no-cache, no-store, must-revalidate"),
    (b"Pragma", b"no-cache"),
    (b"Expires", b"0"),
    (b"Access-Control-Allow-Origin", b"*"),
)


@dataclass(frozen=True)
class HealthEndpoints:
    basic: str = "/health"
    detailed: str = "/health/detailed"
    ready: str = "/health/ready"
    live: str = "/health/live"
    metrics: str = "/metrics"
    # Legacy alias of ``detailed`` (api.md §7.1 "Compatibility"); not a config key.
    system: str = "/health/system"

    def __post_init__(self) -> None:
        seen: dict[str, str] = {}
        for f in fields(self):
            path = getattr(self, f.name)
            if not isinstance(path, str) or not path.startswith("/"):
                raise ValueError(f"health endpoint {f.name} must be an absolute path, got {path!r}")
            if path in seen:
                raise ValueError(f"health endpoints {seen[path]} and {f.name} share the path {path!r}")
            seen[path] = f.name


@dataclass(frozen=True)
class _Response:
    code: int
    body: bytes
    content_type: bytes = JSON_CONTENT_TYPE


def _json(code: int, payload: dict[str, Any]) -> _Response:
    # allow_nan=False: a NaN in some component's details must not yield invalid JSON;
    # it becomes a 500 instead. default=str keeps odd detail values (paths, enums) legible.
    body = json.dumps(payload, separators=(",", ":"), allow_nan=False, default=str)
    return _Response(code, body.encode("utf-8"))


class HealthResource(Resource):
    """A single leaf resource that routes on ``request.path``."""

    isLeaf = True

    def __init__(
        self,
        *,
        registry: HealthRegistry,
        readiness: Readiness,
        clock: IReactorTime,
        started_at: float,
        version: str,
        environment: str,
        endpoints: HealthEndpoints,
        render_metrics: Callable[[], str],
    ) -> None:
        super().__init__()
        self._registry = registry
        self._readiness = readiness
        self._clock = clock
        self._started_at = started_at
        self._version = version
        self._environment = environment
        self._render_metrics = render_metrics
        self._routes: dict[bytes, Callable[[float], _Response]] = {
            endpoints.basic.encode("utf-8"): self._basic,
            endpoints.detailed.encode("utf-8"): self._detailed,
            endpoints.system.encode("utf-8"): self._detailed,
            endpoints.ready.encode("utf-8"): self._ready,
            endpoints.live.encode("utf-8"): self._live,
            endpoints.metrics.encode("utf-8"): self._metrics,
        }

    def render(self, request: Request) -> bytes:  # type: ignore[override]
        now = self._clock.seconds()
        try:
            response = self._dispatch(request, now)
        except Exception:
            log.failure("health endpoint {path} failed", path=request.path.decode("latin-1"))
            response = self._error(500, "Internal server error", now)
        request.setResponseCode(response.code)
        for name, value in _COMMON_HEADERS:
            request.setHeader(name, value)
        request.setHeader(b"Content-Type", response.content_type)
        return response.body

    def _dispatch(self, request: Request, now: float) -> _Response:
        # "Only GET is served; other methods get 405" (api.md §7.1) is applied before the
        # path lookup, so it also covers HEAD and unknown paths.
        if request.method != b"GET":
            request.setHeader(b"Allow", b"GET")
            return self._error(405, "Method not allowed", now)
        handler = self._routes.get(request.path)
        if handler is None:
            return self._error(404, "Not found", now)
        return handler(now)

    @staticmethod
    def _error(code: int, message: str, now: float) -> _Response:
        return _json(code, {"error": message, "timestamp": rfc3339(now), "status": code})

    def _base(self, now: float, components: list[ComponentHealth]) -> dict[str, Any]:
        return {
            # Components that have not reported yet are absent; with none at all the
            # overall status is healthy (worst of an empty list).
            "status": worst([c.status for c in components]),
            "timestamp": rfc3339(now),
            "version": self._version,
            "uptime": uptime_string(now - self._started_at),
        }

    def _basic(self, now: float) -> _Response:
        return _json(200, self._base(now, self._registry.components()))

    def _detailed(self, now: float) -> _Response:
        # One snapshot of the components feeds status, list and counts, so they agree.
        components = self._registry.components()
        body = self._base(now, components)
        body["components"] = [
            {
                "name": c.name,
                "status": c.status,
                "message": c.message,
                "last_checked": rfc3339(c.last_checked),
                "details": c.details,
            }
            for c in components
        ]
        body["metrics"] = {
            "uptime_seconds": max(0, int(now - self._started_at)),
            "component_count": len(components),
            "components_healthy": sum(1 for c in components if c.status == HEALTHY),
            "components_degraded": sum(1 for c in components if c.status == DEGRADED),
            "components_unhealthy": sum(1 for c in components if c.status == UNHEALTHY),
        }
        body["environment"] = self._environment
        return _json(200, body)

    def _ready(self, now: float) -> _Response:
        timestamp = rfc3339(now)
        unhealthy = [c.name for c in self._registry.components() if c.status == UNHEALTHY]
        if unhealthy:
            # Naming the unhealthy component is more useful than "starting" when both
            # hold; components() is in a fixed order, so the first one is stable.
            message = f"System not ready: {unhealthy[0]} is unhealthy"
        elif self._readiness.status() not in ("ready", "partial"):
            message = "System not ready: service is starting"
        else:
            return _json(200, {"ready": True, "timestamp": timestamp, "message": "System is ready"})
        return _json(503, {"ready": False, "timestamp": timestamp, "message": message})

    def _live(self, now: float) -> _Response:
        timestamp = rfc3339(now)
        if self._readiness.shutting_down:
            return _json(503, {"alive": False, "timestamp": timestamp, "message": "System is not alive"})
        return _json(200, {"alive": True, "timestamp": timestamp, "message": "System is alive"})

    def _metrics(self, now: float) -> _Response:
        return _Response(200, self._render_metrics().encode("utf-8"), PROMETHEUS_CONTENT_TYPE.encode("ascii"))


class _QuietSite(Site):
    """A Site that does not write an access-log line per request.

    Orchestrators probe these endpoints every few seconds; logging each probe would drown
    the service log. Failures are still logged by :class:`HealthResource`.
    """

    noisy = False

    def log(self, request: Request) -> None:
        pass


def build_health_site(
    *,
    registry: HealthRegistry,
    readiness: Readiness,
    clock: IReactorTime,
    started_at: float,
    version: str,
    environment: str,
    endpoints: HealthEndpoints,
    render_metrics: Callable[[], str],
) -> Site:
    resource = HealthResource(
        registry=registry,
        readiness=readiness,
        clock=clock,
        started_at=started_at,
        version=version,
        environment=environment,
        endpoints=endpoints,
        render_metrics=render_metrics,
    )
    return _QuietSite(resource)
