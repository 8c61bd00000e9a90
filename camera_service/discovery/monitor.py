"""Camera discovery: the ``CameraMonitor`` service (media.md §1).

Two sources say "look at node N": udev netlink events (``UdevEvents``, inside the
reactor) and the periodic reconciliation scan, which also finds what events missed.
Both feed one coalescer per node (buildbot ``Poller`` style): one handling run at a
time per node, a "run again" flag for anything that arrives meanwhile, and every run
looks at the node's *current* state instead of trusting the event that woke it.

A run is the chain of §1.9, written out as one coroutine (``_handle_node``)::

    node event ─► classify (1.3) ─► identity (1.7) ─► probe (1.5) ─► id (1.7)
              ─► choose mode (1.6) ─► registry + events (1.8) ─► on_camera_connected hooks

The id is committed only once the probe has shown the node really is a camera, so a
metadata node without udev properties never takes a slot in the persisted map.

Nothing here blocks the reactor: node enumeration and node lookups go through
``run_in_thread`` (the media pool), probes through the injected prober, map writes
through ``IdMap``. Timers use the injected clock only.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from twisted.application.service import Service
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    ensureDeferred,
    gatherResults,
    succeed,
)
from twisted.internet.defer import TimeoutError as DeferredTimeoutError
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from camera_service.discovery.idmap import IdMap
from camera_service.discovery.registry import (
    CONNECTED,
    DISCONNECTED,
    ERROR,
    Camera,
    CameraRegistry,
    ModeLike,
    ProbeLike,
    VirtualProbe,
    round_fps,
    status_update_payload,
)
from camera_service.events import CAMERA_STATUS_UPDATE
from camera_service.health.model import (
    DEGRADED,
    HEALTHY,
    UNHEALTHY,
    HealthRegistry,
    Readiness,
)
from camera_service.timeutil import rfc3339

if TYPE_CHECKING:
    from camera_service.discovery.udev import NodeInfo
else:  # the udev module is only needed at run time through the injected callables
    NodeInfo = Any

READINESS_CONDITION = "camera_scan"
HEALTH_COMPONENT = "cameras"

ADD = "add"
CHANGE = "change"
REMOVE = "remove"
_ACTIONS = frozenset({ADD, CHANGE, REMOVE})

# ERROR re-probe delays before the cap (media.md §1.5: 30 s, 60 s, 120 s, then
# every camera.error_retry_max).
ERROR_RETRY_STEPS = (30.0, 60.0, 120.0)
# Our own guard around the prober's timeout: a prober that ignores its timeout
# must not hold a node's chain forever.
PROBE_TIMEOUT_GRACE = 1.0
# Three failed scans in a row make the cameras component unhealthy (§1.2).
SCAN_FAILURE_THRESHOLD = 3
# How long stopService waits for a pending camera-ids.json write (of the 1.5 s budget).
STOP_WRITE_TIMEOUT = 0.5

_DEVNODE = re.compile(r"^/dev/video[0-9]{1,3}$")
# Any device path in a probe's reason is replaced by the camera id (§0.3, api §3.1).
_DEVICE_PATH = re.compile(r"/dev/[^\s'\",;:()]+")

# Node kinds, as far as the monitor knows them.
_NEW = "new"              # not classified yet (or the last run did not finish)
_NOT_CAMERA = "not_camera"  # remembered until the node is removed; never shown
_CAMERA = "camera"        # attached to a camera record
_OVER_LIMIT = "over_limit"  # a camera node ignored while max_cameras are present


class NodeSource(Protocol):
    """Blocking node enumeration; always called through ``run_in_thread``."""

    def list_nodes(self) -> list[NodeInfo]: ...
    def node_info(self, number: int) -> NodeInfo | None: ...


class Prober(Protocol):
    def probe(self, node: str, timeout: float) -> Awaitable[ProbeLike]: ...


class UdevEventsLike(Protocol):
    available: bool

    def start(self) -> bool: ...
    def stop(self) -> None: ...


UdevFactory = Callable[[Callable[[str, int], None], Callable[[], None]], "UdevEventsLike | None"]
RunInThread = Callable[..., "Deferred[Any]"]
CameraHook = Callable[[Camera], "Deferred[Any] | None"]


class UdevNodeSource:
    """The production node source: pyudev enumeration, or the /dev + sysfs fallback
    when udev is not usable at all (media.md §1.2). Blocking; thread pool only."""

    def __init__(self, context: Any, device_range: tuple[int, int]) -> None:
        self._context = context
        self._range = (int(device_range[0]), int(device_range[1]))

    @classmethod
    def create(cls, device_range: tuple[int, int]) -> UdevNodeSource:
        """With a ``pyudev.Context`` when pyudev and libudev work, else the fallback."""
        try:
            import pyudev  # type: ignore[import-untyped]

            context: Any = pyudev.Context()
        except Exception as error:  # noqa: BLE001 - no pyudev/libudev of any kind: fall back
            Logger().warn("udev unusable ({error}); listing /dev and sysfs instead", error=error)
            context = None
        return cls(context, device_range)

    @property
    def context(self) -> Any:
        """The pyudev context (or None), to share with ``UdevEvents``."""
        return self._context

    def list_nodes(self) -> list[NodeInfo]:
        from camera_service.discovery import udev

        if self._context is None:
            return udev.list_nodes_without_udev(self._range)
        return udev.list_nodes(self._context, self._range)

    def node_info(self, number: int) -> NodeInfo | None:
        from camera_service.discovery import udev

        if self._context is None:
            found = udev.list_nodes_without_udev((number, number))
            return found[0] if found else None
        return udev.node_info(self._context, number)


class _Superseded(Exception):
    """The node changed under a running chain; the coalescer's next run looks again."""


