"""Builds the service tree: one MultiService holding every listener and loop.

``build_root`` is synchronous and takes the reactor; nothing below it imports the
global reactor. Start-up work that has to wait (MediaMTX, scans) happens inside
the child services and is reported through health and readiness, never awaited
by ``startService``.
"""

from __future__ import annotations

import os
import resource as _resource
from functools import partial
from typing import Any, Callable, Mapping

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService, Service
from twisted.internet import defer, endpoints
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.internet.threads import deferToThreadPool
from twisted.logger import ILogObserver, Logger
from twisted.python.threadpool import ThreadPool
from twisted.web.pages import notFound
from twisted.web.resource import Resource
from twisted.web.server import Site
from zope.interface import implementer

from camera_service import __version__
from camera_service.auth import ApiKeyStore, Authenticator, resolve_jwt_secret
from camera_service.events import EventBus
from camera_service.health.http import HealthEndpoints, build_health_site
from camera_service.health.model import HealthRegistry, Readiness
from camera_service.health.prometheus import render_prometheus
from camera_service.mediamtx.client import MediaMTXClient
from camera_service.mediamtx.service import MediaMTXService
from camera_service.metrics import RequestMetrics
from camera_service.roles import PERMISSIONS
from camera_service.rpc.dispatcher import Dispatcher
from camera_service.discovery.monitor import CameraMonitor, UdevNodeSource
from camera_service.discovery.probe import AutoProber, IoctlProber, V4l2CtlProber
from camera_service.discovery.registry import CONNECTED, ERROR
from camera_service.discovery.udev import UdevEvents
from camera_service.downloads import DownloadResource, redacting_log_formatter
from camera_service.error_events import SystemErrorPublisher
from camera_service.external.service import ExternalStreamsService
from camera_service.procs import ProcessRunner, resolve_tools
from camera_service.recording.service import RecordingService
from camera_service.rpc.methods import cameras as camera_methods
from camera_service.rpc.methods import external as external_methods
from camera_service.rpc.methods import files as file_methods
from camera_service.rpc.methods import storage as storage_methods
from camera_service.rpc.methods import recording as recording_methods
from camera_service.rpc.methods import snapshots as snapshot_methods
from camera_service.rpc.methods import streaming as streaming_methods
from camera_service.rpc.methods import subscriptions as subscription_methods
from camera_service.rpc.methods import system as system_methods
from camera_service.rpc.notifier import Notifier
from camera_service.rpc.registry import MethodRegistry
from camera_service.rpc.session import Session
from camera_service.rpc.websocket import (
    ApiServerFactory,
    ConnectionTracker,
    KeepAliveService,
    WebSocketGate,
)
from camera_service.leases import DeviceLeases
from camera_service.status import HealthEventService, StatusEvaluator
from camera_service.storage.consistency import RecordingsConsistency
from camera_service.storage.segments import MediaMTXSegmentDeleter
from camera_service.storage.files import RECORDINGS, SNAPSHOTS, FileStore
from camera_service.snapshots.service import SnapshotService
from camera_service.storage.service import StorageService
from camera_service.streams import StreamUrls
from camera_service.system_metrics import SystemMetrics
from camera_service.timeutil import rfc3339

# Shutdown budget for closing WebSocket connections with 1001.
CLOSE_TIMEOUT = 1.0
# File descriptors kept back for logs, the key file, child processes and listeners.
_FD_RESERVE = 64


class ThreadPoolService(Service):
    """Owns a named thread pool and stops it at shutdown (media.md §0.2).

    The pool is also stopped by a reactor shutdown trigger: its threads are not
    daemonic, so a reactor that stops without stopping services (a crash, a test)
    would otherwise leave the process unable to exit.
    """

    def __init__(self, pool: ThreadPool, reactor: Any) -> None:
        self.pool = pool
        self._reactor = reactor
        self._trigger: Any = None

    def startService(self) -> None:
        super().startService()
        self.pool.start()
        self._trigger = self._reactor.addSystemEventTrigger("during", "shutdown", self._stop_pool)

    def stopService(self) -> Any:
        super().stopService()
        if self._trigger is not None:
            self._reactor.removeSystemEventTrigger(self._trigger)
            self._trigger = None
        self._stop_pool()

    def _stop_pool(self) -> None:
        if self.pool.started:
            self.pool.stop()


