"""Deleting a recording through MediaMTX when the service may not (media.md §5.6).

A segment MediaMTX wrote into a directory created before the permissions of §5.1 were in
place can be undeletable for the service's user. MediaMTX can delete its own files: the
service finds the segment whose start, written in local time with the file name pattern,
equals the file's stem, and asks MediaMTX to delete it with that start passed verbatim.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from twisted.logger import Logger

from camera_service.rpc.errors import RpcError
from camera_service.storage.files import StoredFile, name_camera
from camera_service.timeutil import parse_rfc3339

log = Logger()


def stem_of_start(camera_id: str, start: str, with_fraction: bool) -> str | None:
    """The file stem MediaMTX gives a segment starting at ``start`` (RFC 3339)."""
    try:
        seconds = parse_rfc3339(start)
    except ValueError:
        return None
    local = _dt.datetime.fromtimestamp(seconds)
    stem = f"{camera_id}_{local:%Y-%m-%d_%H-%M-%S}"
    return f"{stem}-{local:%f}" if with_fraction else stem


class MediaMTXSegmentDeleter:
    def __init__(self, mediamtx: Any) -> None:
        self._mediamtx = mediamtx

    async def __call__(self, stored: StoredFile) -> bool:
        """True once MediaMTX deleted the segment; False when it cannot help."""
        camera_id = name_camera(stored.stem)
        if camera_id is None or getattr(self._mediamtx, "state", "") != "up":
            return False
        with_fraction = stored.stem.count("-") > 4  # ..._HH-MM-SS-<micros>
        try:
            for start in await self._mediamtx.recordings_of(camera_id):
                if stem_of_start(camera_id, start, with_fraction) == stored.stem:
                    await self._mediamtx.delete_segment(camera_id, start)
                    log.info("MediaMTX deleted {name} for the service (permission fallback)",
                             name=stored.name)
                    return True
        except RpcError as error:
            log.warn("MediaMTX could not delete {name}: {error}", name=stored.name, error=str(error))
        return False
