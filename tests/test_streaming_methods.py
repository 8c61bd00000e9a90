"""Streaming methods over a real socket (api.md §4.15-4.19, §3.4, §5.4, §6, §8).

The service is the real one from ``services``. The five handlers are installed with
``MethodRegistry.replace`` (via ``_Replacing``) so this works whether or not app.py wires
them. The camera monitor is a minimal fake (only ``registry.get``), and MediaMTX is
``FakeMediaMTX``, a fake of the ``camera_service.mediamtx.service.MediaMTXService`` interface.
"""

from __future__ import annotations

import json
import time
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from camera_service.discovery.registry import Camera
from camera_service.mediamtx.client import PathState
from camera_service.rpc.errors import dependency_failed
from camera_service.rpc.methods import streaming
from tests.wsclient import connect

T0 = 1736951400  # 2025-01-15T14:30:00Z
HOST = "127.0.0.1"


# -- fakes -------------------------------------------------------------------------------------

class FakeMediaMTX:
    """A fake of ``MediaMTXService`` (camera_service/mediamtx/service.py), exactly its surface:
    ``state``, ``require_up()``, ``ensure_path(camera)``, ``is_provisioned(id)``,
    ``cached_path(name)``, ``fetch_path(name)``, ``list_paths()``, ``run_on_demand_close_after()``.

    ``paths`` is what MediaMTX reports (fetch/list) and what the cache holds; ``fail_requests``
    makes the HTTP calls fail with -32050 while ``state`` still says "up"; ``ensure_gate``
    makes ``ensure_path`` wait.
    """

    def __init__(self) -> None:
        self.state = "up"
        self.paths: dict[str, PathState] = {}
        self.provisioned: set[str] = set()
        self.ensured: list[str] = []
        self.ensure_gate: Deferred[None] | None = None
        self.fail_requests = False
        self.close_after = 10
        #: readers the service itself holds per path (keep-alive readers, RTSP snapshots)
        self.own: dict[str, int] = {}

    def own_readers(self, camera_id: str) -> int:
        return self.own.get(camera_id, 0)

    def _down(self) -> Exception:
        return dependency_failed("mediamtx", f"MediaMTX is {self.state}", "MediaMTX is unavailable",
                                 "Check that MediaMTX is running")

    def require_up(self) -> None:
        if self.state != "up":
            raise self._down()

    async def ensure_path(self, camera: Any) -> None:
        self.require_up()
        self.ensured.append(camera.id)
        if self.ensure_gate is not None:
            await self.ensure_gate
        self.provisioned.add(camera.id)
        self.paths.setdefault(camera.id, path(camera.id))

    def is_provisioned(self, camera_id: str) -> bool:
        return camera_id in self.provisioned

    def cached_path(self, name: str) -> PathState | None:
        return self.paths.get(name)

    async def fetch_path(self, name: str) -> PathState | None:
        if self.fail_requests or self.state != "up":
            raise dependency_failed("mediamtx", "connection refused", "MediaMTX is unavailable")
        return self.paths.get(name)

    async def list_paths(self) -> list[PathState]:
        if self.fail_requests or self.state != "up":
            raise dependency_failed("mediamtx", "connection refused", "MediaMTX is unavailable")
        return list(self.paths.values())

    def run_on_demand_close_after(self) -> int:
        return self.close_after


def path(name: str, *, live: bool = False, source: str = "", readers: int = 0, received: int = 0,
         sent: int = 0, since: str | None = None) -> PathState:
    return PathState(name=name, live=live, ready=live, source_type=source, readers=readers,
                     bytes_received=received, bytes_sent=sent, live_since=since)


def camera(camera_id: str, status: str, node: int | None) -> Camera:
    return Camera(id=camera_id, status=status, name=f"Cam {camera_id}", identity=f"id-{camera_id}",
                  node=node, last_node=node, probe=None, mode=None, error=None, last_seen=T0)