class ApiApp:
    """Server-wide context handed to every RPC handler (as ``ctx.app``)."""

    def __init__(self, *, config: Any, clock: Any, authenticator: Authenticator, bus: EventBus,
                 metrics: RequestMetrics, readiness: Readiness, health: HealthRegistry,
                 system_metrics: SystemMetrics, stream_urls: StreamUrls, started_at: float,
                 build_date: str) -> None:
        self.config = config
        self.clock = clock
        self.authenticator = authenticator
        self.bus = bus
        self.metrics = metrics
        self.readiness = readiness
        self.health = health
        self.system_metrics = system_metrics
        self.stream_urls = stream_urls
        self.started_at = started_at
        self.build_date = build_date
        self.status: StatusEvaluator  # set once the evaluator exists
        # The two media stores (api.md §3.5) and the per-camera device leases (media.md §3.3).
        self.stores: dict[str, FileStore] = {}
        self.leases = DeviceLeases(clock)
        self.recorder: Any = None  # the RecordingService once built
        self.storage: Any = None  # the StorageService once built
        self.recipients: Callable[[], list[Any]] = lambda: []
        # Replaced by the camera monitor and MediaMTX integration when they exist.
        self.camera_metrics: Callable[[], dict[str, Any]] = lambda: {"connected_cameras": 0, "cameras": {}}
        self.stream_metrics: Callable[[], dict[str, int]] = lambda: {
            "active_streams": 0, "total_streams": 0, "total_viewers": 0}

    def describe_authentication(self, session: Session) -> dict[str, Any]:
        identity = session.identity
        assert identity is not None
        result: dict[str, Any] = {
            "authenticated": True,
            "role": identity.role,
            "permissions": list(PERMISSIONS[identity.role]),
        }
        if identity.expires_at is not None:
            result["expires_at"] = rfc3339(identity.expires_at)
        result["session_id"] = session.session_id
        return result


class CameraServiceRoot(MultiService):
    """The parent service: orderly start-up bookkeeping and shutdown (api.md §1.4)."""

    _log = Logger()

    def __init__(self, app: ApiApp, factory: ApiServerFactory, key_store: ApiKeyStore | None) -> None:
        super().__init__()
        self.app = app
        self.factory = factory
        self.key_store = key_store
        self.log_observer: Any = None
        self.api_endpoint: ObservedEndpoint | None = None
        self.health_endpoint: ObservedEndpoint | None = None

    def setServiceParent(self, parent: Any) -> None:
        super().setServiceParent(parent)
        # The parent is twistd's Application: offering our observer there makes
        # twistd log through it (level filter, text/JSON, file) instead of its default.
        set_component = getattr(parent, "setComponent", None)
        if self.log_observer is not None and set_component is not None:
            set_component(ILogObserver, self.log_observer)

    def startService(self) -> None:
        super().startService()
        if self.key_store is not None:
            self.key_store.start().addErrback(
                lambda failure: self._log.failure("API key store failed to load", failure=failure))
        self.app.readiness.mark_started()
        self.app.bus.publish("system.startup", {"version": __version__,
                                                "build_info": self.app.build_date})
        config = self.app.config
        self._log.info(
            "camera-service {version} started; API on port {port}{path}. Get a token with: "
            "camera-service-admin --config {config_path} token --user NAME --role admin",
            version=__version__, port=config.server.port, path=config.server.websocket_path,
            config_path=config.source_path or "<config>")

    def stopService(self) -> Deferred[Any]:
        app = self.app
        app.readiness.shutting_down = True
        app.bus.publish("system.shutdown", {"reason": "server shutdown"})
        if self.key_store is not None:
            self.key_store.stop()
        # Recordings end first, while connections are open to receive STOPPED (media.md §3.12).
        recordings_stopped = app.recorder.stop_all() if app.recorder is not None else succeed(None)

        def close_connections(_: Any) -> Deferred[Any]:
            app.bus.flush_now()
            return self.factory.close_all(app.clock, CLOSE_TIMEOUT)

        closing = recordings_stopped.addBoth(close_connections)
        closing.addCallback(lambda _: MultiService.stopService(self))
        return closing


