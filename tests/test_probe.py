"""Capability probers (media.md §1.4, §1.5).

- V4l2CtlProber runs a fake ``v4l2-ctl`` (a script in tmp_path) through the real
  ProcessRunner on the real reactor: it prints a real captured output, hangs, or prints a
  real captured error and exits 1.
- IoctlProber cannot be exercised against a real camera here (there is none). Its struct
  packing is checked byte by byte against hand-built buffers laid out from
  linux/videodev2.h, and its enumeration runs against a fake driver modelled on the real
  fixtures; the result must equal what the v4l2-ctl parser makes of the same camera's
  output. The real os.open + fcntl.ioctl path runs only against /dev/null and a missing
  node.
"""

from __future__ import annotations

import errno
import os
import struct
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import defer, reactor, threads
from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall

from camera_service.discovery.probe import (
    FMTDESC_STRUCT,
    FRMIVAL_STRUCT,
    FRMSIZE_STRUCT,
    PERMISSION_REASON,
    QUERYCAP_STRUCT,
    VIDIOC_ENUM_FMT,
    VIDIOC_ENUM_FRAMEINTERVALS,
    VIDIOC_ENUM_FRAMESIZES,
    VIDIOC_QUERYCAP,
    AutoProber,
    IoctlProber,
    ProbeError,
    V4l2CtlProber,
    fourcc_to_str,
    fps_of,
    pack_enum_fmt,
    pack_frmival,
    pack_frmsize,
    probe_fd,
    probe_node,
    str_to_fourcc,
    unpack_enum_fmt,
    unpack_frmival,
    unpack_frmsize,
    unpack_querycap,
    version_string,
)
from camera_service.discovery.v4l2 import Mode, ProbeResult, parse_v4l2_ctl
from camera_service.procs import ProcessRunner

# The global reactor, typed loosely: its interface stubs trip mypy on .seconds().
clock: Any = reactor
FIXTURES = Path(__file__).parent / "fixtures" / "v4l2"

BAD_NODES = ["/dev/video", "/dev/video1234", "/dev/video0; rm -rf /", "/dev/videoX", "video0",
             "/dev/../dev/video0", "/dev/video0\n", "/dev/v4l/by-id/usb-cam-video-index0",
             "--device=/dev/video0", " /dev/video0", ""]


def fake_v4l2_ctl(tmp_path: Path, body: str) -> str:
    """An executable standing in for v4l2-ctl; it logs its argv to ``argv.log``."""
    path = tmp_path / "v4l2-ctl"
    path.write_text(
        f"#!{sys.executable}\n"
        "import sys, time\n"
        f"open({str(tmp_path / 'argv.log')!r}, 'a').write(repr(sys.argv[1:]) + '\\n')\n"
        + body)
    path.chmod(0o755)
    return str(path)


def printing(fixture: str, stream: str = "stdout", status: int = 0) -> str:
    return (f"sys.{stream}.write(open({str(FIXTURES / fixture)!r}).read())\n"
            f"sys.exit({status})\n")


def stderr_line(text: str, status: int = 1) -> str:
    return f"sys.stderr.write({text!r})\nsys.exit({status})\n"


# -- V4l2CtlProber ------------------------------------------------------------------


async def test_v4l2_ctl_probe_parses_real_output(tmp_path: Path) -> None:
    tool = fake_v4l2_ctl(tmp_path, printing("elp-4k-usb-camera.txt"))
    runner = ProcessRunner(reactor)
    result = await V4l2CtlProber(runner, tool).probe("/dev/video8", timeout=5)
    assert result == parse_v4l2_ctl((FIXTURES / "elp-4k-usb-camera.txt").read_text())
    assert result.card == "HD USB CAMERA: HD USB CAMERA" and result.is_capture_node()
    assert (tmp_path / "argv.log").read_text() == \
        "['--device=/dev/video8', '--info', '--list-formats-ext']\n"
    assert runner.running() == 0


async def test_v4l2_ctl_probe_of_a_metadata_node(tmp_path: Path) -> None:
    tool = fake_v4l2_ctl(tmp_path, printing("emeet-s800-metadata-node.all.txt"))
    result = await V4l2CtlProber(ProcessRunner(reactor), tool).probe("/dev/video5", timeout=5)
    assert not result.is_capture_node() and result.modes == ()


