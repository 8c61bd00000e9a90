"""End-to-end MediaMTX integration over a real WebSocket (media.md §1.9, §2.4-§2.10; api.md
§4.15-§4.19): umockdev hotplug → path in a MediaMTX stand-in on a real loopback port →
stream URLs and sessions → unplug → restart and outage of MediaMTX.

Like ``tests/test_hotplug_e2e.py``, this module re-runs itself under ``umockdev-wrapper``:
run plainly it collects one outer test that runs this file in a child process; under the
wrapper it collects the end-to-end tests directly. The V4L2 prober is replaced by one
returning the parsed ELP 4K fixture (the fake ``/dev/videoN`` nodes are ptys).

MediaMTX is :class:`camera_service.testing.fake_mediamtx.FakeMediaMTX` served by
``FakeMediaMTXServer`` on a free loopback port, so ``outage()`` is a real "connection refused".
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from treq.client import HTTPClient
from twisted.internet import defer, reactor
from twisted.internet.task import deferLater
from twisted.web.client import Agent, HTTPConnectionPool

from camera_service.discovery.v4l2 import ProbeResult, choose_mode, parse_v4l2_ctl
from camera_service.testing.fake_mediamtx import FakeMediaMTX, FakeMediaMTXServer
from tests.umockdev_rerun import rerun_under_umockdev
from camera_service.testing.umockdev import Testbed, in_umockdev_wrapper

UNDER_WRAPPER = in_umockdev_wrapper()
REPO = Path(__file__).resolve().parent.parent
FIXTURE = REPO / "tests" / "fixtures" / "v4l2" / "elp-4k-usb-camera.txt"
CHILD_TIMEOUT = 170.0  # below pytest-timeout's 180 s, so the child's output is reported
HEALTH_INTERVAL = 0.5
TOPICS = ["camera_status_update", "camera.connected", "camera.disconnected",
          "mediamtx.path", "mediamtx.error", "mediamtx.stream", "mediamtx.stream_started",
          "mediamtx.stream_stopped"]

# media.md §1.6: FourCC → FFmpeg -input_format (independent of the production table).
INPUT_FORMAT = {"MJPG": "mjpeg", "JPEG": "mjpeg", "YUYV": "yuyv422", "UYVY": "uyvy422",
                "NV12": "nv12", "YU12": "yuv420p", "H264": "h264", "GREY": "gray"}


# -- the outer test: re-run this file under umockdev-wrapper --------------------------


@pytest.mark.timeout(300)
def test_mediamtx_e2e_under_umockdev_wrapper() -> None:
    rerun_under_umockdev(__file__, "MediaMTX e2e tests", CHILD_TIMEOUT)


# -- helpers ---------------------------------------------------------------------------


class FixtureProber:
    """Answers every node with the ELP 4K camera's real capabilities."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.result = parse_v4l2_ctl(FIXTURE.read_text())

    async def probe(self, node: str, timeout: float) -> ProbeResult:
        self.asked.append(node)
        return self.result


async def sleep(seconds: float) -> None:
    await deferLater(reactor, seconds, lambda: None)


