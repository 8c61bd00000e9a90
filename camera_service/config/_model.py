"""The loaded configuration: a frozen tree of dataclasses mirroring the YAML sections.

Field names are the YAML key names; a self-check in ``schema`` makes sure this tree and the
schema table list exactly the same keys. Secrets are left out of ``repr`` so that logging a
configuration object cannot leak them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping


def _split_size(size: str) -> tuple[int, int]:
    width, height = size.split("x")
    return int(width), int(height)


@dataclass(frozen=True)
class CameraOverride:
    format: str
    resolution: str
    fps: float

    @property
    def width(self) -> int:
        return _split_size(self.resolution)[0]

    @property
    def height(self) -> int:
        return _split_size(self.resolution)[1]


@dataclass(frozen=True)
class VirtualCameraConfig:
    id: str
    name: str
    pattern: str
    size: str
    rate: int

    @property
    def width(self) -> int:
        return _split_size(self.size)[0]

    @property
    def height(self) -> int:
        return _split_size(self.size)[1]


@dataclass(frozen=True)
class ServerConfig:
    host: str
    port: int
    endpoint: str
    websocket_path: str
    public_host: str
    max_connections: int
    state_dir: str
    environment: str


@dataclass(frozen=True)
class ApiKeysConfig:
    enabled: str
    file: str


@dataclass(frozen=True)
class SecurityConfig:
    jwt_secret_key: str = field(repr=False)
    jwt_secret_file: str
    api_keys: ApiKeysConfig
    rate_limit_requests: int
    rate_limit_window: float
    cors_origins: tuple[str, ...]


@dataclass(frozen=True)
class RealTimeConfig:
    recording_progress_interval: float


@dataclass(frozen=True)
class NotificationsConfig:
    broadcast_to_all: bool
    real_time: RealTimeConfig


@dataclass(frozen=True)
class HttpHealthConfig:
    enabled: bool
    host: str
    port: int
    basic_endpoint: str
    detailed_endpoint: str
    ready_endpoint: str
    live_endpoint: str
    metrics_endpoint: str


@dataclass(frozen=True)
class LoggingConfig:
    level: str
    format: str
    file: str
    max_file_size: int
    backup_count: int


@dataclass(frozen=True)
class ToolsConfig:
    ffmpeg: str
    ffprobe: str
    v4l2_ctl: str


@dataclass(frozen=True)
class CameraConfig:
    device_range: tuple[int, int]
    max_cameras: int
    use_udev: bool
    poll_interval: float
    prober: str
    probe_timeout: float
    probe_retries: int
    probe_retry_delay: float
    error_retry_max: float
    remember_limit: int
    target_resolution: str
    target_fps: int
    format_preference: tuple[str, ...]
    overrides: Mapping[str, CameraOverride]


@dataclass(frozen=True)
class EncodingConfig:
    preset: str
    profile: str
    bitrate_kbps: int
    gop_seconds: float


@dataclass(frozen=True)
class MediaMTXConfig:
    enabled: bool
    host: str
    api_port: int
    api_username: str
    api_password: str = field(repr=False)
    rtsp_port: int
    rtsp_transport: str
    hls_port: int
    webrtc_port: int
    recordings_path: str
    snapshots_path: str
    request_timeout: float
    health_check_interval: float
    health_failure_threshold: int
    health_max_backoff: float
    run_on_demand_start_timeout: int
    run_on_demand_close_after: int
    set_path_defaults: bool
    provision_concurrency: int


@dataclass(frozen=True)
class RecordingConfig:
    format: str
    segment_duration: float
    part_duration: float
    start_timeout: float
    stop_grace: float
    stall_timeout: float
    reader_restart_limit: int
    auto_resume: bool
    resume_window: float


@dataclass(frozen=True)
class SnapshotsConfig:
    quality: int
    max_width: int
    max_height: int
    warmup_frames: int
    direct_device: bool
    capture_timeout: float
    total_timeout: float


@dataclass(frozen=True)
class StorageConfig:
    group: str
    warn_percent: int
    block_percent: int
    min_free_mb: int
    check_interval: float
    listing_cache_seconds: float


@dataclass(frozen=True)
class RetentionPolicyConfig:
    enabled: bool
    type: str
    max_age_days: int | None
    max_size_gb: float | None
    min_free_percent: int
    cleanup_interval: float
    min_file_age: float


@dataclass(frozen=True)
class SkydioDiscoveryConfig:
    enabled: bool
    known_ips: tuple[str, ...]
    network_ranges: tuple[str, ...]
    eo_port: int
    eo_path: str
    ir_port: int
    ir_path: str


@dataclass(frozen=True)
class GenericDiscoveryConfig:
    enabled: bool
    known_ips: tuple[str, ...]
    network_ranges: tuple[str, ...]
    ports: tuple[int, ...]
    paths: tuple[str, ...]


@dataclass(frozen=True)
class ExternalDiscoveryConfig:
    enabled: bool
    scan_interval: float
    startup_scan: bool
    scan_timeout: float
    connect_timeout: float
    probe_timeout: float
    max_concurrent_probes: int
    max_hosts: int
    rtsp_transport: str
    candidates: tuple[str, ...]
    skydio: SkydioDiscoveryConfig
    generic: GenericDiscoveryConfig


@dataclass(frozen=True)
class Config:
    server: ServerConfig
    security: SecurityConfig
    notifications: NotificationsConfig
    http_health: HttpHealthConfig
    logging: LoggingConfig
    tools: ToolsConfig
    camera: CameraConfig
    virtual_cameras: tuple[VirtualCameraConfig, ...]
    encoding: EncodingConfig
    mediamtx: MediaMTXConfig
    recording: RecordingConfig
    snapshots: SnapshotsConfig
    storage: StorageConfig
    retention_policy: RetentionPolicyConfig
    external_discovery: ExternalDiscoveryConfig
    # Not configuration keys: where the values came from, for start-up logging.
    source_path: str | None = None
    env_keys: tuple[str, ...] = ()


# Fields of Config that are not schema keys.
PROVENANCE_FIELDS = ("source_path", "env_keys")
