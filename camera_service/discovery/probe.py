"""Capability probing of one V4L2 node, off the reactor (media.md §1.5).

Two probers give identical :class:`~camera_service.discovery.v4l2.ProbeResult` values:

- :class:`V4l2CtlProber` runs ``v4l2-ctl --device=<node> --info --list-formats-ext`` once
  through the :class:`~camera_service.procs.ProcessRunner` and parses its output;
- :class:`IoctlProber` opens the node in a worker thread and asks the driver directly
  (``VIDIOC_QUERYCAP``, ``VIDIOC_ENUM_FMT``, ``VIDIOC_ENUM_FRAMESIZES``,
  ``VIDIOC_ENUM_FRAMEINTERVALS``), enumerating exactly what v4l2-ctl enumerates.

:class:`AutoProber` (``camera.prober: auto``) tries the ioctl route first and falls back to
v4l2-ctl on anything but ENOENT/EACCES.

Every failure is a :class:`ProbeError` whose ``reason`` is short and client-safe (it goes
to health details and ``camera.capability_error``): it never contains a device path.
"""

from __future__ import annotations

import errno as errno_module
import fcntl
import os
import re
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from camera_service.discovery.v4l2 import (
    V4L2_CAP_DEVICE_CAPS,
    V4L2_CAP_VIDEO_CAPTURE_MPLANE,
    V4L2_CAP_VIDEO_M2M_MPLANE,
    V4L2_CAP_VIDEO_OUTPUT_MPLANE,
    Mode,
    ProbeResult,
    capability_names,
    parse_v4l2_ctl,
    rates_in_range,
    unique_modes,
)
from camera_service.procs import (
    OutputLimitExceeded,
    ProcessResult,
    ProcessRunner,
    UnsafeArgument,
)

log = Logger()

NODE_PATTERN = re.compile(r"^/dev/video[0-9]{1,3}$")

#: Failures worth retrying soon (media.md §1.4 "settling"): permissions not applied yet,
#: another opener, the node not there yet or the device not ready yet.
RETRYABLE_ERRNOS = frozenset({errno_module.EACCES, errno_module.EBUSY, errno_module.ENOENT,
                              errno_module.ENXIO})

PERMISSION_REASON = "permission denied (is the service user in group 'video'?)"
_ERRNO_REASONS = {
    errno_module.EACCES: PERMISSION_REASON,
    errno_module.EPERM: PERMISSION_REASON,
    errno_module.EBUSY: "device busy",
    errno_module.ENOENT: "device node disappeared",
    errno_module.ENXIO: "device not ready (no such device or address)",
    errno_module.ENODEV: "device is gone (no such device)",
    errno_module.EIO: "device did not answer (I/O error)",
    errno_module.ETIMEDOUT: "device did not answer (timed out)",
    errno_module.ENOTTY: "not a V4L2 device",
}


