"""The configuration schema as data (media.md §8.4, §8.5).

``SCHEMA`` is one declarative table: dotted key, value kind (type and per-key constraint),
default (in its YAML form) and a one-line description. The loader, the tests and any docs
generator iterate this table; the shipped ``conf/camera-service.yaml`` carries the same
descriptions as comments. Rules that involve more than one key live in ``_rules``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Iterable

from . import _model
from ._kinds import (
    FOURCCS,
    Bool,
    Cidr,
    Command,
    DeviceRange,
    Enum,
    Float,
    Int,
    IpAddress,
    Kind,
    ListOf,
    Nullable,
    Overrides,
    Path,
    Resolution,
    RtspUrl,
    Str,
    Tristate,
    UrlPath,
    VirtualCameras,
)

ENV_PREFIX = "CAMERA_SERVICE_"


@dataclass(frozen=True)
class SchemaEntry:
    key: str
    kind: Kind
    default: Any
    description: str
    secret: bool = False

    @property
    def type_name(self) -> str:
        return self.kind.type_name

    @property
    def requirement(self) -> str:
        """What a valid value is, in the words error messages use ("an integer from 1 to 65535")."""
        return self.kind.requirement()

    @property
    def env_name(self) -> str:
        return env_name_for(self.key)


def env_name_for(key: str) -> str:
    return ENV_PREFIX + key.replace(".", "_").upper()


_PORT = Int(1, 65535)
_POSITIVE = Float(gt=0)


def _e(key: str, kind: Kind, default: Any, description: str, secret: bool = False) -> SchemaEntry:
    return SchemaEntry(key, kind, default, description, secret)


SCHEMA: tuple[SchemaEntry, ...] = (
    # server: the API listener (api.md §1.1, §1.4)
    _e("server.host", Str(nonempty=True), "0.0.0.0",
       "Address the API listener binds to; 0.0.0.0 means every IPv4 interface."),
    _e("server.port", _PORT, 8002,
       "TCP port of the API listener (WebSocket API and file downloads)."),
    _e("server.endpoint", Str(), "",
       "Twisted server endpoint string for the API listener; when set it replaces host and port."),
    _e("server.websocket_path", UrlPath(), "/ws",
       "URL path that accepts the WebSocket upgrade; must start with /."),
    _e("server.public_host", Str(), "",
       "Host name put into stream URLs; empty means the Host header of the client's request."),
    _e("server.max_connections", Int(lo=1), 100,
       "Most WebSocket connections open at once; further upgrades get HTTP 503."),
    _e("server.state_dir", Path(directory=True, restricted=True), "/var/lib/camera-service",
       "Directory for service state: camera id map, added external streams, generated secret, run/."),
    _e("server.environment", Str(), "production",
       "Deployment label reported by /health/detailed."),
    # security (api.md §1.4, §1.5, §2.2, §2.3)
    _e("security.jwt_secret_key", Str(), "",
       "HS256 secret for API tokens; CAMERA_SERVICE_JWT_SECRET wins; empty = use jwt_secret_file.",
       secret=True),
    _e("security.jwt_secret_file", Path(directory=False, optional=True), "",
       "File holding the JWT secret; empty = <state_dir>/jwt_secret, generated (mode 0600) if missing."),
    _e("security.api_keys.enabled", Tristate(), "auto",
       "API-key login: auto (on exactly when the key file exists), true or false."),
    _e("security.api_keys.file", Path(directory=False), "/var/lib/camera-service/api-keys.json",
       "JSON file of bcrypt-hashed API keys; CAMERA_SERVICE_API_KEYS_PATH overrides it."),
    _e("security.rate_limit_requests", Int(lo=1), 300,
       "Messages one connection may send per rate-limit window."),
    _e("security.rate_limit_window", _POSITIVE, 60,
       "Length of the fixed rate-limit window, in seconds."),
    _e("security.cors_origins", ListOf(Str(nonempty=True), "strings"),
       ["http://localhost:3000", "https://localhost:3000"],
       "Origin header values allowed to open a WebSocket; \"*\" allows any origin."),
    # notifications (api.md §5)
    _e("notifications.broadcast_to_all", Bool(), False,
       "Also push camera and recording status updates to connections that never subscribed."),
    _e("notifications.real_time.recording_progress_interval", _POSITIVE, 30,
       "Seconds between recording.progress events while a recording runs."),
    # http_health (api.md §7.1)
    _e("http_health.enabled", Bool(), True,
       "Run the HTTP health and metrics listener."),
    _e("http_health.host", Str(nonempty=True), "0.0.0.0",
       "Address the health listener binds to."),
    _e("http_health.port", _PORT, 8003,
       "TCP port of the health listener; must differ from server.port on the same address."),
    _e("http_health.basic_endpoint", UrlPath(), "/health",
       "Path of the basic health endpoint."),
    _e("http_health.detailed_endpoint", UrlPath(), "/health/detailed",
       "Path of the per-component health endpoint."),
    _e("http_health.ready_endpoint", UrlPath(), "/health/ready",
       "Path of the readiness probe."),
    _e("http_health.live_endpoint", UrlPath(), "/health/live",
       "Path of the liveness probe."),
    _e("http_health.metrics_endpoint", UrlPath(), "/metrics",
       "Path of the Prometheus metrics endpoint."),
    # logging
    _e("logging.level", Enum("debug", "info", "warn", "error", "critical"), "info",
       "Lowest level logged: debug, info, warn, error or critical."),
    _e("logging.format", Enum("text", "json"), "text",
       "Log line format: text or json."),
    _e("logging.file", Path(directory=False, optional=True), "",
       "Log file; empty = standard output (the journal under systemd)."),
    _e("logging.max_file_size", Int(lo=1), 10485760,
       "Size in bytes at which the log file is rotated (only when file is set)."),
    _e("logging.backup_count", Int(lo=0), 5,
       "Rotated log files kept."),
    # tools (media.md §0.3)
    _e("tools.ffmpeg", Command(), "ffmpeg",
       "FFmpeg program, a name looked up in PATH at start-up or an absolute path."),
    _e("tools.ffprobe", Command(), "ffprobe",
       "FFprobe program, a name looked up in PATH at start-up or an absolute path."),
    _e("tools.v4l2_ctl", Command(), "v4l2-ctl",
       "v4l2-ctl program, a name looked up in PATH at start-up or an absolute path."),
    # camera (media.md §1)
    _e("camera.device_range", DeviceRange(), [0, 9],
       "Inclusive [min, max] of the /dev/video<N> numbers that are watched."),
    _e("camera.max_cameras", Int(lo=1), 10,
       "Most cameras present (CONNECTED or ERROR) at once, virtual cameras included."),
    _e("camera.use_udev", Bool(), True,
       "Listen for udev hotplug events when netlink is available; periodic scans always run."),
    _e("camera.poll_interval", _POSITIVE, 5.0,
       "Seconds between reconciliation scans of /dev/video*."),
    _e("camera.prober", Enum("auto", "ioctl", "v4l2-ctl"), "auto",
       "How capabilities are probed: auto (ioctl, falling back to v4l2-ctl), ioctl or v4l2-ctl."),
    _e("camera.probe_timeout", _POSITIVE, 5.0,
       "Seconds one capability probe may take."),
    _e("camera.probe_retries", Int(lo=0), 3,
       "Retries of a failed probe before the camera goes to ERROR."),
    _e("camera.probe_retry_delay", _POSITIVE, 0.25,
       "Seconds before the first probe retry; the delay doubles on each retry."),
    _e("camera.error_retry_max", _POSITIVE, 300.0,
       "Upper bound, in seconds, of the backoff between re-probes of a camera in ERROR."),
    _e("camera.remember_limit", Int(lo=1), 64,
       "Camera identities remembered in camera-ids.json; the least recently seen are dropped."),
    _e("camera.target_resolution", Resolution(7680, 4320), "1280x720",
       "Largest streaming size preferred when choosing a camera's mode, as <W>x<H>."),
    _e("camera.target_fps", Int(1, 120), 30,
       "Highest frame rate preferred when choosing a camera's mode."),
    _e("camera.format_preference", ListOf(Enum(*FOURCCS), "FourCCs", nonempty=True, unique=True),
       ["MJPG", "YUYV", "NV12", "YU12", "UYVY", "H264", "GREY"],
       "FourCCs usable for streaming, most preferred first."),
    _e("camera.overrides", Overrides(), {},
       "Fixed streaming mode per camera id: {format, resolution, fps}, used when the camera has it."),
    # virtual cameras (media.md §1.10)
    _e("virtual_cameras", VirtualCameras(), [],
       "FFmpeg test-pattern cameras: list of {id, name, pattern, size, rate}."),
    # encoding (media.md §2.4)
    _e("encoding.preset", Enum("ultrafast", "superfast", "veryfast", "faster", "fast", "medium"),
       "ultrafast", "x264 speed preset used when a camera's stream is encoded."),
    _e("encoding.profile", Enum("baseline", "main", "high"), "baseline",
       "H.264 profile of encoded streams: baseline, main or high."),
    _e("encoding.bitrate_kbps", Int(100, 50000), 2000,
       "Target bitrate of encoded streams, in kbit/s."),
    _e("encoding.gop_seconds", Float(lo=0.25, hi=10), 1.0,
       "Seconds between key frames of encoded streams."),
    # mediamtx (media.md §2)
    _e("mediamtx.enabled", Bool(), True,
       "Use MediaMTX; false turns off streaming and everything else that needs it."),
    _e("mediamtx.host", Str(nonempty=True), "127.0.0.1",
       "Host where MediaMTX's API and RTSP server are reached."),
    _e("mediamtx.api_port", _PORT, 9997,
       "Port of MediaMTX's control API."),
    _e("mediamtx.api_username", Str(), "",
       "User name for MediaMTX's control API; empty = no authentication."),
    _e("mediamtx.api_password", Str(), "",
       "Password for MediaMTX's control API.", secret=True),
    _e("mediamtx.rtsp_port", _PORT, 8554,
       "Port of MediaMTX's RTSP server."),
    _e("mediamtx.rtsp_transport", Enum("tcp", "udp"), "tcp",
       "Transport the service's own RTSP readers use (keep-alive reader, snapshots)."),
    _e("mediamtx.hls_port", _PORT, 8888,
       "Port of MediaMTX's HLS server."),
    _e("mediamtx.webrtc_port", _PORT, 8889,
       "Port of MediaMTX's WebRTC server."),
    _e("mediamtx.recordings_path", Path(directory=True, restricted=True),
       "/var/lib/camera-service/recordings",
       "Root directory of recordings, shared with MediaMTX."),
    _e("mediamtx.snapshots_path", Path(directory=True, restricted=True),
       "/var/lib/camera-service/snapshots",
       "Root directory of snapshots."),
    _e("mediamtx.request_timeout", _POSITIVE, 5.0,
       "Seconds one request to MediaMTX's API may take."),
    _e("mediamtx.health_check_interval", _POSITIVE, 10.0,
       "Seconds between health probes of MediaMTX while it is up."),
    _e("mediamtx.health_failure_threshold", Int(lo=1), 3,
       "Consecutive failures after which MediaMTX counts as down."),
    _e("mediamtx.health_max_backoff", _POSITIVE, 30.0,
       "Upper bound, in seconds, of the probe backoff while MediaMTX is down."),
    _e("mediamtx.run_on_demand_start_timeout", Int(1, 3600), 10,
       "Whole seconds MediaMTX waits for an on-demand publisher to start."),
    _e("mediamtx.run_on_demand_close_after", Int(1, 3600), 10,
       "Whole seconds MediaMTX keeps an on-demand publisher after its last reader leaves."),
    _e("mediamtx.set_path_defaults", Bool(), True,
       "Write recording defaults into MediaMTX's path defaults; false when MediaMTX is shared."),
    _e("mediamtx.provision_concurrency", Int(lo=1), 4,
       "Most MediaMTX path writes in flight at once."),
    # recording (media.md §3)
    _e("recording.format", Enum("fmp4", "mpegts"), "fmp4",
       "Recording container: fmp4 or mpegts."),
    _e("recording.segment_duration", Float(lo=1, hi=86400), 3600,
       "Seconds of video per recording segment file."),
    _e("recording.part_duration", Float(lo=1, hi=60), 1,
       "Seconds per fmp4 part (how often a segment grows); less than segment_duration."),
    _e("recording.start_timeout", _POSITIVE, 15.0,
       "Seconds a recording may take to start; at least run_on_demand_start_timeout + 2."),
    _e("recording.stop_grace", _POSITIVE, 5.0,
       "Seconds a direct FFmpeg recording gets after SIGINT before SIGKILL."),
    _e("recording.stall_timeout", _POSITIVE, 15.0,
       "Seconds without segment growth after which a recording counts as lost."),
    _e("recording.reader_restart_limit", Int(lo=0), 3,
       "Keep-alive reader restarts allowed within 60 s before the recording fails."),
    _e("recording.auto_resume", Bool(), True,
       "Resume a recording that failed when its camera or MediaMTX comes back."),
    _e("recording.resume_window", _POSITIVE, 300.0,
       "Seconds after a failure during which a recording may still be resumed."),
    # snapshots (media.md §4)
    _e("snapshots.quality", Int(1, 100), 85,
       "JPEG quality from 1 to 100 (100 is best)."),
    _e("snapshots.max_width", Int(lo=0), 0,
       "Largest snapshot width in pixels; 0 = no limit."),
    _e("snapshots.max_height", Int(lo=0), 0,
       "Largest snapshot height in pixels; 0 = no limit."),
    _e("snapshots.warmup_frames", Int(lo=0), 5,
       "Frames skipped when capturing from the device, so exposure can settle."),
    _e("snapshots.direct_device", Bool(), True,
       "Allow capturing straight from an idle USB device instead of through MediaMTX."),
    _e("snapshots.capture_timeout", _POSITIVE, 5.0,
       "Seconds one FFmpeg snapshot run may take."),
    _e("snapshots.total_timeout", _POSITIVE, 15.0,
       "Seconds a whole snapshot request may take."),
    # storage (media.md §5)
    _e("storage.group", Str(), "",
       "Group shared with MediaMTX for the media directories; empty = the process's own group."),
    _e("storage.warn_percent", Int(1, 99), 70,
       "Used-space percentage at which storage is reported as low."),
    _e("storage.block_percent", Int(1, 99), 85,
       "Used-space percentage at which new recordings and snapshots are refused."),
    _e("storage.min_free_mb", Int(lo=0), 256,
       "Free MiB below which running recordings are stopped."),
    _e("storage.check_interval", _POSITIVE, 30.0,
       "Seconds between free-space and write checks."),
    _e("storage.listing_cache_seconds", Float(lo=0), 2.0,
       "Seconds a directory listing is reused; 0 = always list afresh."),
    # retention_policy (media.md §5.5)
    _e("retention_policy.enabled", Bool(), True,
       "Delete old media files automatically."),
    _e("retention_policy.type", Enum("age", "size", "manual"), "age",
       "Retention rule: age, size or manual (only on request)."),
    _e("retention_policy.max_age_days", Nullable(Int(lo=1)), 30,
       "Days a file is kept under the age rule; null = unset."),
    _e("retention_policy.max_size_gb", Nullable(Float(gt=0, hi=100)), None,
       "GiB that recordings and snapshots may use under the size rule; null = unset."),
    _e("retention_policy.min_free_percent", Int(0, 99), 20,
       "Oldest files are deleted until at least this share of the disk is free; 0 = off."),
    _e("retention_policy.cleanup_interval", _POSITIVE, 300,
       "Seconds between automatic retention sweeps."),
    _e("retention_policy.min_file_age", Float(lo=0), 60,
       "Files modified within this many seconds are never deleted."),
    # external_discovery (media.md §7)
    _e("external_discovery.enabled", Bool(), False,
       "Turn on external stream discovery and the external stream API methods (off: they answer -32030)."),
    _e("external_discovery.scan_interval", Float(lo=0), 0,
       "Seconds between periodic scans; 0 = scan only on request."),
    _e("external_discovery.startup_scan", Bool(), False,
       "Run one scan at start-up (when enabled)."),
    _e("external_discovery.scan_timeout", _POSITIVE, 30.0,
       "Seconds a whole scan may take."),
    _e("external_discovery.connect_timeout", _POSITIVE, 1.0,
       "Seconds a TCP connection attempt to a candidate may take."),
    _e("external_discovery.probe_timeout", _POSITIVE, 3.0,
       "Seconds the RTSP probe of one candidate may take."),
    _e("external_discovery.max_concurrent_probes", Int(lo=1), 32,
       "Most candidates probed at the same time."),
    _e("external_discovery.max_hosts", Int(lo=1), 1024,
       "Most hosts all network ranges together may expand to."),
    _e("external_discovery.rtsp_transport", Enum("automatic", "udp", "tcp", "multicast"), "automatic",
       "RTSP transport of proxy paths for added streams: automatic, udp, tcp or multicast."),
    _e("external_discovery.candidates", ListOf(RtspUrl(), "rtsp:// URLs"), [],
       "Explicit rtsp:// URLs probed by every scan."),
    _e("external_discovery.skydio.enabled", Bool(), True,
       "Run the Skydio scanner."),
    _e("external_discovery.skydio.known_ips", ListOf(IpAddress(), "IP addresses"), ["192.168.42.10"],
       "Addresses probed first by the Skydio scanner."),
    _e("external_discovery.skydio.network_ranges", ListOf(Cidr(), "CIDR networks"), ["192.168.42.0/24"],
       "Networks (CIDR) whose hosts the Skydio scanner probes."),
    _e("external_discovery.skydio.eo_port", _PORT, 5554,
       "RTSP port of the Skydio electro-optical (EO) stream."),
    _e("external_discovery.skydio.eo_path", UrlPath(), "/subject",
       "RTSP path of the Skydio EO stream."),
    _e("external_discovery.skydio.ir_port", _PORT, 6554,
       "RTSP port of the Skydio infrared (IR) stream."),
    _e("external_discovery.skydio.ir_path", UrlPath(), "/infrared",
       "RTSP path of the Skydio IR stream."),
    _e("external_discovery.generic.enabled", Bool(), False,
       "Run the generic RTSP scanner."),
    _e("external_discovery.generic.known_ips", ListOf(IpAddress(), "IP addresses"), [],
       "Addresses probed first by the generic scanner."),
    _e("external_discovery.generic.network_ranges", ListOf(Cidr(), "CIDR networks"), [],
       "Networks (CIDR) whose hosts the generic scanner probes."),
    _e("external_discovery.generic.ports", ListOf(_PORT, "ports from 1 to 65535"), [554, 8554],
       "Ports tried on every generic host."),
    _e("external_discovery.generic.paths", ListOf(UrlPath(), "paths starting with /"),
       ["/stream", "/live", "/video"],
       "RTSP paths tried on every generic host and port."),
)

# The two environment names api.md defines outside the CAMERA_SERVICE_<SECTION>_<KEY> scheme.
# They win over the regular names of the same keys (media.md §8.2, §8.4).
ENV_ALIASES: dict[str, str] = {
    "CAMERA_SERVICE_JWT_SECRET": "security.jwt_secret_key",
    "CAMERA_SERVICE_API_KEYS_PATH": "security.api_keys.file",
}

BY_KEY: dict[str, SchemaEntry] = {entry.key: entry for entry in SCHEMA}


def schema_keys() -> list[str]:
    """Every dotted key path, in schema (and shipped file) order."""
    return [entry.key for entry in SCHEMA]


def section_paths() -> list[str]:
    """Every section path that holds keys (``server``, ``security.api_keys``, ...)."""
    sections: list[str] = []
    for key in schema_keys():
        parts = key.split(".")[:-1]
        for depth in range(1, len(parts) + 1):
            path = ".".join(parts[:depth])
            if path not in sections:
                sections.append(path)
    return sections


def env_names() -> dict[str, str]:
    """Environment variable name -> dotted key, aliases included."""
    names = {entry.env_name: entry.key for entry in SCHEMA}
    names.update(ENV_ALIASES)
    return names


def env_name_collisions(keys: Iterable[str], aliases: Iterable[str] = ()) -> list[str]:
    """Variable names that more than one key (or a key and an alias) would share.

    Section and key names contain ``_``, so ``a.b_c`` and ``a_b.c`` would both be
    ``CAMERA_SERVICE_A_B_C``; media.md §8.2 requires the schema never to do that.
    """
    seen: dict[str, str] = {}
    clashes: list[str] = []
    for key in keys:
        name = env_name_for(key)
        if name in seen:
            clashes.append(f"{name}: {seen[name]} and {key}")
        seen[name] = key
    for alias in aliases:
        if alias in seen:
            clashes.append(f"{alias}: {seen[alias]} and the alias")
    return clashes


def model_mismatches() -> list[str]:
    """Differences between the schema keys and the fields of the ``Config`` dataclass tree."""
    model_keys: list[str] = []

    def walk(cls: type, prefix: str) -> None:
        for item in dataclasses.fields(cls):
            if cls is _model.Config and item.name in _model.PROVENANCE_FIELDS:
                continue
            path = prefix + item.name
            nested = _SECTION_CLASSES.get(path)
            if nested is not None:
                walk(nested, path + ".")
            else:
                model_keys.append(path)

    walk(_model.Config, "")
    schema = set(schema_keys())
    return sorted(set(model_keys) ^ schema)


# Section path -> dataclass, used to build the Config tree from flat dotted keys.
_SECTION_CLASSES: dict[str, type] = {
    "server": _model.ServerConfig,
    "security": _model.SecurityConfig,
    "security.api_keys": _model.ApiKeysConfig,
    "notifications": _model.NotificationsConfig,
    "notifications.real_time": _model.RealTimeConfig,
    "http_health": _model.HttpHealthConfig,
    "logging": _model.LoggingConfig,
    "tools": _model.ToolsConfig,
    "camera": _model.CameraConfig,
    "encoding": _model.EncodingConfig,
    "mediamtx": _model.MediaMTXConfig,
    "recording": _model.RecordingConfig,
    "snapshots": _model.SnapshotsConfig,
    "storage": _model.StorageConfig,
    "retention_policy": _model.RetentionPolicyConfig,
    "external_discovery": _model.ExternalDiscoveryConfig,
    "external_discovery.skydio": _model.SkydioDiscoveryConfig,
    "external_discovery.generic": _model.GenericDiscoveryConfig,
}


def section_class(path: str) -> type:
    return _SECTION_CLASSES[path]


def _self_check() -> None:
    # A schema edit that breaks either invariant is a programming error: fail at import,
    # long before any deployment could load an ambiguous configuration.
    problems = env_name_collisions(schema_keys(), ENV_ALIASES) + model_mismatches()
    if problems:
        raise RuntimeError("configuration schema self-check failed: " + "; ".join(problems))


_self_check()
