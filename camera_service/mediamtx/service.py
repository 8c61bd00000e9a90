"""The MediaMTX integration service (media.md §2.5–§2.8, §1.9, §6.1).

One object owns everything the service knows about MediaMTX at run time:

- the health state machine of §2.7 (``disabled`` / ``starting`` / ``up`` / ``down``): a
  ``GET /v3/paths/list`` probe at start-up and every ``health_check_interval`` seconds in UP,
  quick re-probes after 1 s and 2 s while the consecutive-failure counter is below the
  threshold, and exponential backoff with full jitter (capped at ``health_max_backoff``)
  while DOWN; one successful probe is UP again;
- provisioning at every transition into UP (§2.5): settings checks (§2.6 items 1–4), stale
  managed paths deleted, every wanted camera path ``replace``d with at most
  ``provision_concurrency`` writes in flight;
- detection of a MediaMTX restart the service never saw (a provisioned path missing from the
  list, or a changed ``/v3/info`` ``started``), handled exactly like DOWN → UP;
- the runtime state cache of §2.8 (live flags, readers, byte counters) fed by every probe and
  by ``fetch_path``/``list_paths``, with ``mediamtx.stream`` on a camera path's live change;
- the ``mediamtx`` health component (§6.1), the start-up readiness condition (api.md §4.22)
  and the -32050 fast-fail of an open circuit (``require_up``).

It never waits for MediaMTX in a way that blocks the reactor, and it never lets a MediaMTX
failure escape into discovery: the camera hooks log and publish, they do not raise.
"""

from __future__ import annotations

import random as _random
import re
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from camera_service.external.urls import scrub
from camera_service.health.model import DEGRADED, HEALTHY
from camera_service.mediamtx.client import (
    MediaMTXAuthError,
    MediaMTXClient,
    MediaMTXError,
    MediaMTXNotFound,
    MediaMTXProtocolError,
    MediaMTXRejected,
    MediaMTXServerError,
    MediaMTXUnavailable,
    PathState,
)
from camera_service.mediamtx.paths import (
    camera_path_config,
    is_managed,
    path_defaults_patch,
    publisher_argv,
    run_on_demand,
    usb_input_args,
    virtual_input_args,
)
from camera_service.rpc.errors import RpcError, dependency_failed
from camera_service.timeutil import parse_rfc3339, rfc3339

__all__ = ["READINESS_CONDITION", "MediaMTXService"]

READINESS_CONDITION = "mediamtx"

DISABLED = "disabled"
STARTING = "starting"
UP = "up"
DOWN = "down"

_CAMERA_PATH = re.compile(r"camera[0-9]+")
_MIN_VERSION = (1, 15, 0)
_SCAN_WAIT = 0.1  # how often provisioning re-checks that the first camera scan finished

# Failures of a request that feed the state machine (§2.7): the transport and 5xx.
_FEEDS_FAILURE = (MediaMTXUnavailable, MediaMTXServerError)