class FakeCameraRegistry:
    def __init__(self, cameras: list[Camera]) -> None:
        self.cameras = {c.id: c for c in cameras}

    def get(self, camera_id: str) -> Camera | None:
        return self.cameras.get(camera_id)


class FakeMonitor:
    """The part of CameraMonitor the streaming methods use: ``registry.get``."""

    def __init__(self, cameras: list[Camera]) -> None:
        self.registry = FakeCameraRegistry(cameras)


class _Replacing:
    """Lets ``streaming.register`` install its handlers with ``replace``."""

    def __init__(self, registry: Any) -> None:
        self._registry = registry

    def register(self, name: str, handler: Any, params: tuple[Any, ...] = (), **_: Any) -> None:
        self._registry.replace(name, handler, params)


class World:
    def __init__(self, service: Any, mediamtx: FakeMediaMTX, clock: Clock, monitor: FakeMonitor,
                 recording: set[str], methods: streaming.StreamingMethods) -> None:
        self.service, self.mediamtx, self.clock = service, mediamtx, clock
        self.monitor, self.recording, self.methods = monitor, recording, methods


async def start_world(services: Any) -> World:
    service = await services.start()
    # camera0 CONNECTED, camera2 DISCONNECTED, camera3 ERROR
    monitor = FakeMonitor([camera("camera0", "CONNECTED", 0), camera("camera2", "DISCONNECTED", None),
                           camera("camera3", "ERROR", 3)])
    mediamtx = FakeMediaMTX()
    clock = Clock()
    clock.advance(T0)
    recording: set[str] = set()
    waiting: set[str] = set()
    methods = streaming.register(_Replacing(service.root.factory.dispatcher.registry), monitor, mediamtx,
                                 clock, recording_active=lambda camera_id: camera_id in recording,
                                 waiting_for_live=lambda camera_id: camera_id in waiting)
    world = World(service, mediamtx, clock, monitor, recording, methods)
    world.waiting = waiting
    return world


def assert_no_device_path(value: Any) -> None:
    text = json.dumps(value)
    assert "/dev/" not in text and "video0" not in text and "video3" not in text, text


async def next_notification(client: Any, timeout: float = 5.0) -> dict[str, Any]:
    got = client.notifications.get()
    got.addTimeout(timeout, reactor)
    return await got


def assert_dependency(error: dict[str, Any]) -> None:
    assert error["code"] == -32050
    assert error["message"] == "Dependency failed"
    assert error["data"]["reason"] == "dependency_failed"
    assert error["data"]["dependency"] == "mediamtx"
    assert isinstance(error["data"]["detail"], str) and error["data"]["detail"]


def assert_camera_not_found(error: dict[str, Any], camera_id: str) -> None:
    assert error["code"] == -32010
    assert error["message"] == "Camera not found"
    assert error["data"]["reason"] == "camera_not_found"
    assert error["data"]["resource"] == "camera"
    assert error["data"]["id"] == camera_id


DEVICE_METHODS = ("start_streaming", "stop_streaming", "get_stream_url", "get_stream_status")


# -- start_streaming (§4.15) ---------------------------------------------------------------------

async def test_start_streaming_result_and_idempotence(services):
    world = await start_world(services)
    client = await world.service.authed_client("operator")
    result = await client.call("start_streaming", {"device": "camera0"})
    assert result == {"device": "camera0", "stream_name": "camera0",
                      "stream_url": f"rtsp://{HOST}:8554/camera0", "status": "STARTED",
                      "start_time": "2025-01-15T14:30:00Z", "auto_close_after": "10s"}
    assert world.mediamtx.ensured == ["camera0"]
    assert "camera0" in world.methods.sessions
    world.clock.advance(42)
    again = await client.call("start_streaming", {"device": "camera0"})
    assert again == result  # the original start_time
    assert_no_device_path([result, again])


