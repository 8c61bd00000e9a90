"""``take_snapshot`` (api.md §4.6); the work is done by ``camera_service.snapshots``.

The handler only adapts the call: parameters are validated by the declarative spec below
(``device`` by the camera id pattern, ``filename`` by the file name rule, both -32602), and
``snapshot.taken`` is handed to ``ctx.after_response`` so the event follows the response.
"""

from __future__ import annotations

from typing import Any

from camera_service.rpc.dispatcher import CallContext
from camera_service.rpc.params import DEVICE, Param, file_name

FILENAME = Param("filename", "string", check=file_name,
                 hint="Use letters, digits, '.', '_' and '-' only; .jpg is appended if missing",
                 suggestion="Choose a plain file name such as front-door.jpg")


def register(registry: Any, service: Any) -> None:
    """Install ``take_snapshot``. ``service`` is a :class:`SnapshotService`."""

    async def take_snapshot(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
        """Capture one JPEG still from a camera."""
        return await service.take(params["device"], params["filename"],
                                  after_response=ctx.after_response)

    # serialise_on documents api.md §8; names are made unique by the service's reservations.
    registry.register("take_snapshot", take_snapshot, (DEVICE, FILENAME), serialise_on="device")
