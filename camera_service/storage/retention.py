"""Retention: the policy, its persistence, the deletion planner and the sweep (media.md §5.5).

- :class:`RetentionPolicy` is the policy in effect: the four API fields of ``api.md`` §4.25
  plus the three settings only the configuration sets (floor, interval, minimum file age).
- The policy starts from the ``retention_policy`` section; ``set_retention_policy`` replaces
  it and persists it in ``<state_dir>/retention-policy.json``, which then overrides the
  section at every start until it is changed again.
- :func:`plan_deletions` is pure (no I/O, no clock): given every scanned file, it returns the
  files a sweep deletes, in deletion order. Keeping it pure makes §5.5 steps 1-3 testable
  exactly and lets it run in the thread pool without touching reactor state.
- :func:`delete_files` and :func:`remove_empty_camera_dirs` are the blocking executor.
- :class:`Retention` ties these together: one sweep at a time, a ``LoopingCall`` while the
  policy is enabled and not ``manual``, counters for health details.
"""

from __future__ import annotations

import errno
import math
import os
import re
import stat
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from twisted.internet.defer import Deferred, DeferredLock
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from camera_service.fileutil import write_json_atomically
from camera_service.storage.files import FileStore, StoredFile
from camera_service.storage.space import DiskUsage

log = Logger(namespace="camera_service.storage.retention")

POLICY_FILE = "retention-policy.json"
POLICY_FILE_MODE = 0o640
POLICY_FORMAT_VERSION = 1

AGE = "age"
SIZE = "size"
MANUAL = "manual"
POLICY_TYPES = (AGE, SIZE, MANUAL)

GIB = 1 << 30
DAY = 86400.0
MAX_SIZE_GB = 100

_CAMERA_DIR = re.compile(r"camera[0-9]+")

RunInThread = Callable[..., "Deferred[Any]"]


# -- the policy ----------------------------------------------------------------------------

@dataclass(frozen=True)
class RetentionPolicy:
    policy_type: str
    enabled: bool
    max_age_days: int | None = None
    max_size_gb: float | None = None
    # Configuration only (retention_policy section); set_retention_policy never changes them.
    min_free_percent: float = 20
    cleanup_interval: float = 300.0
    min_file_age: float = 60.0

    @classmethod
    def from_config(cls, section: Any) -> RetentionPolicy:
        return cls(policy_type=section.type, enabled=bool(section.enabled),
                   max_age_days=section.max_age_days, max_size_gb=section.max_size_gb,
                   min_free_percent=section.min_free_percent,
                   cleanup_interval=float(section.cleanup_interval),
                   min_file_age=float(section.min_file_age))

    @property
    def automatic(self) -> bool:
        """Whether the periodic sweep runs (api.md §4.25 "Automatic cleanup")."""
        return self.enabled and self.policy_type != MANUAL

    def with_rule(self, policy_type: str, enabled: bool, max_age_days: int | None,
                  max_size_gb: float | None) -> RetentionPolicy:
        """This policy with the four API fields replaced (the config-only ones kept)."""
        return replace(self, policy_type=policy_type, enabled=enabled, max_age_days=max_age_days,
                       max_size_gb=max_size_gb)

    def document(self) -> dict[str, Any]:
        """What is persisted: the API-settable fields only, so a later change of the
        floor, interval or minimum age in the configuration still takes effect."""
        return {"version": POLICY_FORMAT_VERSION, "policy_type": self.policy_type,
                "enabled": self.enabled, "max_age_days": self.max_age_days,
                "max_size_gb": self.max_size_gb}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def parse_policy_document(raw: Any) -> tuple[str, bool, int | None, float | None]:
    """The four API fields of a persisted policy; ValueError for anything else.

    The same rules as ``set_retention_policy`` (api.md §4.25): a hand-edited or damaged file
    must never produce a policy the API could not have set.
    """
    if not isinstance(raw, dict) or raw.get("version") != POLICY_FORMAT_VERSION:
        raise ValueError("not a version 1 retention policy document")
    policy_type = raw.get("policy_type")
    enabled = raw.get("enabled")
    max_age_days = raw.get("max_age_days")
    max_size_gb = raw.get("max_size_gb")
    if policy_type not in POLICY_TYPES:
        raise ValueError("policy_type must be age, size or manual")
    if not isinstance(enabled, bool):
        raise ValueError("enabled must be a boolean")
    if max_age_days is not None and (not _is_int(max_age_days) or max_age_days <= 0):
        raise ValueError("max_age_days must be an integer > 0")
    if max_size_gb is not None and (not _is_number(max_size_gb) or not 0 < max_size_gb <= MAX_SIZE_GB):
        raise ValueError("max_size_gb must be a number > 0 and <= 100")
    if policy_type == AGE and max_age_days is None:
        raise ValueError("an age policy needs max_age_days")
    if policy_type == SIZE and max_size_gb is None:
        raise ValueError("a size policy needs max_size_gb")
    return policy_type, enabled, max_age_days, max_size_gb


