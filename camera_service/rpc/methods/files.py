"""File methods: list_recordings, list_snapshots, get_recording_info, get_snapshot_info,
delete_recording, delete_snapshot (api.md §4.9-4.14, §3.3, §3.5; media.md §5.2, §5.6, §5.7).

Every name a client sends has passed the file name rule (``FILENAME``, -32602) and is then
only compared with names a scan found on disk (``FileStore.resolve``); it is never joined
to a path, and the path that is unlinked or probed is the one the scan produced.

``get_recording_info.duration`` comes from ffprobe, run through the ``ProcessRunner`` with
a 10 s timeout and cached by (path, size, mtime); a file of a recording in progress and a
failed probe both give 0.

Deletes re-check the file with ``lstat`` in the thread pool before unlinking and invalidate
the store's scan cache. A recording the service may not unlink (EACCES/EPERM) is handed to
MediaMTX's ``deletesegment`` when MediaMTX is up (media.md §5.6); if that fails too the call
answers -32603 "Recording could not be deleted (permission denied)" and the storage
component shows the fix.
"""

from __future__ import annotations

import json
import math
import os
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from twisted.internet.defer import Deferred, DeferredSemaphore
from twisted.logger import Logger

from camera_service.procs import ProcessError, ProcessRunner, UnsafeArgument
from camera_service.rpc.dispatcher import CallContext
from camera_service.rpc.errors import RpcError, invalid_state, not_found
from camera_service.rpc.params import FILENAME, LIMIT, OFFSET
from camera_service.rpc.registry import MethodRegistry
from camera_service.storage.files import (
    RECORDINGS,
    SNAPSHOTS,
    FileStore,
    StoredFile,
    name_time,
)
from camera_service.storage.retention import UnsafePath, unlink_stored
from camera_service.storage.service import StorageService, internal_failure
from camera_service.timeutil import rfc3339

log = Logger(namespace="camera_service.rpc.methods.files")

FFPROBE_TIMEOUT = 10.0
# Probes running at once: each is a whole process; a burst of info calls must not fork-bomb
# a 2-core box.
FFPROBE_CONCURRENCY = 2
DURATION_CACHE_SIZE = 4096
_STDOUT_LIMIT = 64 * 1024

_LABELS = {RECORDINGS: ("Recordings", "recording", "Recording"),
           SNAPSHOTS: ("Snapshots", "snapshot", "Snapshot")}
_SUGGESTION = "Check storage configuration and permissions"


def parse_ffprobe_duration(stdout: bytes) -> int | None:
    """Whole seconds (rounded down) from ``-show_entries format=duration -of json``."""
    try:
        document = json.loads(stdout.decode("utf-8", errors="replace"))
        value = float(document["format"]["duration"])
    except (ValueError, KeyError, TypeError):
        return None
    if not math.isfinite(value) or value < 0:
        return None
    return math.floor(value)


