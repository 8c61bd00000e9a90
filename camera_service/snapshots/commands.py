"""Snapshot command lines, quality mapping and target size (media.md §4.2, §4.3, §0.4).

Everything here is pure: typed, validated values in, argv lists out. The builders have no
parameter for a client's file name: FFmpeg always writes to a temporary name the service
generated (:func:`temp_name`), and the file is renamed afterwards (§4.4). Every argv is
checked with :func:`camera_service.procs.check_argv` before it is returned.

The four command shapes of §4.2 (tiers a and d add ``-analyzeduration``, see
docs/decisions.md)::

    a, d:  <ffmpeg> -hide_banner -loglevel error -nostdin -rtsp_transport <t> -timeout 5000000
             -analyzeduration 500000 -i rtsp://<host>:<port>/<camera id> -an -frames:v 1 [-vf scale=W:H] <output>
    c:     <ffmpeg> -hide_banner -loglevel error -nostdin <v4l2 input of the mode>
             -an -vf trim=start_frame=<warmup>[,scale=W:H] -frames:v 1 <output>
    e:     <ffmpeg> -hide_banner -loglevel error -nostdin -f lavfi -i <pattern>=size=WxH:rate=F
             -an -frames:v 1 [-vf scale=W:H] <output>

    <output> = -c:v mjpeg -q:v <Q> -f image2 -update 1 -y <tmp>
"""

from __future__ import annotations

import math
import os
import re
from fractions import Fraction
from typing import Any

from camera_service.mediamtx.paths import LAVFI_PATTERNS, usb_input_args
from camera_service.procs import SAFE_ARG, UnsafeArgument, check_argv

__all__ = [
    "RTSP_SOCKET_TIMEOUT_US",
    "RTSP_TIMEOUT_OPTIONS",
    "RTSP_TRANSPORTS",
    "TEMP_NAME",
    "device_snapshot_argv",
    "is_temp_name",
    "lavfi_snapshot_argv",
    "mjpeg_q",
    "output_args",
    "rtsp_snapshot_argv",
    "rtsp_url",
    "target_size",
    "temp_name",
]

#: FFmpeg's RTSP socket timeout for the service's own readers, in microseconds (§4.2).
RTSP_SOCKET_TIMEOUT_US = 5_000_000
#: ``mediamtx.rtsp_transport`` values (the configuration enum).
RTSP_TRANSPORTS = frozenset({"tcp", "udp"})
#: The socket-timeout option: ``-timeout`` from FFmpeg 5.0 on, ``-stimeout`` on 4.x (§0.3).
RTSP_TIMEOUT_OPTIONS = frozenset({"-timeout", "-stimeout"})
#: Probe window for the RTSP tiers, in microseconds (see rtsp_snapshot_argv).
RTSP_ANALYZE_US = 500000
#: ``.snapshot-<16 hex>.part`` (§4.4): hidden, so listings, sizes and retention ignore it.
TEMP_NAME = re.compile(r"\.snapshot-[0-9a-f]{16}\.part")

_CAMERA_ID = re.compile(r"camera[0-9]+")
# A host name or an IPv4 address. An IPv6 literal would need brackets in the URL, which the
# §0.4 character set does not allow, so it is refused here rather than at spawn time.
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")
_MAX_DIMENSION = 16384
_MAX_WARMUP = 1000
_COMMON = ("-hide_banner", "-loglevel", "error", "-nostdin")


def _int(value: Any, what: str, lo: int, hi: int) -> int:
    # bool is an int subclass; 30.0 and "30" are not integers here.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be an integer")  # noqa: TRY004 (callers expect ValueError)
    if not lo <= value <= hi:
        raise ValueError(f"{what} must be between {lo} and {hi}")
    return value