async def test_v4l2_ctl_timeout_and_the_reactor_keeps_answering(tmp_path: Path) -> None:
    tool = fake_v4l2_ctl(tmp_path, "time.sleep(60)\n")
    runner = ProcessRunner(reactor)
    ticks: list[float] = []
    loop = LoopingCall(lambda: ticks.append(clock.seconds()))
    loop.clock = reactor
    loop.start(0.05)
    started = clock.seconds()
    try:
        with pytest.raises(ProbeError) as info:
            await V4l2CtlProber(runner, tool).probe("/dev/video0", timeout=1)
    finally:
        loop.stop()
    assert info.value.reason == "probe timed out after 1 s"
    assert info.value.retryable is False
    elapsed = clock.seconds() - started
    assert 0.9 < elapsed < 2.5  # the fake obeys SIGTERM
    # ~20 ticks in a second: the probe never blocked the reactor.
    assert len(ticks) >= 12, ticks
    assert max(b - a for a, b in zip(ticks, ticks[1:])) < 0.5
    assert runner.running() == 0


async def test_real_permission_error_is_retryable(tmp_path: Path) -> None:
    # Real stderr of v4l2-ctl on a UVC camera while the user was not in group "video".
    tool = fake_v4l2_ctl(tmp_path, printing("cubeternet-1e4e-7016-permission-denied.stderr.txt",
                                            stream="stderr", status=1))
    with pytest.raises(ProbeError) as info:
        await V4l2CtlProber(ProcessRunner(reactor), tool).probe("/dev/video0", timeout=5)
    assert info.value.reason == PERMISSION_REASON
    assert info.value.retryable is True and info.value.errno == errno.EACCES


async def test_real_vanished_node_error_is_retryable(tmp_path: Path) -> None:
    # Real stderr of v4l2-ctl 1.22.1 on this machine for a node that does not exist.
    tool = fake_v4l2_ctl(tmp_path, printing("local-v4l2-ctl-1.22.1-no-device.stderr.txt",
                                            stream="stderr", status=1))
    with pytest.raises(ProbeError) as info:
        await V4l2CtlProber(ProcessRunner(reactor), tool).probe("/dev/video0", timeout=5)
    assert info.value.reason == "device node disappeared"
    assert info.value.retryable is True and info.value.errno == errno.ENOENT


@pytest.mark.parametrize("number, reason, retryable", [
    (errno.EBUSY, "device busy", True),
    (errno.ENXIO, "device not ready (no such device or address)", True),
    (errno.ENOENT, "device node disappeared", True),
    (errno.ENODEV, "device is gone (no such device)", False),
    (errno.EIO, "device did not answer (I/O error)", False),
])
async def test_open_failures_map_to_reasons(tmp_path: Path, number: int, reason: str,
                                            retryable: bool) -> None:
    # v4l2-ctl's own format: fprintf(stderr, "Failed to open %s: %s\n", device, strerror(errno)).
    tool = fake_v4l2_ctl(tmp_path, stderr_line(f"Failed to open /dev/video2: {os.strerror(number)}\n"))
    with pytest.raises(ProbeError) as info:
        await V4l2CtlProber(ProcessRunner(reactor), tool).probe("/dev/video2", timeout=5)
    assert (info.value.reason, info.value.retryable, info.value.errno) == (reason, retryable, number)


async def test_unknown_failure_reason_has_no_device_path(tmp_path: Path) -> None:
    tool = fake_v4l2_ctl(tmp_path, stderr_line("something odd about /dev/video7\n", status=3))
    with pytest.raises(ProbeError) as info:
        await V4l2CtlProber(ProcessRunner(reactor), tool).probe("/dev/video7", timeout=5)
    assert info.value.reason == "v4l2-ctl exited with status 3: something odd about the device"
    assert "/dev/" not in info.value.reason and not info.value.retryable


