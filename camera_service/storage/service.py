"""The storage service: directories, permissions, free space, write checks, retention (media.md §5).

``StorageService`` is the first media child service (media.md §0.1). It

- sets the process umask to 0002 and creates the state directory, ``<state_dir>/run/``, both
  media roots and a per-camera directory in each root for every camera it knows of (id map,
  virtual cameras, cameras present), mode 2775 and group ``storage.group`` (§5.1);
- checks every ``storage.check_interval`` seconds that both roots are writable and how full
  their filesystems are, logs each threshold crossing once, ends recordings through the
  ``on_free_space_low`` hooks below ``storage.min_free_mb`` and keeps the ``storage`` health
  component (§5.4, §6.1);
- answers the questions other features ask before they write (:meth:`check_can_write`) and
  owns retention (:attr:`retention`).

Every blocking call (mkdir, chmod, chown, statvfs, the write probe, scans, unlinks) runs
through ``run_in_thread`` (the media pool); results are used on the reactor thread only.
"""

from __future__ import annotations

import grp
import json
import os
import re
import secrets
import stat
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import (
    Deferred,
    DeferredLock,
    ensureDeferred,
    maybeDeferred,
    succeed,
)
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from camera_service.health.model import DEGRADED, HEALTHY, UNHEALTHY, HealthRegistry
from camera_service.rpc.errors import RpcError, internal_error, invalid_state
from camera_service.storage import space
from camera_service.storage.files import RECORDINGS, SNAPSHOTS, FileStore
from camera_service.storage.retention import Retention, RetentionPolicy
from camera_service.storage.space import DiskUsage

log = Logger(namespace="camera_service.storage")

COMPONENT = "storage"
DIRECTORY_MODE = 0o2775
STATE_DIR_MODE = 0o750
PROCESS_UMASK = 0o002
# check_can_write trusts a reading this recent instead of asking statvfs again.
READING_MAX_AGE = 5.0
# Shutdown waits this long for a check or sweep still running in the pool (media.md §0.1).
STOP_WAIT = 1.0
MIB = 1 << 20

_CAMERA_ID = re.compile(r"camera[0-9]+")
_NOT_WRITABLE = {RECORDINGS: "Recordings directory is not writable",
                 SNAPSHOTS: "Snapshots directory is not writable"}
_LEVEL_OK, _LEVEL_WARN, _LEVEL_BLOCK = "ok", "warn", "block"


class StorageUnavailable(Exception):
    """A directory a feature needs could not be created."""


@dataclass(frozen=True)
class _Reading:
    usage: DiskUsage
    at: float


@dataclass(frozen=True)
class _DirSpec:
    path: str
    mode: int
    follow_symlink: bool  # roots may be symlinks set up by the admin; camera dirs may not


@dataclass(frozen=True)
class _Probe:
    """What one check measured in the pool (plain values only)."""

    usage: dict[str, DiskUsage | None]
    usage_error: dict[str, str | None]
    write_error: dict[str, str | None]
    same_filesystem: bool


# -- blocking helpers (thread pool only) ---------------------------------------------------------

