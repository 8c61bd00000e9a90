"""Value kinds: what a schema key accepts, how it is coerced, and how it is described.

Each kind turns a YAML value into the typed value the service uses, or raises ``Invalid``
with a "must be ..." problem built from the same words a documentation generator shows.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import re
import types
from typing import Any, Mapping, NoReturn, Sequence
from urllib.parse import urlsplit

import yaml

from ._errors import NO_VALUE, Invalid
from ._model import CameraOverride, VirtualCameraConfig

# media.md §1.6: only these FourCCs have an FFmpeg input format.
FOURCCS = ("MJPG", "JPEG", "YUYV", "UYVY", "NV12", "YU12", "H264", "GREY")

# media.md §1.10.
VIRTUAL_PATTERNS = (
    "testsrc2", "testsrc", "smptebars", "smptehdbars", "rgbtestsrc", "pal75bars", "mandelbrot",
)

# The public pattern is ^camera[0-9]+$ (api.md §3.1), but "camera01" can never be a camera's
# id (the API treats it as unknown), so configured ids must be written without leading zeros.
_CAMERA_ID = re.compile(r"camera(0|[1-9][0-9]*)")
CAMERA_ID_RULE = "match ^camera[0-9]+$ with no leading zeros (e.g. camera100)"

_SHELL_UNSAFE = re.compile(r"""[\s\x00-\x1f\x7f|&;<>()$`\\"'*?\[\]#~!{}]""")
_SIZE = re.compile(r"([0-9]+)x([0-9]+)")


def _num(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


def closest(name: str, candidates: Sequence[str]) -> str | None:
    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


def parse_flow(raw: str) -> Any:
    """An environment value given as a YAML flow value (media.md §8.2)."""
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        raise Invalid("is not a valid YAML flow value", raw) from None


def camera_number(camera_id: str) -> int:
    return int(camera_id[len("camera"):])


class Kind:
    """Base kind. ``env_raw`` kinds take an environment value verbatim (strings, §8.2)."""

    type_name = "value"
    env_raw = False

    def requirement(self) -> str:
        raise NotImplementedError

    def coerce(self, value: Any) -> Any:
        raise NotImplementedError

    def from_env(self, raw: str) -> Any:
        return raw if self.env_raw else parse_flow(raw)

    def fail(self, value: Any) -> NoReturn:
        raise Invalid(f"must be {self.requirement()}", value)


class Bool(Kind):
    type_name = "boolean"

    def requirement(self) -> str:
        return "true or false"

    def coerce(self, value: Any) -> bool:
        if not isinstance(value, bool):
            self.fail(value)
        return value

    def from_env(self, raw: str) -> bool:
        word = raw.strip().lower()
        if word in ("true", "1"):
            return True
        if word in ("false", "0"):
            return False
        raise Invalid("must be true, false, 1 or 0", raw)


class Int(Kind):
    type_name = "integer"

    def __init__(self, lo: int | None = None, hi: int | None = None) -> None:
        self.lo = lo
        self.hi = hi

    def requirement(self) -> str:
        if self.lo is not None and self.hi is not None:
            return f"an integer from {self.lo} to {self.hi}"
        if self.lo is not None:
            return f"an integer >= {self.lo}"
        if self.hi is not None:
            return f"an integer <= {self.hi}"
        return "an integer"

    def coerce(self, value: Any) -> int:
        # A boolean is an int subclass in Python but never an integer here (§8.3).
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(value)
        if (self.lo is not None and value < self.lo) or (self.hi is not None and value > self.hi):
            self.fail(value)
        return value


class Float(Kind):
    type_name = "number"

    def __init__(self, lo: float | None = None, hi: float | None = None, gt: float | None = None) -> None:
        self.lo = lo
        self.hi = hi
        self.gt = gt

    def requirement(self) -> str:
        if self.lo is not None and self.hi is not None:
            return f"a number from {_num(self.lo)} to {_num(self.hi)}"
        parts = []
        if self.gt is not None:
            parts.append(f"> {_num(self.gt)}")
        if self.lo is not None:
            parts.append(f">= {_num(self.lo)}")
        if self.hi is not None:
            parts.append(f"<= {_num(self.hi)}")
        return "a number " + " and ".join(parts) if parts else "a number"

    def coerce(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(value)
        number = float(value)
        if not math.isfinite(number):
            self.fail(value)
        if self.gt is not None and not number > self.gt:
            self.fail(value)
        if (self.lo is not None and number < self.lo) or (self.hi is not None and number > self.hi):
            self.fail(value)
        return number


class Nullable(Kind):
    def __init__(self, inner: Kind) -> None:
        self.inner = inner
        self.type_name = f"{inner.type_name}|null"

    def requirement(self) -> str:
        return f"{self.inner.requirement()}, or null"

    def coerce(self, value: Any) -> Any:
        if value is None:
            return None
        try:
            return self.inner.coerce(value)
        except Invalid:
            self.fail(value)


class Str(Kind):
    type_name = "string"
    env_raw = True

    def __init__(self, nonempty: bool = False) -> None:
        self.nonempty = nonempty

    def requirement(self) -> str:
        return "a non-empty string" if self.nonempty else "a string"

    def coerce(self, value: Any) -> str:
        if not isinstance(value, str) or (self.nonempty and not value):
            self.fail(value)
        return value


class Enum(Kind):
    type_name = "enum"
    env_raw = True

    def __init__(self, *choices: str) -> None:
        self.choices = choices

    def requirement(self) -> str:
        return "one of " + ", ".join(self.choices)

    def coerce(self, value: Any) -> str:
        if not isinstance(value, str) or value not in self.choices:
            self.fail(value)
        return value


class Tristate(Enum):
    """``auto | true | false``; YAML reads unquoted true/false as booleans, which count too."""

    def __init__(self) -> None:
        super().__init__("auto", "true", "false")

    def coerce(self, value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str) and value.lower() in self.choices:
            return value.lower()
        self.fail(value)


class UrlPath(Kind):
    type_name = "string"
    env_raw = True

    def requirement(self) -> str:
        return "a path that starts with / and contains no whitespace"

    def coerce(self, value: Any) -> str:
        if not isinstance(value, str) or not value.startswith("/") or re.search(r"[\s\x00-\x1f]", value):
            self.fail(value)
        return value


class Path(Kind):
    """A filesystem path; made absolute by the loader, which knows where the value came from.

    ``directory`` says whether the path names a directory (else a file); ``restricted`` paths
    go into MediaMTX's configuration and command lines, so their characters are limited
    (media.md §8.5).
    """

    type_name = "path"
    env_raw = True

    def __init__(self, directory: bool, optional: bool = False, restricted: bool = False) -> None:
        self.directory = directory
        self.optional = optional
        self.restricted = restricted

    def requirement(self) -> str:
        return "a path, or an empty string" if self.optional else "a non-empty path"

    def coerce(self, value: Any) -> str:
        if not isinstance(value, str) or (not value and not self.optional) or "\x00" in value:
            self.fail(value)
        return value


class Command(Kind):
    type_name = "command"
    env_raw = True

    def requirement(self) -> str:
        return "a program name or path without whitespace or shell metacharacters"

    def coerce(self, value: Any) -> str:
        if not isinstance(value, str) or not value or _SHELL_UNSAFE.search(value):
            self.fail(value)
        return value


class IpAddress(Kind):
    type_name = "string"

    def requirement(self) -> str:
        return "an IP address"

    def coerce(self, value: Any) -> str:
        if not isinstance(value, str):
            self.fail(value)
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            self.fail(value)


class Cidr(Kind):
    type_name = "string"

    def requirement(self) -> str:
        return "a network in CIDR form, address/prefix with no host bits set"

    def coerce(self, value: Any) -> str:
        if not isinstance(value, str) or "/" not in value:
            self.fail(value)
        try:
            return str(ipaddress.ip_network(value, strict=True))
        except ValueError:
            self.fail(value)


class RtspUrl(Kind):
    type_name = "string"

    def requirement(self) -> str:
        return "an rtsp:// URL with a host, a valid port and no whitespace"

    def coerce(self, value: Any) -> str:
        if not isinstance(value, str) or not value.startswith("rtsp://"):
            self.fail(value)
        if re.search(r"[\s\x00-\x1f]", value):
            self.fail(value)
        try:
            parts = urlsplit(value)
            port = parts.port  # raises ValueError outside 0-65535
        except ValueError:
            self.fail(value)
        if not parts.hostname or port == 0:
            self.fail(value)
        return value


class ListOf(Kind):
    def __init__(self, item: Kind, what: str, nonempty: bool = False, unique: bool = False) -> None:
        self.item = item
        self.what = what
        self.nonempty = nonempty
        self.unique = unique
        self.type_name = f"list[{item.type_name}]"

    def requirement(self) -> str:
        return ("a non-empty list of " if self.nonempty else "a list of ") + self.what

    def coerce(self, value: Any) -> tuple[Any, ...]:
        if not isinstance(value, (list, tuple)) or (self.nonempty and not value):
            self.fail(value)
        items: list[Any] = []
        for index, raw in enumerate(value):
            try:
                item = self.item.coerce(raw)
            except Invalid as exc:
                raise exc.inside(f"[{index}]") from None
            if self.unique and item in items:
                raise Invalid("is listed twice", raw, f"[{index}]")
            items.append(item)
        return tuple(items)


class DeviceRange(Kind):
    type_name = "[min, max]"

    def requirement(self) -> str:
        return "a list of two integers [min, max] from 0 to 255"

    def coerce(self, value: Any) -> tuple[int, int]:
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            self.fail(value)
        bound = Int(0, 255)
        try:
            low, high = (bound.coerce(item) for item in value)
        except Invalid:
            self.fail(value)
        if low > high:
            raise Invalid("min must be <= max", value)
        return (low, high)


class Resolution(Kind):
    type_name = "WxH"
    env_raw = True

    def __init__(self, max_width: int, max_height: int) -> None:
        self.max_width = max_width
        self.max_height = max_height

    def requirement(self) -> str:
        return (
            f"a size <W>x<H> with even W from 16 to {self.max_width}"
            f" and even H from 16 to {self.max_height}"
        )

    def coerce(self, value: Any) -> str:
        match = _SIZE.fullmatch(value) if isinstance(value, str) else None
        if match is None:
            self.fail(value)
        width, height = int(match.group(1)), int(match.group(2))
        if not (_even_within(width, self.max_width) and _even_within(height, self.max_height)):
            self.fail(value)
        return f"{width}x{height}"


def _even_within(number: int, maximum: int) -> bool:
    return number % 2 == 0 and 16 <= number <= maximum


def _reject_unknown(entry: Mapping[Any, Any], allowed: Sequence[str], where: str) -> None:
    for name in entry:
        if name not in allowed:
            hint = closest(str(name), allowed)
            advice = f"did you mean {hint}?" if hint else "valid keys: " + ", ".join(allowed)
            problem = f"unknown key; {advice}"
            raise Invalid(problem, NO_VALUE, f"{where}.{name}")


def _camera_id(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _CAMERA_ID.fullmatch(value):
        raise Invalid(f"must {CAMERA_ID_RULE}", value, where)
    return value


def _field(kind: Kind, entry: Mapping[Any, Any], name: str, where: str, default: Any = None) -> Any:
    """Coerce ``entry[name]``; a missing field takes ``default`` (None = required)."""
    if name not in entry:
        if default is None:
            raise Invalid("is required", NO_VALUE, f"{where}.{name}")
        return default
    try:
        return kind.coerce(entry[name])
    except Invalid as exc:
        raise exc.inside(f"{where}.{name}") from None


_FOURCC = Enum(*FOURCCS)
_OVERRIDE_FIELDS = ("format", "resolution", "fps")


class Overrides(Kind):
    type_name = "mapping"

    def requirement(self) -> str:
        return "a mapping of camera id to {format, resolution, fps}"

    def coerce(self, value: Any) -> Mapping[str, CameraOverride]:
        if not isinstance(value, Mapping):
            self.fail(value)
        result: dict[str, CameraOverride] = {}
        for camera_id, entry in value.items():
            where = f".{camera_id}"
            _camera_id(camera_id, where)
            if not isinstance(entry, Mapping):
                raise Invalid("must be a mapping {format, resolution, fps}", entry, where)
            _reject_unknown(entry, _OVERRIDE_FIELDS, where)
            result[camera_id] = CameraOverride(
                format=_field(_FOURCC, entry, "format", where),
                resolution=_field(Resolution(7680, 4320), entry, "resolution", where),
                fps=_field(Float(lo=1, hi=120), entry, "fps", where),
            )
        return types.MappingProxyType(result)


_VIRTUAL_FIELDS = ("id", "name", "pattern", "size", "rate")


class VirtualCameras(Kind):
    type_name = "list[mapping]"

    def requirement(self) -> str:
        return "a list of {id, name, pattern, size, rate} mappings"

    def coerce(self, value: Any) -> tuple[VirtualCameraConfig, ...]:
        if not isinstance(value, (list, tuple)):
            self.fail(value)
        cameras: list[VirtualCameraConfig] = []
        for index, entry in enumerate(value):
            camera = self._entry(entry, f"[{index}]")
            if any(other.id == camera.id for other in cameras):
                raise Invalid("is declared twice", camera.id, f"[{index}].id")
            cameras.append(camera)
        return tuple(cameras)

    def _entry(self, entry: Any, where: str) -> VirtualCameraConfig:
        if not isinstance(entry, Mapping):
            raise Invalid("must be a mapping {id, name, pattern, size, rate}", entry, where)
        _reject_unknown(entry, _VIRTUAL_FIELDS, where)
        if "id" not in entry:
            raise Invalid("is required", NO_VALUE, f"{where}.id")
        camera_id = _camera_id(entry["id"], f"{where}.id")
        return VirtualCameraConfig(
            id=camera_id,
            name=_field(Str(nonempty=True), entry, "name", where, _default_name(camera_id)),
            pattern=_field(Enum(*VIRTUAL_PATTERNS), entry, "pattern", where, "testsrc2"),
            size=_field(Resolution(3840, 2160), entry, "size", where, "1280x720"),
            rate=_field(Int(1, 60), entry, "rate", where, 30),
        )


def _default_name(camera_id: str) -> str:
    return f"Virtual camera {camera_number(camera_id)}"