async def test_unreadable_output_is_an_error(tmp_path: Path) -> None:
    tool = fake_v4l2_ctl(tmp_path, "print('hello')\n")
    with pytest.raises(ProbeError, match="unreadable v4l2-ctl output"):
        await V4l2CtlProber(ProcessRunner(reactor), tool).probe("/dev/video0", timeout=5)


async def test_missing_tool() -> None:
    with pytest.raises(ProbeError, match="v4l2-ctl is not installed"):
        await V4l2CtlProber(ProcessRunner(reactor), None).probe("/dev/video0", timeout=5)


@pytest.mark.parametrize("node", BAD_NODES)
async def test_invalid_nodes_are_refused_before_anything_runs(tmp_path: Path, node: str) -> None:
    tool = fake_v4l2_ctl(tmp_path, printing("elp-4k-usb-camera.txt"))
    runner = ProcessRunner(reactor)
    opened: list[str] = []

    def opener(path: str, flags: int) -> int:
        opened.append(path)
        return -1

    ioctl_prober = IoctlProber(_never_called, opener=opener)
    for prober in (V4l2CtlProber(runner, tool), ioctl_prober, AutoProber(ioctl_prober, V4l2CtlProber(runner, tool))):
        with pytest.raises(ValueError):
            await prober.probe(node, timeout=5)
    assert not (tmp_path / "argv.log").exists()
    assert opened == [] and runner.running() == 0


def _never_called(*args: Any) -> Deferred[Any]:
    raise AssertionError("nothing may run for an invalid node")


# -- ioctl struct layouts, checked against hand-built buffers -----------------------


def _ioc(direction: int, number: int, size: int) -> int:
    # linux/ioctl.h: dir << 30 | size << 16 | type << 8 | nr, with type 'V'.
    return direction << 30 | size << 16 | ord("V") << 8 | number


def test_ioctl_numbers_match_struct_sizes() -> None:
    read, read_write = 2, 3
    assert VIDIOC_QUERYCAP == _ioc(read, 0, QUERYCAP_STRUCT.size) == 0x80685600
    assert VIDIOC_ENUM_FMT == _ioc(read_write, 2, FMTDESC_STRUCT.size) == 0xC0405602
    assert VIDIOC_ENUM_FRAMESIZES == _ioc(read_write, 74, FRMSIZE_STRUCT.size) == 0xC02C564A
    assert VIDIOC_ENUM_FRAMEINTERVALS == _ioc(read_write, 75, FRMIVAL_STRUCT.size) == 0xC034564B


def u32(value: int) -> bytes:
    return value.to_bytes(4, sys.byteorder)


def test_unpack_querycap_from_hand_built_buffer() -> None:
    # struct v4l2_capability: driver[16] @0, card[32] @16, bus_info[32] @48, version @80,
    # capabilities @84, device_caps @88, reserved[3] @92; 104 bytes.
    buffer = bytearray(104)
    buffer[0:8] = b"uvcvideo"
    card = b"EMEET SmartCam S800: EMEET Smar"  # 31 bytes + NUL: the driver cut it, as v4l2-ctl shows
    buffer[16:16 + len(card)] = card
    buffer[48:66] = b"usb-0000:00:14.0-5"
    buffer[80:84] = u32(6 << 16 | 8 << 8 | 12)
    buffer[84:88] = u32(0x84A00001)
    buffer[88:92] = u32(0x04A00000)
    cap = unpack_querycap(buffer)
    assert (cap.driver, cap.card, cap.bus_info, cap.version) == (
        "uvcvideo", "EMEET SmartCam S800: EMEET Smar", "usb-0000:00:14.0-5", "6.8.12")
    assert (cap.capabilities, cap.device_caps) == (0x84A00001, 0x04A00000)


def test_enum_fmt_pack_and_unpack() -> None:
    # struct v4l2_fmtdesc: index @0, type @4, flags @8, description[32] @12,
    # pixelformat @44, mbus_code @48, reserved[3] @52; 64 bytes.
    packed = pack_enum_fmt(3, 9)
    assert len(packed) == 64 and packed[0:4] == u32(3) and packed[4:8] == u32(9)
    assert packed[8:] == bytes(56)
    buffer = bytearray(packed)
    buffer[8:12] = u32(1)  # V4L2_FMT_FLAG_COMPRESSED
    buffer[12:12 + 22] = b"Motion-JPEG, compressed"[:22]
    buffer[44:48] = b"MJPG"
    fmt = unpack_enum_fmt(buffer)
    assert (fmt.index, fmt.type, fmt.flags, fmt.fourcc) == (3, 9, 1, "MJPG")
    assert fmt.description == "Motion-JPEG, compresse"


