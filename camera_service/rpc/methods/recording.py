"""start_recording and stop_recording (api.md §4.7-4.8; media.md §3).

The handlers only validate and delegate: the per-camera state machine, its lock and the
notifications live in :class:`camera_service.recording.service.RecordingService`.
"""

from __future__ import annotations

from typing import Any

from camera_service.rpc.dispatcher import CallContext
from camera_service.rpc.params import DEVICE, Param, int_range, one_of

DURATION = Param("duration", "integer", check=int_range(1, 86400),
                 hint="duration is whole seconds from 1 to 86400")
FORMAT = Param("format", "string", default="fmp4", check=one_of("fmp4", "mp4", "mkv"),
               hint="format is fmp4, mp4 or mkv")


def register(registry: Any, recorder: Any) -> None:
    async def start_recording(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
        """Start recording a camera; answers once the first file is being written."""
        return await recorder.start(params["device"], params.get("duration"), params["format"])

    async def stop_recording(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
        """Stop the camera's active recording."""
        return await recorder.stop(params["device"])

    registry.register("start_recording", start_recording, (DEVICE, DURATION, FORMAT))
    registry.register("stop_recording", stop_recording, (DEVICE,))
