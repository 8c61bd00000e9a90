"""Server-level methods: ping, server info, status, readiness and metrics (api.md §4)."""

from __future__ import annotations

import os
import platform
import threading
from typing import Any

from camera_service import SERVICE_NAME, __version__
from camera_service.rpc.dispatcher import CallContext
from camera_service.rpc.registry import MethodRegistry
from camera_service.timeutil import rfc3339

_ARCHITECTURES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
                  "armv7l": "arm", "armv6l": "arm", "i686": "386", "i386": "386"}
_READINESS_MESSAGES = {
    "starting": "System is initializing, please wait",
    "partial": "Some cameras available, discovery in progress",
    "ready": "System is fully operational",
}


def architecture() -> str:
    machine = platform.machine().lower()
    return _ARCHITECTURES.get(machine, machine or "unknown")


def build_date() -> str:
    from_env = os.environ.get("SERVICE_BUILD_DATE", "").strip()
    if from_env:
        return from_env
    try:
        from importlib.metadata import distribution

        dist = distribution("camera-service")
        stamp = dist.read_text("BUILD_DATE")
        if stamp:
            return stamp.strip()
    except Exception:
        pass
    return "unknown"


async def ping(ctx: CallContext, params: dict[str, Any]) -> str:
    """Connectivity check."""
    return "pong"


async def get_server_info(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    """Server identity, runtime and limits."""
    app = ctx.app
    return {
        "name": SERVICE_NAME,
        "version": __version__,
        "build_date": app.build_date,
        "python_version": platform.python_version(),
        "architecture": architecture(),
        "capabilities": ["snapshots", "recordings", "streaming"],
        "supported_formats": ["fmp4", "mp4", "jpg"],
        "max_cameras": app.config.camera.max_cameras,
    }


async def get_system_status(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    """Start-up readiness."""
    readiness = ctx.app.readiness
    status = readiness.status()
    return {
        "status": status,
        "message": _READINESS_MESSAGES[status],
        "available_cameras": list(readiness.available_cameras()),
        "discovery_active": bool(readiness.discovery_active()),
    }


async def get_status(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    """Overall health and component states."""
    app = ctx.app
    report = app.status.evaluate()
    return {
        "status": report.status,
        "uptime": round(max(0.0, app.clock.seconds() - app.started_at), 3),
        "version": __version__,
        "components": report.components,
    }


async def get_metrics(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    """System, camera and stream metrics."""
    app = ctx.app
    sample = app.system_metrics.latest
    return {
        "timestamp": rfc3339(app.clock.seconds()),
        "system_metrics": {
            "cpu_usage": round(float(sample.cpu_usage), 1),
            "memory_usage": round(float(sample.memory_usage), 1),
            "disk_usage": round(float(sample.disk_usage), 1),
            # Before the first sample lands the cached count is 0, which is never true.
            "threads": int(sample.threads) if sample.sampled_at else threading.active_count(),
        },
        "camera_metrics": app.camera_metrics(),
        "recording_metrics": {},
        "stream_metrics": app.stream_metrics(),
    }


def register(registry: MethodRegistry) -> None:
    registry.register("ping", ping)
    registry.register("get_server_info", get_server_info)
    registry.register("get_system_status", get_system_status)
    registry.register("get_status", get_status)
    registry.register("get_metrics", get_metrics)
