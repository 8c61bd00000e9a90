"""Are MediaMTX's recordings where the service looks? (media.md §5.2, "consistency check")

Once per provisioning, the paths MediaMTX lists segments for are compared with the camera
directories the recordings store finds on disk. A camera whose segments MediaMTX knows but
whose files the service cannot see means MediaMTX writes elsewhere (another mount, another
``recordPath``): recordings would succeed in MediaMTX and be invisible to the API. That is
logged as an error and shown in the storage health component until it is fixed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from twisted.logger import Logger

from camera_service.rpc.errors import RpcError
from camera_service.storage.files import FileStore

PROBLEM_KEY = "recordings_location"
_CAMERA_ID = re.compile(r"camera[0-9]+")
log = Logger()


class RecordingsConsistency:
    def __init__(self, mediamtx: Any, store: FileStore,
                 report_problem: Callable[[str, str | None], None]) -> None:
        self._mediamtx = mediamtx
        self._store = store
        self._report = report_problem

    async def check(self) -> list[str]:
        """Run the comparison; returns the camera ids whose recordings are missing on disk."""
        try:
            listed = await self._mediamtx.paths_with_recordings()
        except RpcError:
            return []  # MediaMTX went away again; the next provisioning checks once more
        self._store.invalidate()
        on_disk = {stored.directory for stored in await self._store.scan()}
        missing = sorted(name for name in listed
                         if _CAMERA_ID.fullmatch(name) and name not in on_disk)
        if missing:
            text = (f"MediaMTX lists recordings of {', '.join(missing)} that are not in "
                    f"{self._store.root} (check recordPath, mounts and permissions)")
            log.error("{text}", text=text)
            self._report(PROBLEM_KEY, text)
        else:
            self._report(PROBLEM_KEY, None)
        return missing
