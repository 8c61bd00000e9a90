"""The two media stores on disk: scanning, name rules and lookups (api.md §3.5, media.md §5.2).

A store is a root directory plus its per-camera subdirectories, one level deep. Every
lookup goes through a scan of what really exists: a client's name is compared with the
names found on disk and never joined to a path (media.md §0.4). Scans are blocking
(``lstat`` of every entry), so :class:`FileStore` runs them through ``run_in_thread`` and
caches the result for ``cache_seconds``; the service invalidates the cache on every
create or delete it makes.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import stat
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred, succeed

RECORDINGS = "recordings"
SNAPSHOTS = "snapshots"

RECORDING_EXTENSIONS = (".mp4", ".ts")
SNAPSHOT_EXTENSIONS = (".jpg", ".jpeg", ".png")

CONTENT_TYPES = {
    ".mp4": "video/mp4",
    ".ts": "video/mp2t",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
}

# api.md §3.6: the file name rule. ``..`` is refused on top of the character class.
FILE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,255}$")

# <camera id>_<YYYY-MM-DD_HH-MM-SS>[-<6 digits>] (media.md §3.2)
_NAME_TIME = re.compile(
    r"^(?P<camera>camera[0-9]+)_(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})_"
    r"(?P<time>[0-9]{2}-[0-9]{2}-[0-9]{2})(?:-(?P<fraction>[0-9]{6}))?$")


def valid_file_name(name: object) -> bool:
    """True when ``name`` passes the API's file name rule (no separators, no traversal)."""
    # fullmatch, not match: "$" also matches before a trailing newline, so "x\n" would pass.
    return isinstance(name, str) and FILE_NAME.fullmatch(name) is not None and ".." not in name


def extension_of(name: str) -> str:
    return os.path.splitext(name)[1].lower()


def content_type(name: str) -> str:
    return CONTENT_TYPES.get(extension_of(name), "application/octet-stream")


def recording_stem(name: str) -> str:
    """The API name of a recording: its file name without a recording extension."""
    root, ext = os.path.splitext(name)
    return root if ext.lower() in RECORDING_EXTENSIONS else name


def name_time(stem: str) -> float | None:
    """Epoch seconds of the segment start written in a standard recording stem.

    The name carries local time (media.md §3.2); ``None`` when the stem is not in the
    standard form or names an impossible date.
    """
    match = _NAME_TIME.fullmatch(stem)
    if match is None:
        return None
    try:
        moment = _dt.datetime.strptime(f"{match['date']}_{match['time']}", "%Y-%m-%d_%H-%M-%S")
    except ValueError:
        return None
    seconds = moment.timestamp()  # naive → interpreted in the process's local time zone
    if match["fraction"]:
        seconds += int(match["fraction"]) / 1_000_000
    return seconds


def name_camera(stem: str) -> str | None:
    match = _NAME_TIME.fullmatch(stem)
    return None if match is None else match["camera"]


@dataclass(frozen=True)
class StoredFile:
    """One media file found by a scan."""

    name: str          # base name with extension
    path: str          # absolute path
    size: int
    mtime: float
    directory: str     # per-camera subdirectory name, "" for the root

    @property
    def stem(self) -> str:
        return recording_stem(self.name)


def scan_directory_tree(root: str, extensions: Sequence[str]) -> list[StoredFile]:
    """Blocking: the media files in ``root`` and its subdirectories, one level deep.

    Hidden entries (temporary and in-progress files start with ``.``) and anything that
    is not a regular file are skipped; symlinks are never followed (``lstat``). Raises
    OSError when the root itself cannot be read; unreadable subdirectories are skipped.
    """
    found: list[StoredFile] = []
    wanted = tuple(extensions)

    def take(label: str, entries: Iterable[os.DirEntry[str]], want_dirs: bool) -> list[str]:
        subdirs: list[str] = []
        for entry in entries:
            name = entry.name
            if name.startswith("."):
                continue
            if not name.lower().endswith(wanted):
                # Only directories of the root matter beyond media files, and the entry's
                # d_type tells that without a system call: lstat is a large share of a
                # scan's cost, so it is spent only on names that can be listed.
                try:
                    if want_dirs and entry.is_dir(follow_symlinks=False):
                        subdirs.append(name)
                except OSError:
                    pass
                continue
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                found.append(StoredFile(name, entry.path, info.st_size, info.st_mtime, label))
            elif want_dirs and stat.S_ISDIR(info.st_mode):
                subdirs.append(name)
        return subdirs

    with os.scandir(root) as entries:
        subdirs = take("", entries, True)
    for name in sorted(subdirs):
        try:
            with os.scandir(os.path.join(root, name)) as entries:
                take(name, entries, False)
        except OSError:
            continue
    return found