async def test_start_streaming_auto_close_after_from_mediamtx(services):
    world = await start_world(services)
    world.mediamtx.close_after = 25
    client = await world.service.authed_client("operator")
    assert (await client.call("start_streaming", {"device": "camera0"}))["auto_close_after"] == "25s"


async def test_start_streaming_errors(services):
    world = await start_world(services)
    client = await world.service.authed_client("operator")
    assert_camera_not_found(await client.error("start_streaming", {"device": "camera7"}), "camera7")
    for device, state in (("camera2", "DISCONNECTED"), ("camera3", "ERROR")):
        error = await client.error("start_streaming", {"device": device})
        assert error["code"] == -32020 and error["message"] == "Invalid state"
        assert error["data"]["reason"] == "camera_not_connected"
        assert error["data"]["state"] == state
        assert error["data"]["allowed_states"] == ["CONNECTED"]
        assert_no_device_path(error)
    error = await client.error("start_streaming", {"device": "/dev/video0"})
    assert error["code"] == -32602 and error["data"]["param"] == "device"
    error = await client.error("start_streaming", {})
    assert error["code"] == -32602 and error["data"]["rule"] == "required"
    assert world.mediamtx.ensured == []
    # A viewer may not start a stream.
    viewer = await world.service.authed_client("viewer")
    assert (await viewer.error("start_streaming", {"device": "camera0"}))["code"] == -32002


async def test_per_caller_host_in_urls(services):
    world = await start_world(services)
    local = await world.service.authed_client("operator")
    # The same listener reached by name: the Host header says "localhost".
    named = await connect(world.service.ws_url.replace("127.0.0.1", "localhost"))
    world.service.clients.append(named)
    await named.call("authenticate", {"auth_token": world.service.token("operator")})
    a = await local.call("start_streaming", {"device": "camera0"})
    b = await named.call("start_streaming", {"device": "camera0"})
    assert a["stream_url"] == "rtsp://127.0.0.1:8554/camera0"
    assert b["stream_url"] == "rtsp://localhost:8554/camera0"
    assert a["start_time"] == b["start_time"]
    assert (await named.call("get_stream_url", {"device": "camera0"}))["stream_url"] == \
        "rtsp://localhost:8554/camera0"
    assert (await local.call("get_stream_url", {"device": "camera0"}))["stream_url"] == \
        "rtsp://127.0.0.1:8554/camera0"


async def test_start_and_stop_publish_events_after_the_response(services):
    world = await start_world(services)
    client = await world.service.authed_client("operator")
    await client.call("subscribe_events", {"topics": ["mediamtx.stream_started", "mediamtx.stream_stopped"]})
    client.raw.pending.clear()
    # Server-side order: the response is written before the event is published.
    trace: list[str] = []
    dispatcher, bus = world.service.root.factory.dispatcher, world.service.app.bus
    finish, publish = dispatcher._finish, bus.publish
    dispatcher._finish = lambda *a, **k: (trace.append("response"), finish(*a, **k))[1]
    bus.publish = lambda name, payload: (trace.append(name), publish(name, payload))[1]
    start = await client.request("start_streaming", {"device": "camera0"})
    event = await next_notification(client)
    assert event["method"] == "mediamtx.stream_started"
    params = event["params"]
    assert set(params) == {"device", "stream_id", "stream_type", "timestamp"}
    assert (params["device"], params["stream_id"], params["stream_type"]) == ("camera0", "camera0", "camera")
    order = [m.get("id", m.get("method")) for m in client.raw.pending]
    assert order == [start["id"], "mediamtx.stream_started"]
    client.raw.pending.clear()
    # An idempotent start opens nothing, so publishes nothing.
    await client.call("start_streaming", {"device": "camera0"})
    stop = await client.request("stop_streaming", {"device": "camera0"})
    event = await next_notification(client)
    assert event["method"] == "mediamtx.stream_stopped"
    assert {k: v for k, v in event["params"].items() if k != "timestamp"} == {
        "device": "camera0", "stream_id": "camera0", "stream_type": "camera"}
    order = [m.get("id", m.get("method")) for m in client.raw.pending]
    assert order[-2:] == [stop["id"], "mediamtx.stream_stopped"]
    assert "mediamtx.stream_started" not in order
    assert trace == ["response", "mediamtx.stream_started", "response", "response", "mediamtx.stream_stopped"]
    assert_no_device_path(order)