class _NodeGone(Exception):
    """A settling retry found the node gone."""


@dataclass(frozen=True)
class _ProbeFailed:
    reason: str


class Coalescer:
    """Runs an async function at most once at a time (buildbot ``Poller`` style).

    Each call returns its own Deferred, fired after a run that *started after* the
    call, so "run now" during a run means exactly one more run. The work function's
    exceptions are logged here and never reach a caller or a LoopingCall.
    """

    _log = Logger()

    def __init__(self, work: Callable[[], Awaitable[None]], label: str,
                 on_idle: Callable[[], None] | None = None) -> None:
        self._work = work
        self._label = label
        self._on_idle = on_idle
        self.running = False
        self._again = False
        self._waiters: list[Deferred[None]] = []

    def __call__(self) -> Deferred[None]:
        waiter: Deferred[None] = Deferred()
        self._waiters.append(waiter)
        if self.running:
            self._again = True
        else:
            ensureDeferred(self._loop())
        return waiter

    async def _loop(self) -> None:
        self.running = True
        try:
            while True:
                self._again = False
                waiters, self._waiters = self._waiters, []
                try:
                    await self._work()
                except (CancelledError, _Superseded):
                    # Discarded on purpose (a remove cancelled the probe, or the node
                    # changed): the next run acts on the node's current state.
                    pass
                except Exception:  # noqa: BLE001 - the coalescer is the boundary: log, never propagate
                    self._log.failure("{label} failed", label=self._label)
                for waiter in waiters:
                    waiter.callback(None)
                if not self._again:
                    break
        finally:
            self.running = False
            if self._on_idle is not None:
                try:
                    self._on_idle()
                except Exception:  # noqa: BLE001 - same boundary
                    self._log.failure("{label} idle hook failed", label=self._label)


@dataclass(eq=False)
class _NodeTrack:
    """What the monitor knows about one node number. Internal: never shown."""

    number: int
    runner: Coalescer = field(init=False)
    kind: str = _NEW
    camera_id: str | None = None
    info: Any = None
    # An add/change arrived since the last probe decision: probe (again).
    dirty: bool = False
    # A remove arrived since the current run started: its view may be stale.
    removed: bool = False
    # The node was found gone; the track is dropped once its runner is idle.
    gone: bool = False
    # A new node being probed holds a max_cameras slot.
    reserving: bool = False
    # The Deferred a remove may cancel (probe or settling delay).
    cancellable: Deferred[Any] | None = None
    retry_call: IDelayedCall | None = None
    retry_at: float | None = None
    error_attempts: int = 0
    limit_logged: bool = False
    created_scan: int = 0


