"""SnapshotService with real FFmpeg, a real ProcessRunner and the real reactor (media.md §4).

- Tier e: the virtual camera's lavfi source (sizes, resize, names, failures, timeouts).
- Tier a: a real RTSP server (``rtsp-server-perl``) fed by a real FFmpeg publisher, with the
  MediaMTX control API played by ``FakeMediaMTX`` behind a real ``MediaMTXService``: the
  stream is 640x480 while the virtual camera is configured 320x240, so the size proves where
  the frame came from.
- Tiers b, c, d: no V4L2 device exists here. Tier c runs a stand-in "ffmpeg" script that
  answers the device read with EBUSY and hands every other call to the real FFmpeg, so the
  c → d fallback runs for real against the RTSP server.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import defer, reactor
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.logger import globalLogPublisher

from camera_service.config import load_config
from camera_service.discovery.registry import (
    CONNECTED,
    DISCONNECTED,
    Camera,
    CameraRegistry,
    VirtualProbe,
)
from camera_service.discovery.v4l2 import Mode
from camera_service.events import EventBus
from camera_service.health.model import HealthRegistry, Readiness
from camera_service.leases import DeviceLeases
from camera_service.mediamtx.client import MediaMTXClient
from camera_service.mediamtx.service import MediaMTXService
from camera_service.procs import ProcessRunner
from camera_service.rpc.errors import RpcError
from camera_service.rpc.methods.snapshots import register
from camera_service.rpc.registry import MethodRegistry
from camera_service.snapshots import SnapshotService
from camera_service.storage.files import SNAPSHOTS, FileStore
from camera_service.testing.fake_mediamtx import FakeMediaMTX, FakeMediaMTXServer
from tests.media_servers import RTSP_SERVER, RtspServer

FFMPEG = shutil.which("ffmpeg") or "/usr/bin/ffmpeg"
FFPROBE = shutil.which("ffprobe") or "/usr/bin/ffprobe"
OPENAPI = Path(__file__).resolve().parents[1] / ".." / "shared" / "reference" / "mediamtx" / "openapi.yaml"
VIRTUAL_ID = "camera100"
USB_ID = "camera0"


# -- helpers -------------------------------------------------------------------------------

def ffprobe(path: str) -> dict[str, Any]:
    out = subprocess.run([FFPROBE, "-v", "error", "-show_entries", "stream=width,height,codec_name",
                          "-of", "json", "-f", "image2", path],
                         check=True, capture_output=True, timeout=10).stdout
    return json.loads(out)["streams"][0]


def all_entries(root: Path) -> list[str]:
    """Every file under the snapshots root, hidden ones included, relative to it."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def script(directory: Path, name: str, body: str) -> str:
    path = directory / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return str(path)


async def until(condition: Any, deadline: float, what: str) -> None:
    started = reactor.seconds()
    while not condition():
        if reactor.seconds() - started > deadline:
            raise AssertionError(f"{what} not reached within {deadline} s")
        await deferLater(reactor, 0.02, lambda: None)