def test_frmsize_pack_and_unpack() -> None:
    # struct v4l2_frmsizeenum: index @0, pixel_format @4, type @8, union @12 (discrete
    # width, height | stepwise min_w, max_w, step_w, min_h, max_h, step_h), reserved[2] @36.
    packed = pack_frmsize(2, str_to_fourcc("YUYV"))
    assert len(packed) == 44 and packed[0:4] == u32(2) and packed[4:8] == b"YUYV"
    discrete = bytearray(packed)
    discrete[8:12] = u32(1)
    discrete[12:16], discrete[16:20] = u32(1920), u32(1080)
    size = unpack_frmsize(discrete)
    assert (size.type, size.width, size.height) == (1, 1920, 1080)
    stepwise = bytearray(packed)
    stepwise[8:12] = u32(3)
    for offset, value in zip(range(12, 36, 4), (32, 2592, 2, 32, 1944, 2)):
        stepwise[offset:offset + 4] = u32(value)
    size = unpack_frmsize(stepwise)
    assert (size.min_width, size.max_width, size.step_width) == (32, 2592, 2)
    assert (size.min_height, size.max_height, size.step_height) == (32, 1944, 2)


def test_frmival_pack_and_unpack() -> None:
    # struct v4l2_frmivalenum: index @0, pixel_format @4, width @8, height @12, type @16,
    # union @20 (discrete num, den | stepwise min, max, step fractions), reserved[2] @44.
    packed = pack_frmival(1, str_to_fourcc("H264"), 1280, 720)
    assert len(packed) == 52
    assert packed[0:16] == u32(1) + b"H264" + u32(1280) + u32(720)
    discrete = bytearray(packed)
    discrete[16:20] = u32(1)
    discrete[20:24], discrete[24:28] = u32(1), u32(30)
    interval = unpack_frmival(discrete)
    assert (interval.type, interval.discrete) == (1, (1, 30))
    stepwise = bytearray(packed)
    stepwise[16:20] = u32(3)
    for offset, value in zip(range(20, 44, 4), (1, 60, 1, 5, 1, 1000)):
        stepwise[offset:offset + 4] = u32(value)
    interval = unpack_frmival(stepwise)
    assert (interval.minimum, interval.maximum, interval.step) == ((1, 60), (1, 5), (1, 1000))


def test_small_conversions() -> None:
    assert str_to_fourcc("MJPG") == 0x47504A4D and fourcc_to_str(0x47504A4D) == "MJPG"
    assert fourcc_to_str(str_to_fourcc("Y16 ")) == "Y16"
    assert fourcc_to_str(str_to_fourcc("AR15") | 1 << 31) == "AR15-BE"
    assert version_string(0x00060149) == "6.1.73"
    assert fps_of(1, 30) == 30.0 and fps_of(333333, 10000000) == 30.0
    assert fps_of(1001, 30000) == 29.97 and fps_of(2, 15) == 7.5 and fps_of(0, 30) is None


# -- the ioctl enumeration against a fake driver ------------------------------------