def mjpeg_q(quality: int) -> int:
    """``Q = floor(31 − (quality − 1) × 29 / 99 + 0.5)``: the 1–100 scale to MJPEG's 31..2.

    Computed with fractions so that no quality lands on the wrong side of a .5 boundary
    through float rounding.
    """
    quality = _int(quality, "snapshots.quality", 1, 100)
    return math.floor(Fraction(31) - Fraction((quality - 1) * 29, 99) + Fraction(1, 2))


def target_size(src_w: int, src_h: int, max_w: int, max_h: int) -> tuple[int, int] | None:
    """The output size inside ``max_w`` × ``max_h`` (0 = no limit), or None when unchanged.

    Keeps the aspect ratio and rounds both sides down to even numbers (§4.3). Integer
    arithmetic only, so 1280x720 into 640 wide is exactly 640x360. None whenever the
    bounds do not reduce the source, so no filter is added for nothing.
    """
    src_w = _int(src_w, "source width", 1, _MAX_DIMENSION)
    src_h = _int(src_h, "source height", 1, _MAX_DIMENSION)
    max_w = _int(max_w, "snapshots.max_width", 0, 1 << 30)
    max_h = _int(max_h, "snapshots.max_height", 0, 1 << 30)
    # The tighter bound decides the scale factor num/den.
    ratios = []
    if max_w:
        ratios.append(Fraction(max_w, src_w))
    if max_h:
        ratios.append(Fraction(max_h, src_h))
    if not ratios:
        return None
    factor = min(ratios)
    if factor >= 1:
        return None
    width = math.floor(src_w * factor)
    height = math.floor(src_h * factor)
    width, height = max(2, width - width % 2), max(2, height - height % 2)
    if width >= src_w and height >= src_h:
        return None
    return width, height


def temp_name(random_hex: str) -> str:
    """``.snapshot-<16 hex>.part`` from 16 random lower-case hex digits."""
    name = f".snapshot-{random_hex}.part"
    if TEMP_NAME.fullmatch(name) is None:
        raise ValueError("the temporary name needs exactly 16 lower-case hex digits")
    return name


def is_temp_name(name: str) -> bool:
    return isinstance(name, str) and TEMP_NAME.fullmatch(name) is not None


def _check_tmp(tmp: str) -> str:
    """The output is always a temporary file the service named, in an absolute directory."""
    if not isinstance(tmp, str) or not os.path.isabs(tmp):
        raise UnsafeArgument("the snapshot output must be an absolute path")
    if not is_temp_name(os.path.basename(tmp)):
        raise UnsafeArgument("the snapshot output must be a generated temporary name")
    if SAFE_ARG.fullmatch(tmp) is None:
        raise UnsafeArgument("the snapshot directory contains characters outside the safe set")
    return tmp


def _check_ffmpeg(ffmpeg: str) -> str:
    if not isinstance(ffmpeg, str) or not os.path.isabs(ffmpeg):
        raise UnsafeArgument("ffmpeg must be an absolute path (tools are resolved at start-up)")
    return ffmpeg


def _scale_filter(scale: tuple[int, int] | None) -> str | None:
    if scale is None:
        return None
    if not isinstance(scale, tuple) or len(scale) != 2:
        raise ValueError("scale must be a (width, height) tuple")
    width = _int(scale[0], "scale width", 2, _MAX_DIMENSION)
    height = _int(scale[1], "scale height", 2, _MAX_DIMENSION)
    if width % 2 or height % 2:
        raise ValueError("scale sizes must be even")
    return f"scale={width}:{height}"


def output_args(q: int, tmp: str) -> list[str]:
    """``-c:v mjpeg -q:v <Q> -f image2 -update 1 -y <tmp>``: always re-encoded to a real JPEG."""
    q = _int(q, "-q:v", 2, 31)
    return ["-c:v", "mjpeg", "-q:v", str(q), "-f", "image2", "-update", "1", "-y", _check_tmp(tmp)]


