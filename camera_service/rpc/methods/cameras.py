"""Camera methods: get_camera_list, get_camera_status, get_camera_capabilities (api.md §4.3-4.5).

Results come from the camera monitor's registry views, which never contain a device
path. Stream URLs are built for the calling connection's host (api.md §3.4).
"""

from __future__ import annotations

from typing import Any

from camera_service.discovery.monitor import CameraMonitor
from camera_service.discovery.registry import Camera, capabilities_result, status_result
from camera_service.rpc.dispatcher import CallContext
from camera_service.rpc.errors import not_found
from camera_service.rpc.params import DEVICE
from camera_service.rpc.registry import MethodRegistry


def _camera(monitor: CameraMonitor, camera_id: str) -> Camera:
    # DEVICE already enforced ^camera[0-9]+$ (-32602); an id of that form that no
    # camera has ever had this run (camera7, camera01) is -32010.
    camera = monitor.registry.get(camera_id)
    if camera is None:
        raise not_found("camera", camera_id)
    return camera


def register(registry: MethodRegistry, monitor: CameraMonitor) -> None:
    async def get_camera_list(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
        """All known cameras, ordered by N ascending."""
        host = ctx.session.host
        return monitor.registry.list_result(lambda camera_id: ctx.app.stream_urls(camera_id, host))

    async def get_camera_status(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
        """Status of one camera."""
        camera = _camera(monitor, params["device"])
        return status_result(camera, ctx.app.stream_urls(camera.id, ctx.session.host),
                             monitor.path_metrics(camera.id))

    async def get_camera_capabilities(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
        """Formats, resolutions and frame rates of one camera."""
        return capabilities_result(_camera(monitor, params["device"]))

    registry.register("get_camera_list", get_camera_list)
    registry.register("get_camera_status", get_camera_status, (DEVICE,))
    registry.register("get_camera_capabilities", get_camera_capabilities, (DEVICE,))