def newest_first(files: Iterable[StoredFile]) -> list[StoredFile]:
    """api.md §3.3: by modification time, newest first; ties by name, ascending."""
    return sorted(files, key=lambda f: (-f.mtime, f.name))


def _scan_newest_first(root: str, extensions: Sequence[str]) -> list[StoredFile]:
    """Blocking: the scan, already in listing order (sorting 10,000 entries takes ~10 ms,
    which belongs in the pool, not on the reactor)."""
    return newest_first(scan_directory_tree(root, extensions))


class FileStore:
    """One media root (recordings or snapshots) with a short-lived scan cache."""

    def __init__(self, kind: str, root: str, run_in_thread: Callable[..., Deferred[Any]],
                 clock: Any, cache_seconds: float = 2.0) -> None:
        if kind not in (RECORDINGS, SNAPSHOTS):
            raise ValueError(f"unknown store kind {kind!r}")
        self.kind = kind
        self.root = os.path.abspath(root)
        self.extensions = RECORDING_EXTENSIONS if kind == RECORDINGS else SNAPSHOT_EXTENSIONS
        self._run = run_in_thread
        self._clock = clock
        self._cache_seconds = cache_seconds
        self._cached: list[StoredFile] | None = None
        self._cached_at = 0.0
        self._generation = 0
        # Waiters of the scan running for the current generation. invalidate() drops it, so
        # a caller arriving after a create/delete never joins a scan that started before it.
        self._pending: list[Deferred[list[StoredFile]]] | None = None

    # -- scanning ----------------------------------------------------------------------

    def invalidate(self) -> None:
        """Forget the cached scan; a scan already running is not reused either."""
        self._cached = None
        self._generation += 1
        self._pending = None

    def scan(self) -> Deferred[list[StoredFile]]:
        """Every file of this store, newest first (api.md §3.3). Concurrent callers share
        one scan (single flight)."""
        now = self._clock.seconds()
        if self._cached is not None and now - self._cached_at <= self._cache_seconds:
            return succeed(self._cached)
        waiter: Deferred[list[StoredFile]] = Deferred()
        if self._pending is not None:
            self._pending.append(waiter)
            return waiter
        waiters: list[Deferred[list[StoredFile]]] = [waiter]
        self._pending = waiters
        generation = self._generation
        started = now

        def finished(result: Any) -> None:
            # Only this scan's own waiters: after an invalidate() a newer scan may own
            # self._pending, and its callers must not get this (older) result.
            if self._pending is waiters:
                self._pending = None
            if isinstance(result, list) and generation == self._generation:
                self._cached = result
                self._cached_at = started
            for each in waiters:
                each.callback(result) if isinstance(result, list) else each.errback(result)

        self._run(_scan_newest_first, self.root, self.extensions).addBoth(finished)
        return waiter

    # -- names -------------------------------------------------------------------------

    def api_name(self, stored: StoredFile) -> str:
        """The name the API uses: the stem for recordings, the full name for snapshots."""
        return stored.stem if self.kind == RECORDINGS else stored.name

    def download_url(self, stored: StoredFile) -> str:
        return f"/files/{self.kind}/{stored.name}"

    def resolve(self, files: Iterable[StoredFile], name: str) -> StoredFile | None:
        """The file a client's (already validated) name refers to, from a scan's result.

        Recordings accept the stem or the full name; for a stem, ``.mp4`` wins over ``.ts``.
        Snapshots accept the full name only. Basenames are unique in a store the service
        wrote; if a stray duplicate exists, the root wins, then the first subdirectory.
        """
        if not valid_file_name(name):
            return None
        matches: list[StoredFile] = []
        if self.kind == SNAPSHOTS or extension_of(name) in RECORDING_EXTENSIONS:
            matches = [f for f in files if f.name == name]
        else:
            for ext in RECORDING_EXTENSIONS:
                matches = [f for f in files if f.name == name + ext]
                if matches:
                    break
        if not matches:
            return None
        return min(matches, key=lambda f: (f.directory != "", f.directory))

    async def lookup(self, name: str) -> StoredFile | None:
        return self.resolve(await self.scan(), name)

    async def page(self, limit: int, offset: int) -> tuple[list[StoredFile], int]:
        """One page of the newest-first listing, and the total count."""
        # The scan comes back sorted from the thread pool, so a page of a 10,000-file
        # store costs the reactor a slice, never a sort.
        ordered = await self.scan()
        return ordered[offset:offset + limit], len(ordered)

    def camera_directory(self, camera_id: str) -> str:
        """The per-camera directory. ``camera_id`` must already be a validated camera id."""
        if re.fullmatch(r"camera[0-9]+", camera_id) is None:
            raise ValueError("not a camera id")
        return os.path.join(self.root, camera_id)