class FrozenClock:
    """The reactor's timers with a wall clock the test sets (for name collisions)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def seconds(self) -> float:
        return self.now

    def callLater(self, *args: Any, **kwargs: Any) -> Any:
        return reactor.callLater(*args, **kwargs)


class Monitor:
    """What SnapshotService and MediaMTXService read of a CameraMonitor: a real registry,
    the two hook lists, the path_metrics provider and the first-scan state."""

    def __init__(self, *cameras: Camera) -> None:
        self.registry = CameraRegistry()
        for camera in cameras:
            self.registry.add(camera)
        self.on_camera_connected: list[Any] = []
        self.on_camera_disconnected: list[Any] = []
        self.path_metrics: Any = lambda camera_id: None

    def component_state(self) -> str:
        return "RUNNING"


def virtual_camera(config: Any) -> Camera:
    """Built exactly as CameraMonitor._register_virtual_cameras builds one."""
    vc = config.virtual_cameras[0]
    probe = VirtualProbe(card=vc.name, width=vc.width, height=vc.height, rate=int(vc.rate))
    return Camera(id=vc.id, status=CONNECTED, name=vc.name, identity=None, node=None, last_node=None,
                  probe=probe, mode=probe.modes[0], error=None, last_seen=0.0, virtual=vc)


def usb_camera(status: str = CONNECTED) -> Camera:
    return Camera(id=USB_ID, status=status, name="USB Camera", identity="serial:x", node=0, last_node=0,
                  probe=None, mode=Mode("MJPG", 640, 480, 15.0), error=None, last_seen=0.0)


class Harness:
    def __init__(self, work: Path, *, ffmpeg: str | None = FFMPEG, clock: Any = None,
                 mediamtx: Any = None, cameras: tuple[Camera, ...] | None = None,
                 frame_tap: Any = None, **env: str) -> None:
        self.work = work
        self.root = work / "snapshots"
        environ = {
            "CAMERA_SERVICE_SERVER_STATE_DIR": str(work / "state"),
            "CAMERA_SERVICE_MEDIAMTX_RECORDINGS_PATH": str(work / "recordings"),
            "CAMERA_SERVICE_MEDIAMTX_SNAPSHOTS_PATH": str(self.root),
            "CAMERA_SERVICE_SECURITY_JWT_SECRET_KEY": "x" * 40,
            "CAMERA_SERVICE_MEDIAMTX_RTSP_TRANSPORT": "udp",   # rtsp-server-perl refuses tcp
            "CAMERA_SERVICE_VIRTUAL_CAMERAS": json.dumps(
                [{"id": VIRTUAL_ID, "pattern": "testsrc2", "size": "320x240", "rate": 15}]),
        }
        environ.update(env)
        self.config = load_config(None, environ)
        self.clock = clock or reactor
        self.monitor = Monitor(*(cameras if cameras is not None else (virtual_camera(self.config),)))
        self.runner = ProcessRunner(reactor)
        self.bus = EventBus(reactor)
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.bus.add_listener(lambda name, payload: self.events.append((name, payload)))
        self.store = FileStore(SNAPSHOTS, str(self.root), deferToThread, reactor, 2.0)
        self.leases = DeviceLeases(reactor)
        self.service = SnapshotService(
            config=self.config, clock=self.clock, monitor=self.monitor, mediamtx=mediamtx,
            runner=self.runner, ffmpeg_path=ffmpeg, store=self.store, leases=self.leases,
            run_in_thread=deferToThread, bus=self.bus, frame_tap=frame_tap)

    def camera_dir(self, camera_id: str = VIRTUAL_ID) -> Path:
        return self.root / camera_id

    async def take(self, camera_id: str = VIRTUAL_ID, filename: str | None = None) -> dict[str, Any]:
        return await self.service.take(camera_id, filename)

    async def failure(self, camera_id: str = VIRTUAL_ID, filename: str | None = None) -> RpcError:
        try:
            await self.take(camera_id, filename)
        except RpcError as error:
            return error
        raise AssertionError("take() succeeded")

    async def delivered(self) -> list[tuple[str, dict[str, Any]]]:
        await deferLater(reactor, 0, lambda: None)  # the bus delivers on the next turn
        return self.events

    def named(self, topic: str) -> list[dict[str, Any]]:
        return [payload for name, payload in self.events if name == topic]


@pytest.fixture
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # mktemp names stay inside the §0.4 character set (a parametrised tmp_path has "[").
    return tmp_path_factory.mktemp("snap")


@pytest.fixture
def tiers() -> Iterator[list[dict[str, Any]]]:
    """Log events of successful snapshots (they name the tier used)."""
    seen: list[dict[str, Any]] = []

    def observer(event: dict[str, Any]) -> None:
        if "tier" in event and "snapshot" in str(event.get("log_format", "")):
            seen.append(event)

    globalLogPublisher.addObserver(observer)
    yield seen
    globalLogPublisher.removeObserver(observer)


# -- tier e: the virtual camera's lavfi source ---------------------------------------------

async def test_tier_e_writes_a_real_jpeg_of_the_configured_size(work: Path, tiers: list) -> None:
    h = Harness(work)
    before = time.time()
    result = await h.take()
    path = Path(result["file_path"])
    assert set(result) == {"device", "filename", "status", "timestamp", "file_size", "file_path"}
    assert result["device"] == VIRTUAL_ID and result["status"] == "SUCCESS"
    assert path.is_absolute() and path.parent == h.camera_dir()
    assert path.name == result["filename"]
    stem_seconds = int(result["filename"][len(VIRTUAL_ID) + 1:-len(".jpg")])
    assert int(before) <= stem_seconds <= int(time.time())
    assert result["timestamp"].endswith("Z") and len(result["timestamp"]) == 20
    data = path.read_bytes()
    assert data[:2] == b"\xff\xd8" and result["file_size"] == len(data) > 0
    probe = ffprobe(str(path))
    assert (probe["codec_name"], probe["width"], probe["height"]) == ("mjpeg", 320, 240)
    assert h.service.last_tier[VIRTUAL_ID] == "e" and tiers[-1]["tier"] == "e"
    await h.delivered()
    assert h.named("snapshot.taken") == [{"device": VIRTUAL_ID, "filename": result["filename"],
                                          "resolution": "320x240", "timestamp": h.named("snapshot.taken")[0]["timestamp"]}]
    assert all_entries(h.root) == [f"{VIRTUAL_ID}/{result['filename']}"]  # no temporary left
    assert h.runner.running() == 0 and list(h.service.reserved_paths()) == []


async def test_resize_keeps_aspect_and_even_sides(work: Path) -> None:
    h = Harness(work, CAMERA_SERVICE_SNAPSHOTS_MAX_WIDTH="101")
    result = await h.take()
    probe = ffprobe(result["file_path"])
    assert (probe["width"], probe["height"]) == (100, 74)     # 101 -> 100, 75.75 -> 74
    await h.delivered()
    assert h.named("snapshot.taken")[0]["resolution"] == "100x74"


async def test_resize_by_height_only_and_no_upscale(work: Path) -> None:
    h = Harness(work / "a", CAMERA_SERVICE_SNAPSHOTS_MAX_HEIGHT="120")
    probe = ffprobe((await h.take())["file_path"])
    assert (probe["width"], probe["height"]) == (160, 120)
    h2 = Harness(work / "b", CAMERA_SERVICE_SNAPSHOTS_MAX_WIDTH="4000",
                 CAMERA_SERVICE_SNAPSHOTS_MAX_HEIGHT="4000")
    probe = ffprobe((await h2.take())["file_path"])
    assert (probe["width"], probe["height"]) == (320, 240)


async def test_quality_changes_the_encoding(work: Path) -> None:
    best = await Harness(work / "q100", CAMERA_SERVICE_SNAPSHOTS_QUALITY="100").take()
    worst = await Harness(work / "q1", CAMERA_SERVICE_SNAPSHOTS_QUALITY="1").take()
    # -q:v 2 against -q:v 31 on the same test pattern: the best is far larger.
    assert best["file_size"] > 2 * worst["file_size"]


# -- names (§4.4) --------------------------------------------------------------------------

async def test_generated_name_collisions_anywhere_in_the_store(work: Path) -> None:
    h = Harness(work, clock=FrozenClock(1736951400.0))
    h.root.mkdir(parents=True)
    (h.root / "camera100_1736951400.jpg").write_bytes(b"root")            # in the root
    (h.root / "camera7").mkdir()
    (h.root / "camera7" / "camera100_1736951400_1.jpg").write_bytes(b"x")  # another camera's dir
    result = await h.take()
    assert result["filename"] == "camera100_1736951400_2.jpg"
    assert result["timestamp"] == "2025-01-15T14:30:00Z"
    again = await h.take()
    assert again["filename"] == "camera100_1736951400_3.jpg"
    assert (h.root / "camera100_1736951400.jpg").read_bytes() == b"root"   # never overwritten


async def test_client_names_completed_and_file_exists(work: Path) -> None:
    h = Harness(work)
    first = await h.take(filename="front-door")
    assert first["filename"] == "front-door.jpg"
    assert Path(first["file_path"]) == h.camera_dir() / "front-door.jpg"
    upper = await h.take(filename="Gate.JPEG")
    assert upper["filename"] == "Gate.JPEG"
    error = await h.failure(filename="front-door.jpg")
    assert error.code == -32020
    assert (error.data["reason"], error.data["state"], error.data["allowed_states"]) == ("file_exists", "EXISTS", [])
    # Names are unique across the store, not per directory.
    (h.root / "camera3").mkdir()
    (h.root / "camera3" / "elsewhere.jpg").write_bytes(b"x")
    h.store.invalidate()
    assert (await h.failure(filename="elsewhere")).data["reason"] == "file_exists"
    assert sorted(os.listdir(h.camera_dir())) == ["Gate.JPEG", "front-door.jpg"]


@pytest.mark.parametrize("bad", ["../evil", "a b", "x" * 252, "name.", "..", "a/b"])
async def test_invalid_client_names(work: Path, bad: str) -> None:
    h = Harness(work)
    error = await h.failure(filename=bad)
    assert error.code == -32602 and error.data["param"] == "filename" and error.data["rule"] == "filename"
    assert h.runner.running() == 0
    assert not h.root.exists()          # refused before any directory or file was touched


async def test_concurrent_takes_choose_different_names(work: Path) -> None:
    h = Harness(work, clock=FrozenClock(1700000000.0))
    results = await defer.gatherResults([defer.ensureDeferred(h.take()) for _ in range(5)])
    names = sorted(r["filename"] for r in results)
    assert names == ["camera100_1700000000.jpg"] + [f"camera100_1700000000_{n}.jpg" for n in range(1, 5)]
    assert sorted(os.listdir(h.camera_dir())) == names
    outcomes = await defer.DeferredList([defer.ensureDeferred(h.service.take(VIRTUAL_ID, "same"))
                                         for _ in range(2)], consumeErrors=True)
    assert sorted(ok for ok, _ in outcomes) == [False, True]
    error = next(value.value for ok, value in outcomes if not ok)
    assert isinstance(error, RpcError) and error.data["reason"] == "file_exists"
    assert (h.camera_dir() / "same.jpg").exists()


# -- errors, failures, timeouts (§4.5) -----------------------------------------------------

async def test_camera_errors(work: Path) -> None:
    unplugged = usb_camera(DISCONNECTED)
    h = Harness(work, cameras=(unplugged,))
    error = await h.failure("camera9")
    assert (error.code, error.data["reason"], error.data["resource"]) == (-32010, "camera_not_found", "camera")
    error = await h.failure(USB_ID)
    assert (error.code, error.data["reason"]) == (-32020, "camera_not_connected")
    assert (error.data["state"], error.data["allowed_states"]) == ("DISCONNECTED", ["CONNECTED"])
    await h.delivered()
    assert h.named("snapshot.error") == []  # state errors are answers, not capture failures


async def test_ffmpeg_failure_is_32050_and_leaves_nothing(work: Path) -> None:
    fake = script(work, "ffmpeg-fails", 'for last; do :; done\nprintf "partial" > "$last"\n'
                  'echo "[lavfi @ 0x1] something broke on /dev/video3" >&2\nexit 1\n')
    h = Harness(work, ffmpeg=fake)
    error = await h.failure()
    assert error.code == -32050 and error.data["reason"] == "dependency_failed"
    assert error.data["dependency"] == "ffmpeg"
    assert error.data["detail"].startswith("exited with status 1: [lavfi @ 0x1] something broke")
    assert "/dev/video" not in json.dumps(error.to_json())      # redacted to the camera id
    assert all_entries(h.root) == []                             # the partial temporary is gone
    await h.delivered()
    assert h.named("snapshot.error")[0]["device"] == VIRTUAL_ID
    assert "exited with status 1" in h.named("snapshot.error")[0]["error"]
    assert h.named("snapshot.taken") == []
    assert list(h.service.reserved_paths()) == []


async def test_exit_zero_without_a_jpeg_is_a_failure(work: Path) -> None:
    fake = script(work, "ffmpeg-png", 'for last; do :; done\nprintf "\\211PNG not a jpeg" > "$last"\nexit 0\n')
    h = Harness(work, ffmpeg=fake)
    error = await h.failure(filename="kept")
    assert error.data["dependency"] == "ffmpeg" and "no JPEG" in error.data["detail"]
    assert all_entries(h.root) == []
    # The reserved name is free again.
    assert list(h.service.reserved_paths()) == []


async def test_capture_timeout_kills_ffmpeg_and_cleans_up(work: Path) -> None:
    pidfile = work / "pid"
    fake = script(work, "ffmpeg-hangs", f'echo $$ > {pidfile}\nfor last; do :; done\n'
                  'printf "partial" > "$last"\nexec sleep 30\n')
    h = Harness(work, ffmpeg=fake, CAMERA_SERVICE_SNAPSHOTS_CAPTURE_TIMEOUT="0.5")
    started = reactor.seconds()
    error = await h.failure()
    elapsed = reactor.seconds() - started
    assert error.code == -32050 and error.data["dependency"] == "ffmpeg"
    assert error.data["detail"] == "timed out after 0.5 s"
    assert 0.5 <= elapsed < 3.0
    pid = int(pidfile.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)                                  # killed and reaped
    assert h.runner.running() == 0 and all_entries(h.root) == []


async def test_total_timeout_bounds_the_call(work: Path) -> None:
    fake = script(work, "ffmpeg-hangs", 'exec sleep 30\n')
    h = Harness(work, ffmpeg=fake, CAMERA_SERVICE_SNAPSHOTS_CAPTURE_TIMEOUT="5",
                CAMERA_SERVICE_SNAPSHOTS_TOTAL_TIMEOUT="0.4")
    started = reactor.seconds()
    error = await h.failure()
    assert reactor.seconds() - started < 3.0
    assert error.data["detail"] == "timed out after 0.4 s (snapshots.total_timeout)"
    assert h.runner.running() == 0


async def test_ffmpeg_missing(work: Path) -> None:
    h = Harness(work, ffmpeg=None)
    error = await h.failure()
    assert (error.code, error.data["dependency"]) == (-32050, "ffmpeg")
    assert all_entries(h.root) == []


async def test_storage_guard_runs_first(work: Path) -> None:
    checked: list[str] = []

    async def refuse(kind: str) -> None:
        checked.append(kind)
        from camera_service.rpc.errors import invalid_state
        raise invalid_state("storage_critical", "STORAGE_CRITICAL", [], "Storage usage 91.2% is at or above "
                            "the block threshold of 85%", "Free space", usage_percentage=91.2, block_percent=85)

    h = Harness(work)
    h.service._check_can_write = refuse  # the storage service's guard, as app.py wires it
    error = await h.failure()
    assert error.data["reason"] == "storage_critical" and checked == ["snapshots"]
    assert h.runner.running() == 0


# -- tiers b, c, d without a V4L2 device ----------------------------------------------------

def busy_ffmpeg(work: Path, log: Path) -> str:
    """Refuses the device read with EBUSY (as FFmpeg does when the publisher holds it) and
    hands every other call to the real FFmpeg."""
    return script(work, "ffmpeg-busy",
                  f'echo "$*" >> {log}\n'
                  'case " $* " in\n'
                  '  *" v4l2 "*) echo "[video4linux2,v4l2 @ 0x5] Cannot open video device /dev/video0: '
                  'Device or resource busy" >&2\n'
                  '    echo "/dev/video0: Device or resource busy" >&2; exit 1;;\n'
                  'esac\n'
                  f'exec {FFMPEG} "$@"\n')


async def test_tier_c_busy_without_mediamtx_is_a_v4l2_error(work: Path) -> None:
    log = work / "argv.log"
    h = Harness(work, ffmpeg=busy_ffmpeg(work, log), cameras=(usb_camera(),))
    error = await h.failure(USB_ID)
    assert (error.code, error.data["dependency"]) == (-32050, "v4l2")
    assert error.data["detail"] == "exited with status 1: camera0: Device or resource busy"
    calls = log.read_text().splitlines()
    assert len(calls) == 1
    assert ("-f v4l2 -input_format mjpeg -video_size 640x480 -framerate 15 -i /dev/video0 "
            "-an -vf trim=start_frame=5 -frames:v 1 -c:v mjpeg -q:v 6") in calls[0]
    assert not h.leases.held(USB_ID) and all_entries(h.root) == []


async def test_tier_c_waits_for_the_lease_then_gives_up(work: Path) -> None:
    log = work / "argv.log"
    h = Harness(work, ffmpeg=busy_ffmpeg(work, log), cameras=(usb_camera(),),
                CAMERA_SERVICE_SNAPSHOTS_CAPTURE_TIMEOUT="0.3")
    await h.leases.acquire(USB_ID, 1.0)     # e.g. another direct capture
    try:
        error = await h.failure(USB_ID)
    finally:
        h.leases.release(USB_ID)
    assert error.data["dependency"] == "v4l2" and "busy" in error.data["detail"]
    assert not log.exists()                  # FFmpeg never ran without the lease


async def test_no_tier_for_usb_without_direct_device_or_mediamtx(work: Path) -> None:
    log = work / "argv.log"
    h = Harness(work, ffmpeg=busy_ffmpeg(work, log), cameras=(usb_camera(),),
                CAMERA_SERVICE_SNAPSHOTS_DIRECT_DEVICE="false")
    error = await h.failure(USB_ID)
    assert (error.code, error.data["dependency"]) == (-32050, "mediamtx")
    assert not log.exists()


async def test_tier_b_serves_a_fresh_frame_tap_and_skips_a_stale_one(work: Path, tiers: list) -> None:
    tap = work / "run" / "camera0.jpg"
    tap.parent.mkdir()
    await deferToThread(subprocess.run, [FFMPEG, "-v", "error", "-f", "lavfi", "-i",
                                         "smptebars=size=200x100:rate=1", "-frames:v", "1", "-y",
                                         str(tap)], check=True, timeout=20)
    log = work / "argv.log"
    h = Harness(work, ffmpeg=busy_ffmpeg(work, log), cameras=(usb_camera(),),
                frame_tap=lambda camera_id: str(tap) if camera_id == USB_ID else None)
    result = await h.take(USB_ID)
    assert Path(result["file_path"]).read_bytes() == tap.read_bytes()
    assert h.service.last_tier[USB_ID] == "b" and tiers[-1]["tier"] == "b"
    await h.delivered()
    assert h.named("snapshot.taken")[0]["resolution"] == "200x100"   # read from the JPEG itself
    assert not log.exists()                                          # no FFmpeg at all
    old = time.time() - 10
    os.utime(tap, (old, old))
    error = await h.failure(USB_ID)                                  # stale: tier c (busy here)
    assert error.data["dependency"] == "v4l2" and log.exists()


# -- tiers a and d against a real RTSP server ----------------------------------------------

@pytest.fixture(scope="module")
def rtsp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RtspServer]:
    if RTSP_SERVER is None:
        pytest.skip("rtsp-server-perl is not installed")
    work = tmp_path_factory.mktemp("rtsp")
    server = RtspServer(work)
    try:
        server.publish(VIRTUAL_ID, work, "640x480")
        server.publish(USB_ID, work, "640x480")
        yield server
    finally:
        server.stop()


class MediaMTX:
    """A real MediaMTXService talking to FakeMediaMTX on a real port."""

    def __init__(self, config: Any, monitor: Monitor) -> None:
        self.fake = FakeMediaMTX(OPENAPI, global_conf={"rtspAddress": f":{config.mediamtx.rtsp_port}"})
        self.server = FakeMediaMTXServer(self.fake)
        self.server.start(reactor, port=0)
        self.client = MediaMTXClient(reactor, base_url=self.server.url, auth=None, timeout=1.0)
        self.readiness = Readiness()
        self.service = MediaMTXService(reactor=reactor, config=config, client=self.client, monitor=monitor,
                                       bus=EventBus(reactor), health=HealthRegistry(reactor),
                                       readiness=self.readiness, ffmpeg_path=FFMPEG, random=lambda: 0.5)
        self.readiness.mark_started()

    async def start(self) -> None:
        self.service.startService()
        await until(lambda: self.service.state == "up" and self.service.first_provisioning_done, 10.0,
                    "MediaMTX UP and provisioned")

    async def stop(self) -> None:
        await defer.maybeDeferred(self.service.stopService)
        await self.server.stop()
        assert self.fake.violations == [] and self.fake.fake_bugs == []


def attach_mediamtx(h: Harness, ffmpeg: str = FFMPEG) -> MediaMTX:
    """Give the harness a real MediaMTXService (not started yet) and a SnapshotService using it."""
    mtx = MediaMTX(h.config, h.monitor)
    h.service = SnapshotService(
        config=h.config, clock=reactor, monitor=h.monitor, mediamtx=mtx.service, runner=h.runner,
        ffmpeg_path=ffmpeg, store=h.store, leases=h.leases, run_in_thread=deferToThread, bus=h.bus)
    return mtx


def rtsp_env(work: Path, rtsp: RtspServer, **extra: str) -> dict[str, str]:
    env = {"CAMERA_SERVICE_MEDIAMTX_HOST": "127.0.0.1",
           "CAMERA_SERVICE_MEDIAMTX_RTSP_PORT": str(rtsp.client_port),
           "CAMERA_SERVICE_MEDIAMTX_RTSP_TRANSPORT": "udp",
           "CAMERA_SERVICE_MEDIAMTX_API_PORT": "9997"}
    env.update(extra)
    return env


async def test_tier_a_reads_the_live_stream(work: Path, rtsp: RtspServer, tiers: list) -> None:
    h = Harness(work, **rtsp_env(work, rtsp))
    mtx = attach_mediamtx(h)
    await mtx.start()
    try:
        # Not live yet: the virtual camera's own source, at its configured 320x240 (tier e).
        probe = ffprobe((await h.take())["file_path"])
        assert (probe["width"], probe["height"]) == (320, 240) and tiers[-1]["tier"] == "e"

        mtx.fake.set_live(VIRTUAL_ID, readers=0)
        await deferLater(reactor, 1.1, lambda: None)     # the "not live" answer ages out (1 s)
        readers_seen: list[int] = []
        taking = defer.ensureDeferred(h.take(filename="from-stream"))
        await until(lambda: h.runner.running() > 0 or taking.called, 5.0, "FFmpeg started")
        readers_seen.append(mtx.service.own_readers(VIRTUAL_ID))
        result = await taking
        probe = ffprobe(result["file_path"])
        # 640x480 is the RTSP stream's size, not the camera's: the frame came from the stream.
        assert (probe["codec_name"], probe["width"], probe["height"]) == ("mjpeg", 640, 480)
        assert h.service.last_tier[VIRTUAL_ID] == "a" and tiers[-1]["tier"] == "a"
        assert readers_seen == [1]                             # counted as the service's own reader
        assert mtx.service.own_readers(VIRTUAL_ID) == 0
        assert mtx.fake.requests_to("GET", f"/v3/paths/get/{VIRTUAL_ID}")
        await h.delivered()
        assert h.named("snapshot.taken")[-1]["resolution"] == "640x480"
    finally:
        await mtx.stop()
    assert h.runner.running() == 0


async def test_tier_a_resize_applies_to_the_stream(work: Path, rtsp: RtspServer) -> None:
    h = Harness(work, **rtsp_env(work, rtsp, CAMERA_SERVICE_SNAPSHOTS_MAX_WIDTH="160"))
    mtx = attach_mediamtx(h)
    await mtx.start()
    try:
        mtx.fake.set_live(VIRTUAL_ID, readers=0)
        result = await h.take()
        # The target is computed from the camera's known size (320x240 -> 160x120, §4.3).
        probe = ffprobe(result["file_path"])
        assert (probe["width"], probe["height"]) == (160, 120)
        assert h.service.last_tier[VIRTUAL_ID] == "a"
    finally:
        await mtx.stop()


async def test_tier_a_stream_gone_is_a_mediamtx_error(work: Path, rtsp: RtspServer) -> None:
    # MediaMTX says the path is live while the RTSP server has nothing under that name: the
    # read fails the way it does when the publisher vanished in between.
    h = Harness(work, **rtsp_env(work, rtsp))
    camera = virtual_camera(h.config)
    h.monitor = Monitor(dataclasses.replace(camera, id="camera101"))
    mtx = attach_mediamtx(h)
    await mtx.start()
    try:
        mtx.fake.set_live("camera101", readers=0)
        error = await h.failure("camera101")
        assert (error.code, error.data["dependency"]) == (-32050, "mediamtx")
        assert all_entries(h.root) == []
    finally:
        await mtx.stop()


async def test_tier_c_busy_falls_back_to_tier_d(work: Path, rtsp: RtspServer, tiers: list) -> None:
    log = work / "argv.log"
    h = Harness(work, ffmpeg=busy_ffmpeg(work, log), cameras=(usb_camera(),), **rtsp_env(work, rtsp))
    mtx = attach_mediamtx(h, busy_ffmpeg(work, log))
    await mtx.start()
    try:
        # MediaMTX is UP, the path exists but is not live: tier c first, EBUSY, then tier d.
        result = await h.take(USB_ID)
        calls = log.read_text().splitlines()
        assert len(calls) == 2
        assert " -f v4l2 " in f" {calls[0]} "
        assert (f"-rtsp_transport udp -timeout 5000000 -analyzeduration 500000 -i rtsp://127.0.0.1:{rtsp.client_port}/{USB_ID} "
                "-an -frames:v 1 -c:v mjpeg -q:v 6 -f image2 -update 1 -y ") in calls[1]
        probe = ffprobe(result["file_path"])
        assert (probe["width"], probe["height"]) == (640, 480)
        assert h.service.last_tier[USB_ID] == "d" and tiers[-1]["tier"] == "d"
        assert mtx.fake.path_config(USB_ID) is not None          # ensure_path: the path exists
        assert not h.leases.held(USB_ID)
    finally:
        await mtx.stop()


async def test_direct_device_off_goes_straight_to_tier_d(work: Path, rtsp: RtspServer) -> None:
    log = work / "argv.log"
    fake = busy_ffmpeg(work, log)
    h = Harness(work, ffmpeg=fake, cameras=(usb_camera(),),
                **rtsp_env(work, rtsp, CAMERA_SERVICE_SNAPSHOTS_DIRECT_DEVICE="false"))
    mtx = attach_mediamtx(h, fake)
    await mtx.start()
    try:
        await h.take(USB_ID)
        calls = log.read_text().splitlines()
        assert len(calls) == 1 and "rtsp://" in calls[0]
        assert h.service.last_tier[USB_ID] == "d"
    finally:
        await mtx.stop()


# -- the RPC method ------------------------------------------------------------------------

async def test_register_and_handler(work: Path) -> None:
    h = Harness(work)
    registry = MethodRegistry()
    register(registry, h.service)
    spec = registry.get("take_snapshot")
    assert spec is not None and spec.handler is not None
    assert [p.name for p in spec.params] == ["device", "filename"]
    assert spec.params[0].required and not spec.params[1].required

    class Ctx:
        def __init__(self) -> None:
            self.actions: list[Any] = []

        def after_response(self, action: Any) -> None:
            self.actions.append(action)

    ctx = Ctx()
    result = await spec.handler(ctx, {"device": VIRTUAL_ID, "filename": None})  # type: ignore[arg-type]
    await h.delivered()
    assert h.named("snapshot.taken") == []        # held back until the response is written
    assert len(ctx.actions) == 1
    ctx.actions[0]()
    await h.delivered()
    assert h.named("snapshot.taken")[0]["filename"] == result["filename"]

    from camera_service.rpc.params import validate
    for bad in ("../x", "a b", ""):
        with pytest.raises(RpcError) as caught:
            validate({"device": VIRTUAL_ID, "filename": bad}, spec.params)
        assert (caught.value.data["param"], caught.value.data["rule"]) == ("filename", "filename")
