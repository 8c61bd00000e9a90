"""take_snapshot latency: SnapshotService.take called directly, on the real reactor.

Two sources, each timed over ``--calls`` sequential snapshots (one warm-up call first, not
counted):

- **tier e**: an idle virtual camera (lavfi ``testsrc2``), at ``--size`` (default the stream
  size, 640x480) and at 1280x720 (the shipped virtual camera's size);
- **tier a**: a live RTSP stream: Debian's ``rtsp-server-perl`` on loopback, fed by FFmpeg
  (``testsrc2`` 640x480 at 15 fps, libx264 ``-tune zerolatency -g 15``), read over UDP
  (that server answers 400 to RTSP over TCP). The MediaMTX control API is the OpenAPI-checked
  ``FakeMediaMTX`` behind a real ``MediaMTXService``, reporting the path live. Each call
  does a ``paths/get`` unless the last one is under 1 s old (§4.1), then one FFmpeg read.

Each call is timed from just before ``take()`` to its result (the file renamed and sized).
This excludes the WebSocket round trip; the lead re-measures end to end.

Usage::

    .venv/bin/python bench/snapshot_latency.py [--calls 30] [--output FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from twisted.internet import defer, task
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread

from camera_service.config import load_config
from camera_service.discovery.registry import (
    CONNECTED,
    Camera,
    CameraRegistry,
    VirtualProbe,
)
from camera_service.events import EventBus
from camera_service.health.model import HealthRegistry, Readiness
from camera_service.leases import DeviceLeases
from camera_service.mediamtx.client import MediaMTXClient
from camera_service.mediamtx.service import MediaMTXService
from camera_service.procs import ProcessRunner
from camera_service.snapshots import SnapshotService
from camera_service.storage.files import SNAPSHOTS, FileStore
from camera_service.testing.fake_mediamtx import FakeMediaMTX, FakeMediaMTXServer

FFMPEG = shutil.which("ffmpeg") or "/usr/bin/ffmpeg"
RTSP_SERVER = shutil.which("rtsp-server-perl") or "/usr/bin/rtsp-server-perl"
OPENAPI = REPO.parent / "shared" / "reference" / "mediamtx" / "openapi.yaml"
CAMERA = "camera100"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def free_udp_range(count: int = 20) -> int:
    """A base port with ``count`` free UDP ports above it, for rtsp-server-perl's RTP
    listeners (its default, 20000, collides with any other instance on the machine)."""
    for _ in range(200):
        base = random.randrange(30000, 60000, 2)
        sockets: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError("no free UDP port range")


def wait_port(port: int, seconds: float = 10.0) -> None:
    """Wait until something listens on ``port`` WITHOUT connecting to it: every connection
    rtsp-server-perl closes runs its housekeeping, which (while nothing is mounted) resets
    the RTP start port to 20000 and so undoes --rtp_start_port. Binding the port instead
    fails once the server holds it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                return
        time.sleep(0.05)
    raise RuntimeError(f"rtsp-server-perl did not listen on {port}")


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summary(ms: list[float]) -> dict[str, Any]:
    return {"n": len(ms), "p50_ms": round(percentile(ms, 0.50), 1),
            "p95_ms": round(percentile(ms, 0.95), 1), "min_ms": round(min(ms), 1),
            "max_ms": round(max(ms), 1), "mean_ms": round(sum(ms) / len(ms), 1)}


class Monitor:
    def __init__(self, camera: Camera) -> None:
        self.registry = CameraRegistry()
        self.registry.add(camera)
        self.on_camera_connected: list[Any] = []
        self.on_camera_disconnected: list[Any] = []
        self.path_metrics: Any = lambda camera_id: None

    def component_state(self) -> str:
        return "RUNNING"


def config_for(work: Path, size: str, rtsp_port: int, api_port: int) -> Any:
    return load_config(None, {
        "CAMERA_SERVICE_SERVER_STATE_DIR": str(work / "state"),
        "CAMERA_SERVICE_MEDIAMTX_RECORDINGS_PATH": str(work / "recordings"),
        "CAMERA_SERVICE_MEDIAMTX_SNAPSHOTS_PATH": str(work / "snapshots"),
        "CAMERA_SERVICE_SECURITY_JWT_SECRET_KEY": "x" * 40,
        "CAMERA_SERVICE_MEDIAMTX_HOST": "127.0.0.1",
        "CAMERA_SERVICE_MEDIAMTX_API_PORT": str(api_port),
        "CAMERA_SERVICE_MEDIAMTX_RTSP_PORT": str(rtsp_port),
        "CAMERA_SERVICE_MEDIAMTX_RTSP_TRANSPORT": "udp",
        "CAMERA_SERVICE_VIRTUAL_CAMERAS": json.dumps(
            [{"id": CAMERA, "pattern": "testsrc2", "size": size, "rate": 15}]),
    })


def virtual_camera(config: Any) -> Camera:
    vc = config.virtual_cameras[0]
    probe = VirtualProbe(card=vc.name, width=vc.width, height=vc.height, rate=int(vc.rate))
    return Camera(id=vc.id, status=CONNECTED, name=vc.name, identity=None, node=None, last_node=None,
                  probe=probe, mode=probe.modes[0], error=None, last_seen=0.0, virtual=vc)