def _group_label(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def prepare_directory(spec: _DirSpec, gid: int, group_label: str, euid: int) -> str | None:
    """Blocking: make ``spec.path`` exist with ``spec.mode`` and group ``gid``.

    A missing directory is created (its parent must exist). An existing one with the wrong
    mode or group is repaired when this process owns it (or is root); otherwise, and when a
    repair fails, the problem is returned with the exact command that fixes it (§5.1).
    Returns None when the directory is as it should be.
    """
    path = spec.path
    fix = f"chgrp -R {group_label} {path} && chmod {spec.mode:o} {path}"
    try:
        os.mkdir(path, spec.mode)
    except FileExistsError:
        pass
    except OSError as error:
        return f"{path} could not be created ({error.strerror}); fix: mkdir -p {path} && {fix}"
    try:
        info = os.stat(path) if spec.follow_symlink else os.lstat(path)
    except OSError as error:
        return f"{path} is not accessible ({error.strerror}); fix: {fix}"
    if not stat.S_ISDIR(info.st_mode):
        return f"{path} is not a directory; remove it so the service can create the directory"
    if stat.S_IMODE(info.st_mode) == spec.mode and info.st_gid == gid:
        return None
    if info.st_uid == euid or euid == 0:
        try:
            if info.st_gid != gid:
                os.chown(path, -1, gid)
            # After chown: changing the group may clear the setgid bit.
            os.chmod(path, spec.mode)
            info = os.stat(path)
        except OSError as error:
            return f"{path} could not be repaired ({error.strerror}); fix: {fix}"
        if stat.S_IMODE(info.st_mode) == spec.mode and info.st_gid == gid:
            return None
    return (f"{path} has mode {stat.S_IMODE(info.st_mode):o} and group {_group_label(info.st_gid)}, "
            f"expected {spec.mode:o} and {group_label}; fix: {fix}")


def prepare_directories(specs: list[_DirSpec], gid: int, group_label: str) -> dict[str, str | None]:
    euid = os.geteuid()
    return {spec.path: prepare_directory(spec, gid, group_label, euid) for spec in specs}


def write_probe(root: str) -> str | None:
    """Blocking: create, write and remove a hidden file in ``root``; None when that worked.

    The name starts with "." so scans never list it, and is random so two processes (or a
    leftover from a crash) never collide; O_EXCL|O_NOFOLLOW so a planted link is never
    followed.
    """
    path = os.path.join(root, f".write-check-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o664)
        try:
            os.write(fd, b"ok\n")
        finally:
            os.close(fd)
        os.unlink(path)
    except OSError as error:
        return error.strerror or str(error)
    return None


def _probe(roots: Mapping[str, str], measure: Callable[[str], DiskUsage]) -> _Probe:
    usage: dict[str, DiskUsage | None] = {}
    usage_error: dict[str, str | None] = {}
    write_error: dict[str, str | None] = {}
    for kind, root in roots.items():
        try:
            usage[kind] = measure(root)
            usage_error[kind] = None
        except Exception as error:  # noqa: BLE001 - reported, never raised into the loop
            usage[kind] = None
            usage_error[kind] = str(error)
        write_error[kind] = write_probe(root)
    return _Probe(usage, usage_error, write_error, _same_filesystem(list(roots.values())))


def _same_filesystem(paths: list[str]) -> bool:
    try:
        return len({space.filesystem_id(path) for path in paths}) == 1
    except OSError:
        return True


def _measure_floor(recordings_root: str, roots: tuple[str, ...], measure: Callable[[str], DiskUsage]
                   ) -> tuple[DiskUsage | None, tuple[str, ...]]:
    """Blocking: the recordings filesystem's usage and the media roots living on it."""
    try:
        usage = measure(recordings_root)
    except Exception:  # noqa: BLE001 - the sweep then skips the floor
        return None, roots
    try:
        device = space.filesystem_id(recordings_root)
        on_it = tuple(root for root in roots if space.filesystem_id(root) == device)
    except OSError:
        on_it = roots
    return usage, on_it


def resolve_group(name: str) -> tuple[int, str, str | None]:
    """Blocking: (gid, label for fix commands, problem) of ``storage.group``; "" is the
    process's own group, and so is an unknown name (with the problem saying so)."""
    if name:
        try:
            return grp.getgrnam(name).gr_gid, name, None
        except KeyError:
            gid = os.getegid()
            return gid, _group_label(gid), (
                f"storage.group {name} does not exist; fix: groupadd --system {name} and add "
                f"the service and MediaMTX users to it")
    gid = os.getegid()
    return gid, _group_label(gid), None


def camera_ids_from_id_map(state_dir: str) -> list[str]:
    """Blocking: the ids in ``<state_dir>/camera-ids.json``; [] when it is missing or broken
    (the camera monitor reports a broken file; here it only means fewer directories)."""
    try:
        with open(os.path.join(state_dir, "camera-ids.json"), encoding="utf-8") as handle:
            raw = json.load(handle)
        cameras = raw.get("cameras") if isinstance(raw, dict) else None
        if not isinstance(cameras, dict):
            return []
        ids = {entry.get("id") for entry in cameras.values() if isinstance(entry, dict)}
        return sorted(i for i in ids if isinstance(i, str) and _CAMERA_ID.fullmatch(i))
    except (OSError, ValueError):
        return []


# -- the service -----------------------------------------------------------------------------------

class StorageService(Service):
    """Storage roots, permissions, free space and retention (media.md §5).

    Public surface for other features:

    - ``busy_paths``: providers of absolute paths in use (segments of recordings in
      progress, snapshot names being written); retention and deletes never touch them.
    - ``is_busy(path)``.
    - ``on_free_space_low``: hooks called (with no arguments) at every check while free
      space on the recordings filesystem is below ``storage.min_free_mb``; the recorder
      ends its recordings with ``storage_full``. Hooks must be idempotent; a hook may
      return a Deferred, whose failure is logged.
    - ``check_can_write(kind)``, ``ensure_camera_directories(camera_id)``, ``storage_info()``.
    - ``retention``: ``policy``, ``sweep(manual)``, ``set_policy(...)``.
    - ``report_problem(key, text)``: other features (MediaMTX consistency check, the
      recorder's permission check) add or clear a line in the component's ``problems``.
    """

    name = "storage"  # type: ignore[assignment]  # Service declares name as None

    def __init__(self, config: Any, clock: Any, stores: Mapping[str, FileStore],
                 run_in_thread: Callable[..., Deferred[Any]], health: HealthRegistry, bus: Any,
                 present_cameras: Callable[[], set[str]],
                 disk_usage: Callable[[str], DiskUsage] = space.disk_usage) -> None:
        self._config = config
        self._clock = clock
        self.stores = stores
        self._run = run_in_thread
        self._health = health
        self._bus = bus
        self._present = present_cameras
        self._disk_usage = disk_usage
        self._storage_cfg = config.storage
        self._state_dir = os.path.abspath(config.server.state_dir)
        self.run_dir = os.path.join(self._state_dir, "run")

        self.busy_paths: list[Callable[[], Iterable[str]]] = []
        self.on_free_space_low: list[Callable[[], Any]] = []
        #: called when a threshold level (warn, block, free-space floor) is crossed either
        #: way; the service re-evaluates overall health then (media.md §5.4, §6.4)
        self.on_level_change: list[Callable[[], Any]] = []
        self.writable: dict[str, bool] = {RECORDINGS: True, SNAPSHOTS: True}

        self._readings: dict[str, _Reading] = {}
        self._levels: dict[str, str] = {}
        self._low_free = False
        self._same_filesystem = True
        self._write_errors: dict[str, str | None] = {RECORDINGS: None, SNAPSHOTS: None}
        self._usage_errors: dict[str, str | None] = {RECORDINGS: None, SNAPSHOTS: None}
        self._problems: dict[str, str] = {}
        self._gid = os.getegid()
        self._group_label = ""
        self._dir_lock = DeferredLock()
        self._check_loop: LoopingCall | None = None
        self._check_in_flight: Deferred[Any] | None = None
        self._started_up: Deferred[Any] | None = None
        self._stopped = False
        self.ready = False  # start-up directories done

        self.retention = Retention(
            RetentionPolicy.from_config(config.retention_policy), self._state_dir, stores,
            run_in_thread, clock, measure=self._measure_floor, busy_paths=self._all_busy,
            present_cameras=self._present, directory_lock=self._dir_lock,
            on_change=self._update_health)

    # -- lifecycle ------------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self._stopped = False
        # Process-wide and instant (no I/O): files the service and FFmpeg create become
        # 0664, so MediaMTX's user (same group) can delete them and vice versa (§5.1).
        os.umask(PROCESS_UMASK)
        self._warn_floor()
        self._update_health()
        # MultiService ignores a Deferred from startService; the chain logs its own failure.
        self._started_up = ensureDeferred(self._start())
        self._started_up.addErrback(
            lambda failure: log.failure("storage start-up failed", failure=failure))

    async def _start(self) -> None:
        await self._resolve_group()
        virtual = [vc.id for vc in self._config.virtual_cameras]
        from_map = await self._run(camera_ids_from_id_map, self._state_dir)
        ids = sorted(set(virtual) | set(from_map) | set(self._present()))
        specs = [_DirSpec(self._state_dir, STATE_DIR_MODE, True),
                 _DirSpec(self.run_dir, DIRECTORY_MODE, False)]
        for store in self.stores.values():
            specs.append(_DirSpec(store.root, DIRECTORY_MODE, True))
        for camera_id in ids:
            specs.extend(_DirSpec(store.camera_directory(camera_id), DIRECTORY_MODE, False)
                         for store in self.stores.values())
        try:
            await self._prepare(specs, parents=True)
        except Exception:  # noqa: BLE001 - the checks below still run and report the roots
            log.failure("storage directories could not be prepared")
        if self._stopped:
            return
        self.ready = True
        await self.retention.load()
        if self._stopped:
            return
        self.retention.start()
        loop = LoopingCall(self._check_tick)
        loop.clock = self._clock
        self._check_loop = loop
        loop.start(self._storage_cfg.check_interval, now=True).addErrback(
            lambda failure: log.failure("storage check loop stopped", failure=failure))

    def stopService(self) -> Deferred[Any]:
        super().stopService()
        self._stopped = True
        if self._check_loop is not None and self._check_loop.running:
            self._check_loop.stop()
        self._check_loop = None
        waits = [d for d in (self._check_in_flight, self.retention.stop()) if d is not None]
        if not waits:
            return succeed(None)
        # Let pool work already running finish (the pool is stopped after us), within budget.
        done: Deferred[Any] = Deferred()
        pending = len(waits)

        def one_done(result: Any) -> Any:
            nonlocal pending
            pending -= 1
            if pending == 0 and not done.called:
                done.callback(None)
            return result

        def give_up() -> None:
            if not done.called:
                log.warn("storage work still running at shutdown; not waiting for it")
                done.callback(None)

        def cancel_timer(result: Any) -> Any:
            if timer.active():
                timer.cancel()
            return result

        for wait in waits:
            wait.addBoth(one_done)
        timer = self._clock.callLater(STOP_WAIT, give_up)
        done.addBoth(cancel_timer)
        return done

    def when_started(self) -> Deferred[Any]:
        """Fires once the start-up directories exist and the first check has been scheduled."""
        if self._started_up is None:
            return succeed(None)
        waiter: Deferred[Any] = Deferred()

        def fire(result: Any) -> Any:
            waiter.callback(None)
            return result

        self._started_up.addBoth(fire)
        return waiter

    def _warn_floor(self) -> None:
        policy = self._config.retention_policy
        block = self._storage_cfg.block_percent
        if policy.min_free_percent < 100 - block:
            log.warn("retention_policy.min_free_percent ({floor}%) is below 100 - "
                     "storage.block_percent ({free}%): new recordings and snapshots will be "
                     "refused before retention frees space", floor=policy.min_free_percent,
                     free=100 - block)

    async def _resolve_group(self) -> None:
        # In the pool: group lookups go through NSS, which may be a network directory.
        gid, label, problem = await self._run(resolve_group, self._storage_cfg.group)
        self._gid, self._group_label = gid, label
        if problem is None:
            self._problems.pop("group", None)
        else:
            self._problems["group"] = problem
            log.error("{problem}; directories keep the service's own group", problem=problem)

    # -- directories ----------------------------------------------------------------------

    async def _prepare(self, specs: list[_DirSpec], parents: bool = False) -> dict[str, str | None]:
        """Create or repair ``specs`` in the pool under the directory lock (so retention's
        empty-directory removal never races a creation)."""
        await self._dir_lock.acquire()
        try:
            if parents:
                # Parents of the state directory and of roots outside it: plain makedirs.
                await self._run(_make_parents, [s.path for s in specs])
            outcome: dict[str, str | None] = await self._run(
                prepare_directories, specs, self._gid, self._group_label)
        finally:
            self._dir_lock.release()
        changed = False
        for path, problem in outcome.items():
            key = f"dir:{path}"
            if problem is None:
                changed |= self._problems.pop(key, None) is not None
            elif self._problems.get(key) != problem:
                log.error("storage directory problem: {problem}", problem=problem)
                self._problems[key] = problem
                changed = True
        if changed:
            self._update_health()
        return outcome

    async def ensure_camera_directories(self, camera_id: str) -> None:
        """Create (or repair) the camera's directory in both media roots.

        Raises :class:`StorageUnavailable` when a directory does not exist afterwards; a
        mode or group problem alone is logged and shown in health, not raised.
        """
        if _CAMERA_ID.fullmatch(camera_id) is None:
            raise ValueError("not a camera id")
        if self._started_up is not None and not self._started_up.called:
            # The group is resolved (and the roots exist) first, so an early camera's
            # directories never get the wrong group.
            await self.when_started()
        # The roots too: if one was removed behind our back it is re-created here with the
        # right mode, rather than by MediaMTX with 0755 and its own owner (§5.1).
        specs = [_DirSpec(store.root, DIRECTORY_MODE, True) for store in self.stores.values()]
        specs += [_DirSpec(store.camera_directory(camera_id), DIRECTORY_MODE, False)
                  for store in self.stores.values()]
        outcome = await self._prepare(specs)
        missing = [path for path, problem in outcome.items()
                   if problem is not None and ("could not be created" in problem
                                               or "not a directory" in problem
                                               or "not accessible" in problem)]
        if missing:
            raise StorageUnavailable(f"camera directories missing: {', '.join(missing)}")

    def camera_connected(self, camera: Any) -> Deferred[None]:
        """``CameraMonitor.on_camera_connected`` hook: the camera's directories exist before
        anything records or snapshots it. Problems are already logged by ``_prepare``."""
        def missing(failure: Failure) -> None:
            failure.trap(StorageUnavailable)

        d: Deferred[None] = ensureDeferred(self.ensure_camera_directories(camera.id))
        d.addErrback(missing)
        return d

    def report_permission_problem(self, directory: str, what: str) -> None:
        """A file in ``directory`` could not be changed (EACCES/EPERM): show the §5.1 fix."""
        self.report_problem(f"permission:{directory}",
                            f"{what} in {directory}: permission denied; fix: chgrp -R "
                            f"{self._group_label or self._gid} {directory} && "
                            f"chmod {DIRECTORY_MODE:o} {directory}")

    def report_problem(self, key: str, text: str | None) -> None:
        """Add (text) or clear (None) one line of the storage component's ``problems``."""
        key = f"ext:{key}"
        if text is None:
            if self._problems.pop(key, None) is None:
                return
        elif self._problems.get(key) == text:
            return
        else:
            self._problems[key] = text
        self._update_health()

    # -- busy files -----------------------------------------------------------------------

    def _all_busy(self) -> set[str]:
        paths: set[str] = set()
        for provider in list(self.busy_paths):
            try:
                paths.update(os.path.normpath(p) for p in provider())
            except Exception:  # noqa: BLE001 - a broken provider must not stop deletes' checks
                log.failure("busy path provider failed")
        return paths

    def is_busy(self, path: str) -> bool:
        return os.path.normpath(path) in self._all_busy()

    # -- checks ---------------------------------------------------------------------------

    def _roots(self) -> dict[str, str]:
        return {kind: store.root for kind, store in self.stores.items()}

    def _check_tick(self) -> Deferred[Any] | None:
        """One check run; never fails, so the LoopingCall keeps going (media.md §0.2)."""
        try:
            d = ensureDeferred(self.check_now())
        except Exception:  # noqa: BLE001
            log.failure("storage check could not start")
            return None
        d.addErrback(lambda failure: log.failure("storage check failed", failure=failure))
        return d

    async def check_now(self) -> None:
        """Write check and free-space evaluation of both roots (media.md §5.1, §5.4)."""
        d: Deferred[_Probe] = self._run(_probe, self._roots(), self._disk_usage)
        self._check_in_flight = d
        try:
            probe = await d
        finally:
            self._check_in_flight = None
        self._same_filesystem = probe.same_filesystem
        now = self._clock.seconds()
        for kind in (RECORDINGS, SNAPSHOTS):
            if kind not in probe.usage:
                continue
            self._set_write_result(kind, probe.write_error[kind])
            usage = probe.usage[kind]
            error = probe.usage_error[kind]
            if usage is not None:
                self._readings[kind] = _Reading(usage, now)
                if self._usage_errors.get(kind) is not None:
                    log.info("{kind} filesystem measurable again", kind=kind)
                self._usage_errors[kind] = None
            elif self._usage_errors.get(kind) is None:
                log.error("cannot measure the {kind} filesystem: {error}", kind=kind, error=error)
                self._usage_errors[kind] = error
        self._evaluate()
        if self._low_free:
            self._fire_low_space()

    def _set_write_result(self, kind: str, error: str | None) -> None:
        writable = error is None
        if writable != self.writable[kind]:
            if writable:
                log.info("{kind} directory {root} is writable again", kind=kind,
                         root=self.stores[kind].root)
            else:
                log.error("{kind} directory {root} is not writable: {error}", kind=kind,
                          root=self.stores[kind].root, error=error)
        elif not writable and self._write_errors[kind] is None:
            log.error("{kind} directory {root} is not writable: {error}", kind=kind,
                      root=self.stores[kind].root, error=error)
        self.writable[kind] = writable
        self._write_errors[kind] = error

    def _level_of(self, usage: DiskUsage) -> str:
        percent = round(usage.percent, 1)
        if percent >= self._storage_cfg.block_percent:
            return _LEVEL_BLOCK
        if percent >= self._storage_cfg.warn_percent:
            return _LEVEL_WARN
        return _LEVEL_OK

    def _evaluate(self) -> None:
        """Threshold levels from the latest readings; each crossing is logged once."""
        kinds = [RECORDINGS] if self._same_filesystem else [RECORDINGS, SNAPSHOTS]
        crossed = False
        for kind in kinds:
            reading = self._readings.get(kind)
            if reading is None:
                continue
            level = self._level_of(reading.usage)
            previous = self._levels.get(kind)
            if level != previous:
                self._levels[kind] = level
                self._log_crossing(kind, previous, level, reading.usage)
                crossed = crossed or previous is not None or level != _LEVEL_OK
        if self._same_filesystem:
            self._levels.pop(SNAPSHOTS, None)
        reading = self._readings.get(RECORDINGS)
        if reading is not None:
            low = reading.usage.available < self._storage_cfg.min_free_mb * MIB
            if low != self._low_free:
                self._low_free = low
                crossed = True
                if low:
                    log.error("free space on the recordings filesystem ({free} MiB) is below "
                              "storage.min_free_mb ({min} MiB); running recordings are ended",
                              free=reading.usage.available // MIB, min=self._storage_cfg.min_free_mb)
                else:
                    log.info("free space on the recordings filesystem ({free} MiB) is back above "
                             "storage.min_free_mb", free=reading.usage.available // MIB)
        self._update_health()
        if crossed:
            for hook in list(self.on_level_change):
                try:
                    hook()
                except Exception:  # noqa: BLE001 - a listener must not break the check
                    log.failure("storage level listener failed")

    def recordings_usage_percent(self) -> float | None:
        """Used share of the recordings filesystem from the latest reading, if any."""
        reading = self._readings.get(RECORDINGS)
        return None if reading is None else float(reading.usage.percent)

    def _log_crossing(self, kind: str, previous: str | None, level: str, usage: DiskUsage) -> None:
        percent = round(usage.percent, 1)
        cfg = self._storage_cfg
        where = "recordings" if self._same_filesystem else kind
        if level == _LEVEL_BLOCK:
            log.error("{where} storage usage {percent}% is at or above storage.block_percent "
                      "({block}%): new recordings and snapshots are refused", where=where,
                      percent=percent, block=cfg.block_percent)
        elif level == _LEVEL_WARN:
            log.warn("{where} storage usage {percent}% is at or above storage.warn_percent "
                     "({warn}%)", where=where, percent=percent, warn=cfg.warn_percent)
        elif previous is not None:
            log.info("{where} storage usage {percent}% is below storage.warn_percent again",
                     where=where, percent=percent)

    def _fire_low_space(self) -> None:
        for hook in list(self.on_free_space_low):
            try:
                result = maybeDeferred(hook)
            except Exception:  # noqa: BLE001 - maybeDeferred catches; belt and braces
                log.failure("free-space hook failed")
                continue
            result.addErrback(lambda failure: log.failure("free-space hook failed", failure=failure))

    def _measure_floor(self) -> Deferred[tuple[DiskUsage | None, tuple[str, ...]]]:
        roots = tuple(store.root for store in self.stores.values())
        return self._run(_measure_floor, self.stores[RECORDINGS].root, roots, self._disk_usage)

    async def _usage_for(self, kind: str) -> DiskUsage:
        """A reading of ``kind``'s filesystem at most READING_MAX_AGE old (fresh otherwise).
        A fresh reading also re-evaluates the thresholds (media.md §5.4: "before every
        recording or snapshot start")."""
        now = self._clock.seconds()
        reading = self._readings.get(kind)
        if reading is not None and now - reading.at <= READING_MAX_AGE:
            return reading.usage
        usage: DiskUsage = await self._run(self._disk_usage, self.stores[kind].root)
        self._readings[kind] = _Reading(usage, self._clock.seconds())
        self._evaluate()
        return usage

    # -- questions other features ask -------------------------------------------------------

    async def check_can_write(self, kind: str) -> None:
        """Raise the API error a new recording or snapshot gets, or return.

        - the last write check of the root failed: -32603 with details
          "Recordings directory is not writable" / "Snapshots directory is not writable";
        - the filesystem is at or above storage.block_percent (or, for recordings, has less
          than storage.min_free_mb free, so the recording would be ended at once):
          -32020 storage_critical (api.md §6.3).
        """
        if kind not in (RECORDINGS, SNAPSHOTS):
            raise ValueError(f"unknown store kind {kind!r}")
        if not self.writable[kind]:
            raise internal_failure(_NOT_WRITABLE[kind], "Check storage configuration and permissions",
                            self._write_errors[kind])
        try:
            usage = await self._usage_for(kind)
        except Exception as error:  # noqa: BLE001 - statvfs failure: refuse, never guess
            raise internal_failure("Storage usage could not be determined",
                            "Check storage configuration and permissions", str(error)) from None
        percent = round(usage.percent, 1)
        block = self._storage_cfg.block_percent
        if percent >= block:
            raise storage_critical(percent, block,
                                   f"Storage usage {percent:g}% is at or above the block "
                                   f"threshold of {block}%")
        min_free = self._storage_cfg.min_free_mb
        if kind == RECORDINGS and usage.available < min_free * MIB:
            raise storage_critical(percent, block,
                                   f"Free space {usage.available // MIB} MiB is below the "
                                   f"minimum of {min_free} MiB")

    async def storage_info(self) -> dict[str, Any]:
        """``get_storage_info`` (api.md §4.24, media.md §5.3)."""
        try:
            usage: DiskUsage = await self._run(self._disk_usage, self.stores[RECORDINGS].root)
        except Exception as error:  # noqa: BLE001
            raise internal_failure("Storage information could not be read",
                            "Check storage configuration and permissions", str(error)) from None
        self._readings[RECORDINGS] = _Reading(usage, self._clock.seconds())
        self._evaluate()
        sizes: dict[str, int] = {}
        for kind, label in ((RECORDINGS, "Recordings"), (SNAPSHOTS, "Snapshots")):
            try:
                files = await self.stores[kind].scan()
            except OSError as error:
                raise internal_failure(f"{label} directory not found or inaccessible",
                                "Check storage configuration and permissions", str(error)) from None
            sizes[kind] = sum(f.size for f in files)
        percent = round(usage.percent, 1)
        return {
            "total_space": usage.total,
            "used_space": usage.used,
            "available_space": usage.available,
            "usage_percentage": percent,
            "recordings_size": sizes[RECORDINGS],
            "snapshots_size": sizes[SNAPSHOTS],
            "low_space_warning": percent >= self._storage_cfg.warn_percent,
        }

    # -- health -----------------------------------------------------------------------------

    def _update_health(self) -> None:
        try:
            self._set_health()
        except Exception:  # noqa: BLE001 - health must never break a check or a request
            log.failure("storage health update failed")

    def _set_health(self) -> None:
        cfg = self._storage_cfg
        reading = self._readings.get(RECORDINGS)
        percent = round(reading.usage.percent, 1) if reading is not None else 0.0
        problems = [self._problems[key] for key in sorted(self._problems)]
        details = {
            "usage_percentage": percent,
            "free_bytes": reading.usage.available if reading is not None else 0,
            "recordings_writable": self.writable[RECORDINGS],
            "snapshots_writable": self.writable[SNAPSHOTS],
            "retention": self.retention.health_details(),
            "problems": problems,
        }
        levels = set(self._levels.values())
        not_writable = [kind for kind in (RECORDINGS, SNAPSHOTS) if not self.writable[kind]]
        if not_writable:
            status, message = UNHEALTHY, "; ".join(_NOT_WRITABLE[k] for k in not_writable)
        elif _LEVEL_BLOCK in levels:
            status, message = UNHEALTHY, (f"Storage usage {self._worst_percent():g}% at or above "
                                          f"block threshold ({cfg.block_percent}%)")
        elif _LEVEL_WARN in levels:
            status, message = DEGRADED, (f"Storage usage {self._worst_percent():g}% at or above "
                                         f"warning threshold ({cfg.warn_percent}%)")
        elif problems:
            status, message = DEGRADED, problems[0]
        elif reading is None:
            status, message = HEALTHY, "Storage not measured yet"
        else:
            status, message = HEALTHY, f"Storage usage {percent:g}%"
        if status != UNHEALTHY and self._low_free:
            status, message = UNHEALTHY, "Free space below storage.min_free_mb"
        self._health.set(COMPONENT, status, message, details)

    def _worst_percent(self) -> float:
        return max((round(r.usage.percent, 1) for k, r in self._readings.items()
                    if k in self._levels), default=0.0)


def _make_parents(paths: list[str]) -> None:
    """Blocking: the parents of the directories the service creates (makedirs semantics)."""
    for path in paths:
        parent = os.path.dirname(path)
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError:
            pass  # prepare_directory reports the directory itself


def storage_critical(usage_percentage: float, block_percent: float, details: str) -> RpcError:
    """-32020 storage_critical with the api.md §6.3 fields."""
    return invalid_state("storage_critical", "STORAGE_CRITICAL", [], details,
                         "Free space or run cleanup_old_files",
                         usage_percentage=float(usage_percentage), block_percent=block_percent)


def internal_failure(details: str, suggestion: str, cause: str | None = None) -> RpcError:
    """-32603 with the given details; the correlation id goes to the log with the cause."""
    request_id = uuid.uuid4().hex[:16]
    log.error("{details} (request_id={request_id}): {cause}", details=details,
              request_id=request_id, cause=cause or "")
    return internal_error(request_id, details, suggestion)