# -- the planner (pure) -----------------------------------------------------------------------

def oldest_first(files: Iterable[StoredFile]) -> list[StoredFile]:
    """media.md §5.5 step 2: by mtime, oldest first; ties by name."""
    return sorted(files, key=lambda f: (f.mtime, f.name))


def plan_deletions(candidates: Iterable[StoredFile], policy: RetentionPolicy, usage: DiskUsage | None,
                   now: float, *, busy: Callable[[str], bool] | frozenset[str] = frozenset(),
                   manual: bool = False,
                   on_floor_filesystem: Callable[[StoredFile], bool] | None = None) -> list[StoredFile]:
    """media.md §5.5 steps 1-3: the files one sweep deletes, oldest first.

    ``candidates`` is every recording and snapshot file of the scan (busy and young ones
    included: they still count towards the size total, they are just never chosen).
    ``usage`` is the filesystem the floor protects (the recordings root's, media.md §5.3);
    ``None`` skips the floor. ``on_floor_filesystem`` tells which files live on that
    filesystem (only deleting those frees space there); default: all of them.
    ``manual`` is true for ``cleanup_old_files``: only then does a ``manual`` policy apply
    whichever limits are set. A disabled policy plans nothing.
    """
    files = list(candidates)
    if not policy.enabled or (policy.policy_type == MANUAL and not manual):
        return []
    is_busy = busy.__contains__ if isinstance(busy, frozenset) else busy
    on_floor_fs = on_floor_filesystem or (lambda _: True)

    # Step 1: exclusions. "Modified in the last min_file_age seconds" also excludes files
    # whose mtime lies in the future (a clock that stepped back): they may still be written.
    eligible = [f for f in files if not is_busy(f.path) and now - f.mtime >= policy.min_file_age]
    # Step 2.
    ordered = oldest_first(eligible)

    use_age = policy.max_age_days is not None and (
        policy.policy_type == AGE or policy.policy_type == MANUAL)
    use_size = policy.max_size_gb is not None and (
        policy.policy_type == SIZE or policy.policy_type == MANUAL)

    chosen: set[int] = set()  # indexes into ordered
    freed_total = 0
    freed_on_floor_fs = 0

    def choose(index: int) -> None:
        nonlocal freed_total, freed_on_floor_fs
        chosen.add(index)
        freed_total += ordered[index].size
        if on_floor_fs(ordered[index]):
            freed_on_floor_fs += ordered[index].size

    # Step 3, age: strictly older than max_age_days.
    if use_age:
        cutoff = now - float(policy.max_age_days or 0) * DAY
        for index, stored in enumerate(ordered):
            if stored.mtime < cutoff:
                choose(index)

    # Step 3, size: the total counts every file, including the ones that cannot go.
    if use_size:
        limit = float(policy.max_size_gb or 0) * GIB
        total = sum(f.size for f in files)
        for index in range(len(ordered)):
            if total - freed_total <= limit:
                break
            if index not in chosen:
                choose(index)

    # Step 3, floor: then oldest first until the filesystem has min_free_percent free.
    if usage is not None and policy.min_free_percent > 0 and usage.total > 0:
        allowed_used = usage.total * (1.0 - float(policy.min_free_percent) / 100.0)
        for index, stored in enumerate(ordered):
            if usage.used - freed_on_floor_fs <= allowed_used:
                break
            if index not in chosen and on_floor_fs(stored):
                choose(index)

    return [ordered[index] for index in sorted(chosen)]


# -- the executor (blocking, thread pool only) ------------------------------------------------

class UnsafePath(Exception):
    """A path that is not a plain file directly in a media root or a per-camera directory."""


