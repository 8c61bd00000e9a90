"""Real media parts for tests: an RTSP server with an FFmpeg publisher, and a recorder that
plays MediaMTX's part for the in-process stand-in.

``RtspServer`` runs Debian's rtsp-server-perl on loopback and publishes a lavfi test
pattern to it with FFmpeg, so readers get a real H.264 stream (over UDP: that server
answers 400 to RTSP over TCP, see spec/testing.md).

``StandInRecorder`` watches a :class:`FakeMediaMTX`'s configuration: while a path has
``record: true`` it runs an FFmpeg that reads the path's stream from the RTSP server and
writes fragmented-MP4 segments at the path's ``recordPath``, as MediaMTX would; when the
flag goes off (or the stand-in "restarts") it stops that FFmpeg with SIGINT.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

RTSP_SERVER = shutil.which("rtsp-server-perl")
FFMPEG = shutil.which("ffmpeg") or "/usr/bin/ffmpeg"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def free_udp_range(count: int = 20) -> int:
    """A base port with ``count`` free UDP ports above it. rtsp-server-perl binds its RTP
    listeners from a fixed 20000 unless told otherwise, which collides with any other
    instance on the machine."""
    for _ in range(200):
        base = random.randrange(30000, 60000, 2)
        sockets = []
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
    raise AssertionError("no free UDP port range")


def _stop(process: subprocess.Popen[bytes], sig: int = signal.SIGINT, grace: float = 3.0) -> None:
    if process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


class RtspServer:
    """rtsp-server-perl plus FFmpeg publishers, all children killed at teardown."""

    def __init__(self, work: Path) -> None:
        self.client_port = free_port()
        self.source_port = free_port()
        self.children: list[subprocess.Popen[bytes]] = []
        self.server = self._spawn([RTSP_SERVER, "-c", str(self.client_port), "-s", str(self.source_port),
                                   "--client_listen_address", "127.0.0.1",
                                   "--source_listen_address", "127.0.0.1",
                                   "--rtp_start_port", str(free_udp_range())], work / "rtsp-server.log")
        try:
            self._wait_port(self.source_port)
            self._wait_port(self.client_port)
        except BaseException:
            self.stop()
            raise

    def _spawn(self, argv: list[str], log: Path) -> subprocess.Popen[bytes]:
        with open(log, "ab") as output:  # the child keeps its own copy of the descriptor
            child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=output,
                                     stderr=subprocess.STDOUT)
        self.children.append(child)
        return child

    def _wait_port(self, port: int, deadline: float = 10.0) -> None:
        """Wait until the server listens on ``port`` WITHOUT connecting: every connection it
        closes runs its housekeeping, which (while nothing is mounted) resets the RTP start
        port to 20000 and so undoes --rtp_start_port. Binding the port fails once it is held."""
        until_time = time.monotonic() + deadline
        while time.monotonic() < until_time:
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    return
            time.sleep(0.05)
        raise AssertionError(f"rtsp-server-perl did not listen on {port}")

    def publish(self, name: str, work: Path, size: str = "640x480") -> None:
        self._spawn([FFMPEG, "-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-f", "lavfi",
                     "-i", f"testsrc2=size={size}:rate=15", "-c:v", "libx264", "-preset", "ultrafast",
                     "-pix_fmt", "yuv420p", "-tune", "zerolatency", "-g", "15", "-f", "rtsp",
                     f"rtsp://127.0.0.1:{self.source_port}/{name}"], work / f"publisher-{name}.log")
        # Readable once a reader gets a frame (UDP: the server answers 400 to TCP).
        until_time = time.monotonic() + 20
        while time.monotonic() < until_time:
            done = subprocess.run([FFMPEG, "-v", "error", "-rtsp_transport", "udp", "-i",
                                   f"rtsp://127.0.0.1:{self.client_port}/{name}", "-frames:v", "1",
                                   "-f", "null", "-"], check=False, capture_output=True, timeout=20)
            if done.returncode == 0:
                return
            time.sleep(0.2)
        raise AssertionError(f"stream {name} never became readable")

    def stop(self) -> None:
        for child in reversed(self.children):
            if child.poll() is None:
                child.terminate()
                try:
                    child.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait(timeout=5)

    def url(self, name: str) -> str:
        return f"rtsp://127.0.0.1:{self.client_port}/{name}"


class StandInRecorder:
    """MediaMTX's recorder for the stand-in (see the module docstring)."""

    def __init__(self, fake: Any, rtsp: RtspServer) -> None:
        self._fake = fake
        self._rtsp = rtsp
        self.recorders: dict[str, subprocess.Popen[bytes]] = {}
        self._stopping: list[subprocess.Popen[bytes]] = []
        self.started: list[str] = []
        fake.config_observers.append(self.sync)

    def sync(self) -> None:
        wanted = self._fake.recording_paths()
        for name in list(self.recorders):
            if name not in wanted:
                # Signal only: this runs inside the stand-in's request handling, on the
                # reactor the service under test shares; reaping waits for stop().
                process = self.recorders.pop(name)
                if process.poll() is None:
                    process.send_signal(signal.SIGINT)
                self._stopping.append(process)
        for name, record_path in wanted.items():
            if name in self.recorders and self.recorders[name].poll() is None:
                continue
            pattern = record_path.replace("%path", name) + ".mp4"
            os.makedirs(os.path.dirname(pattern), exist_ok=True)
            self.recorders[name] = subprocess.Popen(
                ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin",
                 "-rtsp_transport", "udp", "-i", self._rtsp.url(name), "-map", "0", "-c", "copy",
                 "-f", "segment", "-segment_time", "3600", "-reset_timestamps", "1",
                 "-strftime", "1", "-segment_format", "mp4", "-segment_format_options",
                 "movflags=+frag_keyframe+empty_moov+default_base_moof", pattern],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.started.append(name)

    def stop(self) -> None:
        self._fake.config_observers.remove(self.sync)
        for process in [*self.recorders.values(), *self._stopping]:
            _stop(process)
        self.recorders.clear()
        self._stopping.clear()