class FileMethods:
    """The six handlers and the duration cache they share."""

    def __init__(self, stores: dict[str, FileStore], storage: StorageService,
                 runner: ProcessRunner | None, ffprobe_path: str | None,
                 run_in_thread: Callable[..., Deferred[Any]],
                 delete_via_mediamtx: Callable[[StoredFile], Awaitable[bool]] | None = None) -> None:
        self._stores = stores
        self._delete_via_mediamtx = delete_via_mediamtx
        self._storage = storage
        self._runner = runner
        self._ffprobe = ffprobe_path
        self._run = run_in_thread
        self._durations: OrderedDict[tuple[str, int, float], int] = OrderedDict()
        self._probe_slots = DeferredSemaphore(FFPROBE_CONCURRENCY)
        self.probes = 0  # ffprobe runs started (tests check the cache with it)

    # -- helpers -------------------------------------------------------------------------------

    def _roots(self) -> tuple[str, ...]:
        return tuple(store.root for store in self._stores.values())

    @staticmethod
    def _unreadable(kind: str, error: Exception) -> RpcError:
        return internal_failure(f"{_LABELS[kind][0]} directory not found or inaccessible",
                                _SUGGESTION, str(error))

    async def _scan_page(self, kind: str, limit: int, offset: int) -> tuple[list[StoredFile], int]:
        try:
            return await self._stores[kind].page(limit, offset)
        except OSError as error:
            raise self._unreadable(kind, error) from None

    async def _find(self, kind: str, name: str) -> StoredFile:
        try:
            stored = await self._stores[kind].lookup(name)
        except OSError as error:
            raise self._unreadable(kind, error) from None
        if stored is None:
            raise not_found(_LABELS[kind][1], name)
        return stored

    async def _list(self, kind: str, params: dict[str, Any]) -> dict[str, Any]:
        limit, offset = params["limit"], params["offset"]
        store = self._stores[kind]
        page, total = await self._scan_page(kind, limit, offset)
        return {
            "files": [{"filename": store.api_name(f), "file_size": f.size,
                       "modified_time": rfc3339(f.mtime), "download_url": store.download_url(f)}
                      for f in page],
            "total": total,
            "limit": limit,
            "offset": offset,
        }

    async def duration(self, stored: StoredFile) -> int:
        """Media duration in whole seconds; 0 while recording, and when it cannot be read."""
        if self._storage.is_busy(stored.path):
            return 0
        key = (stored.path, stored.size, stored.mtime)
        cached = self._durations.get(key)
        if cached is not None:
            self._durations.move_to_end(key)
            return cached
        if self._ffprobe is None or self._runner is None:
            return 0
        await self._probe_slots.acquire()
        try:
            self.probes += 1
            # file: stops FFmpeg from reading the path as a protocol (media.md §5.7); the
            # path is the scan's, made of a configured root and a name that passed the rule.
            result = await self._runner.run(
                self._ffprobe, ["-v", "error", "-show_entries", "format=duration", "-of", "json",
                                f"file:{stored.path}"],
                timeout=FFPROBE_TIMEOUT, stdout_limit=_STDOUT_LIMIT)
        except (UnsafeArgument, ProcessError, OSError) as error:
            log.warn("ffprobe could not run for {name}: {error}", name=stored.name, error=str(error))
            return 0
        finally:
            self._probe_slots.release()
        seconds = parse_ffprobe_duration(result.stdout) if result.ok else None
        if seconds is None:
            # Not cached: a timeout under load, or a file still being finalised, may succeed later.
            log.info("ffprobe gave no duration for {name}: {detail}", name=stored.name,
                     detail=result.detail())
            return 0
        self._durations[key] = seconds
        while len(self._durations) > DURATION_CACHE_SIZE:
            self._durations.popitem(last=False)
        return seconds

    async def _delete(self, kind: str, name: str) -> StoredFile:
        stored = await self._find(kind, name)
        store = self._stores[kind]
        label = _LABELS[kind]
        if self._storage.is_busy(stored.path):
            raise invalid_state("file_in_use", "RECORDING", ["STOPPED"],
                                f"{label[2]} {store.api_name(stored)} belongs to a recording in progress",
                                "Stop the recording first")
        try:
            await self._run(unlink_stored, stored, self._roots())
        except (FileNotFoundError, UnsafePath):
            # Gone (or no longer a plain file) since the scan: to the client it does not exist.
            raise not_found(label[1], name) from None
        except PermissionError as error:
            if kind == RECORDINGS and self._delete_via_mediamtx is not None \
                    and await self._delete_via_mediamtx(stored):
                store.invalidate()
                return stored
            self._storage.report_permission_problem(os.path.dirname(stored.path), f"{label[2]} {stored.name}")
            raise internal_failure(f"{label[2]} could not be deleted (permission denied)",
                                   _SUGGESTION, str(error)) from None
        except OSError as error:
            raise internal_failure(f"{label[2]} could not be deleted", _SUGGESTION, str(error)) from None
        finally:
            store.invalidate()
        log.info("{kind} file {name} deleted", kind=label[1], name=stored.name)
        return stored

    # -- handlers ------------------------------------------------------------------------------

    async def list_recordings(self, ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
        """Recording files, newest first, paged."""
        return await self._list(RECORDINGS, params)

    async def list_snapshots(self, ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
        """Snapshot files, newest first, paged."""
        return await self._list(SNAPSHOTS, params)

    async def get_recording_info(self, ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
        """Metadata for one recording."""
        stored = await self._find(RECORDINGS, params["filename"])
        store = self._stores[RECORDINGS]
        duration = await self.duration(stored)
        started = name_time(stored.stem)
        return {
            "filename": store.api_name(stored),
            "file_size": stored.size,
            "duration": duration,
            "created_time": rfc3339(started if started is not None else stored.mtime),
            "download_url": store.download_url(stored),
        }

    async def get_snapshot_info(self, ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
        """Metadata for one snapshot."""
        stored = await self._find(SNAPSHOTS, params["filename"])
        store = self._stores[SNAPSHOTS]
        return {
            "filename": store.api_name(stored),
            "file_size": stored.size,
            "created_time": rfc3339(stored.mtime),
            "download_url": store.download_url(stored),
        }

    async def delete_recording(self, ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
        """Delete one recording file."""
        stored = await self._delete(RECORDINGS, params["filename"])
        return {"filename": self._stores[RECORDINGS].api_name(stored), "deleted": True,
                "message": "Recording file deleted successfully"}

    async def delete_snapshot(self, ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
        """Delete one snapshot file."""
        stored = await self._delete(SNAPSHOTS, params["filename"])
        return {"filename": self._stores[SNAPSHOTS].api_name(stored), "deleted": True,
                "message": "Snapshot file deleted successfully"}


def register(registry: MethodRegistry, stores: dict[str, FileStore], storage: StorageService,
             runner: ProcessRunner | None, ffprobe_path: str | None,
             run_in_thread: Callable[..., Deferred[Any]],
             delete_via_mediamtx: Callable[[StoredFile], Awaitable[bool]] | None = None
             ) -> FileMethods:
    methods = FileMethods(stores, storage, runner, ffprobe_path, run_in_thread, delete_via_mediamtx)
    registry.register("list_recordings", methods.list_recordings, (LIMIT, OFFSET))
    registry.register("list_snapshots", methods.list_snapshots, (LIMIT, OFFSET))
    registry.register("get_recording_info", methods.get_recording_info, (FILENAME,))
    registry.register("get_snapshot_info", methods.get_snapshot_info, (FILENAME,))
    registry.register("delete_recording", methods.delete_recording, (FILENAME,))
    registry.register("delete_snapshot", methods.delete_snapshot, (FILENAME,))
    return methods
