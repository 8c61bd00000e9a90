"""The camera registry and its public views (api.md §4.3-4.5, §4.20 camera_metrics, §5.2).

A ``Camera`` is the service's record of one camera, USB or virtual. It keeps the
current node number for the media side (which has to open the device), but no
view built here ever contains a device path or a node path (api.md §3.1): the
camera id is the only device reference that leaves the process.

The registry is only read and changed on the reactor thread.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from camera_service.rpc.notifier import STREAMS_FOR_RECIPIENT
from camera_service.timeutil import rfc3339

CONNECTED = "CONNECTED"
DISCONNECTED = "DISCONNECTED"
ERROR = "ERROR"
STATUSES = (CONNECTED, DISCONNECTED, ERROR)

VALIDATION_CONFIRMED = "CONFIRMED"
VALIDATION_NONE = "NONE"
VALIDATION_DISCONNECTED = "DISCONNECTED"


class ModeLike(Protocol):
    """What the registry needs of ``camera_service.discovery.v4l2.Mode``."""

    @property
    def fourcc(self) -> str: ...
    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...
    @property
    def fps(self) -> float: ...


class ProbeLike(Protocol):
    """What the registry needs of ``camera_service.discovery.v4l2.ProbeResult``."""

    @property
    def driver(self) -> str: ...
    @property
    def card(self) -> str: ...
    @property
    def bus_info(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def capabilities(self) -> tuple[str, ...]: ...
    @property
    def device_caps(self) -> tuple[str, ...]: ...
    @property
    def modes(self) -> Sequence[Any]: ...

    def is_capture_node(self) -> bool: ...
    def formats(self) -> list[str]: ...
    def resolutions(self) -> list[str]: ...
    def fps_options(self) -> list[int]: ...
    def metrics_formats(self) -> list[dict[str, Any]]: ...


def round_fps(fps: float) -> int:
    """Half up, as the API's integer frame rates are defined (media.md §1.5)."""
    return math.floor(float(fps) + 0.5)


@dataclass(frozen=True)
class FixedMode:
    """A streaming mode that was not probed (virtual cameras); same fields as v4l2.Mode."""

    fourcc: str
    width: int
    height: int
    fps: float


@dataclass(frozen=True)
class VirtualProbe:
    """The capabilities of a virtual camera (media.md §1.10), shaped like a probe result.

    A lavfi test source produces planar YUV 4:2:0 at exactly the configured size and
    rate, so that is all it reports.
    """

    card: str
    width: int
    height: int
    rate: int
    driver: str = "lavfi"
    bus_info: str = "virtual"
    version: str = ""
    capabilities: tuple[str, ...] = ("Video Capture", "Streaming")
    device_caps: tuple[str, ...] = ("Video Capture", "Streaming")

    @property
    def modes(self) -> tuple[FixedMode, ...]:
        return (FixedMode("YU12", self.width, self.height, float(self.rate)),)

    def is_capture_node(self) -> bool:
        return True

    def formats(self) -> list[str]:
        return ["YU12"]

    def resolutions(self) -> list[str]:
        return [f"{self.width}x{self.height}"]

    def fps_options(self) -> list[int]:
        return [int(self.rate)]

    def metrics_formats(self) -> list[dict[str, Any]]:
        return [{"pixel_format": "YU12", "width": self.width, "height": self.height,
                 "frame_rates": [f"{float(self.rate):.3f}"]}]


@dataclass
class Camera:
    """One known camera. Fields other than the public ones are internal."""

    id: str
    status: str
    name: str
    # Identity key of a USB camera (media.md §1.7); None for virtual cameras.
    identity: str | None
    # Current node number while present; None while unplugged. Internal only.
    node: int | None
    # The node number it was last seen at (get_metrics device_num).
    last_node: int | None
    probe: ProbeLike | None
    mode: ModeLike | None
    error: str | None
    last_seen: float
    virtual: Any = None  # the VirtualCameraConfig of a virtual camera

    @property
    def number(self) -> int:
        """The N of ``camera<N>``: the API's ordering key."""
        return int(self.id[len("camera"):])

    @property
    def is_virtual(self) -> bool:
        return self.virtual is not None

    @property
    def device_path(self) -> str | None:
        """The V4L2 node for the media side's command builders. NEVER put in a view."""
        return None if self.node is None else f"/dev/video{self.node}"

    @property
    def resolution(self) -> str:
        return "" if self.mode is None else f"{self.mode.width}x{self.mode.height}"

    @property
    def fps(self) -> int:
        return 0 if self.mode is None else round_fps(self.mode.fps)

    @property
    def device_num(self) -> int:
        if self.last_node is not None:
            return self.last_node
        return self.number


# -- views -------------------------------------------------------------------------

def camera_object(camera: Camera, streams: Any) -> dict[str, Any]:
    """The Camera object of api.md §4.3 (``streams`` built for the caller)."""
    return {
        "device": camera.id,
        "status": camera.status,
        "name": camera.name,
        "resolution": camera.resolution,
        "fps": camera.fps,
        "streams": streams,
    }