async def test_start_and_stop_are_serialised_per_camera(services):
    world = await start_world(services)
    world.mediamtx.ensure_gate = Deferred()
    client = await world.service.authed_client("operator")
    first = client.request("start_streaming", {"device": "camera0"})
    second = client.request("start_streaming", {"device": "camera0"})
    stop = client.request("stop_streaming", {"device": "camera0"})
    # Let all three requests reach the service.
    await client.call("ping")
    # Only the first is inside ensure_path; the others wait for the camera's lock.
    assert world.mediamtx.ensured == ["camera0"]
    assert not first.called and not second.called and not stop.called
    world.clock.advance(5)
    gate, world.mediamtx.ensure_gate = world.mediamtx.ensure_gate, None
    gate.callback(None)
    a, b, s = (await first)["result"], (await second)["result"], (await stop)["result"]
    assert a["start_time"] == b["start_time"] == "2025-01-15T14:30:05Z"
    assert s["status"] == "STOPPED" and s["start_time"] == a["start_time"]


# -- stop_streaming (§4.16) ----------------------------------------------------------------------

async def test_stop_streaming_result(services):
    world = await start_world(services)
    client = await world.service.authed_client("operator")
    await client.call("start_streaming", {"device": "camera0"})
    world.clock.advance(300.7)
    result = await client.call("stop_streaming", {"device": "camera0"})
    assert result == {"device": "camera0", "stream_name": "camera0", "status": "STOPPED",
                      "start_time": "2025-01-15T14:30:00Z", "end_time": "2025-01-15T14:35:00Z",
                      "duration": 300, "stream_continues": False, "message": "Streaming session closed"}
    assert world.methods.sessions == {}
    # The path is never deleted by stop_streaming.
    assert "camera0" in world.mediamtx.paths
    # Now not streaming.
    error = await client.error("stop_streaming", {"device": "camera0"})
    assert error["code"] == -32020 and error["message"] == "Invalid state"
    assert error["data"]["reason"] == "not_streaming"
    assert error["data"]["state"] == "INACTIVE" and error["data"]["allowed_states"] == ["ACTIVE"]
    # A new session gets a new start time.
    again = await client.call("start_streaming", {"device": "camera0"})
    assert again["start_time"] == "2025-01-15T14:35:00Z"
    assert_no_device_path([result, error, again])


async def test_stop_streaming_stream_continues(services):
    world = await start_world(services)
    client = await world.service.authed_client("operator")
    await client.call("start_streaming", {"device": "camera0"})
    world.recording.add("camera0")
    result = await client.call("stop_streaming", {"device": "camera0"})
    assert result["stream_continues"] is True and isinstance(result["message"], str)
    world.recording.clear()
    # Readers other than the service's own keep it up too (media.md §2.9).
    await client.call("start_streaming", {"device": "camera0"})
    world.mediamtx.paths["camera0"] = path("camera0", live=True, source="rpiCameraSource", readers=2)
    assert (await client.call("stop_streaming", {"device": "camera0"}))["stream_continues"] is True


async def test_stop_streaming_errors(services):
    world = await start_world(services)
    client = await world.service.authed_client("operator")
    assert_camera_not_found(await client.error("stop_streaming", {"device": "camera9"}), "camera9")
    for device in ("camera0", "camera2", "camera3"):
        error = await client.error("stop_streaming", {"device": device})
        assert error["data"]["reason"] == "not_streaming", device
    error = await client.error("stop_streaming", {"device": "camera0/../x"})
    assert error["code"] == -32602