def snapshot_service(reactor: Any, config: Any, monitor: Monitor, mediamtx: Any) -> SnapshotService:
    return SnapshotService(
        config=config, clock=reactor, monitor=monitor, mediamtx=mediamtx,
        runner=ProcessRunner(reactor), ffmpeg_path=FFMPEG,
        store=FileStore(SNAPSHOTS, config.mediamtx.snapshots_path, deferToThread, reactor, 2.0),
        leases=DeviceLeases(reactor), run_in_thread=deferToThread, bus=EventBus(reactor))


async def measure(service: SnapshotService, calls: int, expect_tier: str) -> dict[str, Any]:
    await service.take(CAMERA)   # warm-up: directory creation, first scan, first paths/get
    times: list[float] = []
    for _ in range(calls):
        started = time.perf_counter()
        result = await service.take(CAMERA)
        times.append((time.perf_counter() - started) * 1000)
        tier = service.last_tier[CAMERA]
        if tier != expect_tier:
            raise RuntimeError(f"expected tier {expect_tier}, got {tier} ({result['filename']})")
    return summary(times)


def spawn(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as output:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=output,
                                stderr=subprocess.STDOUT)


class RtspSource:
    """rtsp-server-perl plus one FFmpeg publisher (child processes, stopped in stop())."""

    def __init__(self, work: Path) -> None:
        self.client_port, self.source_port = free_port(), free_port()
        rtp = free_udp_range()
        self.children = [spawn(
            [RTSP_SERVER, "-c", str(self.client_port), "-s", str(self.source_port),
             "--client_listen_address", "127.0.0.1", "--source_listen_address", "127.0.0.1",
             "--rtp_start_port", str(rtp)], work / "rtsp-server.log")]
        try:
            wait_port(self.source_port)
            wait_port(self.client_port)
        except BaseException:
            self.stop()
            raise
        self.children.append(spawn(
            [FFMPEG, "-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-f", "lavfi",
             "-i", "testsrc2=size=640x480:rate=15", "-c:v", "libx264", "-pix_fmt", "yuv420p",
             "-tune", "zerolatency", "-g", "15", "-f", "rtsp",
             f"rtsp://127.0.0.1:{self.source_port}/{CAMERA}"], work / "publisher.log"))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                readable = subprocess.run(
                    [FFMPEG, "-v", "error", "-rtsp_transport", "udp", "-i",
                     f"rtsp://127.0.0.1:{self.client_port}/{CAMERA}", "-frames:v", "1",
                     "-f", "null", "-"], check=False, capture_output=True, timeout=20).returncode == 0
            except BaseException:
                self.stop()
                raise
            if readable:
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the RTSP stream never became readable (logs in {work})")

    def stop(self) -> None:
        for child in reversed(self.children):
            if child.poll() is None:
                child.terminate()
                try:
                    child.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()


async def run(reactor: Any, args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="snapbench-"))
    results: dict[str, Any] = {
        "bench": "snapshot_latency", "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "ffmpeg": args.ffmpeg_version},
        "calls": args.calls, "quality": 85,
    }
    try:
        for size in (args.size, "1280x720"):
            config = config_for(work / f"e-{size}", size, 8554, 9997)
            service = snapshot_service(reactor, config, Monitor(virtual_camera(config)), None)
            results[f"tier_e_{size}"] = await measure(service, args.calls, "e")
            print(f"tier e {size}: {results[f'tier_e_{size}']}", flush=True)

        source = RtspSource(work)
        try:
            fake = FakeMediaMTX(OPENAPI, global_conf={"rtspAddress": f":{source.client_port}"})
            server = FakeMediaMTXServer(fake)
            server.start(reactor, port=0)
            assert server.port_number is not None
            config = config_for(work / "a", "640x480", source.client_port, server.port_number)
            monitor = Monitor(virtual_camera(config))
            readiness = Readiness()
            mediamtx = MediaMTXService(
                reactor=reactor, config=config,
                client=MediaMTXClient(reactor, base_url=server.url, auth=None, timeout=1.0),
                monitor=monitor, bus=EventBus(reactor), health=HealthRegistry(reactor),
                readiness=readiness, ffmpeg_path=FFMPEG)
            readiness.mark_started()
            mediamtx.startService()
            while not (mediamtx.state == "up" and mediamtx.first_provisioning_done):
                await deferLater(reactor, 0.05, lambda: None)
            fake.set_live(CAMERA, readers=0)
            service = snapshot_service(reactor, config, monitor, mediamtx)
            results["tier_a_640x480_udp"] = await measure(service, args.calls, "a")
            print(f"tier a 640x480 (RTSP/UDP, GOP 1 s): {results['tier_a_640x480_udp']}", flush=True)
            await defer.maybeDeferred(mediamtx.stopService)
            await server.stop()
        finally:
            source.stop()
    except BaseException:
        print(f"failed; files kept in {work}", flush=True)
        raise
    shutil.rmtree(work, ignore_errors=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--size", default="640x480", help="virtual camera size for the first tier-e run")
    parser.add_argument("--output", help="write the JSON results here (default bench/results/…)")
    args = parser.parse_args()
    args.ffmpeg_version = subprocess.run([FFMPEG, "-version"], check=True, capture_output=True,
                                         text=True).stdout.split("\n")[0]

    async def entry(reactor: Any) -> None:
        results = await run(reactor, args)
        output = Path(args.output) if args.output else (
            REPO / "bench" / "results" / f"snapshot-latency-{time.strftime('%Y%m%dT%H%M%S')}.json")
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(results, indent=2) + "\n")
        print(f"results: {output}")

    task.react(lambda reactor: defer.ensureDeferred(entry(reactor)))


if __name__ == "__main__":
    main()
