"""Camera methods over a real socket (api.md §4.3-4.5, §3.1, §3.4, §3.6, §5.2).

The service is the real one from ``services``; the camera monitor is a real
``CameraMonitor`` fed by the fakes of ``test_camera_monitor`` (a node source, a
prober and a udev reader the test fires), and the three camera methods are put in
place with ``MethodRegistry.replace`` so this works whether or not ``app.py`` has
wired them yet.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import maybeDeferred

from camera_service.discovery.monitor import CameraMonitor
from camera_service.rpc.methods import cameras as camera_methods
from tests.test_camera_monitor import (
    FakeMode,
    FakeNodeSource,
    FakeProbe,
    FakeProbeError,
    FakeProber,
    FakeUdev,
    choose_mode,
    dev,
    identity_key,
    says_capture,
    sync_thread,
    usb_node,
)

VIRTUAL = '[{"id": "camera100", "name": "Test pattern", "size": "640x480", "rate": 15}]'
HOST = "127.0.0.1"


def streams(camera_id: str) -> dict[str, str]:
    return {"rtsp": f"rtsp://{HOST}:8554/{camera_id}", "hls": f"http://{HOST}:8888/{camera_id}/index.m3u8",
            "webrtc": f"http://{HOST}:8889/{camera_id}"}


class _Replacing:
    """Lets ``cameras.register`` install its handlers with ``replace`` (the methods may
    already be registered by app.py)."""

    def __init__(self, registry: Any) -> None:
        self._registry = registry

    def register(self, name: str, handler: Any, params: tuple[Any, ...] = (), **_: Any) -> None:
        self._registry.replace(name, handler, params)


@dataclass
class CameraWorld:
    service: Any
    monitor: CameraMonitor
    nodes: FakeNodeSource
    prober: FakeProber
    udev: FakeUdev

    def plug(self, info: Any) -> None:
        self.nodes.nodes[info.number] = info
        self.udev.fire("add", info.number)

    def unplug(self, number: int) -> None:
        self.nodes.nodes.pop(number, None)
        self.udev.fire("remove", number)


async def start_world(services: Any, **env: str) -> CameraWorld:
    env.setdefault("CAMERA_SERVICE_VIRTUAL_CAMERAS", VIRTUAL)
    service = await services.start(**env)
    app = service.app
    # The service's own monitor watches this machine's real nodes; swap in one that
    # watches the fakes below.
    await maybeDeferred(service.root.getServiceNamed("camera-monitor").disownServiceParent)
    nodes, prober, udev = FakeNodeSource(), FakeProber(), FakeUdev()
    monitor = CameraMonitor(reactor, app.config, app.bus, app.health, app.readiness, sync_thread, prober,
                            nodes, udev.factory, ffmpeg_path="/usr/bin/ffmpeg", says_capture=says_capture,
                            identity_key=identity_key, choose_mode=choose_mode)
    camera_methods.register(_Replacing(service.root.factory.dispatcher.registry), monitor)  # type: ignore[arg-type]
    # A child of the running root starts now and stops with it.
    monitor.setServiceParent(service.root)
    app.camera_metrics = monitor.camera_metrics
    return CameraWorld(service, monitor, nodes, prober, udev)


async def populated(services: Any) -> CameraWorld:
    """camera0 CONNECTED, camera2 DISCONNECTED, camera3 ERROR, camera100 virtual."""
    world = await start_world(services)
    world.prober.set(dev(0), FakeProbe())
    world.prober.set(dev(2), FakeProbe(card="HD Webcam", modes=(FakeMode("YUYV", 1280, 720, 30.0),)))
    world.prober.set(dev(3), FakeProbeError("permission denied (is the service user in group 'video'?)"))
    world.plug(usb_node(0, serial="A", port="pa"))
    world.plug(usb_node(2, serial="B", port="pb", product="HD Webcam"))
    world.unplug(2)
    world.plug(usb_node(3, serial="C", port="pc", product="Cam C"))
    return world


def assert_no_device_path(value: Any) -> None:
    text = json.dumps(value)
    assert "/dev/" not in text and "video0" not in text and "video3" not in text, text


# -- get_camera_list (§4.3) -------------------------------------------------------------------

CAMERA0 = {"device": "camera0", "status": "CONNECTED", "name": "USB Cam", "resolution": "1280x720", "fps": 30,
           "streams": streams("camera0")}
CAMERA2 = {"device": "camera2", "status": "DISCONNECTED", "name": "HD Webcam", "resolution": "1280x720",
           "fps": 30, "streams": streams("camera2")}
CAMERA3 = {"device": "camera3", "status": "ERROR", "name": "Cam C", "resolution": "", "fps": 0,
           "streams": streams("camera3")}
CAMERA100 = {"device": "camera100", "status": "CONNECTED", "name": "Test pattern", "resolution": "640x480",
             "fps": 15, "streams": streams("camera100")}


async def test_get_camera_list(services):
    world = await populated(services)
    client = await world.service.authed_client()
    response = await client.request("get_camera_list")
    assert response["result"] == {"cameras": [CAMERA0, CAMERA2, CAMERA3, CAMERA100], "total": 4, "connected": 2}
    assert_no_device_path(response)


async def test_get_camera_list_only_virtual(services):
    world = await start_world(services)
    client = await world.service.authed_client()
    assert await client.call("get_camera_list") == {"cameras": [CAMERA100], "total": 1, "connected": 1}


async def test_get_camera_list_empty(services):
    world = await start_world(services, CAMERA_SERVICE_VIRTUAL_CAMERAS="[]")
    client = await world.service.authed_client()
    assert await client.call("get_camera_list") == {"cameras": [], "total": 0, "connected": 0}


# -- get_camera_status (§4.4) -----------------------------------------------------------------

ZERO = {"bytes_sent": 0, "readers": 0, "uptime": 0}


async def test_get_camera_status(services):
    world = await populated(services)
    client = await world.service.authed_client()
    results = {}
    for device in ("camera0", "camera2", "camera3", "camera100"):
        response = await client.request("get_camera_status", {"device": device})
        assert_no_device_path(response)
        results[device] = response["result"]
    assert results["camera0"] == dict(CAMERA0, metrics=ZERO, capabilities={
        "formats": ["MJPEG", "YUYV"], "resolutions": ["1920x1080", "1280x720", "640x480"]})
    # Unplugged: the last probed values stay.
    assert results["camera2"] == dict(CAMERA2, metrics=ZERO, capabilities={
        "formats": ["YUYV"], "resolutions": ["1280x720"]})
    # Never probed successfully: no capabilities key.
    assert results["camera3"] == dict(CAMERA3, metrics=ZERO)
    assert results["camera100"] == dict(CAMERA100, metrics=ZERO, capabilities={
        "formats": ["YU12"], "resolutions": ["640x480"]})


async def test_get_camera_status_metrics_hook(services):
    world = await populated(services)
    world.monitor.path_metrics = lambda cid: {"bytes_sent": 12345678, "readers": 2, "uptime": 3600.7} \
        if cid == "camera0" else None
    client = await world.service.authed_client()
    result = await client.call("get_camera_status", {"device": "camera0"})
    assert result["metrics"] == {"bytes_sent": 12345678, "readers": 2, "uptime": 3600}
    assert (await client.call("get_camera_status", {"device": "camera100"}))["metrics"] == ZERO


# -- get_camera_capabilities (§4.5) -----------------------------------------------------------

async def test_get_camera_capabilities(services):
    world = await populated(services)
    client = await world.service.authed_client()
    results = {}
    for device in ("camera0", "camera2", "camera3", "camera100"):
        response = await client.request("get_camera_capabilities", {"device": device})
        assert_no_device_path(response)
        results[device] = response["result"]
    assert results["camera0"] == {"device": "camera0", "formats": ["MJPEG", "YUYV"],
                                  "resolutions": ["1920x1080", "1280x720", "640x480"],
                                  "fps_options": [30, 15], "frame_rates": [30, 15],
                                  "validation_status": "CONFIRMED"}
    assert results["camera2"] == {"device": "camera2", "formats": ["YUYV"], "resolutions": ["1280x720"],
                                  "fps_options": [30], "frame_rates": [30],
                                  "validation_status": "DISCONNECTED"}
    assert results["camera3"] == {"device": "camera3", "formats": [], "resolutions": [], "fps_options": [],
                                  "frame_rates": [], "validation_status": "NONE"}
    assert results["camera100"] == {"device": "camera100", "formats": ["YU12"], "resolutions": ["640x480"],
                                    "fps_options": [15], "frame_rates": [15], "validation_status": "CONFIRMED"}


# -- errors (§3.1, §3.6, §6) ------------------------------------------------------------------

def assert_invalid_device(error: dict[str, Any], rule: str = "pattern") -> None:
    assert error["code"] == -32602 and error["message"] == "Invalid parameters", error
    data = error["data"]
    assert set(data) == {"reason", "details", "suggestion", "param", "rule", "hint"}
    assert (data["reason"], data["param"], data["rule"]) == ("invalid_params", "device", rule)


async def test_device_parameter_errors(services):
    world = await populated(services)
    client = await world.service.authed_client()
    for method in ("get_camera_status", "get_camera_capabilities"):
        for bad in ("/dev/video0", "camera", "../x", "camera0/..", "Camera0", "camera\\0", ""):
            response = await client.request(method, {"device": bad})
            assert_invalid_device(response["error"])
        assert_invalid_device(await client.error(method, {}), "required")
        assert_invalid_device(await client.error(method, {"device": 0}), "type")
        for unknown in ("camera7", "camera01", "camera1000"):
            error = await client.error(method, {"device": unknown})
            assert error == {"code": -32010, "message": "Camera not found", "data": {
                "reason": "camera_not_found", "details": f"Camera not found: {unknown}",
                "suggestion": "Check the identifier", "resource": "camera", "id": unknown}}


async def test_camera_methods_need_authentication(services):
    world = await start_world(services)
    client = await world.service.client()
    error = await client.error("get_camera_list")
    assert error["code"] == -32001


# -- notifications (§5.2, §5.4) carry per-recipient streams and no device path -----------------

async def next_notification(client: Any, timeout: float = 5.0) -> dict[str, Any]:
    got = client.notifications.get()
    got.addTimeout(timeout, reactor)
    return await got


async def test_status_update_and_topic_events_over_the_socket(services):
    world = await start_world(services)
    client = await world.service.authed_client()
    await client.call("subscribe_events", {"topics": ["camera_status_update", "camera.connected",
                                                      "camera.capability_detected", "camera.disconnected",
                                                      "camera.status_change"]})
    world.prober.set(dev(0), FakeProbe())
    world.plug(usb_node(0))
    messages = [await next_notification(client) for _ in range(3)]
    assert [m["method"] for m in messages] == ["camera_status_update", "camera.connected",
                                               "camera.capability_detected"]
    assert messages[0]["params"] == {"device": "camera0", "status": "CONNECTED", "name": "USB Cam",
                                     "resolution": "1280x720", "fps": 30, "streams": streams("camera0")}
    assert set(messages[1]["params"]) == {"device", "name", "status", "driver", "card_name", "timestamp"}
    world.unplug(0)
    messages += [await next_notification(client) for _ in range(3)]
    assert [m["method"] for m in messages[3:]] == ["camera_status_update", "camera.disconnected",
                                                   "camera.status_change"]
    assert messages[5]["params"]["old_status"] == "CONNECTED"
    assert_no_device_path(messages)
    # The list agrees with what was announced.
    listed = await client.call("get_camera_list")
    assert [(c["device"], c["status"]) for c in listed["cameras"]] == [("camera0", "DISCONNECTED"),
                                                                       ("camera100", "CONNECTED")]


async def test_get_metrics_camera_metrics_hook(services):
    world = await populated(services)
    world.service.app.camera_metrics = world.monitor.camera_metrics
    client = await world.service.authed_client("admin")
    metrics = (await client.call("get_metrics"))["camera_metrics"]
    assert metrics["connected_cameras"] == 2
    assert list(metrics["cameras"]) == ["camera0", "camera2", "camera3", "camera100"]
    assert metrics["cameras"]["camera0"]["path"] == "camera0"
    assert metrics["cameras"]["camera0"]["device_num"] == 0
    assert_no_device_path(metrics)
