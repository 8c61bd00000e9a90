"""Camera path configurations and publisher commands for MediaMTX (media.md §2.3, §2.4, §2.6).

Everything here is pure: typed values in, JSON bodies and argv lists out. The builders take
only the values media.md §0.4 allows on a command line (device nodes matching
``^/dev/video[0-9]{1,3}$``, FourCCs from the §1.6 table, integers, enums, absolute paths from
the validated configuration) and never a camera's user-facing name or any client string:
they do not even have a parameter for one. Every argv is checked with
:func:`camera_service.procs.check_argv` before it is returned; the one token that may contain
``$`` is the fixed output URL :data:`PUBLISHER_OUTPUT_URL`, where MediaMTX expands
``$RTSP_PORT`` and ``$MTX_PATH`` itself.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from typing import Any

from camera_service.discovery.v4l2 import INPUT_FORMATS, Mode
from camera_service.procs import (
    MEDIAMTX_VARIABLES,
    SAFE_ARG,
    UnsafeArgument,
    check_argv,
)

__all__ = [
    "LAVFI_PATTERNS",
    "PRESETS",
    "PROFILES",
    "PUBLISHER_OUTPUT_URL",
    "RECORD_FORMATS",
    "camera_path_config",
    "gop_frames",
    "is_managed",
    "path_defaults_patch",
    "publisher_argv",
    "record_path",
    "run_on_demand",
    "usb_input_args",
    "virtual_input_args",
]

#: The publisher always publishes to MediaMTX's own view of itself (§2.4).
PUBLISHER_OUTPUT_URL = "rtsp://127.0.0.1:$RTSP_PORT/$MTX_PATH"
#: x264 presets and H.264 profiles accepted by the configuration (§8.4).
PRESETS = frozenset({"ultrafast", "superfast", "veryfast", "faster", "fast", "medium"})
PROFILES = frozenset({"baseline", "main", "high"})
#: lavfi test sources a virtual camera may use (§1.10).
LAVFI_PATTERNS = frozenset({"testsrc2", "testsrc", "smptebars", "smptehdbars", "rgbtestsrc",
                            "pal75bars", "mandelbrot"})
RECORD_FORMATS = frozenset({"fmp4", "mpegts"})

_DEVICE_NODE = re.compile(r"/dev/video[0-9]{1,3}")
_CAMERA_PATH = re.compile(r"camera[0-9]+")
_EXTERNAL_PATH = re.compile(r"ext_[0-9a-f]{10}")
_RECORD_SUFFIX = "/%path/%path_%Y-%m-%d_%H-%M-%S"

# Sanity bounds for integers that reach a command line.
_MAX_DIMENSION = 16384
_MAX_FPS = 1000
_MAX_BITRATE_KBPS = 1_000_000


def _int(value: Any, what: str, lo: int, hi: int) -> int:
    # bool is an int subclass; "30" and 30.0 are not integers here.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be an integer")  # noqa: TRY004 (the API says ValueError)
    if not lo <= value <= hi:
        raise ValueError(f"{what} must be between {lo} and {hi}")
    return value


def _round_half_up(value: float) -> int:
    return math.floor(value + 0.5)


def _whole_seconds(value: Any, what: str, minimum: int = 0) -> str:
    """A configured duration as MediaMTX wants it here: whole seconds with an ``s`` suffix."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number of seconds")
    seconds = _round_half_up(float(value))
    if seconds < minimum:
        raise ValueError(f"{what} must be at least {minimum} s")
    return f"{seconds}s"


def _check_tokens(argv: Sequence[str]) -> None:
    """§0.4 on a publisher argv: every token SAFE, except the exact fixed output URL."""
    if isinstance(argv, (str, bytes)) or not isinstance(argv, Sequence):
        raise UnsafeArgument("argv must be a sequence of strings")
    # $RTSP_PORT and $MTX_PATH belong only inside the fixed output URL, never as words.
    if any(token in MEDIAMTX_VARIABLES for token in argv):
        raise UnsafeArgument("MediaMTX variables are allowed only in the fixed output URL")
    check_argv([token for token in argv if token != PUBLISHER_OUTPUT_URL])


def gop_frames(fps: int, gop_seconds: Any) -> int:
    """``G = max(1, round(F × gop_seconds))``, rounding halves up (§2.4)."""
    fps = _int(fps, "fps", 1, _MAX_FPS)
    if (isinstance(gop_seconds, bool) or not isinstance(gop_seconds, (int, float))
            or not math.isfinite(gop_seconds) or gop_seconds <= 0):
        raise ValueError("encoding.gop_seconds must be a positive number")
    return max(1, _round_half_up(fps * float(gop_seconds)))