class _Skip(Exception):
    """A camera whose path cannot be written (no mode, no FFmpeg …); the text says why."""

    def __init__(self, reason: str, dependency: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.dependency = dependency


def _short_reason(error: BaseException) -> str:
    """``connection refused``, ``timeout`` … for the -32050 detail and the health message."""
    text = str(error)
    lowered = text.lower()
    if "refused" in lowered:
        return "connection refused"
    if "no answer within" in lowered or "timed out" in lowered or "timeout" in lowered:
        return "timeout"
    if "reset" in lowered:
        return "connection reset"
    if isinstance(error, MediaMTXServerError):
        return f"HTTP {error.status}"
    if isinstance(error, MediaMTXAuthError):
        return "API credentials refused"
    if isinstance(error, MediaMTXProtocolError):
        return "invalid answer"
    return text or type(error).__name__


def _port_of(address: Any) -> int | None:
    if not isinstance(address, str) or ":" not in address:
        return None
    try:
        return int(address.rsplit(":", 1)[1])
    except ValueError:
        return None


def _version_tuple(version: str) -> tuple[int, int, int] | None:
    match = re.match(r"^v?(\d+)\.(\d+)\.(\d+)", version or "")
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


def _hms(seconds: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(seconds))


def _round_half_up(value: float) -> int:
    return int(value + 0.5)


class MediaMTXService(Service):
    """MediaMTX health, provisioning and runtime state. See the module docstring."""

    name = "mediamtx"
    _log = Logger()

    def __init__(self, *, reactor: Any, config: Any, client: MediaMTXClient | None, monitor: Any,
                 bus: Any, health: Any, readiness: Any, ffmpeg_path: str | None,
                 random: Callable[[], float] = _random.random) -> None:
        self._reactor = reactor
        self._config = config
        self._mm = config.mediamtx
        self._client = client
        self._monitor = monitor
        self._bus = bus
        self._health = health
        self._readiness = readiness
        self._ffmpeg = ffmpeg_path
        self._random = random

        self.enabled = bool(self._mm.enabled) and client is not None
        self.state = STARTING if self.enabled else DISABLED
        self.consecutive_failures = 0
        self.last_latency: float | None = None
        self.last_success: float | None = None

        # Providers other parts of the service may replace (documented in the report):
        #: camera id → True while a recording is active on its path (record: true on re-write).
        self.is_recording: Callable[[str], bool] = lambda camera_id: False
        #: camera id → readers the service itself holds on the path (keep-alive, RTSP snapshot).
        self.own_readers: Callable[[str], int] = lambda camera_id: 0
        #: wanted external-stream proxy paths: name (ext_…) → path body (§7.4).
        self.external_paths: Callable[[], Mapping[str, dict[str, Any]]] = dict
        #: called after provisioning deleted and re-wrote paths (e.g. storage consistency, §2.5 step 5).
        self.on_provisioned: list[Callable[[], Any]] = []
        #: called when MediaMTX is found to have lost its paths or went DOWN (recordings fail, §3.8).
        self.on_paths_lost: list[Callable[[str], Any]] = []

        self._provisioned: set[str] = set()
        self._rejected: dict[str, str] = {}
        self._inflight: dict[str, list[defer.Deferred[None]]] = {}
        self._cache: dict[str, PathState] = {}
        self._live_flags: dict[str, bool] = {}
        # Frames flowing (§2.8): camera path → (inbound bytes, when it last grew, stalled probes)
        self._inbound: dict[str, tuple[int, float, int]] = {}
        self.stalled: set[str] = set()

        self._timer: IDelayedCall | None = None
        self._probing = False
        self._stopped = False
        self._backoff_k = 0
        self._failing_since: float | None = None
        self._last_error = ""

        self._provisioning = False
        self._provision_again = False
        self._provision_done = False       # the last provisioning (this UP) finished
        self.first_provisioning_done = False
        self._version: str | None = None
        self._info_started: str | None = None
        self._playback = False
        self._problems: list[str] = []      # settings problems found at the last UP

        if monitor is not None:
            monitor.on_camera_connected.append(self._camera_connected)
            monitor.on_camera_disconnected.append(self._camera_disconnected)
            monitor.path_metrics = self.path_metrics
            monitor.stalled_cameras = lambda: sorted(self.stalled)
        if self.enabled:
            readiness.require(READINESS_CONDITION)

    # ------------------------------------------------------------------ service lifecycle

    def startService(self) -> None:
        super().startService()
        self._stopped = False
        if not self.enabled:
            self._report()
            return
        self._report()
        self._schedule(0)

    def stopService(self) -> Any:
        super().stopService()
        self._stopped = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self._client is not None:
            return self._client.close()
        return None

    # ------------------------------------------------------------------ public API

    def component_state(self) -> str:
        """``get_status`` component value (api.md §4.21)."""
        if self.state == DISABLED:
            return "STOPPED"
        if self.state == UP:
            return "RUNNING"
        if self.state == DOWN:
            return "ERROR"
        return "STARTING"

    def require_up(self) -> None:
        """Fail at once, without a request, when MediaMTX cannot be used (§2.7)."""
        if self.state == UP:
            return
        if self.state == DISABLED:
            raise dependency_failed("mediamtx", "MediaMTX integration disabled",
                                    suggestion="Enable mediamtx in the configuration")
        if self.state == STARTING and self.consecutive_failures == 0:
            return
        raise dependency_failed("mediamtx", self._unreachable_text(with_reason=True),
                                suggestion="Retry later; check that MediaMTX is running")

    def is_provisioned(self, camera_id: str) -> bool:
        return camera_id in self._provisioned

    def cached_path(self, name: str) -> PathState | None:
        return self._cache.get(name)

    def run_on_demand_close_after(self) -> int:
        return int(self._mm.run_on_demand_close_after)

    @property
    def playback(self) -> bool:
        """MediaMTX reported ``playback: true`` at the last UP, so ``recordPath`` needs ``-%f``."""
        return self._playback

    async def write_external_path(self, name: str, body: dict[str, Any]) -> None:
        """``replace`` an external-stream proxy path now (media.md §7.4).

        Raises -32050 when MediaMTX is not UP, cannot be reached or rejects the body (its
        text with URL passwords masked); the next provisioning writes the path then, since
        ``external_paths`` still offers it.
        """
        if self.state != UP:
            self.require_up()
            raise dependency_failed("mediamtx", "MediaMTX is not up yet")
        assert self._client is not None
        try:
            await self._client.replace_path_config(name, body)
        except MediaMTXRejected as error:
            self._request_succeeded()
            text = scrub(error.error_text)
            self._rejected[name] = text
            self._bus.publish("mediamtx.error", {"error": f"{name}: {text}"})
            self._report()
            raise dependency_failed("mediamtx", f"MediaMTX rejected the path {name}: {text}") from None
        except _FEEDS_FAILURE as error:
            raise self._request_failed(error) from None
        except MediaMTXError as error:
            raise dependency_failed("mediamtx", scrub(str(error))) from None
        self._request_succeeded()
        self._rejected.pop(name, None)
        self._provisioned.add(name)
        self._report()

    async def delete_external_path(self, name: str) -> None:
        """Delete an external-stream proxy path; a 404 counts as success. While MediaMTX is
        not UP nothing is sent: the next provisioning deletes it as stale (§2.5 step 2)."""
        self._provisioned.discard(name)
        self._rejected.pop(name, None)
        if self.state != UP:
            return
        assert self._client is not None
        try:
            await self._client.delete_path_config(name)
        except MediaMTXNotFound:
            pass
        except _FEEDS_FAILURE as error:
            raise self._request_failed(error) from None
        except MediaMTXError as error:
            raise dependency_failed("mediamtx", scrub(str(error))) from None
        else:
            self._request_succeeded()
        self._observe_gone(name)
        self._report()

    async def ensure_path(self, camera: Any) -> None:
        """Write the camera's path unless it is marked provisioned (§2.5). Idempotent; two
        concurrent calls for one camera share one request."""
        self.require_up()
        camera_id = camera.id
        if camera_id in self._provisioned:
            return
        waiters = self._inflight.get(camera_id)
        if waiters is not None:
            waiter: defer.Deferred[None] = defer.Deferred()
            waiters.append(waiter)
            await waiter
            return
        waiters = self._inflight[camera_id] = []
        try:
            await self._write_camera(camera, record=self.is_recording(camera_id), strict=True)
        except BaseException as error:
            self._inflight.pop(camera_id, None)
            for waiter in waiters:
                waiter.errback(Failure(error))
            raise
        self._inflight.pop(camera_id, None)
        for waiter in waiters:
            waiter.callback(None)

    async def set_record(self, camera: Any, record: bool) -> None:
        """``PATCH {"record": ...}`` on the camera's own path (media.md §3.4 step 4, §3.6).

        Always the camera's path name, never a ``confName`` such as ``all_others``. A 404
        when switching on means MediaMTX lost the path: it is written again (with the wanted
        flag, since ``is_recording`` decides the body) and patched once more; when switching
        off, a 404 is success. A 400 is -32050 with
        MediaMTX's text; an unreachable MediaMTX raises the -32050 of ``require_up``.
        """
        self.require_up()
        assert self._client is not None
        camera_id = camera.id
        for attempt in (1, 2):
            try:
                await self._client.set_record(camera_id, record)
            except MediaMTXNotFound:
                self._request_succeeded()
                self._provisioned.discard(camera_id)
                if not record:
                    return  # no path, no recorder: nothing is recording (§3.6 step 2)
                if attempt == 2:
                    raise dependency_failed("mediamtx", f"MediaMTX lost the path {camera_id}") from None
                await self.ensure_path(camera)
                continue
            except MediaMTXRejected as error:
                self._request_succeeded()
                self._bus.publish("mediamtx.error", {"device": camera_id, "error": error.error_text})
                raise dependency_failed("mediamtx", f"MediaMTX refused record={str(record).lower()} "
                                        f"on {camera_id}: {error.error_text}") from None
            except _FEEDS_FAILURE as error:
                raise self._request_failed(error) from None
            except MediaMTXError as error:
                raise dependency_failed("mediamtx", str(error)) from None
            self._request_succeeded()
            return

    async def recordings_of(self, camera_id: str) -> list[str]:
        """Segment start times MediaMTX lists for the camera (``recordings/get``); [] if none."""
        self.require_up()
        assert self._client is not None
        try:
            answer = await self._client.get_recordings(camera_id)
        except MediaMTXNotFound:
            return []
        except _FEEDS_FAILURE as error:
            raise self._request_failed(error) from None
        except MediaMTXError as error:
            raise dependency_failed("mediamtx", str(error)) from None
        segments = answer.get("segments") if isinstance(answer, dict) else None
        return [str(item.get("start")) for item in segments or () if isinstance(item, dict)]

    async def delete_segment(self, camera_id: str, start: str) -> None:
        """``DELETE /v3/recordings/deletesegment`` with ``start`` exactly as MediaMTX gave it."""
        self.require_up()
        assert self._client is not None
        try:
            await self._client.delete_segment(camera_id, start)
        except _FEEDS_FAILURE as error:
            raise self._request_failed(error) from None
        except MediaMTXError as error:
            raise dependency_failed("mediamtx", str(error)) from None
        self._request_succeeded()

    async def paths_with_recordings(self) -> list[str]:
        """Names of the paths MediaMTX lists segments for (``recordings/list``)."""
        self.require_up()
        assert self._client is not None
        try:
            items = await self._client.list_recordings()
        except _FEEDS_FAILURE as error:
            raise self._request_failed(error) from None
        except MediaMTXError as error:
            raise dependency_failed("mediamtx", str(error)) from None
        self._request_succeeded()
        return [str(item["name"]) for item in items
                if isinstance(item, dict) and isinstance(item.get("name"), str)]

    async def remove_path(self, camera_id: str) -> None:
        """Delete the camera's path; a 404 counts as success (§1.9, §2.5)."""
        self._provisioned.discard(camera_id)
        self._rejected.pop(camera_id, None)
        if self.state != UP:
            # The path is deleted as stale at the next provisioning.
            self.require_up()
        assert self._client is not None
        try:
            await self._client.delete_path_config(camera_id)
        except MediaMTXNotFound:
            pass
        except _FEEDS_FAILURE as error:
            raise self._request_failed(error) from None
        except MediaMTXError as error:
            self._bus.publish("mediamtx.error", {"device": camera_id, "error": str(error)})
            raise dependency_failed("mediamtx", str(error)) from None
        else:
            self._request_succeeded()
        self._observe_gone(camera_id)
        self._bus.publish("mediamtx.path", {"device": camera_id, "exists": False})

    async def fetch_path(self, name: str) -> PathState | None:
        """``paths/get``: the path's runtime state now; None when MediaMTX does not know it."""
        self.require_up()
        assert self._client is not None
        try:
            state = await self._client.get_path(name)
        except MediaMTXNotFound:
            self._request_succeeded()
            self._observe_gone(name)
            return None
        except _FEEDS_FAILURE as error:
            raise self._request_failed(error) from None
        except MediaMTXError as error:
            raise dependency_failed("mediamtx", str(error)) from None
        self._request_succeeded()
        self._observe([state], full=False)
        return state

    async def list_paths(self) -> list[PathState]:
        self.require_up()
        assert self._client is not None
        try:
            paths = await self._client.list_paths()
        except _FEEDS_FAILURE as error:
            raise self._request_failed(error) from None
        except MediaMTXError as error:
            raise dependency_failed("mediamtx", str(error)) from None
        self._request_succeeded()
        self._observe(paths, full=True)
        return paths

    def path_metrics(self, camera_id: str) -> dict[str, Any]:
        """``{bytes_sent, readers, uptime}`` from the cache; zeros when absent or not live."""
        state = self._cache.get(camera_id)
        if state is None or not state.live:
            return {"bytes_sent": 0, "readers": 0, "uptime": 0}
        return {"bytes_sent": state.bytes_sent,
                "readers": max(0, state.readers - int(self.own_readers(camera_id))),
                "uptime": self._uptime(state)}

    def stream_metrics(self) -> dict[str, int]:
        """``{active_streams, total_streams, total_viewers}`` for ``get_metrics``."""
        names = {n for n in self._cache if _CAMERA_PATH.fullmatch(n)} | {
            n for n in self._provisioned if _CAMERA_PATH.fullmatch(n)}
        live = [self._cache[n] for n in names if n in self._cache and self._cache[n].live]
        viewers = sum(max(0, s.readers - int(self.own_readers(s.name))) for s in live)
        return {"active_streams": len(live), "total_streams": len(names), "total_viewers": viewers}

    # ------------------------------------------------------------------ camera hooks (§1.9)

    def _camera_connected(self, camera: Any) -> defer.Deferred[None] | None:
        # Also called after a mode change: the path is replaced then (§2.5).
        self._provisioned.discard(camera.id)
        self._rejected.pop(camera.id, None)
        if self.state != UP:
            return None  # the next provisioning writes it
        return defer.ensureDeferred(self._hook_write(camera))

    async def _hook_write(self, camera: Any) -> None:
        try:
            await self.ensure_path(camera)
        except RpcError as error:
            self._log.info("path for {camera} not written now: {detail}", camera=camera.id,
                           detail=error.data.get("detail"))

    def _camera_disconnected(self, camera: Any) -> defer.Deferred[None] | None:
        if self.state == DISABLED:
            return None
        return defer.ensureDeferred(self._hook_remove(camera.id))

    async def _hook_remove(self, camera_id: str) -> None:
        try:
            await self.remove_path(camera_id)
        except RpcError as error:
            self._log.info("path {camera} not deleted now: {detail}", camera=camera_id,
                           detail=error.data.get("detail"))

    # ------------------------------------------------------------------ path bodies

    def _path_body(self, camera: Any, record: bool) -> dict[str, Any]:
        if not self._ffmpeg:
            raise _Skip("FFmpeg is not available", "ffmpeg")
        virtual = None
        for entry in getattr(self._config, "virtual_cameras", ()) or ():
            if entry.id == camera.id:
                virtual = entry
        if virtual is None:
            virtual = getattr(camera, "virtual", None)
        if virtual is not None:
            input_args = virtual_input_args(virtual.pattern, virtual.width, virtual.height,
                                            virtual.rate)
            fps = int(virtual.rate)
        else:
            mode = getattr(camera, "mode", None)
            if mode is None:
                raise _Skip("camera has no streaming mode", "v4l2")
            device = camera.device_path
            if device is None:
                raise _Skip("camera has no device node", "v4l2")
            input_args = usb_input_args(device, mode)
            fps = max(1, _round_half_up(float(mode.fps)))
        argv = publisher_argv(ffmpeg=self._ffmpeg, encoding=self._config.encoding,
                              input_args=input_args, fps=fps)
        return camera_path_config(run_on_demand=run_on_demand(argv), config=self._config,
                                  record=bool(record), playback=self._playback)

    async def _write_camera(self, camera: Any, *, record: bool, strict: bool) -> bool:
        """``replace`` one camera path. Returns whether it was written.

        ``strict`` (API callers) turns every refusal into -32050; provisioning (not strict)
        only reports rejections and skips, and lets transport failures propagate.
        """
        assert self._client is not None
        camera_id = camera.id
        try:
            body = self._path_body(camera, record)
        except (_Skip, ValueError) as error:
            reason = error.reason if isinstance(error, _Skip) else str(error)
            dependency = error.dependency if isinstance(error, _Skip) else "mediamtx"
            self._log.warn("MediaMTX path for {camera} skipped: {reason}", camera=camera_id,
                           reason=reason)
            self._bus.publish("mediamtx.error", {"device": camera_id, "error": reason})
            if strict:
                raise dependency_failed(dependency, f"{camera_id}: {reason}") from None
            return False
        try:
            await self._client.replace_path_config(camera_id, body)
        except MediaMTXRejected as error:
            self._request_succeeded()
            self._rejected[camera_id] = error.error_text
            self._log.error("MediaMTX rejected the path of {camera}: {error}", camera=camera_id,
                            error=error.error_text)
            self._bus.publish("mediamtx.error", {"device": camera_id, "error": error.error_text})
            self._report()
            if strict:
                raise dependency_failed("mediamtx", f"MediaMTX rejected the path of {camera_id}: "
                                        f"{error.error_text}") from None
            return False
        except _FEEDS_FAILURE as error:
            failure = self._request_failed(error)
            if strict:
                raise failure from None
            raise
        except MediaMTXError as error:
            self._bus.publish("mediamtx.error", {"device": camera_id, "error": str(error)})
            if strict:
                raise dependency_failed("mediamtx", str(error)) from None
            return False
        self._request_succeeded()
        self._rejected.pop(camera_id, None)
        self._provisioned.add(camera_id)
        self._bus.publish("mediamtx.path", {"device": camera_id, "exists": True})
        self._report()
        return True

    # ------------------------------------------------------------------ the state machine (§2.7)

    def _schedule(self, delay: float) -> None:
        if self._stopped or not self.enabled:
            return
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = self._reactor.callLater(max(0.0, delay), self._probe_now)

    def _probe_now(self) -> None:
        self._timer = None
        if self._probing or self._stopped:
            return
        self._probing = True
        d = defer.ensureDeferred(self._probe())

        def done(result: Any) -> None:
            self._probing = False
            if isinstance(result, Failure):
                self._log.failure("MediaMTX probe failed unexpectedly", failure=result)
            self._schedule(self._next_delay())

        d.addBoth(done)

    def _next_delay(self) -> float:
        interval = float(self._mm.health_check_interval)
        if self.state == DOWN:
            cap = min(float(self._mm.health_max_backoff), 1.0 * (2 ** self._backoff_k))
            self._backoff_k = min(self._backoff_k + 1, 30)
            return self._random() * cap
        if self.consecutive_failures > 0:
            # 1 s, then 2 s … while below the threshold: never the full interval.
            return min(interval, float(2 ** min(self.consecutive_failures - 1, 5)))
        return interval

    async def _probe(self) -> None:
        assert self._client is not None
        started = self._reactor.seconds()
        try:
            paths = await self._client.list_paths()
        except MediaMTXError as error:
            self._record_failure(error)
            return
        self.last_latency = self._reactor.seconds() - started
        self._record_success()
        self._observe(paths, full=True)
        if self.state != UP:
            self._enter_up("MediaMTX reachable")
            return
        if self._provisioning:
            return
        if self._provision_again or not self._provision_done:
            self._start_provisioning()
            return
        names = {p.name for p in paths}
        missing = sorted(n for n in self._provisioned if n not in names)
        if missing:
            self._paths_lost(f"MediaMTX lost its paths ({', '.join(missing)})")
            return
        if self._info_started is not None:
            try:
                info = await self._client.info()
            except MediaMTXError as error:
                self._record_failure(error)
                return
            if info is not None and info.get("started") != self._info_started:
                self._paths_lost("MediaMTX restarted (started changed)")

    def _record_success(self) -> None:
        self.consecutive_failures = 0
        self._failing_since = None
        self.last_success = self._reactor.seconds()

    def _record_failure(self, error: BaseException) -> None:
        self.consecutive_failures += 1
        self._last_error = _short_reason(error)
        if self._failing_since is None:
            self._failing_since = self._reactor.seconds()
        if self.consecutive_failures == 1:
            self._log.warn("MediaMTX request failed: {error}", error=str(error))
        if (self.state in (UP, STARTING)
                and self.consecutive_failures >= int(self._mm.health_failure_threshold)):
            self._enter_down()
        else:
            self._report()

    def _request_succeeded(self) -> None:
        if self.state == UP:
            self._record_success()

    def _request_failed(self, error: BaseException) -> RpcError:
        """A request of an API method failed: count it, probe at once, and say -32050."""
        self._record_failure(error)
        if not self._probing and self.state != DOWN:
            self._schedule(0)
        return dependency_failed("mediamtx", self._unreachable_text(with_reason=True),
                                 suggestion="Retry later; check that MediaMTX is running")

    def _enter_down(self) -> None:
        previous = self.state
        self.state = DOWN
        self._backoff_k = 0
        self._provisioned.clear()
        self._provision_done = False
        text = self._unreachable_text(with_reason=True)
        self._log.error("MediaMTX DOWN ({previous} → down): {text}", previous=previous, text=text)
        self._bus.publish("mediamtx.error", {"error": text})
        self._drop_cache()
        for hook in list(self.on_paths_lost):
            self._call_hook(hook, "mediamtx_down")
        self._report()

    def _enter_up(self, why: str) -> None:
        previous = self.state
        self.state = UP
        self._backoff_k = 0
        self._log.info("MediaMTX UP ({previous} → up): {why}", previous=previous, why=why)
        self._provisioned.clear()
        self._start_provisioning()

    def _paths_lost(self, why: str) -> None:
        """A restart the service never saw: exactly like DOWN → UP (§2.7)."""
        self._log.warn("{why}: provisioning again", why=why)
        for hook in list(self.on_paths_lost):
            self._call_hook(hook, "mediamtx_restarted")
        self._enter_up(why)

    def _call_hook(self, hook: Callable[..., Any], *args: Any) -> None:
        try:
            result = hook(*args)
        except Exception:  # noqa: BLE001
            self._log.failure("MediaMTX hook failed")
            return
        if isinstance(result, defer.Deferred):
            result.addErrback(lambda f: self._log.failure("MediaMTX hook failed", failure=f))

    def _unreachable_text(self, *, with_reason: bool) -> str:
        since = self._failing_since if self._failing_since is not None else self._reactor.seconds()
        text = f"MediaMTX unreachable since {_hms(since)}"
        if with_reason and self._last_error:
            text += f" ({self._last_error})"
        return text

    # ------------------------------------------------------------------ provisioning (§2.5)

    def _start_provisioning(self) -> None:
        self._provision_done = False
        if self._provisioning:
            self._provision_again = True
            return
        self._provisioning = True
        self._provision_again = False
        self._report()
        d = defer.ensureDeferred(self._provision())

        def done(result: Any) -> None:
            self._provisioning = False
            if isinstance(result, Failure):
                if result.check(MediaMTXError):
                    self._log.warn("provisioning interrupted: {error}", error=str(result.value))
                else:
                    self._log.failure("provisioning failed", failure=result)
                self._provision_again = True  # retried by the next successful probe
                self._report()
                return
            if self.state == UP and not self._provision_again:
                self._provision_done = True
                self.first_provisioning_done = True
                self._readiness.satisfy(READINESS_CONDITION)
            self._report()
            if self._provision_again and self.state == UP and not self._stopped:
                self._start_provisioning()

        d.addBoth(done)

    async def _wait_first_scan(self) -> None:
        state_of = getattr(self._monitor, "component_state", None)
        while state_of is not None and state_of() == "STARTING" and not self._stopped:
            await deferLater(self._reactor, _SCAN_WAIT, lambda: None)

    async def _provision(self) -> None:
        assert self._client is not None
        await self._wait_first_scan()
        try:
            await self._settings_checks()
            configs = await self._client.list_path_configs()
            self._check_foreign_paths(configs)
            wanted_cameras = [c for c in self._wanted_cameras()]
            external = dict(self.external_paths())
            wanted = {c.id for c in wanted_cameras} | set(external)
            for conf in configs:
                name = conf.get("name")
                if isinstance(name, str) and is_managed(name) and name not in wanted:
                    try:
                        await self._client.delete_path_config(name)
                        self._log.info("deleted stale MediaMTX path {name}", name=name)
                    except MediaMTXNotFound:
                        pass
                    if _CAMERA_PATH.fullmatch(name):
                        self._observe_gone(name)

            semaphore = defer.DeferredSemaphore(max(1, int(self._mm.provision_concurrency)))

            def camera_job(camera: Any) -> defer.Deferred[bool]:
                return defer.ensureDeferred(self._write_camera(camera, record=False, strict=False))

            def external_job(name: str, body: dict[str, Any]) -> defer.Deferred[None]:
                return defer.ensureDeferred(self._write_external(name, body))

            jobs: list[defer.Deferred[Any]] = [semaphore.run(camera_job, c) for c in wanted_cameras]
            jobs += [semaphore.run(external_job, n, b)  # type: ignore[call-overload]
                     for n, b in external.items()]
            results = await defer.DeferredList(jobs, consumeErrors=True)
            for ok, value in results:
                if not ok and isinstance(value, Failure):
                    value.raiseException()
        except _FEEDS_FAILURE as error:
            self._record_failure(error)
            raise
        for hook in list(self.on_provisioned):
            self._call_hook(hook)

    async def _write_external(self, name: str, body: dict[str, Any]) -> None:
        assert self._client is not None
        try:
            await self._client.replace_path_config(name, body)
        except MediaMTXRejected as error:
            # MediaMTX may echo the source URL, which can carry a password (media.md §7.4).
            text = scrub(error.error_text)
            self._rejected[name] = text
            self._bus.publish("mediamtx.error", {"error": f"{name}: {text}"})
            return
        self._provisioned.add(name)

    def _wanted_cameras(self) -> Iterable[Any]:
        registry = getattr(self._monitor, "registry", None)
        if registry is None:
            return []
        return [c for c in registry if c.status == "CONNECTED"]

    async def _settings_checks(self) -> None:
        """§2.6 items 1–3; item 4 runs on the path-configuration list in ``_provision``."""
        assert self._client is not None
        problems: list[str] = []
        # 1. /v3/info
        try:
            info = await self._client.info()
        except _FEEDS_FAILURE:
            raise
        except MediaMTXError as error:
            problems.append(f"MediaMTX /v3/info failed: {error}")
            info = {"version": "unknown"}
        if info is None:
            self._version = "unknown (< 1.15.2)"
            self._info_started = None
        else:
            self._version = str(info.get("version") or "unknown")
            started = info.get("started")
            self._info_started = started if isinstance(started, str) else None
            parsed = _version_tuple(self._version)
            if parsed is not None and parsed < _MIN_VERSION:
                problems.append(f"MediaMTX {self._version} is unsupported (needs v1.15.0 or later)")
        # 2. global configuration
        try:
            conf = await self._client.get_global_config()
        except _FEEDS_FAILURE:
            raise
        except MediaMTXError as error:
            problems.append(f"MediaMTX global configuration unreadable: {error}")
            conf = {}
        self._playback = conf.get("playback") is True
        if conf.get("rtsp") is False:
            problems.append("MediaMTX has RTSP disabled")
        elif _port_of(conf.get("rtspAddress")) not in (None, int(self._mm.rtsp_port)):
            problems.append(f"MediaMTX rtspAddress {conf.get('rtspAddress')} does not match "
                            f"rtsp_port {self._mm.rtsp_port}")
        for proto, key, port in (("hls", "hlsAddress", self._mm.hls_port),
                                 ("webrtc", "webrtcAddress", self._mm.webrtc_port)):
            if conf.get(proto) is False:
                problems.append(f"MediaMTX has {proto.upper() if proto == 'hls' else 'WebRTC'} "
                                f"disabled: {proto} URLs will not work")
            elif _port_of(conf.get(key)) not in (None, int(port)):
                problems.append(f"MediaMTX {key} {conf.get(key)} does not match {proto}_port "
                                f"{port}: {proto} URLs will not work")
        # 3. path defaults
        if getattr(self._mm, "set_path_defaults", True):
            try:
                await self._client.patch_path_defaults(path_defaults_patch(self._config,
                                                                           self._playback))
            except _FEEDS_FAILURE:
                raise
            except MediaMTXError as error:
                problems.append(f"MediaMTX refused the path defaults: {error}")
        for problem in problems:
            self._log.warn("MediaMTX settings: {problem}", problem=problem)
        self._problems = problems

    def _check_foreign_paths(self, configs: list[dict[str, Any]]) -> None:
        """§2.6 item 4: a non-managed path that would delete the service's recordings."""
        root = str(self._mm.recordings_path).rstrip("/") + "/"
        for conf in configs:
            name = conf.get("name")
            if not isinstance(name, str) or is_managed(name):
                continue
            record_path = conf.get("recordPath")
            delete_after = conf.get("recordDeleteAfter")
            if (isinstance(record_path, str) and record_path.startswith(root)
                    and delete_after not in (None, "0s", "0")):
                problem = f"MediaMTX path '{name}' would delete recordings after {delete_after}"
                self._log.error(problem)
                self._problems.append(problem)

    # ------------------------------------------------------------------ runtime cache (§2.8)

    def _observe(self, paths: list[PathState], *, full: bool) -> None:
        now = {p.name: p for p in paths}
        if full:
            gone = [n for n in self._cache if n not in now]
            self._cache = now
            for name in gone:
                self._set_live(name, False)
            self._check_flowing(paths)
        else:
            self._cache.update(now)
        for state in paths:
            self._set_live(state.name, state.live)

    def _check_flowing(self, paths: list[PathState]) -> None:
        """Between two full probes a live camera path must have received bytes (§2.8).

        Two stalled probes in a row publish ``mediamtx.error`` once and put the camera in
        the cameras component's ``stalled_cameras`` until its counter grows again.
        """
        at = self._reactor.seconds()
        seen: dict[str, tuple[int, float, int]] = {}
        for state in paths:
            if not _CAMERA_PATH.fullmatch(state.name) or not state.live:
                continue
            previous = self._inbound.get(state.name)
            if previous is None or state.bytes_received > previous[0] \
                    or state.bytes_received < previous[0]:  # grew, or counters restarted
                seen[state.name] = (state.bytes_received, at, 0)
                continue
            stalled_probes = previous[2] + 1
            seen[state.name] = (previous[0], previous[1], stalled_probes)
            if stalled_probes == 2:
                seconds = int(at - previous[1])
                self._log.warn("No data from {camera} for {seconds} s", camera=state.name,
                               seconds=seconds)
                self._bus.publish("mediamtx.error", {"device": state.name,
                                                     "error": f"no data from camera for {seconds} s"})
        self._inbound = seen
        stalled = {name for name, (_, _, probes) in seen.items() if probes >= 2}
        if stalled != self.stalled:
            self.stalled = stalled
            if self._monitor is not None and hasattr(self._monitor, "refresh_health"):
                self._monitor.refresh_health()

    def _observe_gone(self, name: str) -> None:
        self._cache.pop(name, None)
        self._set_live(name, False)

    def _drop_cache(self) -> None:
        names = list(self._cache)
        self._cache = {}
        for name in names:
            self._set_live(name, False)

    def _set_live(self, name: str, live: bool) -> None:
        if not _CAMERA_PATH.fullmatch(name):
            return
        previous = self._live_flags.get(name, False)
        self._live_flags[name] = live
        if previous != live:
            self._bus.publish("mediamtx.stream", {"device": name, "ready": live})

    def _uptime(self, state: PathState) -> int:
        if not state.live_since:
            return 0
        text = re.sub(r"(\.\d{6})\d+", r"\1", state.live_since)
        try:
            since = parse_rfc3339(text)
        except ValueError:
            return 0
        return max(0, int(self._reactor.seconds() - since))

    # ------------------------------------------------------------------ health (§6.1)

    def _report(self) -> None:
        if self.state == DISABLED:
            self._health.set("mediamtx", HEALTHY, "MediaMTX integration disabled",
                             {"state": DISABLED})
            return
        live = sum(1 for n, s in self._cache.items() if is_managed(n) and s.live)
        problems = list(self._problems)
        problems += [f"MediaMTX rejected path {n}: {t}" for n, t in sorted(self._rejected.items())]
        details = {
            "state": self.state,
            "version": self._version,
            "consecutive_failures": self.consecutive_failures,
            "last_success": rfc3339(self.last_success) if self.last_success is not None else None,
            "managed_paths": len(self._provisioned),
            "live_paths": live,
            "active_streams": live,
            "api_latency_ms": (round(self.last_latency * 1000, 1)
                               if self.last_latency is not None else None),
            "problems": problems,
        }
        if self.state == STARTING:
            message = (self._unreachable_text(with_reason=False) if self.consecutive_failures
                       else "MediaMTX not reached yet")
            self._health.set("mediamtx", DEGRADED, message, details)
        elif self.state == DOWN:
            self._health.set("mediamtx", DEGRADED, self._unreachable_text(with_reason=False),
                             details)
        elif not self._provision_done:
            self._health.set("mediamtx", DEGRADED, "provisioning paths", details)
        elif problems:
            self._health.set("mediamtx", DEGRADED, "; ".join(problems), details)
        else:
            self._health.set("mediamtx", HEALTHY, "MediaMTX reachable", details)
