"""MediaMTXService against the real client and FakeMediaMTXServer on a real port (no mocks).

The camera monitor is replaced by :class:`FakeMonitor`, a deliberately tiny stand-in holding
exactly what the service touches: a real ``CameraRegistry``, the two hook lists, the
``path_metrics``/``stalled_cameras`` provider attributes and ``component_state()`` (first scan
done). Intervals are shortened through the normal configuration environment overrides.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import treq
from twisted.internet import defer, reactor
from twisted.internet.task import deferLater

from camera_service.config import load_config
from camera_service.discovery.registry import Camera, CameraRegistry
from camera_service.discovery.v4l2 import Mode
from camera_service.events import EventBus
from camera_service.health.model import DEGRADED, HEALTHY, HealthRegistry, Readiness
from camera_service.mediamtx.client import MediaMTXClient
from camera_service.mediamtx.service import MediaMTXService
from camera_service.rpc.errors import RpcError
from camera_service.testing.fake_mediamtx import FakeMediaMTX, FakeMediaMTXServer

OPENAPI = Path(__file__).resolve().parents[1] / ".." / "shared" / "reference" / "mediamtx" / "openapi.yaml"
FFMPEG = "/usr/bin/ffmpeg"
INTERVAL = 0.5


class FakeMonitor:
    """Minimal CameraMonitor stand-in: registry, hook lists, provider attributes, scan state."""

    def __init__(self, cameras: list[Camera]) -> None:
        self.registry = CameraRegistry()
        for camera in cameras:
            self.registry.add(camera)
        self.on_camera_connected: list[Any] = []
        self.on_camera_disconnected: list[Any] = []
        self.path_metrics: Any = lambda camera_id: None
        self.stalled_cameras: Any = list
        self.scan_done = True

    def component_state(self) -> str:
        return "RUNNING" if self.scan_done else "STARTING"


def usb_camera(camera_id: str = "camera0", node: int = 0) -> Camera:
    return Camera(id=camera_id, status="CONNECTED", name="USB Camera", identity=f"serial:{node}",
                  node=node, last_node=node, probe=None, mode=Mode("MJPG", 1280, 720, 30.0),
                  error=None, last_seen=0.0)


def virtual_camera(config: Any) -> Camera:
    vc = config.virtual_cameras[0]
    return Camera(id=vc.id, status="CONNECTED", name=vc.name, identity=None, node=None,
                  last_node=None, probe=None, mode=None, error=None, last_seen=0.0, virtual=vc)


async def until(condition: Any, deadline: float, what: str = "condition") -> float:
    started = reactor.seconds()
    while not condition():
        if reactor.seconds() - started > deadline:
            raise AssertionError(f"{what} not reached within {deadline} s")
        await deferLater(reactor, 0.02, lambda: None)
    return reactor.seconds() - started


class Harness:
    def __init__(self, tmp_path: Path, *, enabled: bool = True, yaml_paths: Any = None,
                 **env: str) -> None:
        self.fake = FakeMediaMTX(OPENAPI, yaml_paths=yaml_paths)
        self.server = FakeMediaMTXServer(self.fake)
        self.server.start(reactor, port=0)
        environ = {
            "CAMERA_SERVICE_SERVER_STATE_DIR": str(tmp_path / "state"),
            "CAMERA_SERVICE_MEDIAMTX_ENABLED": "true" if enabled else "false",
            "CAMERA_SERVICE_MEDIAMTX_HOST": "127.0.0.1",
            "CAMERA_SERVICE_MEDIAMTX_API_PORT": str(self.server.port_number),
            "CAMERA_SERVICE_MEDIAMTX_RECORDINGS_PATH": str(tmp_path / "state" / "recordings"),
            "CAMERA_SERVICE_MEDIAMTX_SNAPSHOTS_PATH": str(tmp_path / "state" / "snapshots"),
            "CAMERA_SERVICE_MEDIAMTX_HEALTH_CHECK_INTERVAL": str(INTERVAL),
            "CAMERA_SERVICE_MEDIAMTX_HEALTH_FAILURE_THRESHOLD": "3",
            "CAMERA_SERVICE_MEDIAMTX_HEALTH_MAX_BACKOFF": "1",
            "CAMERA_SERVICE_MEDIAMTX_REQUEST_TIMEOUT": "1",
            "CAMERA_SERVICE_SECURITY_JWT_SECRET_KEY": "x" * 40,
            "CAMERA_SERVICE_VIRTUAL_CAMERAS": json.dumps(
                [{"id": "camera10", "pattern": "smptebars", "size": "640x480", "rate": 15}]),
        }
        environ.update(env)
        self.config = load_config(None, environ)
        self.client = MediaMTXClient(reactor, base_url=self.server.url, auth=None, timeout=1.0)
        self.monitor = FakeMonitor([usb_camera(), virtual_camera(self.config)])
        self.bus = EventBus(reactor)
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.bus.add_listener(lambda name, payload: self.events.append((name, payload)))
        self.health = HealthRegistry(reactor)
        self.readiness = Readiness()
        self.service = MediaMTXService(
            reactor=reactor, config=self.config, client=self.client, monitor=self.monitor,
            bus=self.bus, health=self.health, readiness=self.readiness, ffmpeg_path=FFMPEG,
            random=lambda: 0.5)
        self.readiness.mark_started()

    def start(self) -> None:
        self.service.startService()

    async def stop(self) -> None:
        if self.service.running:
            await defer.maybeDeferred(self.service.stopService)
        await self.server.stop()
        assert self.fake.violations == []
        assert self.fake.fake_bugs == []

    def named(self, name: str) -> list[dict[str, Any]]:
        return [payload for event, payload in self.events if event == name]

    async def until_provisioned(self, deadline: float = 5.0) -> None:
        await until(lambda: self.service.state == "up" and self.service.first_provisioning_done
                    and self.health.get("mediamtx").status == HEALTHY, deadline, "provisioning")

    async def add_path(self, name: str, body: dict[str, Any]) -> None:
        response = await treq.post(f"{self.server.url}/v3/config/paths/add/{name}",
                                   data=json.dumps(body).encode(),
                                   headers={"Content-Type": ["application/json"]})
        await treq.content(response)
        assert response.code == 200, response.code


async def test_starting_to_up_provisions_and_cleans_stale_paths(tmp_path: Path) -> None:
    h = Harness(tmp_path, yaml_paths={"all_others": {}, "keepme": {"source": "publisher"}})
    try:
        await h.add_path("camera9", {"source": "publisher"})
        await h.add_path("ext_0123456789", {"source": "publisher"})
        await h.add_path("other", {"source": "publisher"})
        assert h.service.state == "starting"
        assert h.service.component_state() == "STARTING"
        assert "mediamtx" in h.readiness.pending and h.readiness.status() != "ready"
        h.start()
        await h.until_provisioned()
        assert h.service.component_state() == "RUNNING"
        assert h.readiness.status() == "ready"

        usb = h.fake.path_config("camera0")
        assert usb["runOnDemand"] == (
            "/usr/bin/ffmpeg -hide_banner -loglevel error -nostdin -f v4l2 -input_format mjpeg "
            "-video_size 1280x720 -framerate 30 -i /dev/video0 -an -c:v libx264 -preset ultrafast "
            "-tune zerolatency -profile:v baseline -pix_fmt yuv420p -bf 0 -g 30 -b:v 2000k "
            "-maxrate 2000k -bufsize 4000k -f rtsp -rtsp_transport tcp "
            "rtsp://127.0.0.1:$RTSP_PORT/$MTX_PATH")
        assert usb["record"] is False and usb["recordDeleteAfter"] == "0s"
        assert usb["recordPath"] == str(tmp_path / "state" / "recordings") + \
            "/%path/%path_%Y-%m-%d_%H-%M-%S"
        virt = h.fake.path_config("camera10")
        assert "-re -f lavfi -i smptebars=size=640x480:rate=15" in virt["runOnDemand"]
        assert virt["record"] is False and virt["recordDeleteAfter"] == "0s"

        # Stale managed paths are gone; non-managed ones untouched.
        assert h.fake.path_config("camera9") is None
        assert h.fake.path_config("ext_0123456789") is None
        assert h.fake.path_config("other") is not None
        assert h.fake.path_config("keepme") is not None
        assert h.fake.requests_to("DELETE", "/v3/config/paths/delete/other") == []
        assert h.fake.requests_to("DELETE", "/v3/config/paths/delete/keepme") == []
        assert h.fake.requests_to("DELETE", "/v3/config/paths/delete/all_others") == []
        # Path defaults patched (§2.6 item 3).
        assert len(h.fake.requests_to("PATCH", "/v3/config/pathdefaults/patch")) == 1

        await until(lambda: len([p for p in h.named("mediamtx.path") if p["exists"]]) >= 2, 1.0,
                    "path events")
        assert sorted(p["device"] for p in h.named("mediamtx.path") if p["exists"]) == \
            ["camera0", "camera10"]
        assert h.service.is_provisioned("camera0") and h.service.is_provisioned("camera10")
        details = h.health.get("mediamtx").details
        assert details["state"] == "up" and details["managed_paths"] == 2
        assert details["version"] == "v1.20.1" and details["problems"] == []
        assert h.monitor.path_metrics == h.service.path_metrics
    finally:
        await h.stop()


async def test_outage_down_fast_fail_recover(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    try:
        h.start()
        await h.until_provisioned()
        await h.fake.outage()
        await until(lambda: h.service.consecutive_failures >= 1, 2 * INTERVAL + 1, "first failure")
        took = await until(lambda: h.service.state == "down", 4.0, "DOWN")
        assert took < 4.0
        assert h.service.consecutive_failures >= 3
        assert h.service.component_state() == "ERROR"
        # The bus delivers on the next reactor turn.
        await until(lambda: any("device" not in p for p in h.named("mediamtx.error")), 1.0,
                    "mediamtx.error")
        errors = [p for p in h.named("mediamtx.error") if "device" not in p]
        assert errors[-1]["error"].startswith("MediaMTX unreachable since ")
        health = h.health.get("mediamtx")
        assert health.status == DEGRADED
        assert health.message.startswith("MediaMTX unreachable since ")
        assert not h.service.is_provisioned("camera0")

        requests_before = len(h.fake.requests)
        started = time.monotonic()
        try:
            h.service.require_up()
        except RpcError as error:
            elapsed = time.monotonic() - started
            assert error.code == -32050
            assert error.data["dependency"] == "mediamtx"
            assert error.data["detail"].startswith("MediaMTX unreachable since ")
            assert "connection refused" in error.data["detail"]
        else:
            raise AssertionError("require_up did not raise")
        assert elapsed < 0.1
        # API methods fail at once as well, without a request.
        started = time.monotonic()
        for call in (h.service.ensure_path(h.monitor.registry.get("camera0")),
                     h.service.list_paths(), h.service.fetch_path("camera0")):
            try:
                await call
            except RpcError as error:
                assert error.code == -32050
            else:
                raise AssertionError("expected -32050")
        assert time.monotonic() - started < 0.1
        assert len(h.fake.requests) == requests_before

        h.fake.recover()
        await until(lambda: h.service.state == "up", 5.0, "UP again")
        await h.until_provisioned()
        assert h.fake.path_config("camera0") is not None
        assert h.service.is_provisioned("camera0") and h.service.is_provisioned("camera10")
        assert h.service.consecutive_failures == 0
    finally:
        await h.stop()


async def test_restart_detected_and_paths_recreated(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    try:
        h.start()
        await h.until_provisioned()
        replaces = len(h.fake.requests_to("POST", "/v3/config/paths/replace/"))
        h.fake.restart()
        assert h.fake.path_config("camera0") is None
        took = await until(lambda: h.fake.path_config("camera0") is not None
                           and h.fake.path_config("camera10") is not None,
                           INTERVAL + 0.5, "paths re-created")
        assert took <= INTERVAL + 0.5
        assert len(h.fake.requests_to("POST", "/v3/config/paths/replace/")) == replaces + 2
        await h.until_provisioned()
        assert h.service.state == "up"
    finally:
        await h.stop()


async def test_ensure_path_idempotent_and_remove_path(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    try:
        h.start()
        await h.until_provisioned()
        before = len(h.fake.requests_to("POST", "/v3/config/paths/replace/"))
        await h.service.ensure_path(h.monitor.registry.get("camera0"))
        assert len(h.fake.requests_to("POST", "/v3/config/paths/replace/")) == before

        # A new camera: two concurrent ensure_path calls make exactly one request.
        cam = usb_camera("camera2", node=2)
        h.monitor.registry.add(cam)
        await defer.gatherResults([defer.ensureDeferred(h.service.ensure_path(cam)),
                                   defer.ensureDeferred(h.service.ensure_path(cam))])
        assert len(h.fake.requests_to("POST", "/v3/config/paths/replace/camera2")) == 1
        await h.service.ensure_path(cam)
        assert len(h.fake.requests_to("POST", "/v3/config/paths/replace/camera2")) == 1
        assert "-i /dev/video2" in h.fake.path_config("camera2")["runOnDemand"]

        await h.service.remove_path("camera2")
        assert h.fake.path_config("camera2") is None
        assert not h.service.is_provisioned("camera2")
        await h.service.remove_path("camera77")  # unknown: 404 counts as success
        await until(lambda: {"device": "camera77", "exists": False} in
                    [{k: v for k, v in p.items() if k != "timestamp"}
                     for p in h.named("mediamtx.path")], 1.0, "path event")
        assert await h.service.fetch_path("camera77") is None
    finally:
        await h.stop()


async def test_hooks_write_and_delete_paths(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    try:
        h.start()
        await h.until_provisioned()
        cam = usb_camera("camera3", node=3)
        h.monitor.registry.add(cam)
        for hook in h.monitor.on_camera_connected:
            await hook(cam)
        assert h.fake.path_config("camera3") is not None
        cam.status = "DISCONNECTED"
        for hook in h.monitor.on_camera_disconnected:
            await hook(cam)
        assert h.fake.path_config("camera3") is None
        # A camera without a mode is skipped with mediamtx.error {device, error}.
        nomode = usb_camera("camera4", node=4)
        nomode.mode = None
        h.monitor.registry.add(nomode)
        for hook in h.monitor.on_camera_connected:
            await hook(nomode)
        await until(lambda: any(p.get("device") == "camera4" for p in h.named("mediamtx.error")),
                    1.0, "skip error")
        assert h.fake.path_config("camera4") is None
    finally:
        await h.stop()


async def test_stream_events_and_metrics(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    try:
        h.start()
        await h.until_provisioned()
        assert h.service.path_metrics("camera0") == {"bytes_sent": 0, "readers": 0, "uptime": 0}
        h.fake.set_live("camera0", True, readers=2, bytes_sent=1234, bytes_received=999)
        await until(lambda: {"device": "camera0", "ready": True} in
                    [{k: v for k, v in p.items() if k != "timestamp"}
                     for p in h.named("mediamtx.stream")], INTERVAL + 1, "ready event")
        metrics = h.service.path_metrics("camera0")
        assert metrics["bytes_sent"] == 1234 and metrics["readers"] == 2
        assert h.service.stream_metrics() == {"active_streams": 1, "total_streams": 2,
                                              "total_viewers": 2}
        assert h.service.cached_path("camera0").live
        state = await h.service.fetch_path("camera0")
        assert state is not None and state.live
        assert len(await h.service.list_paths()) >= 2
        h.fake.set_live("camera0", False)
        await until(lambda: {"device": "camera0", "ready": False} in
                    [{k: v for k, v in p.items() if k != "timestamp"}
                     for p in h.named("mediamtx.stream")], INTERVAL + 1, "not-ready event")
        assert len([p for p in h.named("mediamtx.stream") if p["device"] == "camera0"]) == 2
        assert h.service.run_on_demand_close_after() == 10
    finally:
        await h.stop()


async def test_disabled(tmp_path: Path) -> None:
    h = Harness(tmp_path, enabled=False)
    try:
        h.start()
        assert h.service.state == "disabled" and not h.service.enabled
        assert h.service.component_state() == "STOPPED"
        assert h.readiness.status() == "ready"
        health = h.health.get("mediamtx")
        assert health.status == HEALTHY and health.message == "MediaMTX integration disabled"
        try:
            h.service.require_up()
        except RpcError as error:
            assert error.code == -32050 and error.data["dependency"] == "mediamtx"
        else:
            raise AssertionError("expected -32050")
        await deferLater(reactor, 0.2, lambda: None)
        assert h.fake.requests == []
    finally:
        await h.stop()


async def test_backoff_policy(tmp_path: Path) -> None:
    h = Harness(tmp_path, CAMERA_SERVICE_MEDIAMTX_HEALTH_CHECK_INTERVAL="10",
                CAMERA_SERVICE_MEDIAMTX_HEALTH_MAX_BACKOFF="30")
    try:
        service = h.service  # not started: only the delay policy is exercised
        service.state = "up"
        assert service._next_delay() == 10.0
        service.consecutive_failures = 1
        assert service._next_delay() == 1.0
        service.consecutive_failures = 2
        assert service._next_delay() == 2.0
        service.state = "down"
        service._backoff_k = 0
        # random() is 0.5: half of min(30, 2^k)
        assert [service._next_delay() for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0]
    finally:
        await h.stop()


async def test_a_live_path_whose_inbound_bytes_stop_growing_is_reported_stalled(tmp_path: Path) -> None:
    """media.md §2.8 "frames flowing": two stalled probes in a row → mediamtx.error once and
    the camera in the cameras component's stalled list, until the counter grows again."""
    h = Harness(tmp_path)
    try:
        h.start()
        await h.until_provisioned()
        h.fake.set_live("camera0", ready=True, readers=1, bytes_received=5000)
        took = await until(lambda: h.monitor.stalled_cameras() == ["camera0"], 4 * INTERVAL + 1,
                           "camera0 stalled")
        assert took >= INTERVAL  # not at the first observation
        errors = [p for p in h.named("mediamtx.error") if p.get("device") == "camera0"]
        assert len(errors) == 1 and errors[0]["error"].startswith("no data from camera for ")
        await deferLater(reactor, 2 * INTERVAL, lambda: None)
        assert len([p for p in h.named("mediamtx.error") if p.get("device") == "camera0"]) == 1
        h.fake.set_live("camera0", ready=True, readers=1, bytes_received=9000)
        await until(lambda: h.monitor.stalled_cameras() == [], 2 * INTERVAL + 1, "flowing again")
    finally:
        await h.stop()