def _raise_fd_limit(max_connections: int, log: Logger) -> None:
    """Lift the soft RLIMIT_NOFILE to the hard limit; warn if it cannot hold max_connections."""
    soft, hard = _resource.getrlimit(_resource.RLIMIT_NOFILE)
    wanted = hard if hard != _resource.RLIM_INFINITY else max(soft, 65536)
    if soft != _resource.RLIM_INFINITY and soft < wanted:
        try:
            _resource.setrlimit(_resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):
            pass
    if soft != _resource.RLIM_INFINITY and max_connections + _FD_RESERVE > soft:
        log.warn("server.max_connections={max_connections} exceeds what the file-descriptor limit "
                 "({soft}) can hold; raise LimitNOFILE", max_connections=max_connections, soft=soft)


@implementer(IStreamServerEndpoint)
class ObservedEndpoint:
    """Wraps an endpoint so callers can learn the bound port (tests listen on port 0)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.port: Any = None
        self._waiters: list[Deferred[Any]] = []

    def listen(self, factory: Any) -> Deferred[Any]:
        return self._inner.listen(factory).addCallback(self._listening)

    def _listening(self, port: Any) -> Any:
        self.port = port
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(port)
        return port

    def when_listening(self) -> Deferred[Any]:
        if self.port is not None:
            return succeed(self.port)
        waiter: Deferred[Any] = Deferred()
        self._waiters.append(waiter)
        return waiter


def _listen_endpoint(reactor: Any, endpoint: str, host: str, port: int) -> ObservedEndpoint:
    if endpoint:
        return ObservedEndpoint(endpoints.serverFromString(reactor, endpoint))
    escaped = host.replace(":", "\\:")
    return ObservedEndpoint(endpoints.serverFromString(reactor, f"tcp:{port}:interface={escaped}"))


class _NotFoundRoot(Resource):
    """Any path that is not /ws or /files answers 404 (api.md §1.1)."""

    def getChild(self, path: bytes, request: Any) -> Resource:
        return notFound()

    def render(self, request: Any) -> bytes:
        return notFound().render(request)


def _api_site(websocket_path: str, gate: WebSocketGate, files: Resource) -> Site:
    root = _NotFoundRoot()
    parts = [p.encode() for p in websocket_path.strip("/").split("/") if p]
    parent = root
    for segment in parts[:-1]:
        child = _NotFoundRoot()
        parent.putChild(segment, child)
        parent = child
    parent.putChild(parts[-1] if parts else b"", gate)
    # /files/recordings/{name} and /files/snapshots/{name} (api.md §7.2).
    root.putChild(b"files", files)
    # The access log must never carry ?token= values (api.md §7.2).
    site = Site(root, logFormatter=redacting_log_formatter)
    site.noisy = False
    return site


def _resolved_tools(config: Any) -> dict[str, str | None]:
    """Absolute paths of the external programs, resolved once (media.md §0.3)."""
    log = Logger(namespace="camera_service.app")
    tools = resolve_tools({"ffmpeg": config.tools.ffmpeg, "ffprobe": config.tools.ffprobe,
                           "v4l2_ctl": config.tools.v4l2_ctl})
    for name, path in tools.items():
        if path is None:
            log.error("tool {name} not found; features that need it will fail", name=name)
    return tools


def _camera_monitor(config: Any, reactor: Any, bus: EventBus, health: HealthRegistry,
                    readiness: Readiness, run_in_media: Callable[..., Deferred[Any]],
                    tools: dict[str, str | None], prober_override: Any = None) -> CameraMonitor:
    """Discovery → probing → (publication hooks): the chain of media.md §1.9."""
    runner = ProcessRunner(reactor)
    ioctl = IoctlProber(run_in_media, clock=reactor)
    v4l2ctl = V4l2CtlProber(runner, tools["v4l2_ctl"])
    prober = prober_override or {"auto": AutoProber(ioctl, v4l2ctl), "ioctl": ioctl,
                                 "v4l2-ctl": v4l2ctl}[config.camera.prober]
    node_source = UdevNodeSource.create(config.camera.device_range)

    def udev_factory(on_event: Callable[[str, int], None], on_overflow: Callable[[], None]) -> Any:
        return UdevEvents(reactor, on_event, on_overflow, context=node_source.context,
                          device_range=config.camera.device_range)

    return CameraMonitor(reactor, config, bus, health, readiness, run_in_media, prober, node_source,
                         udev_factory, ffmpeg_path=tools["ffmpeg"])


def api_key_store_path(config: Any) -> str | None:
    """The key file in effect, or None when API keys are disabled (api.md §2.3).

    CAMERA_SERVICE_API_KEYS_PATH was already folded into the configuration.
    """
    path = config.security.api_keys.file
    mode = config.security.api_keys.enabled
    if mode == "false":
        return None
    if mode == "auto" and not os.path.exists(path):
        return None
    return path


def build_root(config: Any, reactor: Any, environ: Mapping[str, str], *,
               ping_interval: float = 30.0, ping_timeout: float = 60.0,
               camera_prober: Any = None) -> CameraServiceRoot:
    """The whole service tree. ``camera_prober`` replaces the V4L2 prober: tests that
    plug umockdev's fake nodes (which are not V4L2 devices) inject one."""
    log = Logger(namespace="camera_service.app")
    _raise_fd_limit(config.server.max_connections, log)
    clock = reactor
    started_at = clock.seconds()

    media_pool = ThreadPool(minthreads=1, maxthreads=4, name="media")
    # bcrypt gets its own pool so a burst of logins cannot starve file work.
    auth_pool = ThreadPool(minthreads=1, maxthreads=2, name="auth")
    run_in_media = partial(deferToThreadPool, reactor, media_pool)
    run_in_auth = partial(deferToThreadPool, reactor, auth_pool)

    secret, secret_source = resolve_jwt_secret(config.security.jwt_secret_key,
                                               config.security.jwt_secret_file,
                                               config.server.state_dir, environ)
    log.info("JWT secret from {source}", source=secret_source)
    if config.env_keys:
        log.info("configuration keys set from the environment: {keys}", keys=", ".join(config.env_keys))
    key_path = api_key_store_path(config)
    key_store = ApiKeyStore(key_path, run_in_auth, clock) if key_path else None
    log.info("API keys {state}", state=f"enabled ({key_path})" if key_path else "disabled")
    authenticator = Authenticator(secret, key_store, clock)

    bus = EventBus(clock)
    metrics = RequestMetrics(clock.seconds)
    readiness = Readiness()
    health = HealthRegistry(clock)
    system_metrics = SystemMetrics(clock, run_in_media, config.mediamtx.recordings_path)
    stream_urls = StreamUrls(config.server.public_host, config.mediamtx.rtsp_port,
                             config.mediamtx.hls_port, config.mediamtx.webrtc_port)
    from camera_service.rpc.methods.system import build_date

    app = ApiApp(config=config, clock=clock, authenticator=authenticator, bus=bus, metrics=metrics,
                 readiness=readiness, health=health, system_metrics=system_metrics,
                 stream_urls=stream_urls, started_at=started_at, build_date=build_date())

    cache_seconds = config.storage.listing_cache_seconds
    app.stores = {
        RECORDINGS: FileStore(RECORDINGS, config.mediamtx.recordings_path, run_in_media, clock,
                              cache_seconds),
        SNAPSHOTS: FileStore(SNAPSHOTS, config.mediamtx.snapshots_path, run_in_media, clock,
                             cache_seconds),
    }

    registry = MethodRegistry()
    system_methods.register(registry)
    subscription_methods.register(registry)
    dispatcher = Dispatcher(registry, app)
    tracker = ConnectionTracker(metrics)
    factory = ApiServerFactory(app, dispatcher, tracker)
    app.recipients = tracker.recipients
    bus.add_listener(Notifier(tracker.recipients, authenticator.still_valid,
                              config.notifications.broadcast_to_all, stream_urls))

    tools = _resolved_tools(config)
    monitor = _camera_monitor(config, reactor, bus, health, readiness, run_in_media, tools,
                              camera_prober)
    storage = StorageService(config, clock, app.stores, run_in_media, health, bus,
                             present_cameras=lambda: {c.id for c in monitor.registry
                                                      if c.status in (CONNECTED, ERROR)})
    # First hook: a camera's directories exist before anything records it (media.md §5.1).
    monitor.on_camera_connected.append(storage.camera_connected)
    app.storage = storage
    mm = config.mediamtx
    client = MediaMTXClient(reactor, base_url=f"http://{mm.host}:{mm.api_port}",
                            auth=(mm.api_username, mm.api_password) if mm.api_username else None,
                            timeout=mm.request_timeout) if mm.enabled else None
    # Registers itself on the monitor's connect/disconnect hooks: discovery → path creation.
    mediamtx = MediaMTXService(reactor=reactor, config=config, client=client, monitor=monitor,
                               bus=bus, health=health, readiness=readiness,
                               ffmpeg_path=tools["ffmpeg"])
    # One runner for FFmpeg/ffprobe children of the media side (media.md §0.3).
    media_runner = ProcessRunner(reactor)
    recorder = RecordingService(
        config=config, clock=clock, monitor=monitor, mediamtx=mediamtx,
        runner=media_runner, ffmpeg_path=tools["ffmpeg"],
        recordings_root=config.mediamtx.recordings_path, run_in_thread=run_in_media, bus=bus,
        leases=app.leases, invalidate_listing=app.stores[RECORDINGS].invalidate,
        check_can_write=storage.check_can_write,
        ensure_camera_directories=storage.ensure_camera_directories)
    app.recorder = recorder
    if mediamtx.enabled:
        consistency = RecordingsConsistency(mediamtx, app.stores[RECORDINGS], storage.report_problem)
        mediamtx.on_provisioned.append(lambda: defer.ensureDeferred(consistency.check()))
    # Segments in progress are never deleted; low free space ends recordings (media.md §5.4-5.5).
    storage.busy_paths.append(recorder.busy_paths)
    storage.on_free_space_low.append(recorder.storage_full)
    # Built after the recorder: it adds its RTSP readers to the recorder's own_readers.
    snapshotter = SnapshotService(
        config=config, clock=clock, monitor=monitor, mediamtx=mediamtx, runner=media_runner,
        ffmpeg_path=tools["ffmpeg"], store=app.stores[SNAPSHOTS], leases=app.leases,
        run_in_thread=run_in_media, bus=bus, check_can_write=storage.check_can_write,
        ensure_camera_directories=storage.ensure_camera_directories,
        frame_tap=recorder.frame_tap)
    storage.busy_paths.append(snapshotter.reserved_paths)
    camera_methods.register(registry, monitor)
    streaming_methods.register(
        registry, monitor, mediamtx, reactor, recorder.is_active,
        waiting_for_live=lambda camera_id: (recorder.state(camera_id) == "STARTING"
                                            or snapshotter.rtsp_readers(camera_id) > 0))
    recording_methods.register(registry, recorder)
    snapshot_methods.register(registry, snapshotter)
    file_methods.register(registry, app.stores, storage, media_runner, tools["ffprobe"],
                          run_in_media,
                          MediaMTXSegmentDeleter(mediamtx) if mediamtx.enabled else None)
    storage_methods.register(registry, storage)
    # Offers its proxy paths to MediaMTX provisioning (media.md §7.4) as it is built.
    external = ExternalStreamsService(config=config, reactor=reactor, mediamtx=mediamtx,
                                      run_in_thread=run_in_media)
    external_methods.register(registry, external)
    app.camera_metrics = monitor.camera_metrics
    app.stream_metrics = mediamtx.stream_metrics
    app.status = StatusEvaluator(
        system=system_metrics, request_metrics=metrics, connections_open=lambda: tracker.reserved,
        max_connections=config.server.max_connections, mediamtx=mediamtx,
        camera_monitor_state=monitor.component_state, shutting_down=lambda: readiness.shutting_down,
        disk_usage_percent=storage.recordings_usage_percent)

    root = CameraServiceRoot(app, factory, key_store)
    ThreadPoolService(media_pool, reactor).setServiceParent(root)
    ThreadPoolService(auth_pool, reactor).setServiceParent(root)
    system_metrics.setServiceParent(root)
    SystemErrorPublisher(bus.publish, clock).setServiceParent(root)
    storage.setServiceParent(root)
    mediamtx.setServiceParent(root)
    monitor.setServiceParent(root)
    # After MediaMTX: stopped before it, so a stop can still clear the record flag.
    recorder.setServiceParent(root)
    snapshotter.setServiceParent(root)
    external.setServiceParent(root)
    health_events = HealthEventService(app.status, bus.publish, system_metrics, clock)
    # A storage threshold crossing re-evaluates overall health at once (media.md §5.4, §6.4).
    storage.on_level_change.append(health_events.check)
    health_events.setServiceParent(root)
    KeepAliveService(tracker, clock, ping_interval, ping_timeout).setServiceParent(root)

    gate = WebSocketGate(factory, config.server.max_connections, tuple(config.security.cors_origins),
                         metrics.refused)
    downloads = DownloadResource(app.stores, authenticator, tuple(config.security.cors_origins),
                                 clock, run_in_thread=run_in_media)
    api_site = _api_site(config.server.websocket_path, gate, downloads)
    root.api_endpoint = _listen_endpoint(reactor, config.server.endpoint, config.server.host,
                                         config.server.port)
    api_listener = StreamServerEndpointService(root.api_endpoint, api_site)
    api_listener._raiseSynchronously = True
    api_listener.setName("api")
    api_listener.setServiceParent(root)

    hh = config.http_health
    if hh.enabled:
        def render_metrics() -> str:
            return render_prometheus(request_metrics=metrics, system=system_metrics.latest,
                                     registry=health, uptime_seconds=clock.seconds() - started_at,
                                     connections_open=tracker.reserved)

        health_site = build_health_site(
            registry=health, readiness=readiness, clock=clock, started_at=started_at,
            version=__version__, environment=config.server.environment,
            endpoints=HealthEndpoints(hh.basic_endpoint, hh.detailed_endpoint, hh.ready_endpoint,
                                      hh.live_endpoint, hh.metrics_endpoint),
            render_metrics=render_metrics)
        root.health_endpoint = _listen_endpoint(reactor, "", hh.host, hh.port)
        health_listener = StreamServerEndpointService(root.health_endpoint, health_site)
        health_listener._raiseSynchronously = True
        health_listener.setName("health")
        health_listener.setServiceParent(root)
    return root