# -- get_stream_url (§4.17) ----------------------------------------------------------------------

async def test_get_stream_url_states(services):
    world = await start_world(services)
    client = await world.service.authed_client("viewer")
    mm = world.mediamtx

    def expect(device: str, available: bool, consumers: int, status: str) -> dict[str, Any]:
        return {"device": device, "stream_name": device, "stream_url": f"rtsp://{HOST}:8554/{device}",
                "available": available, "active_consumers": consumers, "stream_status": status}

    # No path yet.
    assert await client.call("get_stream_url", {"device": "camera0"}) == expect("camera0", False, 0, "NOT_READY")
    # Provisioned but idle.
    mm.provisioned.add("camera0")
    assert await client.call("get_stream_url", {"device": "camera0"}) == expect("camera0", True, 0, "NOT_READY")
    mm.paths["camera0"] = path("camera0")
    assert await client.call("get_stream_url", {"device": "camera0"}) == expect("camera0", True, 0, "NOT_READY")
    # Publishing with readers.
    mm.paths["camera0"] = path("camera0", live=True, source="rtspSession", readers=3)
    assert await client.call("get_stream_url", {"device": "camera0"}) == expect("camera0", True, 3, "READY")
    # Disconnected camera with a path: not available.
    mm.provisioned.add("camera2")
    mm.paths["camera2"] = path("camera2")
    assert await client.call("get_stream_url", {"device": "camera2"}) == expect("camera2", False, 0, "NOT_READY")
    # Camera in ERROR.
    mm.provisioned.add("camera3")
    assert await client.call("get_stream_url", {"device": "camera3"}) == expect("camera3", False, 0, "ERROR")
    # MediaMTX down (or disabled): still answers, ERROR and not available.
    for state in ("down", "disabled"):
        mm.state = state
        started = time.perf_counter()
        result = await client.call("get_stream_url", {"device": "camera0"})
        assert time.perf_counter() - started < 0.1
        assert result == expect("camera0", False, 0, "ERROR")
    assert_no_device_path(result)


async def test_get_stream_url_errors(services):
    world = await start_world(services)
    client = await world.service.authed_client("viewer")
    assert_camera_not_found(await client.error("get_stream_url", {"device": "camera01"}), "camera01")
    error = await client.error("get_stream_url", {"device": 0})
    assert error["code"] == -32602 and error["data"]["rule"] == "type"


# -- get_stream_status (§4.18) -------------------------------------------------------------------

async def test_get_stream_status_active_with_bitrate(services):
    world = await start_world(services)
    client = await world.service.authed_client("viewer")
    mm = world.mediamtx
    mm.paths["camera0"] = path("camera0", live=True, source="rtspSession", readers=1, received=1_000_000,
                               sent=12_345_678, since="2025-01-15T14:29:30.123456789Z")
    first = await client.call("get_stream_status", {"device": "camera0"})
    assert first == {
        "device": "camera0", "stream_name": "camera0", "status": "ACTIVE", "ready": True,
        # live since 14:29:30.12, the clock says 14:30:00: up 29 whole seconds
        "ffmpeg_process": {"running": True, "pid": 0, "uptime": 29},
        "mediamtx_path": {"exists": True, "ready": True, "readers": 1},
        "metrics": {"bytes_sent": 12_345_678, "frames_sent": 0, "bitrate": 0, "fps": 0},
        "start_time": "2025-01-15T14:29:30Z",
    }
    world.clock.advance(4)
    mm.paths["camera0"] = path("camera0", live=True, source="rtspSession", readers=2, received=2_000_000,
                               sent=20_000_000, since="2025-01-15T14:29:30Z")
    second = await client.call("get_stream_status", {"device": "camera0"})
    assert second["metrics"] == {"bytes_sent": 20_000_000, "frames_sent": 0, "bitrate": 2_000_000, "fps": 0}
    assert second["mediamtx_path"]["readers"] == 2
    # Counter reset (publisher restarted): no negative rate.
    world.clock.advance(1)
    mm.paths["camera0"] = path("camera0", live=True, source="rtspSession", received=10, since="2025-01-15T14:40:00Z")
    third = await client.call("get_stream_status", {"device": "camera0"})
    assert third["metrics"]["bitrate"] == 0 and third["start_time"] == "2025-01-15T14:40:00Z"
    assert_no_device_path([first, second, third])