class CameraMonitor(Service):
    """udev reader + reconciliation scan + per-node chains + the camera registry.

    Public surface for the rest of the service:

    - ``registry`` (``CameraRegistry``) and the view helpers in ``registry.py``;
    - ``camera_metrics()`` for ``get_metrics``; ``component_state()`` for ``get_status``;
    - ``on_camera_connected`` / ``on_camera_disconnected``: hooks of the §1.9 chain.
      ``on_camera_connected`` runs when a camera becomes CONNECTED (USB or virtual) and
      when a CONNECTED camera's streaming mode changes after a re-probe;
      ``on_camera_disconnected`` runs when a node is removed. A hook may return a
      Deferred; its failure is logged and never affects discovery.
    - ``path_metrics`` (camera id → ``{bytes_sent, readers, uptime}`` or None) and
      ``stalled_cameras`` providers that the MediaMTX integration replaces, and
      ``refresh_health()`` to call when those change.
    """

    name = "camera-monitor"
    _log = Logger()

    def __init__(self, clock: IReactorTime, config: Any, bus: Any, health: HealthRegistry,
                 readiness: Readiness, run_in_thread: RunInThread, prober: Prober,
                 node_source: NodeSource, udev_factory: UdevFactory | None, *,
                 ffmpeg_path: str | None = None,
                 says_capture: Callable[[Any], bool | None] | None = None,
                 identity_key: Callable[..., str] | None = None,
                 choose_mode: Callable[..., ModeLike | None] | None = None) -> None:
        self._clock = clock
        self._config = config
        self._camera_cfg = config.camera
        self._bus = bus
        self._health = health
        self._readiness = readiness
        self._run_in_thread = run_in_thread
        self._prober = prober
        self._nodes = node_source
        self._udev_factory = udev_factory
        self._ffmpeg_path = ffmpeg_path
        if says_capture is None or identity_key is None:
            from camera_service.discovery import udev as _udev

            says_capture = says_capture or _udev.udev_says_capture
            identity_key = identity_key or _udev.identity_key
        if choose_mode is None:
            from camera_service.discovery.v4l2 import choose_mode as _choose_mode

            choose_mode = _choose_mode
        self._says_capture = says_capture
        self._identity_key = identity_key
        self._choose_mode = choose_mode

        low, high = self._camera_cfg.device_range
        self._range = (int(low), int(high))
        self.registry = CameraRegistry()
        self.idmap = IdMap(config.server.state_dir, self._camera_cfg.remember_limit,
                           run_in_thread, clock)
        self.on_camera_connected: list[CameraHook] = []
        self.on_camera_disconnected: list[CameraHook] = []
        self.path_metrics: Callable[[str], Mapping[str, Any] | None] = lambda camera_id: None
        self.stalled_cameras: Callable[[], list[str]] = list

        self._tracks: dict[int, _NodeTrack] = {}
        # Serial identity keys of present capture-candidate nodes, for clone detection.
        self._serials: dict[int, str] = {}
        self._override_warned: set[str] = set()
        self._udev: UdevEventsLike | None = None
        self._loop = LoopingCall(self._scan_tick)
        self._loop.clock = clock
        self._scan = Coalescer(self._run_scan, "camera scan")
        self._scan_count = 0
        self._scan_failures = 0
        self._first_scan_done = False
        self._last_scan: float | None = None
        self._started = False
        self._stopped = False

        readiness.require(READINESS_CONDITION)
        readiness.available_cameras = self.registry.connected_ids
        readiness.discovery_active = self.discovery_active

    # -- service lifecycle --------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self._started = True
        self._stopped = False
        # MultiService discards a Deferred from startService (style.md §1.4), so the
        # start-up chain records its own failure.
        ensureDeferred(self._start()).addErrback(self._start_failed)

    def _start_failed(self, failure: Failure) -> None:
        self._log.failure("camera monitor failed to start", failure=failure)
        self._scan_failures = max(self._scan_failures, SCAN_FAILURE_THRESHOLD)
        self._satisfy_readiness()
        self._update_health()

    async def _start(self) -> None:
        self.idmap.reserve(vc.id for vc in self._config.virtual_cameras)
        # Virtual cameras come first, before the first scan (media.md §1.10); they
        # need nothing from the disk.
        self._register_virtual_cameras()
        self._update_health()
        await self.idmap.load()
        if self._stopped:
            return
        self._start_udev()
        self._loop.start(self._camera_cfg.poll_interval, now=True).addErrback(
            lambda failure: self._log.failure("camera scan loop stopped", failure=failure))

    def stopService(self) -> Deferred[None] | None:
        self._stopped = True
        if self._loop.running:
            self._loop.stop()
        if self._udev is not None:
            try:
                self._udev.stop()
            except Exception:  # noqa: BLE001 - shutdown must go on
                self._log.failure("stopping the udev reader failed")
            self._udev = None
        for track in list(self._tracks.values()):
            self._cancel_retry(track)
            if track.cancellable is not None:
                track.cancellable.cancel()
        self._update_health()
        super().stopService()
        # Let a pending id-map write land, within the shutdown budget (§0.1).
        written = self.idmap.when_written()
        if not written.called:
            written.addTimeout(STOP_WRITE_TIMEOUT, self._clock)
            written.addErrback(lambda failure: self._log.warn(
                "camera id map write still pending at shutdown"))
        return written

    def _start_udev(self) -> None:
        if not self._camera_cfg.use_udev or self._udev_factory is None:
            self._log.info("camera discovery: udev events not used{why}; scanning every {interval} s",
                           why=" (camera.use_udev is false)" if not self._camera_cfg.use_udev else "",
                           interval=self._camera_cfg.poll_interval)
            return
        try:
            udev = self._udev_factory(self._on_udev_event, self._on_udev_overflow)
            available = bool(udev.start()) if udev is not None else False
        except Exception:  # noqa: BLE001 - the factory is a boundary
            self._log.failure("udev reader could not be started")
            udev, available = None, False
        if available:
            self._udev = udev
        else:
            # UdevEvents has already said why, once, at warning level (§1.1).
            self._log.info("camera discovery runs on the reconciliation scan alone (every "
                           "{interval} s)", interval=self._camera_cfg.poll_interval)

    # -- public queries -----------------------------------------------------------

    @property
    def udev_events(self) -> bool:
        """Whether netlink events are arriving (health ``udev_events``, §6.1). Read live:
        UdevEvents may lose its socket and fail to re-create it."""
        return self._udev is not None and bool(getattr(self._udev, "available", True))

    def component_state(self) -> str:
        """``get_status.components.camera_monitor`` (api.md §4.21)."""
        if not self._started or self._stopped:
            return "STOPPED"
        if self._scan_failures >= SCAN_FAILURE_THRESHOLD:
            return "ERROR"
        return "RUNNING" if self._first_scan_done else "STARTING"

    def discovery_active(self) -> bool:
        return self._scan.running or any(t.runner.running for t in self._tracks.values())

    def camera_metrics(self) -> dict[str, Any]:
        return self.registry.metrics_result()

    def get(self, camera_id: str) -> Camera | None:
        return self.registry.get(camera_id)

    def scan_now(self) -> Deferred[None]:
        """Run a reconciliation scan now (coalesced with a running one)."""
        return self._scan()

    # -- event sources ------------------------------------------------------------

    def _on_udev_event(self, action: str, number: int) -> None:
        # Called from UdevEvents.doRead: never block, never raise into the reactor.
        try:
            if action in _ACTIONS:
                self._kick(number, action)
        except Exception:  # noqa: BLE001 - called from the reactor's doRead
            self._log.failure("handling udev event {action} for node {number} failed",
                              action=action, number=number)

    def _on_udev_overflow(self) -> None:
        # Events were lost: only a full scan can tell what changed (media.md §1.1).
        self._log.warn("udev event queue overflowed; running a full camera scan")
        self._scan().addErrback(lambda f: self._log.failure("camera scan failed", failure=f))

    def _in_range(self, number: int) -> bool:
        return self._range[0] <= number <= self._range[1]

    def _kick(self, number: int, action: str) -> Deferred[None]:
        """Feed one event to the node's coalescer; the Deferred fires after a run that
        started after this call."""
        if self._stopped or not self._in_range(number):
            return succeed(None)
        track = self._tracks.get(number)
        if track is None:
            track = self._new_track(number)
        track.gone = False
        if action == REMOVE:
            track.removed = True
            if track.cancellable is not None:
                # A remove cancels a running probe; its result is discarded (§1.4).
                track.cancellable.cancel()
        else:
            track.dirty = True
        return track.runner()

    def _new_track(self, number: int) -> _NodeTrack:
        track = _NodeTrack(number, created_scan=self._scan_count)
        track.runner = Coalescer(partial(self._handle_node, track), "camera node handling",
                                 on_idle=partial(self._node_idle, track))
        self._tracks[number] = track
        return track

    def _node_idle(self, track: _NodeTrack) -> None:
        if track.gone and self._tracks.get(track.number) is track:
            del self._tracks[track.number]

    # -- reconciliation scan (media.md §1.2) ----------------------------------------

    def _scan_tick(self) -> Deferred[None]:
        # The LoopingCall waits for this Deferred, so runs never overlap; the scan
        # coalescer catches everything, so the loop never stops.
        return self._scan()

    async def _run_scan(self) -> None:
        if self._stopped:
            return
        self._scan_count += 1
        generation = self._scan_count
        try:
            infos = await self._run_in_thread(self._nodes.list_nodes)
            if self._stopped:
                return
            present: dict[int, Any] = {}
            for info in infos:
                if self._in_range(int(info.number)):
                    present[int(info.number)] = info
            for number, info in present.items():
                track = self._tracks.get(number)
                if track is not None and track.kind == _NOT_CAMERA:
                    continue
                if self._says_capture(info) is not False:
                    self._serials[number] = self._identity_key(info, False)
            # Removals first, so that a camera that moved to another node number is
            # detached before its new node claims the same identity.
            vanished = [n for n, t in self._tracks.items()
                        if n not in present and t.created_scan < generation]
            await gatherResults([self._kick(n, REMOVE) for n in sorted(vanished)])
            if self._stopped:
                return
            now = self._clock.seconds()
            waits: list[Deferred[None]] = []
            slots = self._free_slots()
            for number in sorted(present):
                track = self._tracks.get(number)
                if track is None:
                    waits.append(self._kick(number, ADD))
                elif track.runner.running:
                    continue
                elif track.info is not None and \
                        self._identity_key(track.info, False) != self._identity_key(present[number], False):
                    # A different device at a known node number: look at it again.
                    waits.append(self._kick(number, CHANGE))
                elif track.kind == _NEW:
                    # An earlier run did not finish (e.g. a lookup failed): try again.
                    waits.append(self._kick(number, ADD))
                elif track.retry_at is not None and track.retry_at <= now:
                    waits.append(self._kick(number, CHANGE))
                elif track.kind == _OVER_LIMIT and slots > 0:
                    slots -= 1
                    waits.append(self._kick(number, ADD))
            if not self._first_scan_done:
                # The first scan counts towards readiness (§1.2, api §4.22) only once
                # the cameras it found have been probed. Later scans do not wait on
                # probes, so a slow probe never delays noticing an unplug.
                await gatherResults(waits)
        except Exception:  # noqa: BLE001 - a LoopingCall body catches everything (§0.2)
            self._scan_failures += 1
            self._log.failure("camera scan failed ({count} in a row)", count=self._scan_failures)
            if self._scan_failures >= SCAN_FAILURE_THRESHOLD:
                self._satisfy_readiness()
        else:
            if self._scan_failures >= SCAN_FAILURE_THRESHOLD:
                self._log.info("camera scan succeeded again")
            self._scan_failures = 0
            self._last_scan = self._clock.seconds()
            self._satisfy_readiness()
        finally:
            self._update_health()

    def _satisfy_readiness(self) -> None:
        if not self._first_scan_done:
            self._first_scan_done = True
            self._readiness.satisfy(READINESS_CONDITION)

    # -- the per-node chain (media.md §1.9) -----------------------------------------

    async def _handle_node(self, track: _NodeTrack) -> None:
        track.removed = False
        if self._stopped:
            return
        info = await self._run_in_thread(self._nodes.node_info, track.number)
        if self._stopped:
            return
        if track.removed:
            raise _Superseded()
        if info is None:
            self._node_gone(track)
            return
        previous, track.info = track.info, info
        try:
            if previous is not None and self._identity_key(previous, False) != self._identity_key(info, False):
                # Another device took this node number between two looks (a swap
                # between scans, or a missed remove): the old one left.
                camera = self.registry.get(track.camera_id or "") if track.kind == _CAMERA else None
                if camera is not None:
                    self._detach(track, camera)
                    self._slot_freed()
                track.kind = _NEW
            if track.kind == _NOT_CAMERA:
                return
            if track.kind == _CAMERA:
                camera = self.registry.get(track.camera_id or "")
                if camera is not None and self._same_device(camera, info):
                    if track.dirty:
                        await self._reprobe(track, camera, info)
                    return
                # Another device now has this node number: the old one left.
                if camera is not None:
                    self._detach(track, camera)
            await self._new_node(track, info)
        except _NodeGone:
            self._node_gone(track)

    def _same_device(self, camera: Camera, info: Any) -> bool:
        keys = {self._identity_key(info, False), self._identity_key(info, True)}
        return camera.identity in keys

    async def _new_node(self, track: _NodeTrack, info: Any) -> None:
        number = track.number
        track.dirty = False
        # 1. classify, udev rule (§1.3 rule 1)
        verdict = self._says_capture(info)
        if verdict is False:
            self._mark_not_camera(track)
            return
        # 2. identity (§1.7)
        key = self._identity(track, info)
        known = self.registry.by_identity(key)
        if known is not None and known.node is not None and known.node != number \
                and known.status != DISCONNECTED:
            # The same identity is present on another node: not two cameras we can
            # tell apart. Fall back to the node key so neither steals the other's id.
            self._log.warn("node {number} has the same identity as {camera}; using a node key",
                           number=number, camera=known.id)
            key = f"node:video{number}"
            known = self.registry.by_identity(key)
        # max_cameras (§1.7): a new or returning camera needs a free slot.
        if self._free_slots() <= 0:
            self._mark_over_limit(track, verdict)
            return
        track.kind = _NEW
        track.reserving = True
        committed = False
        try:
            # 3. probe, with settling retries (§1.4, §1.5)
            outcome = await self._probe(track, info)
            if self._stopped:
                return
            if track.removed:
                raise _Superseded()
            # 4. classify, QUERYCAP rule (§1.3 rules 2 and 4)
            probe: ProbeLike | None
            reason: str | None
            if isinstance(outcome, _ProbeFailed):
                if verdict is None:
                    self._mark_not_camera(track)
                    return
                probe, reason = None, outcome.reason
            elif not outcome.is_capture_node():
                self._mark_not_camera(track)
                return
            else:
                probe, reason = outcome, None
            # 5. id (§1.7): this run's record for the identity, else the persisted map
            if known is not None:
                camera_id = known.id
            else:
                taken = {c.id for c in self.registry if c.identity != key}
                camera_id = self.idmap.choose(key, number, taken)
            # 6. mode (§1.6)
            mode = self._mode(camera_id, probe) if probe is not None else None
            if probe is not None and mode is None:
                reason = "no supported capture format"
            # 7. registry, events, hooks (§1.8, §1.9). The reservation becomes the
            # camera's own slot in the same reactor turn.
            track.reserving = False
            self._commit(track, camera_id, key, info, probe, mode, reason)
            committed = True
        finally:
            track.reserving = False
            if not committed:
                # The slot this node held is free again for a node that was turned away.
                self._slot_freed()

    async def _reprobe(self, track: _NodeTrack, camera: Camera, info: Any) -> None:
        """A known, present camera: a change event, an ERROR retry, or a replug that
        the coalescer folded into one run. It keeps its status while probing (§1.8)."""
        track.dirty = False
        self._cancel_retry(track)
        try:
            outcome = await self._probe(track, info)
        except BaseException:
            # Not finished (cancelled, superseded): the coalescer's next run, which an
            # event always causes, must probe again rather than forget the retry.
            track.dirty = True
            raise
        if self._stopped:
            return
        if track.removed:
            track.dirty = True
            raise _Superseded()
        probe: ProbeLike | None
        if isinstance(outcome, _ProbeFailed):
            probe, reason = None, outcome.reason
        elif not outcome.is_capture_node():
            probe, reason = None, "not a video capture node"
        else:
            probe, reason = outcome, None
        mode = self._mode(camera.id, probe) if probe is not None else None
        if probe is not None and mode is None:
            reason = "no supported capture format"
        self._commit(track, camera.id, camera.identity or "", info, probe, mode, reason)

    async def _probe(self, track: _NodeTrack, info: Any) -> ProbeLike | _ProbeFailed:
        """One probe with settling retries. Raises CancelledError when a remove cancels
        it and _NodeGone when a retry finds the node gone."""
        cfg = self._camera_cfg
        node = self._devnode(track.number, info)
        delay = float(cfg.probe_retry_delay)
        attempt = 0
        while True:
            try:
                return await self._probe_once(track, node)
            except CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - any prober failure becomes a reason
                reason, retryable = self._describe_failure(error)
                if not retryable or attempt >= int(cfg.probe_retries):
                    return _ProbeFailed(reason)
                self._log.debug("probe of node {number} failed ({reason}); retrying in {delay} s",
                                number=track.number, reason=reason, delay=delay)
            sleep: Deferred[None] = deferLater(self._clock, delay, lambda: None)
            track.cancellable = sleep
            try:
                await sleep
            finally:
                track.cancellable = None
            attempt += 1
            delay *= 2
            # ENOENT and friends only count while the node still exists (§1.4).
            current = await self._run_in_thread(self._nodes.node_info, track.number)
            if self._stopped or track.removed:
                raise _Superseded()
            if current is None:
                raise _NodeGone()

    async def _probe_once(self, track: _NodeTrack, node: str) -> ProbeLike:
        timeout = float(self._camera_cfg.probe_timeout)
        running: Deferred[ProbeLike] = ensureDeferred(_awaitable(self._prober.probe(node, timeout)))
        running.addTimeout(timeout + PROBE_TIMEOUT_GRACE, self._clock)
        track.cancellable = running
        try:
            return await running
        finally:
            track.cancellable = None

    def _describe_failure(self, error: Exception) -> tuple[str, bool]:
        if isinstance(error, DeferredTimeoutError):
            return f"probe timed out after {self._camera_cfg.probe_timeout:g} s", False
        reason = getattr(error, "reason", None)
        if isinstance(reason, str) and reason:
            return reason, bool(getattr(error, "retryable", False))
        # Not a ProbeError: a bug in the prober. Log it; the camera shows a plain reason.
        self._log.error("prober raised {error!r}", error=error)
        return "probe failed", False

    # -- commit: the only place public state changes --------------------------------

    def _commit(self, track: _NodeTrack, camera_id: str, key: str, info: Any,
                probe: ProbeLike | None, mode: ModeLike | None, reason: str | None) -> None:
        now = self._clock.seconds()
        camera = self.registry.get(camera_id)
        new_status = CONNECTED if reason is None else ERROR
        name = self._name(probe, info, camera_id)
        if reason is not None:
            reason = _DEVICE_PATH.sub(camera_id, reason)
        if camera is None:
            old_status: str | None = None
            camera = Camera(id=camera_id, status=new_status, name=name, identity=key,
                            node=track.number, last_node=track.number, probe=probe, mode=mode,
                            error=reason, last_seen=now)
            self.registry.add(camera)
        else:
            old_status = camera.status
        old_probe, old_mode = camera.probe, camera.mode
        camera.status = new_status
        camera.name = name
        camera.identity = key
        camera.node = camera.last_node = track.number
        # A failed probe leaves nothing confirmed; "no usable mode" keeps what it saw.
        camera.probe = probe
        camera.mode = mode
        camera.error = reason
        camera.last_seen = now
        track.kind = _CAMERA
        track.camera_id = camera_id
        self.idmap.bind(key, camera_id, name)
        if new_status == ERROR:
            self._schedule_retry(track)
            # Once when it fails; the retries every few minutes only at debug level.
            emit = self._log.debug if old_status == ERROR else self._log.warn
            emit("{camera} ({name}): {reason}", camera=camera_id, name=name, reason=reason)
        else:
            track.error_attempts = 0
            self._cancel_retry(track)
            if old_status != CONNECTED:
                self._log.info("{camera} connected: {name} ({resolution}@{fps})", camera=camera_id,
                               name=name, resolution=camera.resolution, fps=camera.fps)
        caps_changed = old_status == CONNECTED and new_status == CONNECTED and old_probe != probe
        self._announce(camera, old_status, caps_changed)
        if new_status == CONNECTED and (old_status != CONNECTED or old_mode != mode):
            self._run_hooks(self.on_camera_connected, camera)
        self._update_health()

    def _node_gone(self, track: _NodeTrack) -> None:
        self._cancel_retry(track)
        self._serials.pop(track.number, None)
        was_present = False
        if track.kind == _CAMERA and track.camera_id is not None:
            camera = self.registry.get(track.camera_id)
            if camera is not None:
                self._detach(track, camera)
                was_present = True
        track.kind = _NEW
        track.camera_id = None
        track.info = None
        track.dirty = False
        track.error_attempts = 0
        track.limit_logged = False
        track.gone = True
        if was_present:
            self._slot_freed()
        self._update_health()

    def _detach(self, track: _NodeTrack, camera: Camera) -> None:
        """Removal chain step 1 (§1.9): DISCONNECTED, events, then the hooks."""
        self._cancel_retry(track)
        track.kind = _NEW
        track.camera_id = None
        track.error_attempts = 0
        if camera.node == track.number:
            camera.node = None
        if camera.status == DISCONNECTED:
            return
        old_status = camera.status
        camera.status = DISCONNECTED
        camera.last_seen = self._clock.seconds()
        if camera.identity is not None:
            self.idmap.touch(camera.identity, camera.name)
        self._log.info("{camera} disconnected", camera=camera.id)
        self._announce(camera, old_status, False)
        self._run_hooks(self.on_camera_disconnected, camera)
        self._update_health()

    def _announce(self, camera: Camera, old_status: str | None, caps_changed: bool) -> None:
        """Publish exactly the §1.8 table's events, in its order."""
        new_status = camera.status
        publish = self._bus.publish
        if old_status != new_status:
            publish(CAMERA_STATUS_UPDATE, status_update_payload(camera))
        if new_status == CONNECTED and old_status != CONNECTED:
            publish("camera.connected", {"device": camera.id, "name": camera.name,
                                         "status": CONNECTED, "driver": _attr(camera.probe, "driver"),
                                         "card_name": _attr(camera.probe, "card")})
        if new_status == CONNECTED and (old_status != CONNECTED or caps_changed):
            probe = camera.probe
            publish("camera.capability_detected", {
                "device": camera.id, "name": camera.name, "driver": _attr(probe, "driver"),
                "card_name": _attr(probe, "card"), "bus_info": _attr(probe, "bus_info"),
                "capabilities": list(probe.capabilities) if probe is not None else []})
        if new_status == ERROR and old_status != ERROR:
            publish("camera.capability_error", {"device": camera.id, "error": camera.error or ""})
        if new_status == DISCONNECTED and old_status != DISCONNECTED:
            publish("camera.disconnected", {"device": camera.id, "status": DISCONNECTED})
        # A camera first seen this run has no previous status (§1.8).
        if old_status is not None and old_status != new_status:
            publish("camera.status_change", {"device": camera.id, "name": camera.name,
                                             "old_status": old_status, "new_status": new_status})

    def _run_hooks(self, hooks: list[CameraHook], camera: Camera) -> None:
        for hook in list(hooks):
            try:
                result = hook(camera)
            except Exception:  # noqa: BLE001 - a hook never breaks the chain (§1.9)
                self._log.failure("camera hook failed for {camera}", camera=camera.id)
                continue
            if isinstance(result, Deferred):
                result.addErrback(self._hook_failed, camera.id)

    def _hook_failed(self, failure: Failure, camera_id: str) -> None:
        # A hook's failure (e.g. MediaMTX refused the path) is the hook owner's to
        # report; discovery only logs it and carries on (§1.9).
        self._log.failure("camera hook failed for {camera}", failure=failure, camera=camera_id)

    # -- pieces of the chain -------------------------------------------------------

    def _identity(self, track: _NodeTrack, info: Any) -> str:
        """The identity key, with the cloned-serial rule of §1.7: two present nodes with
        the same ``serial:`` key both use their ``path:`` key."""
        serial_key = self._identity_key(info, False)
        self._serials[track.number] = serial_key
        if not serial_key.startswith("serial:"):
            return serial_key
        clones = [n for n, k in self._serials.items() if k == serial_key and n != track.number
                  and not self._is_not_camera(n)]
        if not clones:
            return serial_key
        for number in clones:
            other = self._tracks.get(number)
            if other is None or other.kind != _CAMERA or other.info is None:
                continue
            camera = self.registry.get(other.camera_id or "")
            if camera is not None and camera.identity == serial_key:
                camera.identity = self._identity_key(other.info, True)
                self.idmap.bind(camera.identity, camera.id, camera.name)
        self._log.info("two cameras share the serial number of node {number}; using port paths",
                       number=track.number)
        return self._identity_key(info, True)

    def _is_not_camera(self, number: int) -> bool:
        track = self._tracks.get(number)
        return track is not None and track.kind == _NOT_CAMERA

    def _mode(self, camera_id: str, probe: ProbeLike) -> ModeLike | None:
        cfg = self._camera_cfg
        width, height = (int(x) for x in cfg.target_resolution.split("x"))
        override_cfg = cfg.overrides.get(camera_id)
        override = None
        if override_cfg is not None:
            override = (override_cfg.format, override_cfg.width, override_cfg.height,
                        float(override_cfg.fps))
        mode = self._choose_mode(tuple(probe.modes), preference=tuple(cfg.format_preference),
                                 target=(width, height), target_fps=float(cfg.target_fps),
                                 override=override)
        if override is not None and camera_id not in self._override_warned and (
                mode is None or (mode.fourcc, mode.width, mode.height) != override[:3]
                or round_fps(mode.fps) != round_fps(override[3])):
            self._override_warned.add(camera_id)
            self._log.warn("camera.overrides.{camera} names a mode the camera does not have; "
                           "ignored", camera=camera_id)
        return mode

    def _name(self, probe: ProbeLike | None, info: Any, camera_id: str | None) -> str:
        """Card name, else udev's product/model, else "Camera <N>" (§1.5)."""
        if probe is not None and probe.card and probe.card.strip():
            return probe.card.strip()
        properties = getattr(info, "properties", None) or {}
        for prop in ("ID_V4L_PRODUCT", "ID_MODEL"):
            value = properties.get(prop)
            if value and str(value).strip():
                return str(value).strip()
        sysfs_name = getattr(info, "name", None)
        if sysfs_name and str(sysfs_name).strip():
            return str(sysfs_name).strip()
        if camera_id is not None:
            return f"Camera {camera_id[len('camera'):]}"
        return ""

    def _devnode(self, number: int, info: Any) -> str:
        devnode = getattr(info, "devnode", None)
        if isinstance(devnode, str) and _DEVNODE.fullmatch(devnode):
            return devnode
        return f"/dev/video{number}"

    def _mark_not_camera(self, track: _NodeTrack) -> None:
        # Never above debug level (§1.3).
        self._log.debug("node {number} is not a camera", number=track.number)
        track.kind = _NOT_CAMERA
        self._serials.pop(track.number, None)

    def _mark_over_limit(self, track: _NodeTrack, verdict: bool | None) -> None:
        track.kind = _OVER_LIMIT
        if not track.limit_logged:
            track.limit_logged = True
            # A node udev has not classified may be a metadata node: keep it at debug.
            emit = self._log.warn if verdict else self._log.debug
            emit("camera limit of {limit} reached; video node {number} ignored until a camera "
                 "leaves", limit=self._camera_cfg.max_cameras, number=track.number)
        self._update_health()

    def _free_slots(self) -> int:
        reserved = sum(1 for t in self._tracks.values() if t.reserving)
        return int(self._camera_cfg.max_cameras) - self.registry.present_count() - reserved

    def _slot_freed(self) -> None:
        waiting = sorted(n for n, t in self._tracks.items() if t.kind == _OVER_LIMIT)
        for number in waiting[:max(0, self._free_slots())]:
            self._kick(number, ADD)

    # -- ERROR retries (§1.5) -------------------------------------------------------

    def _schedule_retry(self, track: _NodeTrack) -> None:
        self._cancel_retry(track)
        cap = float(self._camera_cfg.error_retry_max)
        step = ERROR_RETRY_STEPS[track.error_attempts] if track.error_attempts < len(ERROR_RETRY_STEPS) \
            else cap
        delay = min(step, cap)
        track.error_attempts += 1
        track.retry_at = self._clock.seconds() + delay
        track.retry_call = self._clock.callLater(delay, self._retry_due, track)

    def _retry_due(self, track: _NodeTrack) -> None:
        track.retry_call = None
        track.retry_at = None
        if self._tracks.get(track.number) is track:
            self._kick(track.number, CHANGE)

    def _cancel_retry(self, track: _NodeTrack) -> None:
        if track.retry_call is not None and track.retry_call.active():
            track.retry_call.cancel()
        track.retry_call = None
        track.retry_at = None

    # -- virtual cameras (§1.10) ---------------------------------------------------

    def _register_virtual_cameras(self) -> None:
        now = self._clock.seconds()
        for vc in self._config.virtual_cameras:
            if vc.id in self.registry:
                continue
            probe = VirtualProbe(card=vc.name, width=vc.width, height=vc.height, rate=int(vc.rate))
            reason = None if self._ffmpeg_path else "ffmpeg not found"
            camera = Camera(id=vc.id, status=CONNECTED if reason is None else ERROR, name=vc.name,
                            identity=None, node=None, last_node=None, probe=probe,
                            mode=probe.modes[0], error=reason, last_seen=now, virtual=vc)
            self.registry.add(camera)
            if reason is None:
                self._log.info("{camera}: virtual camera '{name}' ({pattern} {size}@{rate})",
                               camera=vc.id, name=vc.name, pattern=vc.pattern, size=vc.size,
                               rate=vc.rate)
            else:
                self._log.error("{camera}: virtual camera '{name}' unavailable: ffmpeg not found",
                                camera=vc.id, name=vc.name)
            self._announce(camera, None, False)
            if camera.status == CONNECTED:
                self._run_hooks(self.on_camera_connected, camera)

    # -- health (media.md §6.1) ----------------------------------------------------

    def refresh_health(self) -> None:
        """Re-evaluate the cameras component (e.g. when the stalled set changes)."""
        self._update_health()

    def _update_health(self) -> None:
        try:
            self._health.set(HEALTH_COMPONENT, *self._evaluate_health())
        except Exception:  # noqa: BLE001 - health must never break discovery
            self._log.failure("cameras health update failed")

    def _evaluate_health(self) -> tuple[str, str, dict[str, Any]]:
        cameras = list(self.registry)
        errors = {c.id: c.error or "" for c in cameras if c.status == ERROR}
        stalled = sorted(self.stalled_cameras())
        ignored = sum(1 for t in self._tracks.values() if t.kind == _OVER_LIMIT)
        details: dict[str, Any] = {
            "connected_cameras": sum(1 for c in cameras if c.status == CONNECTED),
            "total_cameras": len(cameras),
            "error_cameras": errors,
            "stalled_cameras": stalled,
            "udev_events": self.udev_events,
            "last_scan": rfc3339(self._last_scan) if self._last_scan is not None else None,
            "max_cameras": int(self._camera_cfg.max_cameras),
            "ignored_nodes": ignored,
            "consecutive_scan_failures": self._scan_failures,
        }
        if self._stopped:
            return UNHEALTHY, "Camera monitor stopped", details
        if self._scan_failures >= SCAN_FAILURE_THRESHOLD:
            return UNHEALTHY, f"{self._scan_failures} camera scans failed in a row", details
        problems: list[str] = []
        if not self._first_scan_done:
            problems.append("first camera scan not finished")
        if errors:
            problems.append(f"{len(errors)} camera(s) in ERROR: {', '.join(sorted(errors))}")
        if stalled:
            problems.append(f"stalled stream(s): {', '.join(stalled)}")
        if self._started and self._first_scan_done and not self.udev_events:
            problems.append("udev events unavailable (scan-only mode)")
        if ignored:
            problems.append(f"camera limit of {self._camera_cfg.max_cameras} reached; "
                            f"{ignored} node(s) ignored")
        if problems:
            return DEGRADED, "; ".join(problems), details
        if not cameras:
            return HEALTHY, "No cameras detected", details
        return HEALTHY, "Camera monitoring active", details


def _attr(probe: ProbeLike | None, name: str) -> str:
    return str(getattr(probe, name, "") or "") if probe is not None else ""


async def _awaitable(value: Any) -> Any:
    """Await a prober's result whether it is a coroutine or a Deferred."""
    return await value
