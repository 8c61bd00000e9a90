"""A liveness probe of MediaMTX's control API.

It answers the questions start-up readiness, ``get_status`` and the ``mediamtx``
health component ask: has MediaMTX been reached, how fast does it answer, how
many checks failed in a row. It uses ``paths/list`` because that endpoint exists
on every supported release (media.md §9: never rely on /v3/info).
"""

from __future__ import annotations

import time
from typing import Any, Callable

import treq
from twisted.application.service import Service
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.web.client import HTTPConnectionPool, _HTTP11ClientFactory


class _QuietClientFactory(_HTTP11ClientFactory):
    # One "Starting factory" log line per probe is noise, not information.
    noisy = False

from camera_service.health.model import DEGRADED, HEALTHY, HealthRegistry, Readiness
from camera_service.timeutil import rfc3339

READINESS_CONDITION = "mediamtx"


class MediaMTXProbe(Service):
    _log = Logger()

    def __init__(self, *, reactor: Any, enabled: bool, base_url: str, auth: tuple[str, str] | None,
                 timeout: float, interval: float, failure_threshold: int, health: HealthRegistry,
                 readiness: Readiness, publish: Callable[[str, dict[str, Any]], None]) -> None:
        self._reactor = reactor
        self.enabled = enabled
        self._url = base_url.rstrip("/") + "/v3/paths/list"
        self._auth = auth
        self._timeout = timeout
        self._threshold = failure_threshold
        self._health = health
        self._readiness = readiness
        self._publish = publish
        self._pool = HTTPConnectionPool(reactor, persistent=True)
        self._pool.maxPersistentPerHost = 2
        self._pool._factory = _QuietClientFactory
        self._loop = LoopingCall(self.check)
        self._loop.clock = reactor
        self._interval = interval
        self.state = "starting" if enabled else "disabled"
        self.consecutive_failures = 0
        self.last_latency: float | None = None
        self.last_success: float | None = None
        self.live_paths = 0
        if enabled:
            readiness.require(READINESS_CONDITION)

    def component_state(self) -> str:
        if not self.enabled:
            return "STOPPED"
        if self.state == "starting" and self.consecutive_failures < self._threshold:
            return "STARTING"
        return "RUNNING" if self.state == "up" else "ERROR"

    def startService(self) -> None:
        super().startService()
        if not self.enabled:
            self._health.set("mediamtx", HEALTHY, "MediaMTX integration disabled", {"state": "disabled"})
            return
        self._report()
        self._loop.start(self._interval, now=True).addErrback(
            lambda failure: self._log.failure("MediaMTX probe loop stopped", failure=failure))

    def stopService(self) -> Any:
        super().stopService()
        if self._loop.running:
            self._loop.stop()
        return self._pool.closeCachedConnections()

    async def _probe(self) -> None:
        started = time.monotonic()
        response = await treq.get(self._url, params={"itemsPerPage": "1"}, auth=self._auth,
                                  timeout=self._timeout, pool=self._pool, reactor=self._reactor)
        body = await response.json()
        if response.code != 200 or not isinstance(body, dict):
            raise RuntimeError(f"HTTP {response.code}")
        self.last_latency = time.monotonic() - started
        self.live_paths = int(body.get("itemCount", 0) or 0)

    def check(self) -> Any:
        from twisted.internet.defer import ensureDeferred

        return ensureDeferred(self._check())

    async def _check(self) -> None:
        try:
            await self._probe()
        except Exception as error:
            self.consecutive_failures += 1
            if self.consecutive_failures == 1:
                self._log.warn("MediaMTX unreachable at {url}: {error}", url=self._url, error=str(error))
                self._publish("mediamtx.error", {"error": "MediaMTX unreachable"})
            # One lost answer is not an outage: DOWN only at the failure threshold.
            if self.state in ("up", "starting") and self.consecutive_failures >= self._threshold:
                self.state = "down"
        else:
            if self.state != "up":
                self._log.info("MediaMTX reachable at {url}", url=self._url)
            self.state = "up"
            self.consecutive_failures = 0
            self.last_success = self._reactor.seconds()
            self._readiness.satisfy(READINESS_CONDITION)
        self._report()

    def _report(self) -> None:
        details = {
            "state": self.state,
            "consecutive_failures": self.consecutive_failures,
            "last_success": rfc3339(self.last_success) if self.last_success else None,
            "live_paths": self.live_paths,
            "active_streams": self.live_paths,
            "api_latency_ms": round(self.last_latency * 1000, 1) if self.last_latency is not None else None,
            "problems": [],
        }
        if self.state == "up":
            self._health.set("mediamtx", HEALTHY, "MediaMTX reachable", details)
        elif self.state == "starting":
            self._health.set("mediamtx", DEGRADED, "MediaMTX not reached yet", details)
        else:
            self._health.set("mediamtx", DEGRADED, "MediaMTX unreachable", details)
