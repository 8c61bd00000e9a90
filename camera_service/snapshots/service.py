"""The snapshot service: one JPEG still per call, from the best source available (media.md §4).

Tier selection (§4.1), first applicable wins:

a. MediaMTX is UP and the camera's path is live (a ``paths/get`` result at most 1 s old):
   read the RTSP stream.
b. USB camera held by a direct recording whose frame tap is at most 2 s old: copy the tap.
c. USB camera, path not live, ``snapshots.direct_device`` true: open the device under the
   camera's device lease (§3.3).
d. tier c failed with EBUSY, or ``direct_device`` is false, and MediaMTX is UP:
   ``ensure_path``, then read the RTSP stream (which starts the on-demand publisher).
e. virtual camera whose path is not live: its lavfi source.

Every capture writes a temporary ``.snapshot-<16 hex>.part`` in the camera's directory and is
renamed to its final name only after FFmpeg exited 0 and the file starts with ``FF D8``
(§4.4). Names are unique across the whole store and reserved in memory from the moment they
are chosen until the rename. Blocking file work (stat, copy, rename, unlink, makedirs) runs
through ``run_in_thread``; FFmpeg runs only through :class:`camera_service.procs.ProcessRunner`.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from camera_service.discovery.registry import CONNECTED
from camera_service.leases import DeviceLeases, LeaseTimeout
from camera_service.procs import ProcessError, ProcessResult, ProcessRunner
from camera_service.rpc.errors import (
    DEPENDENCY_FAILED,
    RpcError,
    dependency_failed,
    invalid_params,
    invalid_state,
    not_found,
)
from camera_service.snapshots.commands import (
    device_snapshot_argv,
    lavfi_snapshot_argv,
    mjpeg_q,
    rtsp_snapshot_argv,
    target_size,
    temp_name,
)
from camera_service.storage.files import SNAPSHOTS, FileStore, valid_file_name
from camera_service.timeutil import rfc3339

__all__ = ["SnapshotService", "snapshot_file_name"]

#: A ``paths/get`` result younger than this says whether the path is live (§4.1 tier a).
LIVE_MAX_AGE = 1.0
#: A frame tap older than this is not served (§4.1 tier b).
TAP_MAX_AGE = 2.0
#: Tier d waits this much longer than MediaMTX's publisher start timeout (§4.5).
TIER_D_EXTRA = 5.0
#: Names this service created stay "taken" this long even if a store scan that started
#: before the rename does not list them yet (a scan result can be up to its cache age old).
RECENT_NAME_SECONDS = 30.0
#: How often a generated name is re-chosen when its final path appeared meanwhile.
_RENAME_ATTEMPTS = 5

_MEDIAMTX_UP = "up"
_DETAILS = "Snapshot capture failed"
_SUGGESTION = "Retry; check the camera and MediaMTX"

# Device errors (busy, gone, permission) are "v4l2" (§4.5); anything else FFmpeg reports is "ffmpeg".
_BUSY = re.compile(r"Device or resource busy")
_DEVICE_ERROR = re.compile(
    r"Device or resource busy|No such file or directory|No such device|Permission denied|"
    r"Cannot open video device|Input/output error|Inappropriate ioctl|VIDIOC_")
# The RTSP side refused or never answered: the path did not go live, 404 and the like.
_RTSP_ERROR = re.compile(
    r"Server returned|Connection refused|Connection timed out|DESCRIBE failed|"
    r"No route to host|Network is unreachable|404")
_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


class _DeviceBusy(Exception):
    """Tier c found the device busy (EBUSY): tier d may take over."""

    def __init__(self, error: RpcError) -> None:
        super().__init__(str(error))
        self.error = error


class _NotJpeg(Exception):
    """FFmpeg exited 0 but left no JPEG behind."""


# -- blocking helpers (always called through run_in_thread) ---------------------------------

def _jpeg_size(head: bytes) -> tuple[int, int] | None:
    """Width and height from the first SOF segment, or None when none is found."""
    index = 2
    while index + 4 <= len(head):
        if head[index] != 0xFF:
            return None
        marker = head[index + 1]
        if marker == 0xFF:  # fill byte
            index += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            index += 2
            continue
        length = int.from_bytes(head[index + 2:index + 4], "big")
        if marker in _JPEG_SOF and index + 9 <= len(head):
            height = int.from_bytes(head[index + 5:index + 7], "big")
            width = int.from_bytes(head[index + 7:index + 9], "big")
            return (width, height) if width and height else None
        if length < 2:
            return None
        index += 2 + length
    return None


def _finish(tmp: str, final: str) -> tuple[int, tuple[int, int] | None]:
    """Check the temporary file is a non-empty JPEG, rename it, and size the result.

    The rename never replaces an existing file: a name that appeared since it was chosen
    raises FileExistsError (os.rename alone would silently overwrite it).
    """
    with open(tmp, "rb") as handle:
        head = handle.read(65536)
    if len(head) < 2 or head[:2] != b"\xff\xd8":
        raise _NotJpeg("the output is not a JPEG")
    if os.path.lexists(final):
        raise FileExistsError(final)
    os.rename(tmp, final)
    return os.stat(final).st_size, _jpeg_size(head)


def _discard(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _mtime(path: str) -> float | None:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


def _copy_tap(source: str, tmp: str) -> bool:
    """Copy the frame tap; True when the copy is a whole JPEG (SOI … EOI).

    The recorder rewrites the tap once a second, so a copy can catch it mid-write: one
    retry, and the end marker is checked as well as the start.
    """
    for _ in range(2):
        try:
            shutil.copyfile(source, tmp)
            with open(tmp, "rb") as handle:
                data = handle.read()
        except OSError:
            continue
        if len(data) > 4 and data[:2] == b"\xff\xd8" and data.rstrip(b"\x00")[-2:] == b"\xff\xd9":
            return True
    return False


def _makedirs(path: str) -> None:
    os.makedirs(path, exist_ok=True)


# -- names ---------------------------------------------------------------------------------

def snapshot_file_name(filename: Any) -> str:
    """A client's ``filename`` completed as api.md §4.6 says: ``.jpg`` appended unless it
    ends in ``.jpg``/``.jpeg`` (any case), validated before and after appending."""
    rule = "must match ^[A-Za-z0-9._-]{1,255}$ and must not contain '..'"
    if not valid_file_name(filename):
        raise invalid_params("filename", "filename", f"filename {rule}")
    name = str(filename)
    if not name.lower().endswith((".jpg", ".jpeg")):
        name += ".jpg"
    if not valid_file_name(name):
        # 252+ characters, or a trailing "." that becomes "..jpg".
        raise invalid_params("filename", "filename", f"filename with .jpg appended {rule}")
    return name


def _no_storage_check(kind: str) -> Awaitable[None]:
    done: Deferred[None] = Deferred()
    done.callback(None)
    return done


class SnapshotService(Service):
    """``take_snapshot`` (api.md §4.6, media.md §4). See the module docstring."""

    name = "snapshots"  # type: ignore[assignment]  # Service declares name as None
    _log = Logger()

    def __init__(self, *, config: Any, clock: Any, monitor: Any, mediamtx: Any,
                 runner: ProcessRunner, ffmpeg_path: str | None, store: FileStore,
                 leases: DeviceLeases, run_in_thread: Callable[..., Deferred[Any]], bus: Any,
                 check_can_write: Callable[[str], Awaitable[None]] | None = None,
                 ensure_camera_directories: Callable[[str], Awaitable[None]] | None = None,
                 frame_tap: Callable[[str], str | None] | None = None,
                 ffmpeg_major_version: int | None = None,
                 random_hex: Callable[[], str] | None = None) -> None:
        self._config = config
        self._snap = config.snapshots
        self._mm = config.mediamtx
        self._clock = clock
        self._monitor = monitor
        self._mediamtx = mediamtx
        self._runner = runner
        self._ffmpeg = ffmpeg_path
        self._store = store
        self._leases = leases
        self._run_in_thread = run_in_thread
        self._bus = bus
        self._check_can_write = check_can_write or _no_storage_check
        self._ensure_dirs = ensure_camera_directories or self._default_ensure_dirs
        self._frame_tap = frame_tap or (lambda camera_id: None)
        # FFmpeg 4.x calls the RTSP socket timeout -stimeout; there -timeout means "listen" (§0.3).
        self._timeout_option = ("-stimeout" if ffmpeg_major_version is not None
                                and ffmpeg_major_version < 5 else "-timeout")
        self._random_hex = random_hex or (lambda: secrets.token_hex(8))
        self._q = mjpeg_q(int(self._snap.quality))

        self._reserved: dict[str, str] = {}        # name -> final absolute path
        self._recent: dict[str, float] = {}        # name -> when this service created it
        self._live_seen: dict[str, tuple[float, bool]] = {}  # camera id -> (when, live)
        self._readers: Counter[str] = Counter()    # camera id -> RTSP reads in progress
        #: camera id -> the tier ("a".."e") of its last successful snapshot (tests, metrics).
        self.last_tier: dict[str, str] = {}
        #: successful snapshots per tier since start.
        self.tier_counts: Counter[str] = Counter()
        self._hook_own_readers()

    # ------------------------------------------------------------------ public API

    def reserved_paths(self) -> Iterable[str]:
        """Absolute final paths chosen by snapshots still in progress (retention skips them)."""
        return list(self._reserved.values())

    def rtsp_readers(self, camera_id: str) -> int:
        """RTSP reads this service has open on the camera's path right now (tiers a and d)."""
        return self._readers.get(camera_id, 0)

    async def take(self, camera_id: str, filename: str | None = None, *,
                   after_response: Callable[[Callable[[], None]], None] | None = None
                   ) -> dict[str, Any]:
        """Capture one JPEG and return the api.md §4.6 result.

        ``after_response`` receives the action that publishes ``snapshot.taken`` (the RPC
        handler passes ``ctx.after_response`` so the event follows the response); without
        it the event is published at once. Failures raise :class:`RpcError`.
        """
        camera = self._monitor.registry.get(camera_id)
        if camera is None:
            raise not_found("camera", camera_id)
        if camera.status != CONNECTED:
            raise invalid_state("camera_not_connected", camera.status, [CONNECTED],
                                f"Camera {camera_id} is {camera.status}",
                                "Connect the camera and retry")
        requested = None if filename is None else snapshot_file_name(filename)
        await self._check_can_write(SNAPSHOTS)
        directory = self._store.camera_directory(camera_id)
        await self._ensure_dirs(camera_id)

        started = self._clock.seconds()
        deadline = started + float(self._snap.total_timeout)
        name = await self._reserve(camera_id, requested, started)
        tmp = os.path.join(directory, temp_name(self._random_hex()))
        done = False
        try:
            tier, scale = await self._capture(camera, tmp, deadline)
            name, size, dims = await self._complete(camera_id, directory, tmp, name, requested,
                                                    started)
            done = True
        except RpcError as error:
            if error.code == DEPENDENCY_FAILED:
                self._publish_error(camera_id, str(error.data.get("detail") or error.data["details"]))
            raise
        except Exception:
            self._log.failure("{camera}: snapshot failed unexpectedly", camera=camera_id)
            self._publish_error(camera_id, "internal error")
            raise
        finally:
            self._reserved.pop(name, None)
            if not done:
                try:
                    await self._run_in_thread(_discard, tmp)
                except OSError as error:
                    self._log.warn("{camera}: temporary snapshot not removed: {error}",
                                   camera=camera_id, error=str(error))

        final = os.path.join(directory, name)
        if dims is None:
            dims = scale or self._source_size(camera)
        resolution = f"{dims[0]}x{dims[1]}" if dims else ""
        elapsed_ms = round((self._clock.seconds() - started) * 1000)
        self.last_tier[camera_id] = tier
        self.tier_counts[tier] += 1
        self._log.info("{camera}: snapshot {filename} ({resolution}, {size} bytes) via tier {tier} "
                       "in {elapsed_ms} ms", camera=camera_id, filename=name, resolution=resolution,
                       size=size, tier=tier, elapsed_ms=elapsed_ms)
        event = {"device": camera_id, "filename": name, "resolution": resolution}

        def publish() -> None:
            self._bus.publish("snapshot.taken", event)

        if after_response is not None:
            after_response(publish)
        else:
            publish()
        return {
            "device": camera_id,
            "filename": name,
            "status": "SUCCESS",
            "timestamp": rfc3339(started),
            "file_size": size,
            "file_path": final,
        }

    # ------------------------------------------------------------------ names (§4.4)

    async def _default_ensure_dirs(self, camera_id: str) -> None:
        await self._run_in_thread(_makedirs, self._store.camera_directory(camera_id))

    def _taken(self, existing: set[str]) -> Callable[[str], bool]:
        now = self._clock.seconds()
        for old in [n for n, at in self._recent.items() if now - at > RECENT_NAME_SECONDS]:
            del self._recent[old]
        return lambda name: name in existing or name in self._reserved or name in self._recent

    async def _reserve(self, camera_id: str, requested: str | None, now: float,
                       also_taken: frozenset[str] = frozenset()) -> str:
        """Choose and reserve the final name. Nothing awaits between the check and the
        reservation, so two concurrent calls can never choose the same name."""
        files = await self._store.scan()
        taken = self._taken({f.name for f in files} | also_taken)
        directory = self._store.camera_directory(camera_id)
        if requested is not None:
            if taken(requested):
                raise invalid_state("file_exists", "EXISTS", [],
                                    f"A snapshot named {requested} already exists",
                                    "Choose another filename or omit it")
            name = requested
        else:
            stem = f"{camera_id}_{int(now)}"
            name, suffix = f"{stem}.jpg", 0
            while taken(name):
                suffix += 1
                name = f"{stem}_{suffix}.jpg"
        self._reserved[name] = os.path.join(directory, name)
        return name

    async def _complete(self, camera_id: str, directory: str, tmp: str, name: str,
                        requested: str | None, started: float
                        ) -> tuple[str, int, tuple[int, int] | None]:
        """Rename the finished temporary file; a generated name that appeared on disk since
        it was chosen (outside this service's knowledge) is chosen again."""
        collided: set[str] = set()
        try:
            for _ in range(_RENAME_ATTEMPTS):
                try:
                    size, dims = await self._run_in_thread(_finish, tmp,
                                                           os.path.join(directory, name))
                except _NotJpeg:
                    raise dependency_failed("ffmpeg", "FFmpeg exited 0 but wrote no JPEG",
                                            _DETAILS, _SUGGESTION) from None
                except FileExistsError:
                    if requested is not None:
                        raise invalid_state("file_exists", "EXISTS", [],
                                            f"A snapshot named {requested} already exists",
                                            "Choose another filename or omit it") from None
                    collided.add(name)
                    self._reserved.pop(name, None)
                    self._store.invalidate()
                    name = await self._reserve(camera_id, None, started, frozenset(collided))
                    continue
                self._recent[name] = self._clock.seconds()
                self._store.invalidate()
                return name, size, dims
            raise dependency_failed("ffmpeg", "no free snapshot name found", _DETAILS, _SUGGESTION)
        finally:
            # The caller releases the name it reserved; a re-chosen one is released here.
            self._reserved.pop(name, None)

    # ------------------------------------------------------------------ tiers (§4.1)

    def _mediamtx_up(self) -> bool:
        return self._mediamtx is not None and getattr(self._mediamtx, "state", None) == _MEDIAMTX_UP

    async def _path_live(self, camera_id: str) -> bool:
        """Tier a's test: a ``paths/get`` result at most LIVE_MAX_AGE old says live."""
        if not self._mediamtx_up():
            return False
        seen = self._live_seen.get(camera_id)
        if seen is not None and self._clock.seconds() - seen[0] <= LIVE_MAX_AGE:
            return seen[1]
        try:
            state = await self._mediamtx.fetch_path(camera_id)
        except RpcError as error:
            # MediaMTX failing is not fatal here: a device or lavfi tier may still serve.
            self._log.info("{camera}: path state unknown ({detail}); not using the stream",
                           camera=camera_id, detail=error.data.get("detail"))
            return False
        live = state is not None and bool(state.live)
        self._live_seen[camera_id] = (self._clock.seconds(), live)
        return live

    def _source_size(self, camera: Any) -> tuple[int, int] | None:
        virtual = getattr(camera, "virtual", None)
        if virtual is not None:
            return int(virtual.width), int(virtual.height)
        mode = getattr(camera, "mode", None)
        if mode is None:
            return None
        return int(mode.width), int(mode.height)

    def _scale(self, camera: Any) -> tuple[int, int] | None:
        source = self._source_size(camera)
        if source is None:
            return None
        return target_size(source[0], source[1], int(self._snap.max_width),
                           int(self._snap.max_height))

    async def _capture(self, camera: Any, tmp: str, deadline: float
                       ) -> tuple[str, tuple[int, int] | None]:
        scale = self._scale(camera)
        if await self._path_live(camera.id):
            await self._rtsp(camera, tmp, deadline, scale, float(self._snap.capture_timeout))
            return "a", scale
        if camera.is_virtual:
            await self._lavfi(camera, tmp, deadline, scale)
            return "e", scale
        if await self._from_tap(camera, tmp):
            return "b", None
        if self._snap.direct_device:
            try:
                await self._device(camera, tmp, deadline, scale)
                return "c", scale
            except _DeviceBusy as busy:
                if not self._mediamtx_up():
                    raise busy.error from None
                self._log.info("{camera}: device busy; reading the stream instead", camera=camera.id)
        elif not self._mediamtx_up():
            raise self._no_tier()
        # Tier d: the path may not exist (MediaMTX restarted) and its publisher may not run.
        await self._mediamtx.ensure_path(camera)
        try:
            await self._leases.wait_free(camera.id, self._budget(deadline, float(self._snap.capture_timeout),
                                                                 "v4l2"))
        except LeaseTimeout:
            raise dependency_failed("v4l2", f"{camera.id}: device busy (a direct capture holds it)",
                                    _DETAILS, _SUGGESTION) from None
        timeout = float(self._mm.run_on_demand_start_timeout) + TIER_D_EXTRA
        await self._rtsp(camera, tmp, deadline, scale, timeout)
        return "d", scale

    def _no_tier(self) -> RpcError:
        """A USB camera with direct_device false while MediaMTX cannot serve it (§4.1)."""
        if self._mediamtx is not None:
            try:
                self._mediamtx.require_up()
            except RpcError as error:
                return error
            state = getattr(self._mediamtx, "state", "unknown")
            detail = f"MediaMTX is not up (state {state}); direct device snapshots are disabled"
        else:
            detail = "MediaMTX integration disabled; direct device snapshots are disabled"
        return dependency_failed("mediamtx", detail, _DETAILS, _SUGGESTION)

    def _budget(self, deadline: float, wanted: float, dependency: str) -> float:
        """``wanted`` seconds, cut to what is left of snapshots.total_timeout."""
        left = deadline - self._clock.seconds()
        if left <= 0:
            raise dependency_failed(dependency, f"snapshot did not complete within "
                                    f"{float(self._snap.total_timeout):g} s", _DETAILS, _SUGGESTION)
        return min(wanted, left)

    async def _ffmpeg_run(self, argv: list[str], timeout: float, deadline: float,
                          dependency: str) -> ProcessResult:
        budget = self._budget(deadline, timeout, dependency)
        try:
            result = await self._runner.run(argv[0], argv[1:], timeout=budget, is_ffmpeg=True)
        except ProcessError as error:
            raise dependency_failed("ffmpeg", str(error), _DETAILS, _SUGGESTION) from None
        if result.timed_out and budget < timeout:
            # Stopped by what was left of the whole call's time, not by its own timeout.
            raise dependency_failed(dependency, f"timed out after "
                                    f"{float(self._snap.total_timeout):g} s (snapshots.total_timeout)",
                                    _DETAILS, _SUGGESTION)
        return result

    def _ffmpeg_path(self) -> str:
        if not self._ffmpeg:
            raise dependency_failed("ffmpeg", "FFmpeg is not available", _DETAILS,
                                    "Install FFmpeg or set tools.ffmpeg")
        return self._ffmpeg

    def _detail(self, camera_id: str, result: ProcessResult) -> str:
        return result.detail(redact=lambda _device: camera_id)

    async def _rtsp(self, camera: Any, tmp: str, deadline: float, scale: tuple[int, int] | None,
                    timeout: float) -> None:
        """Tiers a and d: read one frame from MediaMTX's RTSP server."""
        argv = rtsp_snapshot_argv(ffmpeg=self._ffmpeg_path(), host=self._mm.host,
                                  port=int(self._mm.rtsp_port), camera_id=camera.id,
                                  transport=self._mm.rtsp_transport, q=self._q, scale=scale,
                                  tmp=tmp, timeout_option=self._timeout_option)
        self._readers[camera.id] += 1
        try:
            result = await self._ffmpeg_run(argv, timeout, deadline, "mediamtx")
        finally:
            self._readers[camera.id] -= 1
            if self._readers[camera.id] <= 0:
                del self._readers[camera.id]
        if result.ok:
            return
        # A stream that never delivered a frame, or an RTSP refusal, is MediaMTX's (§4.5).
        dependency = ("mediamtx" if result.timed_out or _RTSP_ERROR.search(self._stderr(result))
                      else "ffmpeg")
        raise dependency_failed(dependency, self._detail(camera.id, result), _DETAILS, _SUGGESTION)

    async def _lavfi(self, camera: Any, tmp: str, deadline: float,
                     scale: tuple[int, int] | None) -> None:
        """Tier e: the virtual camera's test source."""
        virtual = camera.virtual
        argv = lavfi_snapshot_argv(ffmpeg=self._ffmpeg_path(), pattern=virtual.pattern,
                                   width=int(virtual.width), height=int(virtual.height),
                                   rate=int(virtual.rate), q=self._q, scale=scale, tmp=tmp)
        result = await self._ffmpeg_run(argv, float(self._snap.capture_timeout), deadline, "ffmpeg")
        if not result.ok:
            raise dependency_failed("ffmpeg", self._detail(camera.id, result), _DETAILS, _SUGGESTION)

    async def _from_tap(self, camera: Any, tmp: str) -> bool:
        """Tier b: the direct recorder's frame tap, when it is fresh enough."""
        tap = self._frame_tap(camera.id)
        if not tap:
            return False
        mtime = await self._run_in_thread(_mtime, tap)
        if mtime is None or self._clock.seconds() - mtime > TAP_MAX_AGE:
            return False
        if not await self._run_in_thread(_copy_tap, tap, tmp):
            raise dependency_failed("ffmpeg", "the recording's frame tap could not be read",
                                    _DETAILS, _SUGGESTION)
        return True

    async def _device(self, camera: Any, tmp: str, deadline: float,
                      scale: tuple[int, int] | None) -> None:
        """Tier c: straight from the V4L2 device, holding the camera's device lease."""
        node, mode = camera.device_path, camera.mode
        if node is None or mode is None:
            raise dependency_failed("v4l2", f"{camera.id} has no device node or streaming mode",
                                    _DETAILS, _SUGGESTION)
        argv = device_snapshot_argv(ffmpeg=self._ffmpeg_path(), device_node=node, mode=mode,
                                    warmup_frames=int(self._snap.warmup_frames), q=self._q,
                                    scale=scale, tmp=tmp)
        capture_timeout = float(self._snap.capture_timeout)
        try:
            await self._leases.acquire(camera.id, self._budget(deadline, capture_timeout, "v4l2"))
        except LeaseTimeout:
            raise dependency_failed("v4l2", f"{camera.id}: device busy (another capture holds it)",
                                    _DETAILS, _SUGGESTION) from None
        try:
            result = await self._ffmpeg_run(argv, capture_timeout, deadline, "v4l2")
        finally:
            self._leases.release(camera.id)
        if result.ok:
            return
        stderr = self._stderr(result)
        error = dependency_failed(
            # A device that gave no frame in time is a device problem too.
            "v4l2" if result.timed_out or _DEVICE_ERROR.search(stderr) else "ffmpeg",
            self._detail(camera.id, result), _DETAILS, _SUGGESTION)
        if not result.timed_out and _BUSY.search(stderr):
            raise _DeviceBusy(error)
        raise error

    @staticmethod
    def _stderr(result: ProcessResult) -> str:
        return result.stderr_tail.decode("utf-8", errors="replace")

    # ------------------------------------------------------------------ events, readers

    def _publish_error(self, camera_id: str, error: str) -> None:
        self._bus.publish("snapshot.error", {"device": camera_id, "error": error})

    def _hook_own_readers(self) -> None:
        """Count this service's RTSP reads as the service's own readers on the path, so
        ``readers`` in stream metrics shows viewers only (§2.8). The existing provider is
        kept and added to, whoever installed it."""
        previous = getattr(self._mediamtx, "own_readers", None)
        if not callable(previous):
            return

        def own_readers(camera_id: str) -> int:
            return int(previous(camera_id)) + self.rtsp_readers(camera_id)

        self._mediamtx.own_readers = own_readers