async def until(condition: Any, timeout: float, what: str) -> float:
    """Poll ``condition``; returns the seconds it took."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not reached within {timeout} s: {what}")
        await sleep(0.01)
    return time.monotonic() - started


async def event(client: Any, method: str, match: dict[str, Any] | None = None,
                timeout: float = 3.0) -> dict[str, Any]:
    """The next notification ``method`` whose params contain ``match``; others are skipped."""
    deadline = time.monotonic() + timeout
    skipped = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no {method} {match} within {timeout} s; skipped {skipped}")
        waiting = client.notifications.get()
        waiting.addTimeout(left, reactor)
        try:
            message = await waiting
        except defer.TimeoutError:
            raise AssertionError(f"no {method} {match} within {timeout} s; skipped {skipped}") from None
        params = message.get("params", {})
        if message["method"] == method and all(params.get(k) == v for k, v in (match or {}).items()):
            return params
        skipped.append(message)


def mediamtx_env(port: int, **extra: str) -> dict[str, str]:
    env = {
        "CAMERA_SERVICE_VIRTUAL_CAMERAS": "[]",
        "CAMERA_SERVICE_CAMERA_POLL_INTERVAL": "30",
        "CAMERA_SERVICE_MEDIAMTX_ENABLED": "true",
        "CAMERA_SERVICE_MEDIAMTX_HOST": "127.0.0.1",
        "CAMERA_SERVICE_MEDIAMTX_API_PORT": str(port),
        "CAMERA_SERVICE_MEDIAMTX_HEALTH_CHECK_INTERVAL": str(HEALTH_INTERVAL),
        "CAMERA_SERVICE_MEDIAMTX_HEALTH_FAILURE_THRESHOLD": "2",
        "CAMERA_SERVICE_MEDIAMTX_HEALTH_MAX_BACKOFF": "1",
        "CAMERA_SERVICE_MEDIAMTX_REQUEST_TIMEOUT": "2",
    }
    env.update(extra)
    return env


def expected_run_on_demand(service: Any, mode: Any, node: str) -> str:
    """media.md §2.4 "The publisher command, exactly", built from the template."""
    config = service.app.config
    enc = config.encoding
    ffmpeg = shutil.which("ffmpeg")
    assert ffmpeg is not None
    fps = int(mode.fps + 0.5)
    gop = max(1, int(fps * enc.gop_seconds + 0.5))
    bitrate = enc.bitrate_kbps
    return (f"{ffmpeg} -hide_banner -loglevel error -nostdin "
            f"-f v4l2 -input_format {INPUT_FORMAT[mode.fourcc]} -video_size {mode.width}x{mode.height} "
            f"-framerate {fps} -i {node} "
            f"-an -c:v libx264 -preset {enc.preset} -tune zerolatency -profile:v {enc.profile} "
            f"-pix_fmt yuv420p -bf 0 -g {gop} -b:v {bitrate}k -maxrate {bitrate}k -bufsize {2 * bitrate}k "
            f"-f rtsp -rtsp_transport tcp rtsp://127.0.0.1:$RTSP_PORT/$MTX_PATH")


def expected_mode(service: Any, probe: ProbeResult) -> Any:
    cfg = service.app.config.camera
    width, height = (int(x) for x in cfg.target_resolution.split("x"))
    return choose_mode(tuple(probe.modes), preference=tuple(cfg.format_preference),
                       target=(width, height), target_fps=float(cfg.target_fps))


async def get_json(url: str) -> tuple[int, Any]:
    http = HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))
    response = await http.get(url)
    body = await response.text()
    return response.code, json.loads(body)


async def mediamtx_component(service: Any) -> dict[str, Any]:
    code, body = await get_json(service.health_url + "/health/detailed")
    assert code == 200, body
    found = [c for c in body["components"] if c["name"] == "mediamtx"]
    assert len(found) == 1, body
    return found[0]


async def timed_error(client: Any, method: str, params: Any = None) -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    error = await client.error(method, params)
    return error, time.monotonic() - started


class Rig:
    def __init__(self) -> None:
        self.fake = FakeMediaMTX()
        self.server = FakeMediaMTXServer(self.fake)
        self.server.start(reactor, port=0)
        assert self.server.port_number
        self.port: int = self.server.port_number
        self.bed = Testbed()  # before the service: monitors opened earlier see nothing
        self.service: Any = None

    async def start(self, services: Any, prober: Any, **extra: str) -> Any:
        self.service = await services.start(camera_prober=prober, **mediamtx_env(self.port, **extra))
        app = self.service.app
        await until(lambda: app.readiness.status() == "ready", 10.0, "service ready")
        return self.service

    @property
    def mediamtx(self) -> Any:
        return self.service.root.getServiceNamed("mediamtx")

    async def close(self) -> None:
        if self.service is not None:
            for c in self.service.clients:
                c.drop()
            if self.service.root.running:
                await self.service.root.stopService()
        await self.server.stop()
        self.bed.close()


async def clients(service: Any) -> tuple[Any, Any]:
    viewer = await service.authed_client("viewer")
    result = await viewer.call("subscribe_events", {"topics": TOPICS})
    assert result["subscribed"] is True
    operator = await service.authed_client("operator")
    return viewer, operator


async def plug(rig: Rig, viewer: Any, number: int = 0, serial: str = "SN-A") -> str:
    syspath = rig.bed.add_camera(number, serial=serial, card="HD USB CAMERA")
    await event(viewer, "camera.connected", {"device": "camera0"})
    await event(viewer, "mediamtx.path", {"device": "camera0", "exists": True})
    return syspath


# -- the tests (only under the wrapper) ------------------------------------------------


@pytest.mark.timeout(60)
async def test_plug_path_urls_streams_unplug_restart(services: Any) -> None:
    prober = FixtureProber()
    rig = Rig()
    try:
        service = await rig.start(services, prober)
        fake = rig.fake
        assert rig.mediamtx.state == "up"
        viewer, operator = await clients(service)
        assert fake.api_paths() == []
        mode = expected_mode(service, prober.result)
        assert mode is not None

        # 1. plug → path with the exact on-demand command, mediamtx.path event
        syspath = rig.bed.add_camera(0, serial="SN-A", card="HD USB CAMERA")
        update = await event(viewer, "camera_status_update", {"device": "camera0"})
        assert update["status"] == "CONNECTED"
        host = "127.0.0.1"
        assert update["streams"] == {"rtsp": f"rtsp://{host}:8554/camera0",
                                     "hls": f"http://{host}:8888/camera0/index.m3u8",
                                     "webrtc": f"http://{host}:8889/camera0"}
        path_event = await event(viewer, "mediamtx.path", {"device": "camera0"})
        assert {k: path_event[k] for k in ("device", "exists")} == {"device": "camera0", "exists": True}
        assert "/dev/" not in json.dumps(path_event)
        assert fake.api_paths() == ["camera0"]
        conf = fake.path_config("camera0")
        assert conf is not None
        assert conf["source"] == "publisher"
        assert conf["runOnDemand"] == expected_run_on_demand(service, mode, "/dev/video0")
        assert conf["runOnDemandRestart"] is True
        assert conf["runOnDemandStartTimeout"] == "10s"
        assert conf["runOnDemandCloseAfter"] == "10s"
        assert conf["record"] is False
        assert conf["recordDeleteAfter"] == "0s"
        recordings = str(Path(service.app.config.mediamtx.recordings_path).resolve())
        assert conf["recordPath"] == f"{recordings}/%path/%path_%Y-%m-%d_%H-%M-%S"
        assert conf["sourceOnDemand"] is False  # inherited default, never sent with publisher
        replaces = fake.requests_to("POST", "/v3/config/paths/replace/camera0")
        assert replaces and "sourceOnDemand" not in json.dumps([r.body for r in replaces])

        # get_stream_url: URLs for the connection's host
        url = await viewer.call("get_stream_url", {"device": "camera0"})
        assert url == {"device": "camera0", "stream_name": "camera0",
                       "stream_url": f"rtsp://{host}:8554/camera0", "available": True,
                       "active_consumers": 0, "stream_status": "NOT_READY"}

        # start_streaming
        started = await operator.call("start_streaming", {"device": "camera0"})
        assert set(started) == {"device", "stream_name", "stream_url", "status", "start_time",
                                "auto_close_after"}
        assert started["device"] == started["stream_name"] == "camera0"
        assert started["stream_url"] == f"rtsp://{host}:8554/camera0"
        assert started["status"] == "STARTED"
        assert started["auto_close_after"] == "10s"
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", started["start_time"])
        stream_started = await event(viewer, "mediamtx.stream_started", {"device": "camera0"})
        assert stream_started["stream_id"] == "camera0"
        again = await operator.call("start_streaming", {"device": "camera0"})
        assert again["start_time"] == started["start_time"]

        # get_streams: not live yet, then live with readers
        streams = {s["name"]: s for s in await viewer.call("get_streams")}
        assert streams["camera0"]["ready"] is False and streams["camera0"]["readers"] == 0
        fake.set_live("camera0", ready=True, readers=2, bytes_sent=1000, bytes_received=5000)
        streams = {s["name"]: s for s in await viewer.call("get_streams")}
        assert streams["camera0"] == {"name": "camera0", "source": "rtspSession", "ready": True,
                                      "readers": 2, "bytes_sent": 1000}
        status = await viewer.call("get_stream_status", {"device": "camera0"})
        assert status["status"] == "ACTIVE" and status["ready"] is True
        assert status["mediamtx_path"] == {"exists": True, "ready": True, "readers": 2}
        url = await viewer.call("get_stream_url", {"device": "camera0"})
        assert url["stream_status"] == "READY" and url["active_consumers"] == 2
        stopped = await operator.call("stop_streaming", {"device": "camera0"})
        assert stopped["status"] == "STOPPED" and stopped["stream_continues"] is True
        assert fake.path_config("camera0") is not None  # stop never deletes the path

        # 2. unplug → path gone, mediamtx.path {exists: false}
        rig.bed.unplug(syspath)
        gone = await event(viewer, "mediamtx.path", {"device": "camera0", "exists": False})
        assert {k: gone[k] for k in ("device", "exists")} == {"device": "camera0", "exists": False}
        await until(lambda: fake.path_config("camera0") is None, 2.0, "camera0 path deleted")
        assert "camera0" not in fake.api_paths()
        url = await viewer.call("get_stream_url", {"device": "camera0"})
        assert url["available"] is False

        # 3. replug, then MediaMTX restarts: the path comes back within one health interval
        await plug(rig, viewer)
        assert fake.path_config("camera0") is not None
        fake.restart()
        assert fake.path_config("camera0") is None
        took = await until(lambda: fake.path_config("camera0") is not None,
                           HEALTH_INTERVAL + 0.5, "camera0 re-created after a MediaMTX restart")
        print(f"\npath re-created {took * 1000:.0f} ms after the MediaMTX restart")
        conf = fake.path_config("camera0")
        assert conf["runOnDemand"] == expected_run_on_demand(service, mode, "/dev/video0")
        assert conf["record"] is False
        await event(viewer, "mediamtx.path", {"device": "camera0", "exists": True})
        assert fake.restarts == 1
        assert rig.mediamtx.state == "up"
        assert fake.violations == []
        assert fake.fake_bugs == []
    finally:
        await rig.close()


@pytest.mark.timeout(60)
async def test_outage_fails_fast_and_recovers(services: Any) -> None:
    prober = FixtureProber()
    rig = Rig()
    try:
        service = await rig.start(services, prober)
        fake = rig.fake
        viewer, operator = await clients(service)
        await plug(rig, viewer)
        assert (await mediamtx_component(service))["status"] == "healthy"
        await operator.call("start_streaming", {"device": "camera0"})

        await fake.outage()

        async def all_fail_fast(phase: str, strict: bool = True) -> None:
            for client, method, params in (
                (operator, "start_streaming", {"device": "camera0"}),
                (operator, "stop_streaming", {"device": "camera0"}),
                (viewer, "get_stream_status", {"device": "camera0"}),
                (viewer, "get_streams", None),
            ):
                asked = time.monotonic()
                response = await client.request(method, params)
                took = time.monotonic() - asked
                assert took < 1.0, (phase, method, took)
                if not strict and "error" not in response:
                    # Before the service noticed: a call that needs no request (provisioned
                    # path, open session) may still succeed; it must not hang.
                    continue
                error = response["error"]
                assert error["code"] == -32050, (phase, method, error)
                assert error["data"]["dependency"] == "mediamtx", (phase, method, error)
                assert took < 1.0, (phase, method, took)

        # Right after the outage (the service may not have noticed yet) and once DOWN.
        await all_fail_fast("first calls", strict=False)
        await until(lambda: rig.mediamtx.state == "down", 5.0, "MediaMTX DOWN")
        await all_fail_fast("down")
        down_event = await event(viewer, "mediamtx.error", timeout=1.0)
        assert "device" not in down_event and down_event["error"]

        url = await viewer.call("get_stream_url", {"device": "camera0"})
        assert url["stream_status"] == "ERROR" and url["available"] is False
        assert url["stream_url"] == "rtsp://127.0.0.1:8554/camera0"

        # Nothing else is affected.
        listing = await viewer.call("get_camera_list")
        assert [(c["device"], c["status"]) for c in listing["cameras"]] == [("camera0", "CONNECTED")]
        camera = await viewer.call("get_camera_status", {"device": "camera0"})
        assert camera["status"] == "CONNECTED"
        assert await viewer.call("ping") == "pong"
        info = await viewer.call("get_server_info")
        assert info
        caps = await viewer.call("get_camera_capabilities", {"device": "camera0"})
        assert caps["validation_status"] == "CONFIRMED"

        component = await mediamtx_component(service)
        assert component["status"] == "degraded", component
        assert component["details"]["state"] == "down", component

        # Recover: back UP and the path is provisioned again without client action.
        assert fake.path_config("camera0") is not None  # survived: only the API was down
        fake.restart()  # and make it come back empty, so re-provisioning is observable
        fake.recover()
        await until(lambda: fake.path_config("camera0") is not None, 5.0,
                    "camera0 re-provisioned after recovery")
        await until(lambda: rig.mediamtx.state == "up", 1.0, "MediaMTX UP")
        await event(viewer, "mediamtx.path", {"device": "camera0", "exists": True})
        deadline = time.monotonic() + 3.0
        component = await mediamtx_component(service)
        while component["status"] != "healthy" and time.monotonic() < deadline:
            await sleep(0.05)
            component = await mediamtx_component(service)
        assert component["status"] == "healthy", component
        url = await viewer.call("get_stream_url", {"device": "camera0"})
        assert url["available"] is True
        status = await viewer.call("get_stream_status", {"device": "camera0"})
        assert status["mediamtx_path"]["exists"] is True
        assert fake.violations == []
        assert fake.fake_bugs == []
    finally:
        await rig.close()


@pytest.mark.timeout(60)
async def test_mediamtx_down_at_start_up(services: Any) -> None:
    """MediaMTX already unreachable when the service starts: calls fail fast, no hangs,
    and the camera path appears once MediaMTX comes up."""
    prober = FixtureProber()
    rig = Rig()
    try:
        await rig.fake.outage()
        service = await services.start(camera_prober=prober, **mediamtx_env(rig.port))
        rig.service = service
        await until(lambda: rig.mediamtx.state == "down", 5.0, "MediaMTX DOWN")
        assert service.app.readiness.status() != "ready"  # api.md §4.22: MediaMTX not reached
        component = await mediamtx_component(service)
        assert component["status"] == "degraded", component
        rig.bed.add_camera(0, serial="SN-A", card="HD USB CAMERA")
        await until(lambda: rig.service.root.getServiceNamed("camera-monitor").registry.get("camera0")
                    is not None, 3.0, "camera0 discovered")
        assert rig.fake.path_config("camera0") is None
        rig.fake.recover()
        await until(lambda: rig.fake.path_config("camera0") is not None, 5.0, "camera0 provisioned")
        await until(lambda: service.app.readiness.status() == "ready", 2.0, "ready")
        viewer, operator = await clients(service)
        url = await viewer.call("get_stream_url", {"device": "camera0"})
        assert url["available"] is True
        started = await operator.call("start_streaming", {"device": "camera0"})
        assert started["status"] == "STARTED"
        assert rig.fake.violations == []
    finally:
        await rig.close()


# Collect the outer test in the plain process and the real ones under the wrapper only.
if UNDER_WRAPPER:
    del test_mediamtx_e2e_under_umockdev_wrapper
else:
    del test_plug_path_urls_streams_unplug_restart
    del test_outage_fails_fast_and_recovers
    del test_mediamtx_down_at_start_up
