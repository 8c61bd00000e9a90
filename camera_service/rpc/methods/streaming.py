"""Streaming methods: start_streaming, stop_streaming, get_stream_url, get_stream_status,
get_streams (api.md §4.15-4.19; media.md §2.9-2.10).

A streaming session is bookkeeping on top of the camera's on-demand MediaMTX path:
``start_streaming`` makes sure the path exists and records a start time, ``stop_streaming``
forgets it. Neither starts nor kills a publisher or a viewer; MediaMTX starts the publisher
when the first reader connects and stops it ``run_on_demand_close_after`` after the last one
leaves. The path is never deleted here.

Every URL is built for the calling connection's host (api.md §3.4) and no result or event
carries a device path. ``start_streaming`` and ``stop_streaming`` are serialised per camera
with a ``DeferredLock`` (api.md §8); the -32050 checks run before the lock is taken, so a
call fails fast while MediaMTX is down even when another call for the camera is waiting.

``mediamtx`` is a ``camera_service.mediamtx.service.MediaMTXService``; this module uses only
``state``, ``require_up``, ``ensure_path``, ``is_provisioned``, ``cached_path``,
``fetch_path``, ``list_paths`` and ``run_on_demand_close_after``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import DeferredLock

from camera_service.discovery.registry import CONNECTED, DISCONNECTED, ERROR, Camera
from camera_service.rpc.dispatcher import CallContext
from camera_service.rpc.errors import invalid_state, not_found
from camera_service.rpc.params import DEVICE
from camera_service.timeutil import parse_rfc3339, rfc3339

STREAM_TYPE = "camera"
# MediaMTXService.state values in which MediaMTX cannot serve the camera at all.
_UNREACHABLE_STATES = ("down", "disabled")


@dataclass
class _Sample:
    """The last byte counter seen for a path, to turn counters into a bit rate."""

    at: float
    bytes_received: int
    bitrate: int = 0


class StreamingMethods:
    """The five handlers plus the per-camera state they share."""

    def __init__(self, monitor: Any, mediamtx: Any, clock: Any,
                 recording_active: Callable[[str], bool] = lambda _: False,
                 waiting_for_live: Callable[[str], bool] = lambda _: False) -> None:
        self._waiting_for_live = waiting_for_live
        self._monitor = monitor
        self._mediamtx = mediamtx
        self._clock = clock
        self._recording_active = recording_active
        # camera id -> epoch seconds the session opened
        self.sessions: dict[str, float] = {}
        self._stopping: set[str] = set()
        self._locks: dict[str, DeferredLock] = {}
        self._samples: dict[str, _Sample] = {}

    # -- helpers -----------------------------------------------------------------------

    def _camera(self, camera_id: str) -> Camera:
        camera = self._monitor.registry.get(camera_id)
        if camera is None:
            raise not_found("camera", camera_id)
        return camera

    def _lock(self, camera_id: str) -> DeferredLock:
        lock = self._locks.get(camera_id)
        if lock is None:
            lock = self._locks[camera_id] = DeferredLock()
        return lock

    @staticmethod
    def _require_connected(camera: Camera) -> None:
        if camera.status != CONNECTED:
            raise invalid_state("camera_not_connected", camera.status, [CONNECTED],
                                f"Camera {camera.id} is {camera.status}",
                                "Connect the camera and retry")

    def _publish_after(self, ctx: CallContext, topic: str, camera_id: str) -> None:
        payload = {"device": camera_id, "stream_id": camera_id, "stream_type": STREAM_TYPE}
        ctx.after_response(lambda: ctx.app.bus.publish(topic, payload))

    def _bitrate(self, camera_id: str, path: Any) -> int:
        """Bits per second of the publisher's inbound bytes between two status calls.

        0 on the first sample, while the path is not live, and after a counter reset.
        A second call within the same clock tick repeats the last measured rate.
        """
        now = self._clock.seconds()
        previous = self._samples.get(camera_id)
        if not path.live:
            self._samples.pop(camera_id, None)
            return 0
        sample = _Sample(now, path.bytes_received)
        if previous is not None and path.bytes_received >= previous.bytes_received:
            elapsed = now - previous.at
            if elapsed > 0:
                sample.bitrate = int((path.bytes_received - previous.bytes_received) * 8 / elapsed)
            else:
                sample = previous
        self._samples[camera_id] = sample
        return sample.bitrate

    def _viewers(self, camera_id: str, path: Any) -> int:
        """Readers other than the service's own (keep-alive readers, RTSP snapshots, §2.8)."""
        own = getattr(self._mediamtx, "own_readers", None)
        return max(0, int(path.readers) - (int(own(camera_id)) if own is not None else 0))

    def _uptime(self, path: Any) -> int:
        if not path.live_since:
            return 0
        try:
            since = parse_rfc3339(re.sub(r"(\.\d{6})\d+", r"\1", path.live_since))
        except ValueError:
            return 0
        return max(0, int(self._clock.seconds() - since))

    def _live_since(self, camera_id: str, path: Any) -> str:
        if path.live_since:
            try:
                return rfc3339(parse_rfc3339(path.live_since))
            except ValueError:
                pass
        opened = self.sessions.get(camera_id)
        return rfc3339(opened if opened is not None else self._clock.seconds())

    # -- handlers ----------------------------------------------------------------------

    async def start_streaming(self, ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
        """Open a live-streaming session for a camera."""
        camera_id = params["device"]
        self._require_connected(self._camera(camera_id))
        self._mediamtx.require_up()
        lock = self._lock(camera_id)
        await lock.acquire()
        try:
            # Re-checked: the camera may have changed while this call waited for the lock.
            camera = self._camera(camera_id)
            self._require_connected(camera)
            self._mediamtx.require_up()
            # Always ensured, also for an open session: MediaMTX may have restarted since.
            await self._mediamtx.ensure_path(camera)
            opened = self.sessions.get(camera_id)
            if opened is None:
                opened = self.sessions[camera_id] = self._clock.seconds()
                self._publish_after(ctx, "mediamtx.stream_started", camera_id)
        finally:
            lock.release()
        return {
            "device": camera_id,
            "stream_name": camera_id,
            "stream_url": ctx.app.stream_urls.rtsp(camera_id, ctx.session.host),
            "status": "STARTED",
            "start_time": rfc3339(opened),
            "auto_close_after": f"{int(self._mediamtx.run_on_demand_close_after())}s",
        }

    async def stop_streaming(self, ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
        """Close a camera's streaming session (never a recording, never a viewer)."""
        camera_id = params["device"]
        self._camera(camera_id)
        self._mediamtx.require_up()
        lock = self._lock(camera_id)
        await lock.acquire()
        try:
            opened = self.sessions.get(camera_id)
            if opened is None:
                raise invalid_state("not_streaming", "INACTIVE", ["ACTIVE"],
                                    f"Camera {camera_id} has no streaming session",
                                    "Call start_streaming first")
            self._stopping.add(camera_id)
            try:
                ended = self._clock.seconds()
                path = self._mediamtx.cached_path(camera_id)
                # media.md §2.9: the stream stays up for a recording, or for readers.
                continues = bool(self._recording_active(camera_id)) or (
                    path is not None and self._viewers(camera_id, path) > 0)
                del self.sessions[camera_id]
            finally:
                self._stopping.discard(camera_id)
            self._publish_after(ctx, "mediamtx.stream_stopped", camera_id)
        finally:
            lock.release()
        return {
            "device": camera_id,
            "stream_name": camera_id,
            "status": "STOPPED",
            "start_time": rfc3339(opened),
            "end_time": rfc3339(ended),
            "duration": max(0, int(ended) - int(opened)),
            "stream_continues": continues,
            "message": ("Streaming session closed; the stream continues for its other consumers"
                        if continues else "Streaming session closed"),
        }

    async def get_stream_url(self, ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
        """The camera's RTSP URL and whether it can deliver video; never fails on MediaMTX."""
        camera = self._camera(params["device"])
        mediamtx = self._mediamtx
        path = mediamtx.cached_path(camera.id)
        unreachable = mediamtx.state in _UNREACHABLE_STATES
        if camera.status == ERROR or unreachable:
            available, consumers, status = False, 0, "ERROR"
        else:
            exists = path is not None or mediamtx.is_provisioned(camera.id)
            available = camera.status == CONNECTED and exists
            consumers = self._viewers(camera.id, path) if path is not None else 0
            status = "READY" if path is not None and path.live else "NOT_READY"
        return {
            "device": camera.id,
            "stream_name": camera.id,
            "stream_url": ctx.app.stream_urls.rtsp(camera.id, ctx.session.host),
            "available": available,
            "active_consumers": consumers,
            "stream_status": status,
        }

    async def get_stream_status(self, ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
        """Detailed state of a camera's stream, read from MediaMTX."""
        camera = self._camera(params["device"])
        if camera.status == DISCONNECTED:
            # An unplugged camera has no path, whatever MediaMTX still reports (media.md §2.5).
            self._samples.pop(camera.id, None)
            raise not_found("stream", camera.id)
        self._mediamtx.require_up()
        path = await self._mediamtx.fetch_path(camera.id)
        if path is None:
            self._samples.pop(camera.id, None)
            raise not_found("stream", camera.id)
        if camera.status == ERROR:
            status = "ERROR"
        elif camera.id in self._stopping:
            status = "STOPPING"
        elif path.live:
            status = "ACTIVE"
        elif path.source_type or self._waiting_for_live(camera.id):
            # A publisher has attached but the path is not ready yet, or the service itself
            # is waiting for it (a recording's start, an RTSP snapshot: media.md §2.8).
            status = "STARTING"
        else:
            status = "INACTIVE"
        result: dict[str, Any] = {
            "device": camera.id,
            "stream_name": camera.id,
            "status": status,
            "ready": path.live,
            # The publisher is MediaMTX's runOnDemand child: MediaMTX does not report its pid
            # (0, "unknown"); it runs while a source is attached (also while still starting)
            # and has run at least since the path went live (media.md §2.8).
            "ffmpeg_process": {"running": bool(path.live or path.source_type), "pid": 0,
                               "uptime": self._uptime(path) if path.live else 0},
            "mediamtx_path": {"exists": True, "ready": path.live,
                              "readers": self._viewers(camera.id, path)},
            # Frames and fps are not reported by MediaMTX: 0 ("cannot be measured").
            "metrics": {"bytes_sent": path.bytes_sent, "frames_sent": 0,
                        "bitrate": self._bitrate(camera.id, path), "fps": 0},
        }
        if path.live:
            result["start_time"] = self._live_since(camera.id, path)
        return result

    async def get_streams(self, ctx: CallContext, params: dict[str, Any]) -> list[dict[str, Any]]:
        """Every path MediaMTX reports."""
        self._mediamtx.require_up()
        paths = await self._mediamtx.list_paths()
        return [{"name": p.name, "source": p.source_type or "", "ready": p.live, "readers": p.readers,
                 "bytes_sent": p.bytes_sent} for p in paths]


def register(registry: Any, monitor: Any, mediamtx: Any, clock: Any,
             recording_active: Callable[[str], bool] = lambda _: False,
             waiting_for_live: Callable[[str], bool] = lambda _: False) -> StreamingMethods:
    """Install the five streaming methods; returns the handler object (its ``sessions``
    tell the metrics which cameras have an open session)."""
    methods = StreamingMethods(monitor, mediamtx, clock, recording_active, waiting_for_live)
    registry.register("start_streaming", methods.start_streaming, (DEVICE,), serialise_on="device")
    registry.register("stop_streaming", methods.stop_streaming, (DEVICE,), serialise_on="device")
    registry.register("get_stream_url", methods.get_stream_url, (DEVICE,))
    registry.register("get_stream_status", methods.get_stream_status, (DEVICE,))
    registry.register("get_streams", methods.get_streams)
    return methods