def status_update_payload(camera: Camera) -> dict[str, Any]:
    """``camera_status_update`` params (api.md §5.2): exactly six fields; the notifier
    fills ``streams`` per recipient."""
    return camera_object(camera, STREAMS_FOR_RECIPIENT)


_ZERO_METRICS = {"bytes_sent": 0, "readers": 0, "uptime": 0}


def status_result(camera: Camera, streams: dict[str, str],
                  path_metrics: Mapping[str, Any] | None) -> dict[str, Any]:
    """``get_camera_status`` (api.md §4.4)."""
    result = camera_object(camera, streams)
    metrics = dict(_ZERO_METRICS)
    if path_metrics:
        for key in metrics:
            value = path_metrics.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                metrics[key] = int(value)
    result["metrics"] = metrics
    if camera.probe is not None:
        result["capabilities"] = {"formats": list(camera.probe.formats()),
                                  "resolutions": list(camera.probe.resolutions())}
    return result


def capabilities_result(camera: Camera) -> dict[str, Any]:
    """``get_camera_capabilities`` (api.md §4.5); ``frame_rates`` aliases ``fps_options``."""
    probe = camera.probe
    formats = list(probe.formats()) if probe is not None else []
    resolutions = list(probe.resolutions()) if probe is not None else []
    fps_options = [int(v) for v in probe.fps_options()] if probe is not None else []
    if camera.status == DISCONNECTED:
        validation = VALIDATION_DISCONNECTED
    elif probe is not None:
        validation = VALIDATION_CONFIRMED
    else:
        validation = VALIDATION_NONE
    return {
        "device": camera.id,
        "formats": formats,
        "resolutions": resolutions,
        "fps_options": fps_options,
        "frame_rates": list(fps_options),
        "validation_status": validation,
    }


def metrics_entry(camera: Camera) -> dict[str, Any]:
    """One value of ``get_metrics.camera_metrics.cameras`` (api.md §4.20)."""
    probe = camera.probe
    return {
        "path": camera.id,
        "name": camera.name,
        "status": camera.status,
        "device_num": camera.device_num,
        "last_seen": rfc3339(camera.last_seen),
        "capabilities": {
            "driver_name": probe.driver if probe is not None else "",
            "card_name": probe.card if probe is not None else "",
            "bus_info": probe.bus_info if probe is not None else "",
            "version": probe.version if probe is not None else "",
            "capabilities": list(probe.capabilities) if probe is not None else [],
            "device_caps": list(probe.device_caps) if probe is not None else [],
        },
        "formats": [dict(item) for item in probe.metrics_formats()] if probe is not None else [],
    }


class CameraRegistry:
    """Every camera known this run, by id. Cameras are never removed: an unplugged
    camera stays listed as DISCONNECTED until the service stops (api.md §3.1)."""

    def __init__(self) -> None:
        self._cameras: dict[str, Camera] = {}

    def add(self, camera: Camera) -> None:
        if camera.id in self._cameras:
            raise ValueError(f"{camera.id} is already registered")
        self._cameras[camera.id] = camera

    def get(self, camera_id: str) -> Camera | None:
        return self._cameras.get(camera_id)

    def by_identity(self, key: str) -> Camera | None:
        for camera in self._cameras.values():
            if camera.identity == key:
                return camera
        return None

    def __iter__(self) -> Iterator[Camera]:
        """Ordered by N ascending (api.md §4.3)."""
        return iter(sorted(self._cameras.values(), key=lambda c: c.number))

    def __len__(self) -> int:
        return len(self._cameras)

    def __contains__(self, camera_id: object) -> bool:
        return camera_id in self._cameras

    def ids(self) -> list[str]:
        return [camera.id for camera in self]

    def connected_ids(self) -> list[str]:
        return [camera.id for camera in self if camera.status == CONNECTED]

    def present_count(self) -> int:
        """Cameras that hold a max_cameras slot: CONNECTED or ERROR (media.md §1.7)."""
        return sum(1 for camera in self._cameras.values() if camera.status in (CONNECTED, ERROR))

    # -- whole-registry views -------------------------------------------------------

    def list_result(self, streams_for: Callable[[str], dict[str, str]]) -> dict[str, Any]:
        """``get_camera_list`` (api.md §4.3)."""
        cameras = [camera_object(camera, streams_for(camera.id)) for camera in self]
        return {
            "cameras": cameras,
            "total": len(cameras),
            "connected": sum(1 for item in cameras if item["status"] == CONNECTED),
        }

    def metrics_result(self) -> dict[str, Any]:
        """``get_metrics.camera_metrics`` (api.md §4.20), keyed by camera id."""
        return {
            "connected_cameras": len(self.connected_ids()),
            "cameras": {camera.id: metrics_entry(camera) for camera in self},
        }