def rtsp_url(host: str, port: int, camera_id: str) -> str:
    """``rtsp://<mediamtx.host>:<rtsp_port>/<camera id>`` (§2.10, the service's own reads)."""
    if not isinstance(host, str) or _HOST.fullmatch(host) is None:
        raise ValueError("mediamtx.host must be a host name or an IPv4 address")
    port = _int(port, "mediamtx.rtsp_port", 1, 65535)
    if not isinstance(camera_id, str) or _CAMERA_ID.fullmatch(camera_id) is None:
        raise ValueError("camera id must match camera<N>")
    return f"rtsp://{host}:{port}/{camera_id}"


def rtsp_snapshot_argv(*, ffmpeg: str, host: str, port: int, camera_id: str, transport: str,
                       q: int, scale: tuple[int, int] | None, tmp: str,
                       timeout_option: str = "-timeout") -> list[str]:
    """Tiers a and d. Transport and socket timeout are input options, so they precede ``-i``
    (after it they would apply to the output, §4.2)."""
    if transport not in RTSP_TRANSPORTS:
        raise ValueError("mediamtx.rtsp_transport must be tcp or udp")
    if timeout_option not in RTSP_TIMEOUT_OPTIONS:
        raise ValueError("the RTSP timeout option must be -timeout or -stimeout")
    argv = [_check_ffmpeg(ffmpeg), *_COMMON,
            "-rtsp_transport", transport, timeout_option, str(RTSP_SOCKET_TIMEOUT_US),
            # The codec parameters are in the SDP (the publisher is our own FFmpeg with
            # global headers); FFmpeg's default 5 s probe window cost ~2 s per snapshot.
            "-analyzeduration", str(RTSP_ANALYZE_US),
            "-i", rtsp_url(host, port, camera_id), "-an", "-frames:v", "1"]
    scale_filter = _scale_filter(scale)
    if scale_filter is not None:
        argv += ["-vf", scale_filter]
    argv += output_args(q, tmp)
    check_argv(argv)
    return argv


def device_snapshot_argv(*, ffmpeg: str, device_node: str, mode: Any, warmup_frames: int, q: int,
                         scale: tuple[int, int] | None, tmp: str) -> list[str]:
    """Tier c: the camera's streaming mode straight from the device (§1.6), skipping
    ``warmup_frames`` so auto-exposure can settle. The input comes from
    :func:`camera_service.mediamtx.paths.usb_input_args`, which validates node and mode."""
    warmup = _int(warmup_frames, "snapshots.warmup_frames", 0, _MAX_WARMUP)
    filters = f"trim=start_frame={warmup}"
    scale_filter = _scale_filter(scale)
    if scale_filter is not None:
        filters += f",{scale_filter}"
    argv = [_check_ffmpeg(ffmpeg), *_COMMON, *usb_input_args(device_node, mode),
            "-an", "-vf", filters, "-frames:v", "1", *output_args(q, tmp)]
    check_argv(argv)
    return argv


def lavfi_snapshot_argv(*, ffmpeg: str, pattern: str, width: int, height: int, rate: int, q: int,
                        scale: tuple[int, int] | None, tmp: str) -> list[str]:
    """Tier e: the virtual camera's lavfi source. No ``-re`` here (unlike the publisher):
    one frame is wanted as fast as possible, not at the source's pace."""
    if not isinstance(pattern, str) or pattern not in LAVFI_PATTERNS:
        raise ValueError("pattern is not one of the lavfi test sources")
    width = _int(width, "width", 16, 3840)
    height = _int(height, "height", 16, 2160)
    if width % 2 or height % 2:
        raise ValueError("virtual camera sizes must be even")
    rate = _int(rate, "rate", 1, 60)
    argv = [_check_ffmpeg(ffmpeg), *_COMMON,
            "-f", "lavfi", "-i", f"{pattern}=size={width}x{height}:rate={rate}",
            "-an", "-frames:v", "1"]
    scale_filter = _scale_filter(scale)
    if scale_filter is not None:
        argv += ["-vf", scale_filter]
    argv += output_args(q, tmp)
    check_argv(argv)
    return argv