def usb_input_args(device_node: str, mode: Mode) -> list[str]:
    """``-f v4l2 -input_format <fmt> -video_size <W>x<H> -framerate <F> -i /dev/video<N>``.

    ``<F>`` is the mode's rate rounded half up (the API's integer frame rates).
    """
    if not isinstance(device_node, str) or _DEVICE_NODE.fullmatch(device_node) is None:
        raise ValueError("device node must match /dev/video<N>")
    fourcc = getattr(mode, "fourcc", None)
    if not isinstance(fourcc, str) or fourcc not in INPUT_FORMATS:
        raise ValueError("the mode's FourCC is not one of the streamable formats")
    width = _int(getattr(mode, "width", None), "width", 1, _MAX_DIMENSION)
    height = _int(getattr(mode, "height", None), "height", 1, _MAX_DIMENSION)
    fps = getattr(mode, "fps", None)
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not math.isfinite(fps):
        raise ValueError("fps must be a number")
    rate = _int(_round_half_up(float(fps)), "fps", 1, _MAX_FPS)
    args = ["-f", "v4l2", "-input_format", INPUT_FORMATS[fourcc], "-video_size",
            f"{width}x{height}", "-framerate", str(rate), "-i", device_node]
    check_argv(args)
    return args


def virtual_input_args(pattern: str, width: int, height: int, rate: int) -> list[str]:
    """``-re -f lavfi -i <pattern>=size=<W>x<H>:rate=<F>`` (§1.10; ``-re`` is required)."""
    if not isinstance(pattern, str) or pattern not in LAVFI_PATTERNS:
        raise ValueError("pattern is not one of the lavfi test sources")
    width = _int(width, "width", 16, 3840)
    height = _int(height, "height", 16, 2160)
    if width % 2 or height % 2:
        raise ValueError("virtual camera sizes must be even")
    rate = _int(rate, "rate", 1, 60)
    args = ["-re", "-f", "lavfi", "-i", f"{pattern}=size={width}x{height}:rate={rate}"]
    check_argv(args)
    return args


_V4L2_INPUT = re.compile(
    r"-f v4l2 -input_format (?:" + "|".join(sorted(set(INPUT_FORMATS.values()))) + r") "
    r"-video_size [1-9][0-9]{0,4}x[1-9][0-9]{0,4} -framerate [1-9][0-9]{0,3} "
    r"-i /dev/video[0-9]{1,3}")
_LAVFI_INPUT = re.compile(
    r"-re -f lavfi -i (?:" + "|".join(sorted(LAVFI_PATTERNS)) + r")"
    r"=size=[1-9][0-9]{1,3}x[1-9][0-9]{1,3}:rate=[1-9][0-9]?")


def _check_input_shape(input_args: list[str]) -> None:
    """Only the two input forms of §2.4, as the two builders above produce them."""
    joined = " ".join(input_args)
    if _V4L2_INPUT.fullmatch(joined) is None and _LAVFI_INPUT.fullmatch(joined) is None:
        raise ValueError("input_args must come from usb_input_args or virtual_input_args")


def publisher_argv(*, ffmpeg: str, encoding: Any, input_args: list[str], fps: int) -> list[str]:
    """The exact publisher command of §2.4, as an argv list.

    ``encoding`` is ``config.encoding`` (``preset``, ``profile``, ``bitrate_kbps``,
    ``gop_seconds``); ``input_args`` comes from :func:`usb_input_args` or
    :func:`virtual_input_args`; ``fps`` is the stream's integer rate ``F``.
    Raises :class:`UnsafeArgument` if any token fails §0.4, :class:`ValueError` for bad values.
    """
    if not isinstance(ffmpeg, str) or not os.path.isabs(ffmpeg):
        raise UnsafeArgument("ffmpeg must be an absolute path (tools are resolved at start-up)")
    preset = getattr(encoding, "preset", None)
    profile = getattr(encoding, "profile", None)
    if preset not in PRESETS:
        raise ValueError("encoding.preset is not a known x264 preset")
    if profile not in PROFILES:
        raise ValueError("encoding.profile must be baseline, main or high")
    bitrate = _int(getattr(encoding, "bitrate_kbps", None), "encoding.bitrate_kbps", 1,
                   _MAX_BITRATE_KBPS)
    gop = gop_frames(fps, getattr(encoding, "gop_seconds", None))
    if isinstance(input_args, (str, bytes)) or not isinstance(input_args, (list, tuple)):
        raise UnsafeArgument("input_args must be a list of strings")
    if PUBLISHER_OUTPUT_URL in input_args:
        raise UnsafeArgument("the output URL cannot be an input argument")
    _check_tokens(list(input_args))
    _check_input_shape(list(input_args))
    argv = [
        ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin",
        *input_args,
        "-an", "-c:v", "libx264", "-preset", preset, "-tune", "zerolatency",
        "-profile:v", profile,
        "-pix_fmt", "yuv420p", "-bf", "0", "-g", str(gop),
        "-b:v", f"{bitrate}k", "-maxrate", f"{bitrate}k", "-bufsize", f"{2 * bitrate}k",
        "-f", "rtsp", "-rtsp_transport", "tcp", PUBLISHER_OUTPUT_URL,
    ]
    _check_tokens(argv)
    return argv