async def test_get_stream_status_inactive_starting_error(services):
    world = await start_world(services)
    client = await world.service.authed_client("viewer")
    mm = world.mediamtx
    mm.paths["camera0"] = path("camera0")
    idle = await client.call("get_stream_status", {"device": "camera0"})
    assert idle == {
        "device": "camera0", "stream_name": "camera0", "status": "INACTIVE", "ready": False,
        "ffmpeg_process": {"running": False, "pid": 0, "uptime": 0},
        "mediamtx_path": {"exists": True, "ready": False, "readers": 0},
        "metrics": {"bytes_sent": 0, "frames_sent": 0, "bitrate": 0, "fps": 0},
    }
    mm.paths["camera0"] = path("camera0", source="rtspSession")
    starting = await client.call("get_stream_status", {"device": "camera0"})
    assert starting["status"] == "STARTING" and "start_time" not in starting
    assert starting["ffmpeg_process"]["running"] is True
    mm.paths["camera3"] = path("camera3")
    error_state = await client.call("get_stream_status", {"device": "camera3"})
    assert error_state["status"] == "ERROR" and error_state["ready"] is False
    # Live without a reported time: start_time falls back to the session start.
    op = await world.service.authed_client("operator")
    await op.call("start_streaming", {"device": "camera0"})
    mm.paths["camera0"] = path("camera0", live=True, source="rtspSession")
    live = await client.call("get_stream_status", {"device": "camera0"})
    assert live["status"] == "ACTIVE" and live["start_time"] == "2025-01-15T14:30:00Z"


async def test_get_stream_status_stopping(services):
    world = await start_world(services)
    client = await world.service.authed_client("viewer")
    world.mediamtx.paths["camera0"] = path("camera0", live=True, source="rtspSession")
    world.methods._stopping.add("camera0")
    assert (await client.call("get_stream_status", {"device": "camera0"}))["status"] == "STOPPING"


async def test_get_stream_status_errors(services):
    world = await start_world(services)
    client = await world.service.authed_client("viewer")
    assert_camera_not_found(await client.error("get_stream_status", {"device": "camera5"}), "camera5")
    error = await client.error("get_stream_status", {"device": "camera2"})
    assert error["code"] == -32010 and error["message"] == "Stream not found"
    assert error["data"]["reason"] == "stream_not_found"
    assert error["data"]["resource"] == "stream" and error["data"]["id"] == "camera2"
    # Even when MediaMTX still reports a path under that name, an unplugged camera has none.
    world.mediamtx.paths["camera2"] = path("camera2", live=True, source="rtspSession")
    error = await client.error("get_stream_status", {"device": "camera2"})
    assert error["data"]["reason"] == "stream_not_found"
    world.mediamtx.fail_requests = True
    assert_dependency(await client.error("get_stream_status", {"device": "camera0"}))
    error = await client.error("get_stream_status", {"device": "video0"})
    assert error["code"] == -32602


# -- get_streams (§4.19) -------------------------------------------------------------------------

