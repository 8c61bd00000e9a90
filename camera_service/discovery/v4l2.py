"""V4L2 probe results: the data types, the v4l2-ctl parser, the API views and mode choice.

Both probers (``probe.V4l2CtlProber`` and ``probe.IoctlProber``) produce a
:class:`ProbeResult`; everything in this module is pure (no I/O, no reactor), so it runs
on the reactor thread and is tested against real v4l2-ctl output in
``tests/fixtures/v4l2``.

media.md §1.3 rule 2 (which nodes are capture nodes), §1.5 (parsing, ranges → concrete
values, API views) and §1.6 (the streaming mode) are implemented here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

# -- capability bits (linux/videodev2.h) --------------------------------------------

V4L2_CAP_VIDEO_CAPTURE = 0x00000001
V4L2_CAP_VIDEO_CAPTURE_MPLANE = 0x00001000
V4L2_CAP_VIDEO_OUTPUT_MPLANE = 0x00002000
V4L2_CAP_VIDEO_M2M_MPLANE = 0x00004000
V4L2_CAP_VIDEO_M2M = 0x00008000
V4L2_CAP_META_CAPTURE = 0x00800000
V4L2_CAP_DEVICE_CAPS = 0x80000000

#: Capability names exactly as v4l2-ctl 1.22 prints them, in its order, so that the ioctl
#: prober reports the same ``capabilities``/``device_caps`` lists as the v4l2-ctl prober
#: (media.md §1.5: "both must give identical results").
CAPABILITY_NAMES: tuple[tuple[int, str], ...] = (
    (0x00000001, "Video Capture"),
    (0x00001000, "Video Capture Multiplanar"),
    (0x00000002, "Video Output"),
    (0x00002000, "Video Output Multiplanar"),
    (0x00008000, "Video Memory-to-Memory"),
    (0x00004000, "Video Memory-to-Memory Multiplanar"),
    (0x00000004, "Video Overlay"),
    (0x00000200, "Video Output Overlay"),
    (0x00000010, "VBI Capture"),
    (0x00000020, "VBI Output"),
    (0x00000040, "Sliced VBI Capture"),
    (0x00000080, "Sliced VBI Output"),
    (0x00000100, "RDS Capture"),
    (0x00000800, "RDS Output"),
    (0x00100000, "SDR Capture"),
    (0x00400000, "SDR Output"),
    (0x00800000, "Metadata Capture"),
    (0x08000000, "Metadata Output"),
    (0x00010000, "Tuner"),
    (0x10000000, "Touch Device"),
    (0x00000400, "HW Frequency Seek"),
    (0x00080000, "Modulator"),
    (0x00020000, "Audio"),
    (0x00040000, "Radio"),
    (0x01000000, "Read/Write"),
    (0x02000000, "Async I/O"),
    (0x04000000, "Streaming"),
    (0x00200000, "Extended Pix Format"),
    (0x80000000, "Device Capabilities"),
)


def capability_names(bits: int) -> tuple[str, ...]:
    return tuple(name for bit, name in CAPABILITY_NAMES if bits & bit)


# -- fixed tables (media.md §1.5, §1.6) ---------------------------------------------

#: A size range becomes these sizes, where they lie inside it and respect its step.
STANDARD_SIZES: tuple[tuple[int, int], ...] = (
    (320, 240), (640, 480), (800, 600), (1024, 768), (1280, 720), (1280, 960),
    (1920, 1080), (2560, 1440), (3840, 2160))
#: A frame-rate range becomes these rates, where they lie inside it.
STANDARD_RATES: tuple[int, ...] = (5, 10, 15, 20, 24, 25, 30, 50, 60)

#: FourCC → FFmpeg ``-input_format``; only these FourCCs can be streamed.
INPUT_FORMATS: dict[str, str] = {
    "MJPG": "mjpeg", "JPEG": "mjpeg", "YUYV": "yuyv422", "UYVY": "uyvy422", "NV12": "nv12",
    "YU12": "yuv420p", "H264": "h264", "GREY": "gray"}
DEFAULT_FORMAT_PREFERENCE: tuple[str, ...] = ("MJPG", "YUYV", "NV12", "YU12", "UYVY", "H264", "GREY")

#: Only formats listed under these buffer types count (media.md §1.5).
CAPTURE_TYPES = frozenset({"Video Capture", "Video Capture Multiplanar"})

# A rate such as 30.000 may come back from a range computation as 29.9999...
_RATE_EPSILON = 1e-3


def api_pixel_format(fourcc: str) -> str:
    """The FourCC as the API reports it: ``MJPG`` is ``"MJPEG"`` (api.md §4.4 examples)."""
    return "MJPEG" if fourcc == "MJPG" else fourcc


def normalize_fourcc(name: str) -> str:
    """A configured or API format name back to its FourCC (``"MJPEG"`` → ``"MJPG"``)."""
    name = name.strip()
    return "MJPG" if name.upper() == "MJPEG" else name


def round_half_up(value: float) -> int:
    # Python's round() is banker's rounding: round(24.5) == 24. The API wants 25.
    return math.floor(value + 0.5)


def sizes_in_range(min_w: int, min_h: int, max_w: int, max_h: int, step_w: int = 1,
                   step_h: int = 1) -> list[tuple[int, int]]:
    """The standard sizes inside a stepwise/continuous size range."""
    result = []
    for width, height in STANDARD_SIZES:
        if not (min_w <= width <= max_w and min_h <= height <= max_h):
            continue
        if step_w > 0 and (width - min_w) % step_w:
            continue
        if step_h > 0 and (height - min_h) % step_h:
            continue
        result.append((width, height))
    return result


def rates_in_range(min_fps: float, max_fps: float) -> list[float]:
    """The standard rates inside a frame-rate range, fastest first."""
    return [float(rate) for rate in reversed(STANDARD_RATES)
            if min_fps - _RATE_EPSILON <= rate <= max_fps + _RATE_EPSILON]


# -- data types ---------------------------------------------------------------------


@dataclass(frozen=True)
class Mode:
    fourcc: str
    width: int
    height: int
    fps: float

    @property
    def area(self) -> int:
        return self.width * self.height

    @property
    def resolution(self) -> str:
        return f"{self.width}x{self.height}"


@dataclass(frozen=True)
class ProbeResult:
    driver: str
    card: str
    bus_info: str
    version: str
    capabilities: tuple[str, ...]
    device_caps: tuple[str, ...]
    capabilities_bits: int
    device_caps_bits: int | None
    modes: tuple[Mode, ...]

    def node_caps(self) -> int | None:
        """The capabilities of this node: ``device_caps`` when the driver provides them.

        The ``capabilities`` field describes the whole physical device, so on a metadata
        node it still says "Video Capture" (media.md §1.3, §9 Discovery).
        """
        if self.capabilities_bits & V4L2_CAP_DEVICE_CAPS:
            return self.device_caps_bits  # None: claimed but not reported, so unknown
        return self.capabilities_bits

    def is_capture_node(self) -> bool:
        """media.md §1.3 rule 2: a capture (or capture-mplane) node that is not an m2m node."""
        caps = self.node_caps()
        if caps is None:
            return False
        if not caps & (V4L2_CAP_VIDEO_CAPTURE | V4L2_CAP_VIDEO_CAPTURE_MPLANE):
            return False
        return not caps & (V4L2_CAP_VIDEO_M2M | V4L2_CAP_VIDEO_M2M_MPLANE)

    # -- API views (api.md §4.4, §4.5, §4.20; media.md §1.5) --

    def formats(self) -> list[str]:
        """Distinct FourCCs in enumeration order, as the API names them."""
        seen: dict[str, None] = {}
        for mode in self.modes:
            seen.setdefault(api_pixel_format(mode.fourcc.rstrip()), None)
        return list(seen)

    def resolutions(self) -> list[str]:
        """Distinct ``WxH``, largest area first; on equal areas the wider one first."""
        sizes = {(mode.width, mode.height) for mode in self.modes}
        ordered = sorted(sizes, key=lambda size: (-size[0] * size[1], -size[0]))
        return [f"{width}x{height}" for width, height in ordered]

    def fps_options(self) -> list[int]:
        """Distinct frame rates rounded half up, highest first (also ``frame_rates``)."""
        rates = {round_half_up(mode.fps) for mode in self.modes}
        return sorted((rate for rate in rates if rate > 0), reverse=True)

    def metrics_formats(self) -> list[dict[str, Any]]:
        """``get_metrics`` ``formats[]``: one entry per format and size, rates as ``"%.3f"``."""
        grouped: dict[tuple[str, int, int], list[str]] = {}
        for mode in self.modes:
            rates = grouped.setdefault((mode.fourcc, mode.width, mode.height), [])
            text = f"{mode.fps:.3f}"
            if text not in rates:
                rates.append(text)
        return [{"pixel_format": api_pixel_format(fourcc), "width": width, "height": height,
                 "frame_rates": rates}
                for (fourcc, width, height), rates in grouped.items()]

    def metrics_capabilities(self) -> dict[str, Any]:
        """``get_metrics`` ``capabilities`` object (api.md §4.20)."""
        return {"driver_name": self.driver, "card_name": self.card, "bus_info": self.bus_info,
                "version": self.version, "capabilities": list(self.capabilities),
                "device_caps": list(self.device_caps)}


def unique_modes(modes: Iterable[Mode]) -> tuple[Mode, ...]:
    """Drop repeated modes, keeping enumeration order (some drivers list a size twice)."""
    return tuple(dict.fromkeys(modes))


# -- the v4l2-ctl parser ------------------------------------------------------------

_KEY_VALUE = re.compile(r"^([A-Za-z][A-Za-z /]*?)\s*:\s*(.*)$")
_INFO_KEYS = {"Driver name": "driver", "Card type": "card", "Bus info": "bus_info",
              "Driver version": "version"}
_CAPS_HEADER = re.compile(r"^(Capabilities|Device Caps)\s*:\s*0x([0-9A-Fa-f]+)\s*$")
_TYPE = re.compile(r"^Type\s*:\s*(.+?)\s*$")
_FORMAT = re.compile(r"^\[\d+\]:\s*'([^']*)'")
_OLD_FORMAT = re.compile(r"^Pixel Format\s*:\s*'([^']*)'")
_SIZE_DISCRETE = re.compile(r"^Size:\s*Discrete\s+(\d+)x(\d+)")
_SIZE_STEPWISE = re.compile(
    r"^Size:\s*Stepwise\s+(\d+)x(\d+)\s*-\s*(\d+)x(\d+)\s+with step\s+(\d+)/(\d+)")
_SIZE_CONTINUOUS = re.compile(r"^Size:\s*Continuous\s+(\d+)x(\d+)\s*-\s*(\d+)x(\d+)")
_INTERVAL_DISCRETE = re.compile(r"^Interval:\s*Discrete\s+([0-9.]+)s\s*\(([0-9.]+)\s*fps\)")
_INTERVAL_RANGE = re.compile(
    r"^Interval:\s*(?:Stepwise|Continuous)\s+([0-9.]+)s\s*-\s*([0-9.]+)s"
    r"(?:.*?\(([0-9.]+)-([0-9.]+)\s*fps\))?")


def _positive(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) and number > 0 else None


def parse_v4l2_ctl(text: str) -> ProbeResult:
    """Parse ``v4l2-ctl --device=... --info --list-formats-ext`` output (media.md §1.5).

    Leading whitespace is ignored for the line patterns. Formats count only inside an
    ``ioctl: VIDIOC_ENUM_FMT`` block and only under ``Type: Video Capture`` (or
    ``Video Capture Multiplanar``): a ``Pixel Format`` or ``Sample Format`` line elsewhere
    (``--all`` prints the current format) is never a mode. Unknown lines are skipped, so
    newer v4l2-ctl output with extra sections still parses.
    """
    info: dict[str, str] = {}
    caps_bits = 0
    seen_caps = False
    caps_names: list[str] = []
    device_bits: int | None = None
    device_names: list[str] = []
    collecting: list[str] | None = None
    collect_indent = 0

    in_enum = False
    capture_type = False
    fourcc: str | None = None
    sizes: list[tuple[int, int]] = []
    modes: list[Mode] = []

    for raw in text.splitlines():
        line = raw.rstrip()
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())

        if collecting is not None:
            # Capability names follow their header, indented deeper and without a colon.
            if stripped and ":" not in stripped and indent > collect_indent:
                collecting.append(stripped)
                continue
            collecting = None
        if not stripped:
            continue

        if indent == 0:
            # A top-level line opens a new section ("Driver Info:", "ioctl: ...",
            # "Format Video Capture:"...). Only the ENUM_FMT section lists modes.
            in_enum = stripped.startswith("ioctl: VIDIOC_ENUM_FMT")
            capture_type = False
            fourcc = None
            sizes = []
            continue

        if not in_enum:
            header = _CAPS_HEADER.match(stripped)
            if header:
                bits = int(header.group(2), 16)
                # The first of each wins: later blocks (sub-devices, media info) are not
                # about this node.
                if header.group(1) == "Capabilities" and not seen_caps:
                    seen_caps = True
                    caps_bits, collecting, collect_indent = bits, caps_names, indent
                elif header.group(1) == "Device Caps" and device_bits is None:
                    device_bits, collecting, collect_indent = bits, device_names, indent
                continue
            pair = _KEY_VALUE.match(stripped)
            if pair and pair.group(1) in _INFO_KEYS:
                info.setdefault(_INFO_KEYS[pair.group(1)], pair.group(2).strip())
            continue

        kind = _TYPE.match(stripped)
        if kind:
            capture_type = kind.group(1) in CAPTURE_TYPES
            fourcc = None
            sizes = []
            continue
        fmt = _FORMAT.match(stripped) or _OLD_FORMAT.match(stripped)
        if fmt:
            fourcc = fmt.group(1).rstrip() if capture_type else None
            sizes = []
            continue
        if fourcc is None:
            continue
        size = _SIZE_DISCRETE.match(stripped)
        if size:
            sizes = [(int(size.group(1)), int(size.group(2)))]
            continue
        size = _SIZE_STEPWISE.match(stripped)
        if size:
            sizes = sizes_in_range(*(int(size.group(i)) for i in range(1, 7)))
            continue
        size = _SIZE_CONTINUOUS.match(stripped)
        if size:
            sizes = sizes_in_range(*(int(size.group(i)) for i in range(1, 5)))
            continue
        rates: list[float] = []
        interval = _INTERVAL_DISCRETE.match(stripped)
        if interval:
            # The rate is v4l2-ctl's own figure ("30.000"), parsed as a float (§9: never int).
            rate = _positive(interval.group(2))
            rates = [rate] if rate is not None else []
        else:
            interval = _INTERVAL_RANGE.match(stripped)
            if interval:
                if interval.group(3) is not None:
                    low, high = _positive(interval.group(3)), _positive(interval.group(4))
                else:
                    # Older v4l2-ctl printed only the interval range: fps = 1/interval.
                    longest, shortest = _positive(interval.group(2)), _positive(interval.group(1))
                    low = 1.0 / longest if longest else None
                    high = 1.0 / shortest if shortest else None
                if low is not None and high is not None:
                    rates = rates_in_range(low, high)
        for width, height in sizes:
            for rate in rates:
                modes.append(Mode(fourcc, width, height, rate))

    return ProbeResult(
        driver=info.get("driver", ""), card=info.get("card", ""), bus_info=info.get("bus_info", ""),
        version=info.get("version", ""), capabilities=tuple(caps_names),
        device_caps=tuple(device_names), capabilities_bits=caps_bits,
        device_caps_bits=device_bits, modes=unique_modes(modes))


# -- streaming mode (media.md §1.6) -------------------------------------------------


def match_override(modes: Sequence[Mode], override: tuple[str, int, int, float]) -> Mode | None:
    """The probed mode an override names, or ``None`` if the camera has no such mode.

    The fps matches when it rounds to the same integer (30 matches 30.000 and 29.970).
    """
    fourcc, width, height, fps = override
    fourcc = normalize_fourcc(fourcc)
    matching = [mode for mode in modes
                if mode.fourcc == fourcc and mode.width == width and mode.height == height
                and round_half_up(mode.fps) == round_half_up(fps)]
    if not matching:
        return None
    return min(matching, key=lambda mode: abs(mode.fps - fps))


def choose_mode(modes: Sequence[Mode], *, preference: Sequence[str], target: tuple[int, int],
                target_fps: float, override: tuple[str, int, int, float] | None = None
                ) -> Mode | None:
    """Pick the one streaming mode, deterministically (media.md §1.6).

    1. An override that names a mode the camera has wins. One that does not is ignored
       here; logging it once per camera is the caller's job (use :func:`match_override`).
    2. Candidates: modes whose FourCC is in ``preference`` (and usable by FFmpeg).
    3. Keep those with area ≤ the target area and fps ≤ target_fps + 0.5; if none is
       left, keep the candidates with the smallest area.
    4. The greatest by (area, min(fps, target_fps), earlier position in ``preference``);
       remaining ties go to the lower fps, then to enumeration order.

    Returns ``None`` when no mode is usable ("no supported capture format").
    """
    if override is not None:
        chosen = match_override(modes, override)
        if chosen is not None:
            return chosen
    order = [normalize_fourcc(name) for name in preference]
    rank = {fourcc: index for index, fourcc in reversed(list(enumerate(order)))}
    candidates = [mode for mode in modes if mode.fourcc in rank and mode.fourcc in INPUT_FORMATS]
    if not candidates:
        return None
    target_area = target[0] * target[1]
    kept = [mode for mode in candidates
            if mode.area <= target_area and mode.fps <= target_fps + 0.5]
    if not kept:
        smallest = min(mode.area for mode in candidates)
        kept = [mode for mode in candidates if mode.area == smallest]
    # The spec's key leaves one tie open: two rates at or above the target (60 and 30 fps
    # when only 1080p is offered). The rate nearer the target wins it (-fps); full ties go
    # to enumeration order, since max() keeps the first of equal keys.
    return max(kept, key=lambda mode: (mode.area, min(mode.fps, target_fps), -rank[mode.fourcc],
                                       -mode.fps))