def run_on_demand(argv: list[str]) -> str:
    """The ``runOnDemand`` string: tokens joined by single spaces.

    MediaMTX splits it by shell quoting rules. Every token is SAFE (no space, quote,
    backslash or ``$`` outside the fixed output URL), so no quoting is ever needed; anything
    else raises :class:`UnsafeArgument`.
    """
    if isinstance(argv, (str, bytes)) or not isinstance(argv, (list, tuple)) or not argv:
        raise UnsafeArgument("runOnDemand needs a non-empty argv list")
    _check_tokens(argv)
    return " ".join(argv)


def record_path(recordings_root: str, playback: bool) -> str:
    """``<root>/%path/%path_%Y-%m-%d_%H-%M-%S`` plus ``-%f`` only when playback is on."""
    if not isinstance(recordings_root, str) or not os.path.isabs(recordings_root):
        raise ValueError("mediamtx.recordings_path must be absolute")
    # Configuration data, not a command line, but still never anything exotic.
    if SAFE_ARG.fullmatch(recordings_root) is None or "%" in recordings_root:
        raise ValueError("mediamtx.recordings_path contains unexpected characters")
    root = recordings_root.rstrip("/") or ""
    return f"{root}{_RECORD_SUFFIX}{'-%f' if playback else ''}"


def _record_format(config: Any) -> str:
    fmt = config.recording.format
    if fmt not in RECORD_FORMATS:
        raise ValueError("recording.format must be fmp4 or mpegts")
    return str(fmt)


def camera_path_config(*, run_on_demand: str, config: Any, record: bool,
                       playback: bool) -> dict[str, Any]:
    """Exactly the §2.4 body for a camera path; nothing inherited from ``pathDefaults``.

    ``source`` is ``publisher`` and ``sourceOnDemand`` is never sent (MediaMTX rejects the
    combination). Durations are whole seconds with an ``s`` suffix.
    """
    if not isinstance(run_on_demand, str) or not run_on_demand:
        raise UnsafeArgument("runOnDemand must be a non-empty string")
    tokens = run_on_demand.split(" ")
    if " ".join(tokens) != run_on_demand or "" in tokens:
        raise UnsafeArgument("runOnDemand must be tokens separated by single spaces")
    _check_tokens(tokens)
    if not isinstance(record, bool) or not isinstance(playback, bool):
        raise ValueError("record and playback must be booleans")  # noqa: TRY004
    mediamtx = config.mediamtx
    recording = config.recording
    return {
        "source": "publisher",
        "runOnDemand": run_on_demand,
        "runOnDemandRestart": True,
        "runOnDemandStartTimeout": _whole_seconds(
            mediamtx.run_on_demand_start_timeout, "mediamtx.run_on_demand_start_timeout", 1),
        "runOnDemandCloseAfter": _whole_seconds(
            mediamtx.run_on_demand_close_after, "mediamtx.run_on_demand_close_after", 1),
        "record": record,
        "recordPath": record_path(mediamtx.recordings_path, playback),
        "recordFormat": _record_format(config),
        "recordPartDuration": _whole_seconds(recording.part_duration, "recording.part_duration", 1),
        "recordSegmentDuration": _whole_seconds(recording.segment_duration,
                                                "recording.segment_duration", 1),
        "recordDeleteAfter": "0s",
    }


def path_defaults_patch(config: Any, playback: bool) -> dict[str, Any]:
    """The §2.6 item 3 ``PATCH /v3/config/pathdefaults/patch`` body.

    ``recordDeleteAfter`` always travels with ``recordPath``: MediaMTX's default ``1d`` would
    otherwise delete an unplugged camera's recordings.
    """
    if not isinstance(playback, bool):
        raise ValueError("playback must be a boolean")  # noqa: TRY004
    return {
        "recordPath": record_path(config.mediamtx.recordings_path, playback),
        "recordFormat": _record_format(config),
        "recordDeleteAfter": "0s",
    }


def is_managed(name: str) -> bool:
    """Whether a MediaMTX path name belongs to the service (§2.3)."""
    if not isinstance(name, str):
        return False
    return _CAMERA_PATH.fullmatch(name) is not None or _EXTERNAL_PATH.fullmatch(name) is not None