async def test_get_streams(services):
    world = await start_world(services)
    client = await world.service.authed_client("viewer")
    assert await client.call("get_streams") == []
    world.mediamtx.paths["camera0"] = path("camera0", live=True, source="rtspSession", readers=1,
                                           sent=12_345_678)
    world.mediamtx.paths["camera2"] = path("camera2")
    result = await client.call("get_streams")
    assert result == [{"name": "camera0", "source": "rtspSession", "ready": True, "readers": 1,
                       "bytes_sent": 12_345_678},
                      {"name": "camera2", "source": "", "ready": False, "readers": 0, "bytes_sent": 0}]
    assert_no_device_path(result)
    world.mediamtx.fail_requests = True
    assert_dependency(await client.error("get_streams"))


# -- -32050 fails fast while MediaMTX is down (§4.17) ------------------------------------------------

async def test_dependency_failure_is_fast(services):
    world = await start_world(services)
    client = await world.service.authed_client("operator")
    await client.call("start_streaming", {"device": "camera0"})
    world.mediamtx.state = "down"
    for method, params in (("start_streaming", {"device": "camera0"}), ("stop_streaming", {"device": "camera0"}),
                           ("get_stream_status", {"device": "camera0"}), ("get_streams", None)):
        started = time.perf_counter()
        error = await client.error(method, params)
        assert time.perf_counter() - started < 0.1, method
        assert_dependency(error)
        assert_no_device_path(error)
    # The session survived the failed stop.
    assert "camera0" in world.methods.sessions
    # Even while another start for the camera holds the lock, a call fails at once.
    world.mediamtx.state = "up"
    world.mediamtx.ensure_gate = Deferred()
    blocked = client.request("start_streaming", {"device": "camera0"})
    await client.call("ping")
    world.mediamtx.state = "starting"
    started = time.perf_counter()
    assert_dependency(await client.error("start_streaming", {"device": "camera0"}))
    assert time.perf_counter() - started < 0.1
    world.mediamtx.state = "up"
    world.mediamtx.ensure_gate.callback(None)
    assert (await blocked)["result"]["status"] == "STARTED"


async def test_camera_checks_come_before_the_dependency_check(services):
    world = await start_world(services)
    world.mediamtx.state = "down"
    client = await world.service.authed_client("operator")
    for method in DEVICE_METHODS:
        error = await client.error(method, {"device": "camera8"})
        assert error["data"]["reason"] == "camera_not_found", method
    error = await client.error("start_streaming", {"device": "camera2"})
    assert error["data"]["reason"] == "camera_not_connected"


async def test_the_services_own_readers_are_not_counted_as_viewers(services):
    """media.md §2.8: readers minus the keep-alive reader / snapshot grabs the service holds."""
    world = await start_world(services)
    client = await world.service.authed_client("operator")
    mm = world.mediamtx
    mm.paths["camera0"] = path("camera0", live=True, source="rtspSession", readers=3, received=10,
                               since="2025-01-15T14:29:00Z")
    mm.own["camera0"] = 1
    status = await client.call("get_stream_status", {"device": "camera0"})
    assert status["mediamtx_path"]["readers"] == 2
    url = await client.call("get_stream_url", {"device": "camera0"})
    assert url["active_consumers"] == 2
    mm.paths["camera0"] = path("camera0", live=True, source="rtspSession", readers=1, received=20,
                               since="2025-01-15T14:29:00Z")
    await client.call("start_streaming", {"device": "camera0"})
    stopped = await client.call("stop_streaming", {"device": "camera0"})
    # Only the service's own reader is left: nobody else watches.
    assert stopped["stream_continues"] is False


async def test_status_is_starting_while_the_service_waits_for_the_path(services):
    """media.md §2.8: STARTING while a recording start or an RTSP snapshot waits for live."""
    world = await start_world(services)
    client = await world.service.authed_client("viewer")
    world.mediamtx.paths["camera0"] = path("camera0")
    assert (await client.call("get_stream_status", {"device": "camera0"}))["status"] == "INACTIVE"
    world.waiting.add("camera0")
    assert (await client.call("get_stream_status", {"device": "camera0"}))["status"] == "STARTING"
