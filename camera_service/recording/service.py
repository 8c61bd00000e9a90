"""Recording: per-camera state machines over two backends (media.md §3).

Every camera has one :class:`_Slot`: its state (IDLE, STARTING, RECORDING, STOPPING,
RESUMING), a ``DeferredLock`` held while the state is decided and the device or path is
changed, and the active :class:`Recording`. ``start_recording`` answers only once a
segment file really exists; the file's own name is the API's name (media.md §3.2).

Backends (media.md §3.1): **mediamtx** switches ``record`` on the camera's own path and
holds a keep-alive reader so the on-demand publisher runs; **direct** runs one supervised
FFmpeg that writes the same layout. The recording's timers (duration, progress, stall)
run on the injected clock and belong to the recorder, not to any connection.
"""

from __future__ import annotations

import collections
import math
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.defer import Deferred, DeferredLock
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger

from camera_service.discovery.registry import CONNECTED, Camera
from camera_service.leases import LeaseTimeout
from camera_service.mediamtx.paths import usb_input_args, virtual_input_args
from camera_service.procs import LongRunningProcess, ProcessRunner, redact_devices
from camera_service.recording.commands import (
    direct_recorder_args,
    keepalive_reader_args,
    segment_pattern,
)
from camera_service.rpc.errors import (
    RpcError,
    dependency_failed,
    invalid_state,
    not_found,
    unsupported,
)
from camera_service.storage.files import RECORDING_EXTENSIONS, name_time, recording_stem
from camera_service.timeutil import rfc3339

IDLE = "IDLE"
STARTING = "STARTING"
RECORDING = "RECORDING"
STOPPING = "STOPPING"
RESUMING = "RESUMING"

MEDIAMTX = "mediamtx"
DIRECT = "direct"

# Reasons of mediamtx.recording_failed (media.md §3.8).
DEVICE_DISCONNECTED = "device_disconnected"
MEDIAMTX_ERROR = "mediamtx_error"
STREAM_LOST = "stream_lost"
STORAGE_FULL = "storage_full"
_RESUMABLE = (DEVICE_DISCONNECTED, MEDIAMTX_ERROR)

_POLL_INTERVAL = 0.25
_STALL_CHECK_INTERVAL = 5.0
_READER_BACKOFF = (1.0, 2.0, 4.0)
_READER_WINDOW = 60.0
_READER_STOP_GRACE = 3.0
_RESUME_RETRY = 10.0
_SHUTDOWN_LIMIT = 1.0


@dataclass
class Recording:
    """One recording from its first segment to its end."""

    camera_id: str
    backend: str
    requested_format: str
    container: str
    t_enable: float
    known_before: frozenset[str]
    deadline: float | None
    start_time: float = 0.0
    stem: str = ""
    segments: dict[str, int] = field(default_factory=dict)  # path -> last size seen
    end_time: float | None = None
    process: LongRunningProcess | None = None   # the direct recorder or the keep-alive reader
    frame_tap: str | None = None
    reader_exits: collections.deque[float] = field(default_factory=collections.deque)
    last_growth: float = 0.0
    total_size: int = 0
    timers: list[Any] = field(default_factory=list)
    aborted: bool = False  # a failed start was undone (record flag cleared, child stopped)


@dataclass
class _Slot:
    lock: DeferredLock = field(default_factory=DeferredLock)
    state: str = IDLE
    recording: Recording | None = None
    # RESUMING bookkeeping (media.md §3.9)
    failed_at: float = 0.0
    resume_deadline: float | None = None   # the original recording's deadline, if any
    resume_format: str = "fmp4"
    resume_call: IDelayedCall | None = None
    resume_attempt: Deferred[Any] | None = None


def _is_segment_of(name: str, camera_id: str, t_enable: float) -> bool:
    stem = recording_stem(name)
    if stem == name or not stem.startswith(camera_id + "_"):
        return False
    stamp = name_time(stem)
    return stamp is not None and stamp >= math.floor(t_enable) - 1


def _list_camera_dir(directory: str) -> dict[str, int]:
    """Blocking: recording files of one camera directory → sizes (hidden files skipped)."""
    found: dict[str, int] = {}
    try:
        entries = os.scandir(directory)
    except FileNotFoundError:
        return found
    with entries:
        for entry in entries:
            if entry.name.startswith(".") or not entry.name.lower().endswith(RECORDING_EXTENSIONS):
                continue
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            found[entry.name] = info.st_size
    return found