class FakeDriver:
    """Answers the four ioctls the way a V4L2 driver does, from a simple model.

    ``formats`` is [(fourcc, [size, ...])] where a size is ((w, h), [(num, den), ...]) for
    a discrete size, or ("stepwise", (min_w, max_w, step_w, min_h, max_h, step_h)).
    """

    def __init__(self, *, driver: str, card: str, bus: str, version: int, caps: int,
                 device_caps: int, formats: list[tuple[str, list[Any]]], buf_type: int = 1,
                 delay: float = 0.0) -> None:
        self.cap = (driver, card, bus, version, caps, device_caps)
        self.formats = formats
        self.buf_type = buf_type
        self.delay = delay
        self.calls: list[int] = []

    def ioctl(self, fd: int, request: int, buffer: bytearray, mutate: bool) -> int:
        assert mutate is True
        self.calls.append(request)
        if self.delay:
            time.sleep(self.delay)
        if request == VIDIOC_QUERYCAP:
            driver, card, bus, version, caps, device_caps = self.cap
            buffer[:] = QUERYCAP_STRUCT.pack(driver.encode(), card.encode(), bus.encode(), version,
                                             caps, device_caps, 0, 0, 0)
            return 0
        if request == VIDIOC_ENUM_FMT:
            index, buf_type = struct.unpack_from("=II", buffer)
            if buf_type != self.buf_type or index >= len(self.formats):
                raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
            fourcc = self.formats[index][0]
            buffer[:] = FMTDESC_STRUCT.pack(index, buf_type, 0, fourcc.encode(), str_to_fourcc(fourcc),
                                            0, 0, 0, 0)
            return 0
        if request == VIDIOC_ENUM_FRAMESIZES:
            index, pixfmt = struct.unpack_from("=II", buffer)
            sizes = self._sizes(pixfmt)
            if index >= len(sizes):
                raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
            size = sizes[index]
            if size[0] == "stepwise":
                buffer[:] = FRMSIZE_STRUCT.pack(index, pixfmt, 3, *size[1], 0, 0)
            else:
                buffer[:] = FRMSIZE_STRUCT.pack(index, pixfmt, 1, *size[0], 0, 0, 0, 0, 0, 0)
            return 0
        if request == VIDIOC_ENUM_FRAMEINTERVALS:
            index, pixfmt, width, height = struct.unpack_from("=IIII", buffer)
            intervals = [fractions for dims, fractions in self._sizes(pixfmt)
                         if dims == (width, height)]
            if not intervals or index >= len(intervals[0]):
                raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
            numerator, denominator = intervals[0][index]
            buffer[:] = FRMIVAL_STRUCT.pack(index, pixfmt, width, height, 1, numerator, denominator,
                                            0, 0, 0, 0, 0, 0)
            return 0
        raise OSError(errno.ENOTTY, os.strerror(errno.ENOTTY))

    def _sizes(self, pixfmt: int) -> list[Any]:
        for fourcc, sizes in self.formats:
            if str_to_fourcc(fourcc) == pixfmt:
                return sizes
        return []


def model_of(result: ProbeResult) -> list[tuple[str, list[Any]]]:
    """The fake driver's format list for a camera, from its parsed v4l2-ctl output.

    Each printed rate r becomes the interval 1/r, or 1001/30000 style fractions where r is
    not an integer, so the driver returns fractions and the prober has to compute rates.
    """
    formats: dict[str, dict[tuple[int, int], list[tuple[int, int]]]] = {}
    for mode in result.modes:
        fraction = (1, int(mode.fps)) if mode.fps == int(mode.fps) else (1000, int(mode.fps * 1000))
        formats.setdefault(mode.fourcc, {}).setdefault((mode.width, mode.height), []).append(fraction)
    return [(fourcc, list(sizes.items())) for fourcc, sizes in formats.items()]


def elp_driver(**overrides: Any) -> FakeDriver:
    parsed = parse_v4l2_ctl((FIXTURES / "elp-4k-usb-camera.txt").read_text())
    options: dict[str, Any] = dict(driver="uvcvideo", card="HD USB CAMERA: HD USB CAMERA",
                                   bus="usb-xhci-hcd.0-1", version=6 << 16 | 1 << 8 | 73,
                                   caps=0x84A00001, device_caps=0x04200001, formats=model_of(parsed))
    options.update(overrides)
    return FakeDriver(**options)


def test_ioctl_route_gives_the_same_result_as_v4l2_ctl() -> None:
    for name in ("elp-4k-usb-camera.txt", "arducam-1080p-uvc-h264-node.txt"):
        parsed = parse_v4l2_ctl((FIXTURES / name).read_text())
        driver = FakeDriver(driver=parsed.driver, card=parsed.card, bus=parsed.bus_info,
                            version=6 << 16 | 1 << 8 | 73, caps=parsed.capabilities_bits,
                            device_caps=parsed.device_caps_bits or 0, formats=model_of(parsed))
        assert probe_fd(3, ioctl=driver.ioctl) == parsed, name