def check_inside_roots(stored: StoredFile, roots: Sequence[str]) -> None:
    """Blocking: refuse anything that is not ``<root>/<name>`` or ``<root>/<dir>/<name>``,
    with ``<dir>`` a real directory (not a symlink) — whatever the scan said earlier."""
    path = stored.path
    name = os.path.basename(path)
    if not name or name != stored.name or name.startswith("."):
        raise UnsafePath("file name does not match its path")
    parent = os.path.dirname(path)
    for root in roots:
        if parent == root and stored.directory == "":
            return
        if os.path.dirname(parent) == root and os.path.basename(parent) == stored.directory \
                and stored.directory and not stored.directory.startswith("."):
            info = os.lstat(parent)
            if not stat.S_ISDIR(info.st_mode):
                raise UnsafePath("per-camera directory is not a real directory")
            return
    raise UnsafePath("not inside a media root")


def unlink_stored(stored: StoredFile, roots: Sequence[str], *, unchanged: bool = False) -> int:
    """Blocking: unlink one scanned file after re-checking it with ``lstat``; the bytes freed.

    Raises :class:`UnsafePath` when it is no longer a regular file inside a media root (or,
    with ``unchanged``, when its size or mtime moved since the scan: it is being written),
    and ``OSError`` from ``lstat``/``unlink`` (``FileNotFoundError``, ``PermissionError``).
    """
    check_inside_roots(stored, roots)
    info = os.lstat(stored.path)
    if not stat.S_ISREG(info.st_mode):
        raise UnsafePath("no longer a regular file")
    if unchanged and (info.st_size != stored.size or info.st_mtime != stored.mtime):
        raise UnsafePath("changed since the scan")
    os.unlink(stored.path)
    return int(info.st_size)


@dataclass
class DeletionOutcome:
    deleted: list[StoredFile] = field(default_factory=list)
    space_freed: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name, why): left alone
    failed: list[tuple[str, str]] = field(default_factory=list)   # (name, error): could not


def delete_files(files: Sequence[StoredFile], roots: Sequence[str]) -> DeletionOutcome:
    """Blocking: unlink each planned file that still passes the checks of :func:`unlink_stored`."""
    outcome = DeletionOutcome()
    for stored in files:
        try:
            freed = unlink_stored(stored, roots, unchanged=True)
        except FileNotFoundError:
            continue  # someone else removed it: nothing freed, nothing to report
        except UnsafePath as why:
            outcome.skipped.append((stored.name, str(why)))
            continue
        except OSError as error:
            outcome.failed.append((stored.name, errno.errorcode.get(error.errno or 0, str(error))))
            continue
        outcome.deleted.append(stored)
        outcome.space_freed += freed
    return outcome


def remove_empty_camera_dirs(roots: Sequence[str], present: Iterable[str]) -> list[str]:
    """Blocking: ``rmdir`` each empty ``<root>/camera<N>`` whose camera is not present.

    ``rmdir`` itself refuses a non-empty directory (hidden in-progress files included), so
    nothing with content is ever removed. Roots and directories of present cameras stay
    (media.md §5.1: MediaMTX would re-create them 0755 with its own owner).
    """
    keep = set(present)
    removed: list[str] = []
    for root in roots:
        try:
            with os.scandir(root) as entries:
                names = [e.name for e in entries
                         if _CAMERA_DIR.fullmatch(e.name) and e.is_dir(follow_symlinks=False)]
        except OSError:
            continue
        for name in sorted(names):
            if name in keep:
                continue
            path = os.path.join(root, name)
            try:
                os.rmdir(path)
            except OSError:
                continue
            removed.append(path)
    return removed


def _read_policy_file(path: str) -> Any:
    import json

    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None


# -- the sweep and its schedule ----------------------------------------------------------------

@dataclass(frozen=True)
class SweepResult:
    executed: bool
    files_deleted: int = 0
    space_freed: int = 0


