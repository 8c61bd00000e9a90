"""The persisted identity → camera id map (media.md §1.7).

A camera's public id is the node number at which it was first seen, and it must
stay the same across replugs, renumbering and restarts. This module remembers
``identity key → {id, name, last_seen}`` in ``<state_dir>/camera-ids.json``.

Everything that touches the disk (the read at start-up, each atomic write) runs
through ``run_in_thread`` (the media pool), never on the reactor (§0.2). The
in-memory map is only read and changed on the reactor thread; writes are
coalesced so that at most one is running and a burst of changes ends in one more.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from camera_service.rpc.params import CAMERA_ID
from camera_service.fileutil import write_json_atomically
from camera_service.timeutil import parse_rfc3339, rfc3339

FILE_NAME = "camera-ids.json"
FILE_MODE = 0o640
FORMAT_VERSION = 1

RunInThread = Callable[..., "Deferred[Any]"]


@dataclass(frozen=True)
class IdEntry:
    id: str
    name: str
    last_seen: str


class IdMap:
    """Identity key → id, with least-recently-seen eviction and atomic persistence.

    The entry order of the internal ``OrderedDict`` is the recency order (oldest
    first), so eviction is "drop from the front", and the file keeps that order so
    that equal ``last_seen`` stamps (whole seconds) still evict deterministically
    after a restart.
    """

    _log = Logger()

    def __init__(self, state_dir: str, remember_limit: int, run_in_thread: RunInThread,
                 clock: IReactorTime) -> None:
        self.path = os.path.join(state_dir, FILE_NAME)
        self._limit = max(1, int(remember_limit))
        self._run_in_thread = run_in_thread
        self._clock = clock
        self._entries: OrderedDict[str, IdEntry] = OrderedDict()
        self._reserved: set[str] = set()
        # Write coalescing: one write in flight; changes during it cause one more.
        self._writing = False
        self._dirty = False
        self._idle_waiters: list[Deferred[None]] = []
        self.writes = 0

    # -- start-up ------------------------------------------------------------------

    async def load(self) -> None:
        """Read the file in the thread pool. A missing file is an empty map; a broken
        one is moved aside (kept for the operator) and the map starts empty."""
        try:
            raw = await self._run_in_thread(_read_json, self.path)
            loaded = {} if raw is None else _parse_entries(raw)
        except Exception as error:  # noqa: BLE001 - any unreadable file: start empty
            self._log.warn("camera id map {path} is unreadable ({error}); starting with an empty map",
                           path=self.path, error=str(error))
            try:
                await self._run_in_thread(_move_aside, self.path)
            except Exception:  # noqa: BLE001 - best effort
                self._log.failure("could not move the unreadable camera id map aside")
            return
        if raw is None:
            return
        dropped = _count_entries(raw) - len(loaded)
        if dropped:
            self._log.warn("camera id map: ignored {count} malformed entries", count=dropped)
        # Stable sort: equal stamps keep the file's (recency) order.
        ordered = sorted(loaded.items(), key=lambda item: _stamp(item[1].last_seen) or 0.0)
        self._entries = OrderedDict(ordered)
        if self._evict(keep=None):
            self._schedule_write()
        self._log.info("camera id map: {count} remembered cameras", count=len(self._entries))

    def reserve(self, ids: Iterable[str]) -> None:
        """Ids that belong to virtual cameras: never handed to a USB camera."""
        self._reserved.update(ids)

    # -- queries -------------------------------------------------------------------

    def get(self, key: str) -> IdEntry | None:
        return self._entries.get(key)

    def entries(self) -> dict[str, IdEntry]:
        return dict(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    # -- changes (reactor thread) ---------------------------------------------------

    def choose(self, key: str, number: int, taken: Iterable[str] = ()) -> str:
        """The id for a capture node with identity ``key`` first seen at ``number``
        (nothing is recorded; ``bind`` does that).

        Rule 1: a remembered key keeps its id, whatever the node number is now, unless
        that id now belongs to something else (a virtual camera, or an id in ``taken``:
        ids held this run by cameras with other identities).
        Rule 2: otherwise ``camera<number>``, or the lowest ``camera<M>`` that no other
        key in the map, no virtual camera and nothing in ``taken`` holds.
        """
        blocked = set(taken) | self._reserved
        entry = self._entries.get(key)
        if entry is not None and entry.id not in blocked:
            return entry.id
        held = blocked | {e.id for k, e in self._entries.items() if k != key}
        candidate = f"camera{number}"
        if candidate in held:
            m = 0
            while f"camera{m}" in held:
                m += 1
            candidate = f"camera{m}"
        return candidate

    def assign(self, key: str, number: int, name: str, taken: Iterable[str] = ()) -> str:
        """``choose`` and ``bind`` in one step."""
        camera_id = self.choose(key, number, taken)
        self.bind(key, camera_id, name)
        return camera_id

    def bind(self, key: str, camera_id: str, name: str) -> None:
        """Record that ``key`` is ``camera_id`` and was seen now (persisted)."""
        entry = IdEntry(camera_id, name, rfc3339(self._clock.seconds()))
        previous = self._entries.pop(key, None)
        self._entries[key] = entry  # most recently seen goes to the end
        self._evict(keep=key)
        if previous != entry:
            self._schedule_write()

    def touch(self, key: str, name: str | None = None) -> None:
        """Refresh ``last_seen`` (and the name) of a remembered key."""
        entry = self._entries.get(key)
        if entry is not None:
            self.bind(key, entry.id, entry.name if name is None else name)

    def _evict(self, keep: str | None) -> bool:
        evicted = False
        while len(self._entries) > self._limit:
            oldest = next(k for k in self._entries if k != keep)
            del self._entries[oldest]
            evicted = True
        return evicted

    # -- persistence ---------------------------------------------------------------

    def _schedule_write(self) -> None:
        self._dirty = True
        if not self._writing:
            ensureDeferred(self._write_loop())

    async def _write_loop(self) -> None:
        self._writing = True
        try:
            while self._dirty:
                self._dirty = False
                document = self._document()
                try:
                    await self._run_in_thread(write_atomically, self.path, document)
                    self.writes += 1
                except Exception:  # noqa: BLE001 - a failed write must not break the map
                    # The in-memory map stays right; the next change writes it again.
                    self._log.failure("could not write the camera id map {path}", path=self.path)
        finally:
            self._writing = False
            waiters, self._idle_waiters = self._idle_waiters, []
            for waiter in waiters:
                waiter.callback(None)

    def _document(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "cameras": {key: {"id": e.id, "name": e.name, "last_seen": e.last_seen}
                        for key, e in self._entries.items()},
        }

    def when_written(self) -> Deferred[None]:
        """Fires once no write is pending (each caller gets its own Deferred)."""
        if not self._writing and not self._dirty:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._idle_waiters.append(waiter)
        return waiter


# -- blocking helpers (thread pool only) -------------------------------------------------

def _read_json(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None


def _move_aside(path: str) -> None:
    if os.path.exists(path):
        os.replace(path, path + ".corrupt")


def write_atomically(path: str, document: Mapping[str, Any]) -> None:
    write_json_atomically(path, dict(document), FILE_MODE)


# -- parsing -----------------------------------------------------------------------------

def _count_entries(raw: Any) -> int:
    if isinstance(raw, dict) and isinstance(raw.get("cameras"), dict):
        return len(raw["cameras"])
    return 0


def _parse_entries(raw: Any) -> dict[str, IdEntry]:
    """Valid entries of a version-1 document; raises ValueError for any other document."""
    if not isinstance(raw, dict) or raw.get("version") != FORMAT_VERSION:
        raise ValueError("not a version 1 camera id map")
    cameras = raw.get("cameras")
    if not isinstance(cameras, dict):
        raise ValueError("'cameras' is not an object")  # noqa: TRY004 - bad file content, not a caller's type
    result: dict[str, IdEntry] = {}
    for key, value in cameras.items():
        if not isinstance(key, str) or not key or not isinstance(value, dict):
            continue
        camera_id, name, last_seen = value.get("id"), value.get("name", ""), value.get("last_seen")
        if not isinstance(camera_id, str) or not CAMERA_ID.fullmatch(camera_id):
            continue
        if not isinstance(name, str):
            name = ""
        if not isinstance(last_seen, str) or _stamp(last_seen) is None:
            # An unknown stamp counts as "seen long ago": first to be evicted.
            last_seen = rfc3339(0)
        result[key] = IdEntry(camera_id, name, last_seen)
    return result


def _stamp(text: str) -> float | None:
    try:
        return parse_rfc3339(text)
    except (ValueError, TypeError):
        return None
