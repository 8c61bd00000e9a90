"""External stream methods: discover_external_streams, add_external_stream,
remove_external_stream, get_external_streams, set_discovery_interval (api.md §4.30–4.34).

The handlers validate nothing beyond their ``Param`` tables and shape results exactly as
the contract's tables say; the work is in ``camera_service.external.service``. URLs in
results and errors are always masked there (``rtsp://user:***@host/...``).
"""

from __future__ import annotations

from typing import Any

from camera_service.external.service import SKYDIO_TYPE, ExternalStreamsService
from camera_service.external.urls import UrlProblem, check_url
from camera_service.rpc.dispatcher import CallContext
from camera_service.rpc.params import Param, ParamProblem, int_range, non_empty
from camera_service.timeutil import rfc3339

__all__ = ["ExternalMethods", "register"]


def _stream_url(value: str) -> None:
    non_empty(value)
    try:
        check_url(value)
    except UrlProblem as problem:
        raise ParamProblem("url_scheme", str(problem)) from None


def _text(limit: int) -> Any:
    def check(value: str) -> None:
        non_empty(value)
        if len(value) > limit:
            raise ParamProblem("range", f"must be at most {limit} characters")
    return check


_URL_HINT = "Use rtsp://host[:port]/path or rtsps://host[:port]/path"

DISCOVER_PARAMS = (
    Param("skydio_enabled", "boolean", default=True),
    Param("generic_enabled", "boolean", default=False),
    Param("force_rescan", "boolean", default=False),
    Param("include_offline", "boolean", default=False),
)
ADD_PARAMS = (
    Param("stream_url", "string", required=True, check=_stream_url, hint=_URL_HINT,
          suggestion="Give an rtsp:// or rtsps:// URL with a host"),
    Param("stream_name", "string", required=True, check=_text(255),
          hint="A display name of 1 to 255 characters"),
    Param("stream_type", "string", default="generic_rtsp", check=_text(64),
          hint="For example generic_rtsp or skydio_stanag4609"),
)
REMOVE_PARAMS = (
    Param("stream_url", "string", required=True, check=non_empty,
          hint="Use a url from get_external_streams",
          suggestion="Give the URL of a known external stream"),
)
INTERVAL_PARAMS = (
    Param("scan_interval", "integer", required=True, check=int_range(0, None),
          hint="Seconds between scans; 0 = only on request"),
)


def _duration(seconds: float) -> str:
    return f"{max(0.0, seconds):.1f}s"


class ExternalMethods:
    def __init__(self, service: ExternalStreamsService) -> None:
        self._service = service

    def _proxy_url(self, ctx: CallContext) -> Any:
        # The proxy path's RTSP URL for this connection's host (api.md §3.4 host rule).
        return lambda name: ctx.app.stream_urls.rtsp(name, ctx.session.host)

    def _split(self, ctx: CallContext, listed: list[tuple[Any, str]]) -> tuple[list[Any], list[Any], list[Any]]:
        everything: list[Any] = []
        skydio: list[Any] = []
        generic: list[Any] = []
        proxy_url = self._proxy_url(ctx)
        for entry, status in listed:
            described = self._service.describe(entry, status=status, proxy_url=proxy_url)
            everything.append(described)
            (skydio if entry.type == SKYDIO_TYPE else generic).append(described)
        return everything, skydio, generic

    async def discover_external_streams(self, ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
        """Scan the configured candidates, Skydio and generic targets for RTSP streams."""
        service = self._service
        record = await service.discover(skydio=params["skydio_enabled"],
                                        generic=params["generic_enabled"],
                                        force=params["force_rescan"])
        listed = service.scan_streams(record, params["include_offline"])
        everything, skydio, generic = self._split(ctx, listed)
        return {
            "discovered_streams": everything,
            "skydio_streams": skydio,
            "generic_streams": generic,
            "scan_timestamp": rfc3339(record.finished),
            "total_found": len(everything),
            "discovery_options": {"skydio_enabled": record.skydio,
                                  "generic_enabled": record.generic,
                                  "force_rescan": params["force_rescan"],
                                  "include_offline": params["include_offline"]},
            "scan_duration": _duration(record.finished - record.started),
            "errors": list(record.errors),
        }

    async def add_external_stream(self, ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
        """Register an external RTSP stream by hand and give it a MediaMTX proxy path."""
        entry = await self._service.add(params["stream_url"], params["stream_name"],
                                        params["stream_type"])
        described = self._service.describe(entry)
        return {"stream_url": described["url"], "stream_name": entry.name,
                "stream_type": entry.type, "status": "ADDED",
                "timestamp": rfc3339(entry.discovered_at)}

    async def remove_external_stream(self, ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
        """Remove an external stream (added or discovered) and its proxy path."""
        entry = await self._service.remove(params["stream_url"])
        return {"stream_url": self._service.describe(entry)["url"], "status": "REMOVED",
                "timestamp": rfc3339(ctx.app.clock.seconds())}

    async def get_external_streams(self, ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
        """Every known external stream; empty lists when discovery is disabled."""
        everything, skydio, generic = self._split(
            ctx, [(entry, entry.status) for entry in self._service.streams()])
        return {"external_streams": everything, "skydio_streams": skydio,
                "generic_streams": generic, "total_count": len(everything),
                "timestamp": rfc3339(ctx.app.clock.seconds())}

    async def set_discovery_interval(self, ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
        """Reschedule the periodic external-stream scan; 0 = scans only on request."""
        self._service.set_interval(params["scan_interval"])
        return {"scan_interval": params["scan_interval"], "status": "UPDATED",
                "message": "Discovery interval updated successfully",
                "timestamp": rfc3339(ctx.app.clock.seconds())}


def register(registry: Any, service: ExternalStreamsService) -> ExternalMethods:
    """Install the five external stream methods."""
    methods = ExternalMethods(service)
    registry.register("discover_external_streams", methods.discover_external_streams,
                      DISCOVER_PARAMS)
    registry.register("add_external_stream", methods.add_external_stream, ADD_PARAMS)
    registry.register("remove_external_stream", methods.remove_external_stream, REMOVE_PARAMS)
    registry.register("get_external_streams", methods.get_external_streams)
    registry.register("set_discovery_interval", methods.set_discovery_interval, INTERVAL_PARAMS)
    return methods