def test_ioctl_route_on_a_metadata_node_matches_v4l2_ctl() -> None:
    parsed = parse_v4l2_ctl((FIXTURES / "emeet-s800-metadata-node.all.txt").read_text())
    driver = FakeDriver(driver="uvcvideo", card="EMEET SmartCam S800: EMEET Smar",
                        bus="usb-0000:00:14.0-5", version=6 << 16 | 8 << 8 | 12, caps=0x84A00001,
                        device_caps=0x04A00000, formats=[])
    result = probe_fd(3, ioctl=driver.ioctl)
    assert result == parsed and not result.is_capture_node()
    assert driver.calls == [VIDIOC_QUERYCAP, VIDIOC_ENUM_FMT]  # ENUM_FMT(type 1) -> EINVAL


def test_ioctl_route_uses_multiplanar_type_and_skips_stepwise_intervals() -> None:
    driver = FakeDriver(driver="unicam", card="unicam", bus="platform:fe801000.csi",
                        version=6 << 16 | 1 << 8 | 21, caps=0x84201000, device_caps=0x04201000,
                        buf_type=9, formats=[
                            ("YUYV", [("stepwise", (16, 16376, 1, 16, 16376, 1))]),
                            ("NV12", [((1280, 720), [(1, 30), (1, 15)])])])
    result = probe_fd(3, ioctl=driver.ioctl)
    # Like v4l2-ctl: no intervals are asked for a stepwise size, so it gives no mode.
    assert result.modes == (Mode("NV12", 1280, 720, 30.0), Mode("NV12", 1280, 720, 15.0))
    assert result.is_capture_node()
    assert driver.calls.count(VIDIOC_ENUM_FRAMEINTERVALS) == 3  # NV12 1280x720 only


def test_ioctl_route_reports_a_non_v4l2_node() -> None:
    def not_v4l2(fd: int, request: int, buffer: bytearray, mutate: bool) -> int:
        raise OSError(errno.ENOTTY, os.strerror(errno.ENOTTY))

    with pytest.raises(ProbeError) as info:
        probe_fd(3, ioctl=not_v4l2)
    assert info.value.reason == "not a V4L2 device" and not info.value.retryable


def test_real_open_and_ioctl_on_dev_null_and_a_missing_node() -> None:
    # The real os.open + fcntl.ioctl route, on the only nodes this machine has.
    with pytest.raises(ProbeError) as info:
        probe_node("/dev/null", time.monotonic() + 5)
    assert (info.value.reason, info.value.errno) == ("not a V4L2 device", errno.ENOTTY)
    with pytest.raises(ProbeError) as info:
        probe_node("/dev/video250", time.monotonic() + 5)
    assert (info.value.reason, info.value.retryable, info.value.errno) == (
        "device node disappeared", True, errno.ENOENT)


def run_in_reactor_pool() -> Callable[..., Deferred[Any]]:
    return partial(threads.deferToThreadPool, reactor, reactor.getThreadPool())


def dev_null_opener(path: str, flags: int) -> int:
    return os.open(os.devnull, os.O_RDONLY)


async def test_ioctl_prober_runs_in_a_thread_while_the_reactor_ticks() -> None:
    driver = elp_driver(delay=0.002)  # ~180 ioctls: about half a second of "USB" work
    prober = IoctlProber(run_in_reactor_pool(), clock=reactor, ioctl=driver.ioctl,
                         opener=dev_null_opener)
    ticks: list[float] = []
    loop = LoopingCall(lambda: ticks.append(clock.seconds()))
    loop.clock = reactor
    loop.start(0.02)
    try:
        result = await prober.probe("/dev/video8", timeout=10)
    finally:
        loop.stop()
    assert result == parse_v4l2_ctl((FIXTURES / "elp-4k-usb-camera.txt").read_text())
    assert len(ticks) >= 5