class Retention:
    """The policy in effect, its persistence, the periodic and on-demand sweeps.

    Everything here runs on the reactor thread except the functions handed to
    ``run_in_thread``, which get plain values only.
    """

    def __init__(self, policy: RetentionPolicy, state_dir: str, stores: Mapping[str, FileStore],
                 run_in_thread: RunInThread, clock: Any, *,
                 measure: Callable[[], Deferred[tuple[DiskUsage | None, tuple[str, ...]]]],
                 busy_paths: Callable[[], Iterable[str]],
                 present_cameras: Callable[[], set[str]],
                 directory_lock: DeferredLock | None = None,
                 on_change: Callable[[], None] = lambda: None) -> None:
        """``measure()`` gives the floor filesystem's usage (None when it cannot be read)
        and the media roots that live on it."""
        self._config_policy = policy
        self._policy = policy
        self.path = os.path.join(state_dir, POLICY_FILE)
        self._stores = stores
        self._run = run_in_thread
        self._clock = clock
        self._measure = measure
        self._busy_paths = busy_paths
        self._present = present_cameras
        self._dir_lock = directory_lock or DeferredLock()
        self._on_change = on_change
        self._write_lock = DeferredLock()
        self._loop: LoopingCall | None = None
        self._running: list[Deferred[SweepResult]] | None = None
        self._in_flight: Deferred[Any] | None = None
        self.persisted = False
        self.last_run: float | None = None
        self.last_files_deleted = 0
        self.last_bytes_freed = 0
        self.total_files_deleted = 0
        self.total_bytes_freed = 0
        self.sweeps = 0

    @property
    def policy(self) -> RetentionPolicy:
        return self._policy

    @property
    def roots(self) -> tuple[str, ...]:
        return tuple(store.root for store in self._stores.values())

    # -- lifecycle ----------------------------------------------------------------------

    async def load(self) -> None:
        """Apply a persisted policy, if there is a valid one. A missing file keeps the
        configuration's policy; an unreadable or invalid one is logged and ignored (left
        in place for the operator, and replaced by the next set_retention_policy)."""
        try:
            raw = await self._run(_read_policy_file, self.path)
        except Exception as error:  # noqa: BLE001 - any unreadable file: keep the config
            log.warn("retention policy file {path} is unreadable ({error}); using the "
                     "retention_policy configuration", path=self.path, error=str(error))
            return
        if raw is None:
            return
        try:
            policy_type, enabled, max_age_days, max_size_gb = parse_policy_document(raw)
        except ValueError as error:
            log.warn("retention policy file {path} is invalid ({error}); using the "
                     "retention_policy configuration", path=self.path, error=str(error))
            return
        self._policy = self._config_policy.with_rule(policy_type, enabled, max_age_days, max_size_gb)
        self.persisted = True
        log.info("retention policy from {path}: {policy} (overrides the configuration)",
                 path=self.path, policy=self.describe())
        self._reschedule()
        self._on_change()

    def start(self) -> None:
        self._reschedule()

    def stop(self) -> Deferred[Any] | None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        return self._in_flight

    def describe(self) -> str:
        p = self._policy
        limits = []
        if p.max_age_days is not None:
            limits.append(f"max_age_days={p.max_age_days}")
        if p.max_size_gb is not None:
            limits.append(f"max_size_gb={p.max_size_gb:g}")
        state = "enabled" if p.enabled else "disabled"
        return f"{p.policy_type} ({', '.join(limits) or 'no limits'}; {state}; floor {p.min_free_percent:g}% free)"

    def _reschedule(self) -> None:
        """The loop runs exactly while the policy is enabled and not manual. The first
        automatic sweep comes one interval after (re)scheduling, not at once."""
        want = self._policy.automatic
        running = self._loop is not None and self._loop.running
        if want and not running:
            loop = LoopingCall(self._tick)
            loop.clock = self._clock
            self._loop = loop
            loop.start(self._policy.cleanup_interval, now=False).addErrback(
                lambda failure: log.failure("retention loop stopped", failure=failure))
        elif not want and running:
            assert self._loop is not None
            self._loop.stop()
            self._loop = None

    def _tick(self) -> Deferred[Any] | None:
        """One loop run; never fails, so the LoopingCall never stops (media.md §0.2)."""
        try:
            d = Deferred.fromCoroutine(self.sweep(manual=False))
        except Exception:  # noqa: BLE001
            log.failure("retention sweep could not start")
            return None
        d.addErrback(lambda failure: log.failure("retention sweep failed", failure=failure))
        return d

    # -- the API side ---------------------------------------------------------------------

    async def set_policy(self, policy_type: str, enabled: bool, max_age_days: int | None = None,
                         max_size_gb: float | None = None) -> RetentionPolicy:
        """Replace and persist the policy; it takes effect once the file is written.

        Writes are serialised, so the file always ends up holding the last call's policy.
        Raises what the write raised (the caller answers -32603); the old policy then stays.
        """
        new = self._policy.with_rule(policy_type, enabled, max_age_days, max_size_gb)
        await self._write_lock.acquire()
        try:
            await self._run(write_json_atomically, self.path, new.document(), POLICY_FILE_MODE)
            self._policy = new
            self.persisted = True
        finally:
            self._write_lock.release()
        log.info("retention policy set: {policy}", policy=self.describe())
        self._reschedule()
        self._on_change()
        return new

    async def sweep(self, manual: bool = False) -> SweepResult:
        """Apply the policy once. A call while a sweep runs waits for that sweep and gets
        its result (media.md §5.5). A disabled policy deletes nothing (``executed`` false)."""
        if not self._policy.enabled:
            return SweepResult(False)
        waiter: Deferred[SweepResult] = Deferred()
        if self._running is not None:
            self._running.append(waiter)
            return await waiter
        waiters = [waiter]
        self._running = waiters
        run = Deferred.fromCoroutine(self._sweep(manual))
        self._in_flight = run

        def finished(result: Any) -> None:
            self._running = None
            self._in_flight = None
            for each in waiters:
                each.callback(result) if isinstance(result, SweepResult) else each.errback(result)

        run.addBoth(finished)
        return await waiter

    async def _sweep(self, manual: bool) -> SweepResult:
        policy = self._policy
        started = self._clock.seconds()
        files: list[StoredFile] = []
        for store in self._stores.values():
            files.extend(await store.scan())
        usage, floor_roots = await self._measure()
        if usage is None and policy.min_free_percent > 0:
            log.warn("retention: the recordings filesystem could not be measured; the "
                     "free-space floor is skipped this run")
        busy = frozenset(self._busy_paths())
        prefixes = tuple(root.rstrip(os.sep) + os.sep for root in floor_roots)

        def on_floor_filesystem(stored: StoredFile) -> bool:
            return stored.path.startswith(prefixes)

        plan: list[StoredFile] = await self._run(
            plan_deletions, files, policy, usage, started, busy=busy, manual=manual,
            on_floor_filesystem=on_floor_filesystem)
        # Re-checked just before the unlinks: a recording may have started while planning.
        busy_now = set(self._busy_paths())
        plan = [f for f in plan if f.path not in busy_now]
        outcome = DeletionOutcome()
        if plan:
            try:
                outcome = await self._run(delete_files, plan, self.roots)
            finally:
                # Whatever happened, the listings must not show what may be gone.
                for store in self._stores.values():
                    store.invalidate()
        # Step 4, under the directory lock so it cannot race ensure_camera_directories.
        await self._dir_lock.acquire()
        try:
            removed = await self._run(remove_empty_camera_dirs, self.roots, set(self._present()))
        finally:
            self._dir_lock.release()
        # Step 5.
        result = SweepResult(True, len(outcome.deleted), outcome.space_freed)
        self.sweeps += 1
        self.last_run = self._clock.seconds()
        self.last_files_deleted = result.files_deleted
        self.last_bytes_freed = result.space_freed
        self.total_files_deleted += result.files_deleted
        self.total_bytes_freed += result.space_freed
        if outcome.failed:
            log.warn("retention: {count} file(s) could not be deleted: {files}",
                     count=len(outcome.failed),
                     files=", ".join(f"{name} ({why})" for name, why in outcome.failed[:10]))
        log.info("retention sweep ({how}, {policy}): {files} file(s) deleted, {bytes} bytes freed"
                 "{skipped}{dirs}", how="manual" if manual else "automatic", policy=policy.policy_type,
                 files=result.files_deleted, bytes=result.space_freed,
                 skipped=f", {len(outcome.skipped)} skipped" if outcome.skipped else "",
                 dirs=f", {len(removed)} empty camera director(ies) removed" if removed else "")
        self._on_change()
        return result

    def health_details(self) -> dict[str, Any]:
        """The ``retention`` entry of the storage component's details (media.md §6.1)."""
        from camera_service.timeutil import rfc3339

        return {"enabled": self._policy.enabled, "type": self._policy.policy_type,
                "last_run": rfc3339(self.last_run) if self.last_run is not None else None,
                "files_deleted": self.last_files_deleted, "bytes_freed": self.last_bytes_freed}