class ProbeError(Exception):
    """A probe failed. ``reason`` is client-safe; ``retryable`` drives the settle retries."""

    def __init__(self, reason: str, *, retryable: bool = False, errno: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.errno = errno


def probe_error_for_errno(number: int | None, fallback: str = "probe failed") -> ProbeError:
    reason = _ERRNO_REASONS.get(number or 0)
    if reason is None:
        reason = f"{fallback} ({os.strerror(number)})" if number else fallback
    return ProbeError(reason, retryable=number in RETRYABLE_ERRNOS, errno=number)


def timeout_error(timeout: float) -> ProbeError:
    return ProbeError(f"probe timed out after {timeout:g} s")


def check_node(node: str) -> None:
    """Only ``/dev/video<N>`` reaches a prober (media.md §0.4); anything else is a bug."""
    if not isinstance(node, str) or NODE_PATTERN.fullmatch(node) is None:
        raise ValueError("not a V4L2 video node path")


class Prober(Protocol):
    async def probe(self, node: str, timeout: float) -> ProbeResult: ...


# -- v4l2-ctl -----------------------------------------------------------------------

# v4l2-ctl's messages (LC_ALL=C, so never translated), most specific first. The open
# failure is "Failed to open <node>: <strerror>"; a node that cannot be stat()ed gives
# "Cannot open device <node>, exiting."
_STDERR_ERRNOS: tuple[tuple[str, int], ...] = (
    ("Permission denied", errno_module.EACCES),
    ("Operation not permitted", errno_module.EPERM),
    ("Device or resource busy", errno_module.EBUSY),
    ("No such device or address", errno_module.ENXIO),
    ("No such device", errno_module.ENODEV),
    ("No such file or directory", errno_module.ENOENT),
    ("Cannot open device", errno_module.ENOENT),
    ("Input/output error", errno_module.EIO),
    ("Connection timed out", errno_module.ETIMEDOUT),
    ("Inappropriate ioctl for device", errno_module.ENOTTY),
    ("not a v4l2 node", errno_module.ENOTTY),
    ("Unable to detect what device", errno_module.ENOTTY),
)


def v4l2_ctl_failure(result: ProcessResult, timeout: float) -> ProbeError:
    """Turn a failed v4l2-ctl run into a :class:`ProbeError`."""
    if result.timed_out:
        return timeout_error(timeout)
    stderr = result.stderr_tail.decode("utf-8", errors="replace")
    for text, number in _STDERR_ERRNOS:
        if text in stderr:
            return probe_error_for_errno(number)
    # Unknown failure: say how it ended, with device paths removed.
    return ProbeError(f"v4l2-ctl {result.detail(lambda _path: 'the device')}")


class V4l2CtlProber:
    """One run of ``v4l2-ctl --device=<node> --info --list-formats-ext`` per probe."""

    def __init__(self, runner: ProcessRunner, v4l2_ctl: str | None) -> None:
        self._runner = runner
        self._v4l2_ctl = v4l2_ctl

    async def probe(self, node: str, timeout: float) -> ProbeResult:
        check_node(node)
        if self._v4l2_ctl is None:
            raise ProbeError("v4l2-ctl is not installed")
        try:
            result = await self._runner.run(
                self._v4l2_ctl, [f"--device={node}", "--info", "--list-formats-ext"],
                timeout=timeout)
        except OutputLimitExceeded:
            raise ProbeError("v4l2-ctl output too large") from None
        except UnsafeArgument:
            # Only a strange tool path can get here (the node was checked above).
            raise ProbeError("v4l2-ctl could not be run safely") from None
        if result.timed_out or result.exit_code != 0:
            error = v4l2_ctl_failure(result, timeout)
            log.debug("v4l2-ctl probe of {node} failed: {detail}", node=node, detail=result.detail())
            raise error
        parsed = parse_v4l2_ctl(result.stdout.decode("utf-8", errors="replace"))
        if not parsed.driver and not parsed.capabilities_bits:
            raise ProbeError("unreadable v4l2-ctl output")
        return parsed


# -- ioctl --------------------------------------------------------------------------

# linux/videodev2.h: _IOR('V', 0, struct v4l2_capability) and friends.
VIDIOC_QUERYCAP = 0x80685600
VIDIOC_ENUM_FMT = 0xC0405602
VIDIOC_ENUM_FRAMESIZES = 0xC02C564A
VIDIOC_ENUM_FRAMEINTERVALS = 0xC034564B

V4L2_BUF_TYPE_VIDEO_CAPTURE = 1
V4L2_BUF_TYPE_VIDEO_CAPTURE_MPLANE = 9

V4L2_FRMSIZE_TYPE_DISCRETE = 1
V4L2_FRMSIZE_TYPE_CONTINUOUS = 2
V4L2_FRMSIZE_TYPE_STEPWISE = 3
V4L2_FRMIVAL_TYPE_DISCRETE = 1
V4L2_FRMIVAL_TYPE_CONTINUOUS = 2
V4L2_FRMIVAL_TYPE_STEPWISE = 3

# Struct layouts, native byte order, no padding (every field is a __u32 or a byte array):
#   v4l2_capability   driver[16] card[32] bus_info[32] version capabilities device_caps reserved[3]
#   v4l2_fmtdesc      index type flags description[32] pixelformat mbus_code reserved[3]
#   v4l2_frmsizeenum  index pixel_format type union{discrete w,h | stepwise 6 x u32} reserved[2]
#   v4l2_frmivalenum  index pixel_format width height type union{fract | 3 fracts} reserved[2]
QUERYCAP_STRUCT = struct.Struct("=16s32s32sIII3I")
FMTDESC_STRUCT = struct.Struct("=III32sII3I")
FRMSIZE_STRUCT = struct.Struct("=III6I2I")
FRMIVAL_STRUCT = struct.Struct("=IIIII6I2I")
assert QUERYCAP_STRUCT.size == 0x68 and FMTDESC_STRUCT.size == 0x40
assert FRMSIZE_STRUCT.size == 0x2C and FRMIVAL_STRUCT.size == 0x34


def _cstring(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", errors="replace").strip()


def fourcc_to_str(value: int) -> str:
    """As v4l2-ctl's fcc2s: four characters, ``-BE`` for big-endian variants, trailing spaces cut."""
    text = "".join(chr((value >> shift) & 0x7F) for shift in (0, 8, 16, 24))
    if value & (1 << 31):
        text += "-BE"
    return text.rstrip()


def str_to_fourcc(text: str) -> int:
    padded = (text + "    ")[:4].encode("ascii")
    return int.from_bytes(padded, "little")


def version_string(value: int) -> str:
    """KERNEL_VERSION(a, b, c) as v4l2-ctl prints it: ``"6.1.73"``."""
    return f"{(value >> 16) & 0xFF}.{(value >> 8) & 0xFF}.{value & 0xFF}"


def fps_of(numerator: int, denominator: int) -> float | None:
    """A frame interval as v4l2-ctl prints its rate (``"%.3f"``), read back as a float.

    Rounding to v4l2-ctl's three decimals is what makes both probers agree: 1/30 s is
    30.000 either way, but 333333/10000000 s is 30.00003 unrounded.
    """
    if numerator == 0 or denominator == 0:
        return None
    return float(f"{denominator / numerator:.3f}")


@dataclass(frozen=True)
class Capability:
    driver: str
    card: str
    bus_info: str
    version: str
    capabilities: int
    device_caps: int


@dataclass(frozen=True)
class FormatDesc:
    index: int
    type: int
    flags: int
    description: str
    pixelformat: int

    @property
    def fourcc(self) -> str:
        return fourcc_to_str(self.pixelformat)


@dataclass(frozen=True)
class FrameSize:
    type: int
    width: int = 0  # discrete
    height: int = 0
    min_width: int = 0  # stepwise / continuous
    max_width: int = 0
    step_width: int = 0
    min_height: int = 0
    max_height: int = 0
    step_height: int = 0


@dataclass(frozen=True)
class FrameInterval:
    type: int
    discrete: tuple[int, int] = (0, 0)  # numerator, denominator (seconds per frame)
    minimum: tuple[int, int] = (0, 0)
    maximum: tuple[int, int] = (0, 0)
    step: tuple[int, int] = (0, 0)


def pack_querycap() -> bytearray:
    return bytearray(QUERYCAP_STRUCT.size)


def unpack_querycap(buffer: bytes | bytearray) -> Capability:
    driver, card, bus, version, caps, device_caps, *_ = QUERYCAP_STRUCT.unpack(bytes(buffer))
    return Capability(_cstring(driver), _cstring(card), _cstring(bus), version_string(version),
                      caps, device_caps)


def pack_enum_fmt(index: int, buf_type: int) -> bytearray:
    return bytearray(FMTDESC_STRUCT.pack(index, buf_type, 0, b"", 0, 0, 0, 0, 0))


def unpack_enum_fmt(buffer: bytes | bytearray) -> FormatDesc:
    index, buf_type, flags, description, pixelformat, *_ = FMTDESC_STRUCT.unpack(bytes(buffer))
    return FormatDesc(index, buf_type, flags, _cstring(description), pixelformat)


def pack_frmsize(index: int, pixelformat: int) -> bytearray:
    return bytearray(FRMSIZE_STRUCT.pack(index, pixelformat, 0, *([0] * 6), 0, 0))


def unpack_frmsize(buffer: bytes | bytearray) -> FrameSize:
    _index, _pixfmt, size_type, *union = FRMSIZE_STRUCT.unpack(bytes(buffer))
    if size_type == V4L2_FRMSIZE_TYPE_DISCRETE:
        return FrameSize(size_type, width=union[0], height=union[1])
    min_w, max_w, step_w, min_h, max_h, step_h = union[:6]
    return FrameSize(size_type, min_width=min_w, max_width=max_w, step_width=step_w,
                     min_height=min_h, max_height=max_h, step_height=step_h)


def pack_frmival(index: int, pixelformat: int, width: int, height: int) -> bytearray:
    return bytearray(FRMIVAL_STRUCT.pack(index, pixelformat, width, height, 0, *([0] * 6), 0, 0))


def unpack_frmival(buffer: bytes | bytearray) -> FrameInterval:
    *_head, ival_type, n1, d1, n2, d2, n3, d3, _r1, _r2 = FRMIVAL_STRUCT.unpack(bytes(buffer))
    if ival_type == V4L2_FRMIVAL_TYPE_DISCRETE:
        return FrameInterval(ival_type, discrete=(n1, d1))
    return FrameInterval(ival_type, minimum=(n1, d1), maximum=(n2, d2), step=(n3, d3))


class _ProbeTimeout(Exception):
    pass


IoctlFunction = Callable[[int, int, bytearray, bool], Any]


def _call(ioctl: IoctlFunction, fd: int, request: int, buffer: bytearray, deadline: float) -> bool:
    """One ioctl; ``False`` when an enumeration ends (any error, as v4l2-ctl stops too)."""
    if time.monotonic() > deadline:
        raise _ProbeTimeout()
    try:
        ioctl(fd, request, buffer, True)
    except OSError as exc:
        if exc.errno != errno_module.EINVAL:
            log.debug("ioctl {request:#x} ended the enumeration: {error}", request=request,
                      error=os.strerror(exc.errno or 0))
        return False
    return True


def probe_fd(fd: int, *, ioctl: IoctlFunction = fcntl.ioctl, deadline: float = float("inf")
             ) -> ProbeResult:
    """Query an open node and build the same result v4l2-ctl's output would give.

    What is enumerated follows v4l2-ctl's ``--list-formats-ext`` exactly: every format of
    the node's capture buffer type, every frame size of each, and frame intervals only for
    discrete sizes (v4l2-ctl prints none for stepwise/continuous sizes, so those give no
    mode on either route).
    """
    buffer = pack_querycap()
    if time.monotonic() > deadline:
        raise _ProbeTimeout()
    try:
        ioctl(fd, VIDIOC_QUERYCAP, buffer, True)
    except OSError as exc:
        raise probe_error_for_errno(exc.errno, "QUERYCAP failed") from None
    cap = unpack_querycap(buffer)
    has_device_caps = bool(cap.capabilities & V4L2_CAP_DEVICE_CAPS)
    node_caps = cap.device_caps if has_device_caps else cap.capabilities
    multiplanar = node_caps & (V4L2_CAP_VIDEO_CAPTURE_MPLANE | V4L2_CAP_VIDEO_M2M_MPLANE
                               | V4L2_CAP_VIDEO_OUTPUT_MPLANE)
    buf_type = V4L2_BUF_TYPE_VIDEO_CAPTURE_MPLANE if multiplanar else V4L2_BUF_TYPE_VIDEO_CAPTURE

    modes: list[Mode] = []
    fmt_index = 0
    while True:
        fmt_buffer = pack_enum_fmt(fmt_index, buf_type)
        if not _call(ioctl, fd, VIDIOC_ENUM_FMT, fmt_buffer, deadline):
            break
        fmt = unpack_enum_fmt(fmt_buffer)
        fmt_index += 1
        size_index = 0
        while True:
            size_buffer = pack_frmsize(size_index, fmt.pixelformat)
            if not _call(ioctl, fd, VIDIOC_ENUM_FRAMESIZES, size_buffer, deadline):
                break
            size = unpack_frmsize(size_buffer)
            size_index += 1
            if size.type != V4L2_FRMSIZE_TYPE_DISCRETE:
                continue
            ival_index = 0
            while True:
                ival_buffer = pack_frmival(ival_index, fmt.pixelformat, size.width, size.height)
                if not _call(ioctl, fd, VIDIOC_ENUM_FRAMEINTERVALS, ival_buffer, deadline):
                    break
                interval = unpack_frmival(ival_buffer)
                ival_index += 1
                for rate in _interval_rates(interval):
                    modes.append(Mode(fmt.fourcc, size.width, size.height, rate))
            if size_index > 4096:  # a driver that never ends its list
                break
        if fmt_index > 256:
            break
    return ProbeResult(
        driver=cap.driver, card=cap.card, bus_info=cap.bus_info, version=cap.version,
        capabilities=capability_names(cap.capabilities),
        device_caps=capability_names(cap.device_caps) if has_device_caps else (),
        capabilities_bits=cap.capabilities,
        device_caps_bits=cap.device_caps if has_device_caps else None,
        modes=unique_modes(modes))


def _interval_rates(interval: FrameInterval) -> list[float]:
    if interval.type == V4L2_FRMIVAL_TYPE_DISCRETE:
        rate = fps_of(*interval.discrete)
        return [rate] if rate is not None else []
    # A range: the slowest rate is the longest interval (v4l2-ctl prints "(low-high fps)").
    low, high = fps_of(*interval.maximum), fps_of(*interval.minimum)
    if low is None or high is None:
        return []
    return rates_in_range(low, high)


def probe_node(node: str, deadline: float, *, ioctl: IoctlFunction = fcntl.ioctl,
               opener: Callable[[str, int], int] = os.open,
               closer: Callable[[int], None] = os.close) -> ProbeResult:
    """Blocking: open, query, close. Runs in the ``media`` thread pool only."""
    try:
        fd = opener(node, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise probe_error_for_errno(exc.errno, "cannot open device") from None
    try:
        return probe_fd(fd, ioctl=ioctl, deadline=deadline)
    finally:
        closer(fd)


RunInThread = Callable[..., "Deferred[Any]"]


class IoctlProber:
    """Asks the driver directly, in a worker thread (media.md §0.2: ioctls never on the reactor).

    ``run_in_thread(func, *args)`` must run ``func(*args)`` in the ``media`` pool and return
    a Deferred that fires on the reactor thread (``deferToThreadPool`` bound to the pool).
    A thread cannot be stopped, so the timeout is enforced twice: between ioctls inside
    the thread, and, when ``clock`` is given, on the reactor, where the late result is
    discarded.
    """

    def __init__(self, run_in_thread: RunInThread, *, clock: IReactorTime | None = None,
                 ioctl: IoctlFunction = fcntl.ioctl,
                 opener: Callable[[str, int], int] = os.open) -> None:
        self._run_in_thread = run_in_thread
        self._clock = clock
        self._ioctl = ioctl
        self._opener = opener

    async def probe(self, node: str, timeout: float) -> ProbeResult:
        check_node(node)
        deadline = time.monotonic() + timeout
        waiting: Deferred[ProbeResult] = self._run_in_thread(
            _probe_node_in_thread, node, deadline, self._ioctl, self._opener)
        if self._clock is not None:
            waiting.addTimeout(timeout, self._clock)
        try:
            return await waiting
        except (defer.TimeoutError, _ProbeTimeout):
            raise timeout_error(timeout) from None
        except ProbeError:
            raise
        except OSError as exc:
            raise probe_error_for_errno(exc.errno) from None


def _probe_node_in_thread(node: str, deadline: float, ioctl: IoctlFunction,
                          opener: Callable[[str, int], int]) -> ProbeResult:
    return probe_node(node, deadline, ioctl=ioctl, opener=opener)


# -- auto ---------------------------------------------------------------------------

#: The ioctl route's failures that v4l2-ctl would only repeat (media.md §1.5 table).
_NO_FALLBACK_ERRNOS = frozenset({errno_module.ENOENT, errno_module.EACCES})


class AutoProber:
    """``camera.prober: auto``: ioctl first; v4l2-ctl unless the node is gone or forbidden."""

    def __init__(self, ioctl_prober: Prober, v4l2_ctl_prober: Prober) -> None:
        self._ioctl = ioctl_prober
        self._v4l2_ctl = v4l2_ctl_prober

    async def probe(self, node: str, timeout: float) -> ProbeResult:
        check_node(node)
        try:
            return await self._ioctl.probe(node, timeout)
        except defer.CancelledError:
            raise
        except ProbeError as exc:
            if exc.errno in _NO_FALLBACK_ERRNOS:
                raise
            log.info("ioctl probe of {node} failed ({reason}); trying v4l2-ctl",
                     node=node, reason=exc.reason)
        except Exception:  # noqa: BLE001 - §1.5: fall back on anything but ENOENT/EACCES
            log.failure("ioctl probe of {node} raised; trying v4l2-ctl", node=node)
        return await self._v4l2_ctl.probe(node, timeout)