class RecordingService(Service):
    """The recorder of every camera. See the module docstring."""

    name = "recording"
    _log = Logger()

    def __init__(self, *, config: Any, clock: Any, monitor: Any, mediamtx: Any,
                 runner: ProcessRunner, ffmpeg_path: str | None, recordings_root: str,
                 run_in_thread: Callable[..., Deferred[Any]], bus: Any, leases: Any,
                 check_can_write: Callable[[str], Awaitable[None]] | None = None,
                 ensure_camera_directories: Callable[[str], Awaitable[None]] | None = None,
                 invalidate_listing: Callable[[], None] = lambda: None) -> None:
        self._config = config
        self._clock = clock
        self._monitor = monitor
        self._mediamtx = mediamtx
        self._runner = runner
        self._ffmpeg = ffmpeg_path
        self._root = os.path.abspath(recordings_root)
        self._run = run_in_thread
        self._bus = bus
        self._leases = leases
        self._check_can_write = check_can_write
        self._ensure_dirs = ensure_camera_directories
        self._invalidate_listing = invalidate_listing
        self._run_dir = os.path.join(config.server.state_dir, "run")
        self._slots: dict[str, _Slot] = {}
        self._stopping_service = False

        if monitor is not None:
            monitor.on_camera_disconnected.append(self._camera_disconnected)
            monitor.on_camera_connected.append(self._camera_connected)
        if mediamtx is not None:
            mediamtx.is_recording = self.wants_record_flag
            mediamtx.own_readers = self._own_readers
            mediamtx.on_paths_lost.append(self._mediamtx_lost)
            mediamtx.on_provisioned.append(self._mediamtx_provisioned)

    # ------------------------------------------------------------------ queries

    def _slot(self, camera_id: str) -> _Slot:
        slot = self._slots.get(camera_id)
        if slot is None:
            slot = self._slots[camera_id] = _Slot()
        return slot

    def state(self, camera_id: str) -> str:
        slot = self._slots.get(camera_id)
        return IDLE if slot is None else slot.state

    def is_active(self, camera_id: str) -> bool:
        return self.state(camera_id) != IDLE

    def wants_record_flag(self, camera_id: str) -> bool:
        """What a re-written MediaMTX path must carry for ``record`` (media.md §3.8: never
        left true once a recording has ended)."""
        slot = self._slots.get(camera_id)
        return (slot is not None and slot.state in (STARTING, RECORDING)
                and slot.recording is not None and slot.recording.backend == MEDIAMTX)

    def _own_readers(self, camera_id: str) -> int:
        slot = self._slots.get(camera_id)
        if slot is None or slot.recording is None or slot.recording.backend != MEDIAMTX:
            return 0
        process = slot.recording.process
        return 1 if process is not None and process.running else 0

    def busy_paths(self) -> set[str]:
        """Segments of recordings in progress or interrupted: never deleted (media.md §5.5)."""
        paths: set[str] = set()
        for slot in self._slots.values():
            if slot.state != IDLE and slot.recording is not None:
                paths.update(slot.recording.segments)
        return paths

    def frame_tap(self, camera_id: str) -> str | None:
        """The tap JPEG of a direct USB recording (snapshot tier b), if one is running."""
        slot = self._slots.get(camera_id)
        if slot is None or slot.state != RECORDING or slot.recording is None:
            return None
        return slot.recording.frame_tap

    # ------------------------------------------------------------------ API operations

    def _camera(self, camera_id: str) -> Camera:
        camera = self._monitor.registry.get(camera_id)
        if camera is None:
            raise not_found("camera", camera_id)
        return camera

    async def start(self, camera_id: str, duration: int | None, requested_format: str
                    ) -> dict[str, Any]:
        """``start_recording`` (api.md §4.7, media.md §3.3–3.4, §3.10)."""
        camera = self._camera(camera_id)
        slot = self._slot(camera_id)
        if slot.state in (STARTING, RECORDING, RESUMING):
            raise self._already_recording(camera_id)
        if camera.status != CONNECTED:
            raise invalid_state("camera_not_connected", camera.status, [CONNECTED],
                                f"Camera {camera_id} is {camera.status}", "Connect the camera and retry")
        await slot.lock.acquire()
        try:
            # A STOPPING slot held the lock; by now it is IDLE again (or someone else won).
            if slot.state != IDLE:
                raise self._already_recording(camera_id)
            if requested_format == "mkv":
                raise unsupported("unsupported_format", "recording_format_mkv",
                                  "mkv recordings are not supported", "Use fmp4")
            if self._check_can_write is not None:
                await self._check_can_write("recordings")
            result = await self._start_locked(camera, slot, duration, requested_format)
        finally:
            slot.lock.release()
        return result

    async def stop(self, camera_id: str) -> dict[str, Any]:
        """``stop_recording`` (api.md §4.8, media.md §3.6, §3.9)."""
        self._camera(camera_id)
        slot = self._slot(camera_id)
        if slot.state == IDLE:
            raise self._not_recording(camera_id)
        await slot.lock.acquire()
        try:
            if slot.state == RESUMING:
                return self._cancel_resume(camera_id, slot)
            if slot.state != RECORDING or slot.recording is None:
                raise self._not_recording(camera_id)
            return await self._stop_locked(camera_id, slot)
        finally:
            slot.lock.release()

    @staticmethod
    def _already_recording(camera_id: str) -> RpcError:
        return invalid_state("already_recording", "RECORDING", ["STOPPED"],
                             f"Camera {camera_id} is already recording", "Stop the recording first")

    @staticmethod
    def _not_recording(camera_id: str) -> RpcError:
        return invalid_state("not_recording", "STOPPED", ["RECORDING"],
                             f"Camera {camera_id} is not recording", "Start a recording first")

    # ------------------------------------------------------------------ starting

    def _backend_for(self, camera: Camera) -> str:
        state = getattr(self._mediamtx, "state", "disabled") if self._mediamtx is not None else "disabled"
        if state == "up":
            return MEDIAMTX
        if camera.is_virtual or state == "disabled":
            return DIRECT
        # A USB camera never records directly while MediaMTX is merely down: the direct
        # recorder would hold the device the publisher needs once MediaMTX is back.
        self._mediamtx.require_up()
        raise dependency_failed("mediamtx", "MediaMTX is not available")

    async def _start_locked(self, camera: Camera, slot: _Slot, duration: int | None,
                            requested_format: str, *, resume_deadline: float | None = None) -> dict[str, Any]:
        camera_id = camera.id
        backend = self._backend_for(camera)
        if not self._ffmpeg:
            raise dependency_failed("ffmpeg", "FFmpeg is not available on this host")
        container = self._config.recording.format
        directory = os.path.join(self._root, camera_id)
        if self._ensure_dirs is not None:
            await self._ensure_dirs(camera_id)
        else:
            await self._run(os.makedirs, directory, 0o2775, True)
        slot.state = STARTING
        recording: Recording | None = None
        try:
            existing = await self._same_second_guard(directory, camera_id)
            now = self._clock.seconds()
            if resume_deadline is not None:
                remaining: float | None = max(1.0, resume_deadline - now)
            else:
                remaining = float(duration) if duration is not None else None
            recording = Recording(camera_id=camera_id, backend=backend,
                                  requested_format=requested_format, container=container,
                                  t_enable=now, known_before=frozenset(existing),
                                  deadline=resume_deadline)
            slot.recording = recording
            if backend == MEDIAMTX:
                await self._enable_mediamtx(camera, recording)
            else:
                self._spawn_direct(camera, recording, remaining)
            await self._wait_first_segment(camera, recording, directory)
        except BaseException:
            if recording is not None and not recording.aborted:
                # Whatever failed after the record flag or a child was set up must not
                # leave either behind (media.md §3.8: never left true).
                await self._abort_start(camera, recording)
            slot.state = IDLE
            slot.recording = None
            raise
        # The first frame starts the clock (media.md §3.7).
        if recording.deadline is None and remaining is not None:
            recording.deadline = recording.start_time + remaining
        slot.state = RECORDING
        self._arm(camera_id, slot, recording)
        self._invalidate_listing()
        self._publish_started(recording)
        return {"device": camera_id, "filename": recording.stem, "status": "RECORDING",
                "start_time": rfc3339(recording.start_time), "format": requested_format}

    async def _same_second_guard(self, directory: str, camera_id: str) -> dict[str, int]:
        """Wait for the next whole second when the newest file carries this one (§3.2)."""
        existing: dict[str, int] = await self._run(_list_camera_dir, directory)
        newest = max((name_time(recording_stem(name)) or 0.0 for name in existing), default=0.0)
        now = self._clock.seconds()
        if newest >= math.floor(now):
            await deferLater(self._clock, min(1.0, math.floor(now) + 1 - now + 0.01), lambda: None)
            existing = await self._run(_list_camera_dir, directory)
        return existing

    async def _enable_mediamtx(self, camera: Camera, recording: Recording) -> None:
        await self._mediamtx.ensure_path(camera)
        await self._mediamtx.set_record(camera, True)
        try:
            await self._leases.wait_free(camera.id, float(self._config.snapshots.capture_timeout))
        except LeaseTimeout:
            pass  # the snapshot's own timeout ends it; the publisher retries on its own
        self._spawn_reader(camera.id, recording)

    def _spawn_reader(self, camera_id: str, recording: Recording) -> None:
        mm = self._config.mediamtx
        assert self._ffmpeg is not None
        args = keepalive_reader_args(host=mm.host, port=mm.rtsp_port, camera_id=camera_id,
                                     transport=mm.rtsp_transport)
        process = self._runner.spawn(self._ffmpeg, args, is_ffmpeg=True)
        recording.process = process
        process.ended().addCallback(lambda result: self._reader_ended(camera_id, recording, process, result))

    def _spawn_direct(self, camera: Camera, recording: Recording, remaining: float | None) -> None:
        assert self._ffmpeg is not None
        virtual = camera.virtual
        if virtual is not None:
            input_args = virtual_input_args(virtual.pattern, virtual.width, virtual.height, virtual.rate)
            fps = int(virtual.rate)
            tap = None
        else:
            if camera.mode is None or camera.device_path is None:
                raise dependency_failed("v4l2", f"{camera.id} has no streaming mode")
            input_args = usb_input_args(camera.device_path, camera.mode)
            fps = max(1, int(camera.mode.fps + 0.5))
            # A snapshot cannot open a device the recorder holds: serve it a tapped frame.
            tap = os.path.join(self._run_dir, f"{camera.id}.jpg")
            recording.frame_tap = tap
        args = direct_recorder_args(
            encoding=self._config.encoding, input_args=input_args, fps=fps,
            container=recording.container,
            segment_duration=float(self._config.recording.segment_duration),
            output_pattern=segment_pattern(self._root, camera.id, recording.container),
            remaining=remaining, frame_tap=tap)
        process = self._runner.spawn(self._ffmpeg, args, is_ffmpeg=True)
        recording.process = process
        process.ended().addCallback(lambda result: self._direct_ended(camera.id, recording, process, result))

    async def _wait_first_segment(self, camera: Camera, recording: Recording, directory: str) -> None:
        timeout = float(self._config.recording.start_timeout)
        give_up = self._clock.seconds() + timeout
        while True:
            listing: dict[str, int] = await self._run(_list_camera_dir, directory)
            fresh = sorted(name for name in listing
                           if name not in recording.known_before
                           and _is_segment_of(name, camera.id, recording.t_enable))
            if fresh:
                first = fresh[0]
                recording.stem = recording_stem(first)
                recording.start_time = name_time(recording.stem) or recording.t_enable
                for name in fresh:
                    recording.segments[os.path.join(directory, name)] = listing[name]
                recording.last_growth = self._clock.seconds()
                offset = recording.start_time - recording.t_enable
                if abs(offset) > 60:
                    self._log.warn("First segment of {camera} is named {offset:.0f} s away from now: "
                                   "MediaMTX probably runs in another time zone",
                                   camera=camera.id, offset=offset)
                return
            process = recording.process
            if recording.backend == DIRECT and process is not None and not process.running:
                await self._abort_start(camera, recording)
                tail = redact_devices(process.stderr_tail.decode("utf-8", "replace").strip()[-300:])
                raise dependency_failed("ffmpeg", f"recorder exited before writing: {tail}".strip())
            if self._clock.seconds() >= give_up:
                detail = await self._timeout_detail(camera, recording, timeout)
                await self._abort_start(camera, recording)
                raise dependency_failed("ffmpeg" if recording.backend == DIRECT else "mediamtx", detail)
            await deferLater(self._clock, _POLL_INTERVAL, lambda: None)

    async def _timeout_detail(self, camera: Camera, recording: Recording, timeout: float) -> str:
        tail = ""
        if recording.process is not None:
            tail = redact_devices(recording.process.stderr_tail.decode("utf-8", "replace").strip()[-300:])
        if recording.backend == MEDIAMTX:
            try:
                starts = await self._mediamtx.recordings_of(camera.id)
            except Exception:  # noqa: BLE001 - only the wording of the detail depends on it
                starts = []
            if any(self._rfc_after(start, recording.t_enable - 1) for start in starts):
                return ("MediaMTX is writing recordings outside the service's recordings directory "
                        "(check recordPath, mounts and permissions)")
        text = f"camera stream did not start within {timeout:g} s"
        return f"{text}: {tail}" if tail else text

    @staticmethod
    def _rfc_after(start: str, moment: float) -> bool:
        from camera_service.timeutil import parse_rfc3339

        try:
            return parse_rfc3339(start) >= moment
        except ValueError:
            return False

    async def _abort_start(self, camera: Camera, recording: Recording) -> None:
        """Undo a start that never produced a file; nothing was announced."""
        recording.aborted = True
        if recording.backend == MEDIAMTX:
            try:
                await self._mediamtx.set_record(camera, False)
            except Exception:  # noqa: BLE001 - provisioning writes record: false later anyway
                self._log.warn("Could not clear record on {camera} after a failed start", camera=camera.id)
        await self._stop_process(recording, _READER_STOP_GRACE)

    # ------------------------------------------------------------------ running

    def _arm(self, camera_id: str, slot: _Slot, recording: Recording) -> None:
        if recording.deadline is not None:
            delay = max(0.0, recording.deadline - self._clock.seconds())
            recording.timers.append(self._clock.callLater(delay, self._duration_reached, camera_id, recording))
            if recording.backend == DIRECT:
                # Safety net: FFmpeg's own -t should end it; SIGINT anyway 5 s later.
                recording.timers.append(self._clock.callLater(
                    delay + 5, lambda: recording.process and recording.process.signal("INT")))
        interval = float(self._config.notifications.real_time.recording_progress_interval)
        progress = LoopingCall(self._progress, recording)
        progress.clock = self._clock
        progress.start(interval, now=False)
        stall = LoopingCall(self._check_growth, camera_id, recording)
        stall.clock = self._clock
        stall.start(_STALL_CHECK_INTERVAL, now=False).addErrback(
            lambda f: self._log.failure("stall check failed", failure=f))
        recording.timers.extend([progress, stall])

    @staticmethod
    def _disarm(recording: Recording) -> None:
        for timer in recording.timers:
            if isinstance(timer, LoopingCall):
                if timer.running:
                    timer.stop()
            elif timer.active():
                timer.cancel()
        recording.timers.clear()

    def _seconds_recorded(self, recording: Recording, until: float | None = None) -> float:
        end = until if until is not None else self._clock.seconds()
        return max(0.0, end - recording.start_time)

    def _progress(self, recording: Recording) -> None:
        self._bus.publish("recording.progress", {
            "device": recording.camera_id, "status": "RECORDING", "filename": recording.stem,
            "duration": int(self._seconds_recorded(recording))})

    async def _check_growth(self, camera_id: str, recording: Recording) -> None:
        """Track new segments and notice a recording that stopped growing (media.md §3.8)."""
        directory = os.path.join(self._root, camera_id)
        listing: dict[str, int] = await self._run(_list_camera_dir, directory)
        slot = self._slots.get(camera_id)
        if slot is None or slot.recording is not recording or slot.state != RECORDING:
            return
        grew = False
        for name, size in listing.items():
            if name in recording.known_before or not _is_segment_of(name, camera_id, recording.t_enable):
                continue
            path = os.path.join(directory, name)
            if recording.segments.get(path) != size:
                grew = True
            recording.segments[path] = size
        now = self._clock.seconds()
        if grew:
            recording.last_growth = now
        elif now - recording.last_growth >= float(self._config.recording.stall_timeout):
            self._log.warn("Recording of {camera} stopped growing", camera=camera_id)
            self._fail_soon(camera_id, STREAM_LOST)

    def _duration_reached(self, camera_id: str, recording: Recording) -> None:
        slot = self._slots.get(camera_id)
        if slot is None or slot.recording is not recording:
            return
        self._log.info("Recording of {camera} reached its duration", camera=camera_id)
        self._background(self._stop_if_current(camera_id, recording))

    async def _stop_if_current(self, camera_id: str, recording: Recording) -> None:
        slot = self._slot(camera_id)
        await slot.lock.acquire()
        try:
            if slot.recording is recording and slot.state == RECORDING:
                await self._stop_locked(camera_id, slot)
        finally:
            slot.lock.release()

    def _reader_ended(self, camera_id: str, recording: Recording, process: LongRunningProcess,
                      result: Any) -> None:
        slot = self._slots.get(camera_id)
        if (slot is None or slot.recording is not recording or slot.state != RECORDING
                or recording.process is not process or self._stopping_service):
            return
        now = self._clock.seconds()
        recording.reader_exits.append(now)
        while recording.reader_exits and now - recording.reader_exits[0] > _READER_WINDOW:
            recording.reader_exits.popleft()
        restarts = len(recording.reader_exits)
        if restarts > int(self._config.recording.reader_restart_limit):
            self._log.warn("Keep-alive reader of {camera} keeps exiting", camera=camera_id)
            self._fail_soon(camera_id, STREAM_LOST)
            return
        delay = _READER_BACKOFF[min(restarts - 1, len(_READER_BACKOFF) - 1)]
        self._log.info("Keep-alive reader of {camera} exited ({detail}); restarting in {delay:g} s",
                       camera=camera_id, detail=result.detail(), delay=delay)

        def restart() -> None:
            if slot.recording is recording and slot.state == RECORDING and not self._stopping_service:
                try:
                    self._spawn_reader(camera_id, recording)
                except Exception:  # noqa: BLE001
                    self._log.failure("Could not restart the keep-alive reader")
                    self._fail_soon(camera_id, STREAM_LOST)

        recording.timers.append(self._clock.callLater(delay, restart))

    def _direct_ended(self, camera_id: str, recording: Recording, process: LongRunningProcess,
                      result: Any) -> None:
        slot = self._slots.get(camera_id)
        if slot is None or slot.recording is not recording or slot.state != RECORDING:
            return
        if result.exit_code == 0 and recording.deadline is not None \
                and self._clock.seconds() >= recording.deadline - 2:
            # FFmpeg's own -t ended it: that is the duration stop, not a failure.
            self._background(self._stop_if_current(camera_id, recording))
            return
        self._log.warn("Direct recorder of {camera} exited unexpectedly: {detail}",
                       camera=camera_id, detail=result.detail())
        self._fail_soon(camera_id, STREAM_LOST)

    # ------------------------------------------------------------------ stopping

    async def _stop_process(self, recording: Recording, grace: float) -> None:
        process = recording.process
        if process is not None and process.running:
            await process.stop(grace)

    async def _stop_locked(self, camera_id: str, slot: _Slot) -> dict[str, Any]:
        recording = slot.recording
        assert recording is not None
        slot.state = STOPPING
        self._disarm(recording)
        camera = self._monitor.registry.get(camera_id)
        if recording.backend == MEDIAMTX:
            recording.end_time = self._clock.seconds()
            if camera is not None:
                try:
                    await self._mediamtx.set_record(camera, False)
                except RpcError:
                    pass  # path lost or MediaMTX down: the recorder is gone; provisioning writes false
            # After the PATCH: the recorder flushes its last part while the publisher still runs.
            await self._stop_process(recording, _READER_STOP_GRACE)
        else:
            process = recording.process
            if process is not None and process.running and recording.deadline is not None:
                # Let FFmpeg's -t finish the last second itself when it is about to.
                remaining = recording.deadline - self._clock.seconds()
                if remaining <= 1.5:
                    waiting = process.ended()
                    waiting.addTimeout(max(0.0, remaining) + 1.0, self._clock)
                    try:
                        await waiting
                    except defer.TimeoutError:
                        pass
            recording.end_time = self._clock.seconds()
            await self._stop_process(recording, float(self._config.recording.stop_grace))
        await self._settle(camera_id, recording)
        return self._finish(camera_id, slot, recording)

    async def _settle(self, camera_id: str, recording: Recording) -> None:
        """Wait until the newest segment's size holds still over 200 ms (at most 2 s)."""
        directory = os.path.join(self._root, camera_id)
        give_up = self._clock.seconds() + 2.0
        previous: dict[str, int] | None = None
        while True:
            listing: dict[str, int] = await self._run(_list_camera_dir, directory)
            mine = {name: size for name, size in listing.items()
                    if name not in recording.known_before
                    and _is_segment_of(name, camera_id, recording.t_enable)}
            for name, size in mine.items():
                recording.segments[os.path.join(directory, name)] = size
            if mine == previous or self._clock.seconds() >= give_up:
                break
            previous = mine
            await deferLater(self._clock, 0.2, lambda: None)
        recording.total_size = sum(recording.segments.values())

    def _finish(self, camera_id: str, slot: _Slot, recording: Recording) -> dict[str, Any]:
        end = recording.end_time if recording.end_time is not None else self._clock.seconds()
        seconds = self._seconds_recorded(recording, end)
        slot.state = IDLE
        slot.recording = None
        self._invalidate_listing()
        self._publish_stopped(recording, seconds)
        return {"device": camera_id, "filename": recording.stem, "status": "STOPPED",
                "start_time": rfc3339(recording.start_time), "end_time": rfc3339(end),
                "duration": int(seconds), "file_size": int(recording.total_size),
                "format": recording.requested_format}

    # ------------------------------------------------------------------ failure and resume

    def _fail_soon(self, camera_id: str, reason: str) -> None:
        self._background(self._fail(camera_id, reason))

    async def _fail(self, camera_id: str, reason: str) -> None:
        slot = self._slot(camera_id)
        await slot.lock.acquire()
        try:
            recording = slot.recording
            if slot.state != RECORDING or recording is None:
                return
            self._disarm(recording)
            recording.end_time = self._clock.seconds()
            self._log.warn("Recording of {camera} failed: {reason}", camera=camera_id, reason=reason)
            camera = self._monitor.registry.get(camera_id)
            if recording.backend == MEDIAMTX and camera is not None \
                    and getattr(self._mediamtx, "state", "") == "up":
                try:
                    await self._mediamtx.set_record(camera, False)
                except RpcError:
                    pass
            await self._stop_process(recording, float(self._config.recording.stop_grace))
            await self._settle(camera_id, recording)
            seconds = int(self._seconds_recorded(recording, recording.end_time))
            self._invalidate_listing()
            self._publish_failed(recording, seconds, reason)
            if (self._config.recording.auto_resume and reason in _RESUMABLE
                    and not self._stopping_service
                    and (recording.deadline is None or recording.deadline > self._clock.seconds())):
                slot.state = RESUMING
                slot.failed_at = recording.end_time
                slot.resume_deadline = recording.deadline
                slot.resume_format = recording.requested_format
                self._schedule_resume(camera_id, slot, _RESUME_RETRY)
            else:
                slot.state = IDLE
                slot.recording = None
        finally:
            slot.lock.release()

    def _schedule_resume(self, camera_id: str, slot: _Slot, delay: float) -> None:
        if slot.resume_call is not None and slot.resume_call.active():
            slot.resume_call.cancel()
        slot.resume_call = self._clock.callLater(delay, self._try_resume, camera_id)

    def _try_resume(self, camera_id: str) -> None:
        slot = self._slots.get(camera_id)
        if slot is None or slot.state != RESUMING or slot.resume_attempt is not None:
            return
        attempt = defer.ensureDeferred(self._resume(camera_id, slot))
        slot.resume_attempt = attempt

        def done(_: Any) -> None:
            slot.resume_attempt = None

        attempt.addBoth(done)

    async def _resume(self, camera_id: str, slot: _Slot) -> None:
        await slot.lock.acquire()
        try:
            if slot.state != RESUMING:
                return
            now = self._clock.seconds()
            window_over = now - slot.failed_at > float(self._config.recording.resume_window)
            deadline_passed = slot.resume_deadline is not None and now >= slot.resume_deadline
            if window_over or deadline_passed:
                self._log.info("Giving up resuming the recording of {camera}", camera=camera_id)
                slot.state = IDLE
                slot.recording = None
                return
            camera = self._monitor.registry.get(camera_id)
            if camera is None or camera.status != CONNECTED:
                self._schedule_resume(camera_id, slot, _RESUME_RETRY)
                return
            previous = slot.recording
            try:
                slot.state = IDLE
                await self._start_locked(camera, slot, None, slot.resume_format,
                                         resume_deadline=slot.resume_deadline)
                self._log.info("Recording of {camera} resumed", camera=camera_id)
            except Exception as error:  # noqa: BLE001 - retried; the reason is logged
                self._log.info("Resuming the recording of {camera} failed ({error}); retrying",
                               camera=camera_id, error=str(error))
                slot.state = RESUMING
                slot.recording = previous
                self._schedule_resume(camera_id, slot, _RESUME_RETRY)
        finally:
            slot.lock.release()

    def _cancel_resume(self, camera_id: str, slot: _Slot) -> dict[str, Any]:
        if slot.resume_call is not None and slot.resume_call.active():
            slot.resume_call.cancel()
        recording = slot.recording
        assert recording is not None
        return self._finish(camera_id, slot, recording)

    # ------------------------------------------------------------------ hooks

    def _camera_disconnected(self, camera: Any) -> None:
        if self.state(camera.id) == RECORDING:
            self._fail_soon(camera.id, DEVICE_DISCONNECTED)

    def _camera_connected(self, camera: Any) -> None:
        slot = self._slots.get(camera.id)
        if slot is not None and slot.state == RESUMING:
            self._schedule_resume(camera.id, slot, 0)

    def _mediamtx_lost(self, why: str) -> None:
        for camera_id, slot in list(self._slots.items()):
            if slot.state == RECORDING and slot.recording is not None \
                    and slot.recording.backend == MEDIAMTX:
                self._fail_soon(camera_id, MEDIAMTX_ERROR)

    def _mediamtx_provisioned(self) -> None:
        for camera_id, slot in list(self._slots.items()):
            if slot.state == RESUMING:
                self._schedule_resume(camera_id, slot, 0)

    def storage_full(self) -> None:
        """Free space fell below the floor: end every recording while files are playable."""
        for camera_id, slot in list(self._slots.items()):
            if slot.state == RECORDING:
                self._fail_soon(camera_id, STORAGE_FULL)

    # ------------------------------------------------------------------ events

    def _publish_started(self, recording: Recording) -> None:
        base = {"device": recording.camera_id, "filename": recording.stem}
        self._bus.publish("recording_status_update", {**base, "status": "STARTED", "duration": 0})
        self._bus.publish("recording.start", {**base, "status": "STARTED", "duration": 0})
        self._bus.publish("mediamtx.recording_started", dict(base))

    def _publish_stopped(self, recording: Recording, seconds: float) -> None:
        base = {"device": recording.camera_id, "filename": recording.stem}
        self._bus.publish("recording_status_update", {**base, "status": "STOPPED",
                                                      "duration": int(seconds)})
        self._bus.publish("recording.stop", {**base, "status": "STOPPED", "duration": int(seconds)})
        self._bus.publish("mediamtx.recording_stopped", {**base, "duration": round(float(seconds), 3)})

    def _publish_failed(self, recording: Recording, seconds: int, reason: str) -> None:
        base = {"device": recording.camera_id, "filename": recording.stem}
        self._bus.publish("recording_status_update", {**base, "status": "FAILED", "duration": seconds})
        self._bus.publish("recording.error", {**base, "status": "FAILED", "duration": seconds})
        self._bus.publish("mediamtx.recording_failed", {"device": recording.camera_id, "reason": reason})

    # ------------------------------------------------------------------ lifecycle

    def _background(self, work: Awaitable[Any]) -> None:
        defer.ensureDeferred(work).addErrback(
            lambda failure: self._log.failure("recording task failed", failure=failure))

    def stop_all(self) -> Deferred[None]:
        """Stop every recording as a normal stop, within 1 s (media.md §3.12).

        The root service calls this before it closes connections, so clients still get
        their ``STOPPED`` notifications.
        """
        self._stopping_service = True
        stops = []
        for camera_id, slot in list(self._slots.items()):
            if slot.resume_call is not None and slot.resume_call.active():
                slot.resume_call.cancel()
            if slot.state == RECORDING and slot.recording is not None:
                stops.append(defer.ensureDeferred(self._stop_if_current(camera_id, slot.recording)))
        if not stops:
            return defer.ensureDeferred(self._runner.terminate_all(1.0))
        everything: Deferred[Any] = defer.DeferredList(stops, consumeErrors=True)
        everything.addTimeout(_SHUTDOWN_LIMIT, self._clock)

        def finished(_: Any) -> Deferred[None]:
            # Whatever is still running (a recorder, a reader, a start still waiting for
            # its first segment) gets SIGINT, then SIGKILL (media.md §0.1).
            return defer.ensureDeferred(self._runner.terminate_all(1.0))

        return everything.addBoth(finished)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return self.stop_all()