async def test_ioctl_prober_open_errors() -> None:
    def refusing(number: int) -> Callable[[str, int], int]:
        def opener(path: str, flags: int) -> int:
            assert flags & os.O_RDWR and flags & os.O_NONBLOCK
            raise OSError(number, os.strerror(number), path)
        return opener

    for number, reason, retryable in [(errno.EACCES, PERMISSION_REASON, True),
                                      (errno.EBUSY, "device busy", True),
                                      (errno.ENODEV, "device is gone (no such device)", False)]:
        prober = IoctlProber(run_in_reactor_pool(), opener=refusing(number))
        with pytest.raises(ProbeError) as info:
            await prober.probe("/dev/video3", timeout=5)
        assert (info.value.reason, info.value.retryable, info.value.errno) == (reason, retryable, number)
        assert "/dev/" not in info.value.reason


async def test_ioctl_prober_timeout_inside_the_thread() -> None:
    driver = elp_driver(delay=0.05)
    prober = IoctlProber(run_in_reactor_pool(), ioctl=driver.ioctl, opener=dev_null_opener)
    with pytest.raises(ProbeError, match=r"^probe timed out after 0\.3 s$"):
        await prober.probe("/dev/video8", timeout=0.3)


async def test_ioctl_prober_timeout_on_the_clock_discards_a_hung_thread() -> None:
    never: Deferred[Any] = Deferred()
    prober = IoctlProber(lambda *args: never, clock=reactor)
    with pytest.raises(ProbeError, match=r"^probe timed out after 0\.2 s$"):
        await prober.probe("/dev/video8", timeout=0.2)


async def test_ioctl_prober_real_missing_node() -> None:
    prober = IoctlProber(run_in_reactor_pool(), clock=reactor)
    with pytest.raises(ProbeError) as info:
        await prober.probe("/dev/video251", timeout=5)
    assert info.value.errno == errno.ENOENT and info.value.retryable


# -- AutoProber ---------------------------------------------------------------------


class StubProber:
    def __init__(self, outcome: ProbeResult | Exception) -> None:
        self.outcome = outcome
        self.calls: list[str] = []

    async def probe(self, node: str, timeout: float) -> ProbeResult:
        self.calls.append(node)
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


RESULT = ProbeResult("uvcvideo", "cam", "usb-1", "6.1.0", (), (), 0x04200001, None,
                     (Mode("MJPG", 1280, 720, 30.0),))
OTHER = ProbeResult("uvcvideo", "from v4l2-ctl", "usb-1", "6.1.0", (), (), 0x04200001, None, ())


async def test_auto_uses_ioctl_when_it_works() -> None:
    ioctl, ctl = StubProber(RESULT), StubProber(OTHER)
    assert await AutoProber(ioctl, ctl).probe("/dev/video0", 5) is RESULT
    assert ctl.calls == []


@pytest.mark.parametrize("number", [errno.ENOENT, errno.EACCES])
async def test_auto_does_not_fall_back_when_the_node_is_gone_or_forbidden(number: int) -> None:
    ioctl = StubProber(ProbeError("x", retryable=True, errno=number))
    ctl = StubProber(OTHER)
    with pytest.raises(ProbeError):
        await AutoProber(ioctl, ctl).probe("/dev/video0", 5)
    assert ctl.calls == []


@pytest.mark.parametrize("failure", [
    ProbeError("device busy", retryable=True, errno=errno.EBUSY),
    ProbeError("not a V4L2 device", errno=errno.ENOTTY),
    ProbeError("probe timed out after 5 s"),
    RuntimeError("a bug in the ioctl route"),
])
async def test_auto_falls_back_to_v4l2_ctl_on_anything_else(failure: Exception) -> None:
    ioctl, ctl = StubProber(failure), StubProber(OTHER)
    assert await AutoProber(ioctl, ctl).probe("/dev/video4", 5) is OTHER
    assert ctl.calls == ["/dev/video4"]


async def test_auto_does_not_swallow_cancellation() -> None:
    class Hanging:
        async def probe(self, node: str, timeout: float) -> ProbeResult:
            await Deferred()
            raise AssertionError("unreachable")

    ctl = StubProber(OTHER)
    running = defer.ensureDeferred(AutoProber(Hanging(), ctl).probe("/dev/video0", 5))
    running.cancel()
    with pytest.raises(defer.CancelledError):
        await running
    assert ctl.calls == []
