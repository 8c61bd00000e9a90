"""Service configuration: one YAML file, environment overrides, fail-fast validation.

``load_config(path, environ)`` returns a frozen ``Config`` tree or raises ``ConfigError``
(exit status ``EX_CONFIG``). ``SCHEMA`` is the declarative key table behind it
(media.md §8).
"""

from ._errors import EX_CONFIG, ConfigError
from ._model import (
    ApiKeysConfig,
    CameraConfig,
    CameraOverride,
    Config,
    EncodingConfig,
    ExternalDiscoveryConfig,
    GenericDiscoveryConfig,
    HttpHealthConfig,
    LoggingConfig,
    MediaMTXConfig,
    NotificationsConfig,
    RealTimeConfig,
    RecordingConfig,
    RetentionPolicyConfig,
    SecurityConfig,
    ServerConfig,
    SkydioDiscoveryConfig,
    SnapshotsConfig,
    StorageConfig,
    ToolsConfig,
    VirtualCameraConfig,
)
from .loader import load_config
from .schema import ENV_ALIASES, SCHEMA, SchemaEntry, schema_keys

__all__ = [
    "ApiKeysConfig",
    "CameraConfig",
    "CameraOverride",
    "Config",
    "ConfigError",
    "ENV_ALIASES",
    "EX_CONFIG",
    "EncodingConfig",
    "ExternalDiscoveryConfig",
    "GenericDiscoveryConfig",
    "HttpHealthConfig",
    "LoggingConfig",
    "MediaMTXConfig",
    "NotificationsConfig",
    "RealTimeConfig",
    "RecordingConfig",
    "RetentionPolicyConfig",
    "SCHEMA",
    "SchemaEntry",
    "SecurityConfig",
    "ServerConfig",
    "SkydioDiscoveryConfig",
    "SnapshotsConfig",
    "StorageConfig",
    "ToolsConfig",
    "VirtualCameraConfig",
    "load_config",
    "schema_keys",
]
