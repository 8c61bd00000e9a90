"""Configuration loading and validation (media.md §8)."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from camera_service.config import (
    EX_CONFIG,
    SCHEMA,
    CameraOverride,
    Config,
    ConfigError,
    VirtualCameraConfig,
    load_config,
    schema_keys,
)
from camera_service.config.schema import ENV_ALIASES, env_name_collisions, model_mismatches

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "conf" / "camera-service.yaml"


def write_config(tmp_path: Path, text: str, name: str = "camera-service.yaml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


def load_error(path: str | None, environ: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ or {})
    return caught.value


# --- defaults and the shipped file ----------------------------------------------------------


def test_defaults_load_without_a_file() -> None:
    config = load_config(None, {})
    assert isinstance(config, Config)
    assert config.source_path is None
    assert config.env_keys == ()
    assert config.server.port == 8002
    assert config.server.state_dir == "/var/lib/camera-service"
    assert config.security.api_keys.enabled == "auto"
    assert config.security.rate_limit_window == 60.0
    assert isinstance(config.security.rate_limit_window, float)
    assert config.security.cors_origins == ("http://localhost:3000", "https://localhost:3000")
    assert config.camera.device_range == (0, 9)
    assert config.camera.format_preference == ("MJPG", "YUYV", "NV12", "YU12", "UYVY", "H264", "GREY")
    assert dict(config.camera.overrides) == {}
    assert config.virtual_cameras == ()
    assert config.retention_policy.max_age_days == 30
    assert config.retention_policy.max_size_gb is None
    assert config.external_discovery.skydio.network_ranges == ("192.168.42.0/24",)
    assert config.external_discovery.generic.ports == (554, 8554)


def test_shipped_file_loads_cleanly() -> None:
    config = load_config(str(SHIPPED), {})
    assert config.source_path == str(SHIPPED)
    assert config.virtual_cameras == (
        VirtualCameraConfig(id="camera100", name="Test pattern", pattern="testsrc2", size="1280x720", rate=30),
    )


def _file_keys(node: Any, prefix: str, known: set[str]) -> set[str]:
    found: set[str] = set()
    for name, value in node.items():
        key = prefix + name
        if key in known:
            found.add(key)
        else:
            assert isinstance(value, dict), f"{key} is neither a schema key nor a section"
            found |= _file_keys(value, key + ".", known)
    return found


def test_shipped_file_contains_every_schema_key() -> None:
    document = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    assert _file_keys(document, "", set(schema_keys())) == set(schema_keys())


def test_shipped_file_uses_schema_defaults_except_virtual_cameras() -> None:
    document = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    for entry in SCHEMA:
        if entry.key == "virtual_cameras":
            continue
        value: Any = document
        for part in entry.key.split("."):
            value = value[part]
        assert value == entry.default, entry.key


def _commented_keys(text: str) -> dict[str, str]:
    """Dotted key -> the comment directly above it (contiguous lines) or on its line."""
    comments: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    pending: list[str] = []
    list_item_indent: int | None = None
    for line in text.splitlines():
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if stripped.startswith("#"):
            pending.append(stripped.lstrip("#").strip())
            continue
        if not stripped:
            pending = []
            continue
        if stripped.startswith("- "):
            list_item_indent = indent
            pending = []
            continue
        if list_item_indent is not None and indent > list_item_indent:
            continue  # fields of a list entry, not schema keys
        list_item_indent = None
        match = re.match(r"([A-Za-z0-9_]+):(.*)$", stripped)
        assert match, f"unexpected line {line!r}"
        while stack and stack[-1][0] >= indent:
            stack.pop()
        key = ".".join([name for _, name in stack] + [match.group(1)])
        stack.append((indent, match.group(1)))
        inline = match.group(2).split(" #", 1)[1].strip() if " #" in match.group(2) else ""
        comments[key] = " ".join(pending + [inline]).strip()
        pending = []
    return comments


def test_every_schema_key_has_a_comment_matching_its_description() -> None:
    comments = _commented_keys(SHIPPED.read_text(encoding="utf-8"))
    for entry in SCHEMA:
        assert comments.get(entry.key), f"{entry.key} has no comment in {SHIPPED.name}"
        assert entry.description in comments[entry.key], entry.key


def test_schema_table_is_well_formed() -> None:
    keys = schema_keys()
    assert len(keys) == len(set(keys))
    assert "server.port" in keys and "security.api_keys.enabled" in keys and "virtual_cameras" in keys
    for entry in SCHEMA:
        assert entry.type_name and entry.description and "\n" not in entry.description
        entry.kind.coerce(entry.default)  # every default satisfies its own constraint
    assert {entry.key for entry in SCHEMA if entry.secret} == {"security.jwt_secret_key", "mediamtx.api_password"}


def test_schema_and_config_dataclasses_agree() -> None:
    assert model_mismatches() == []


def test_env_names_never_collide() -> None:
    assert env_name_collisions(schema_keys(), ENV_ALIASES) == []


def test_env_name_collision_check_detects_clashes() -> None:
    assert env_name_collisions(["a.b_c", "a_b.c"]) == ["CAMERA_SERVICE_A_B_C: a.b_c and a_b.c"]
    assert env_name_collisions(["jwt.secret"], ["CAMERA_SERVICE_JWT_SECRET"])


# --- the environment ------------------------------------------------------------------------


def test_env_overrides_int_bool_list_nested_and_virtual_cameras() -> None:
    config = load_config(None, {
        "CAMERA_SERVICE_MEDIAMTX_API_PORT": "9998",
        "CAMERA_SERVICE_EXTERNAL_DISCOVERY_SKYDIO_ENABLED": "FALSE",
        "CAMERA_SERVICE_NOTIFICATIONS_BROADCAST_TO_ALL": "1",
        "CAMERA_SERVICE_CAMERA_DEVICE_RANGE": "[0, 3]",
        "CAMERA_SERVICE_SECURITY_CORS_ORIGINS": "[http://a.example:8080, '*']",
        "CAMERA_SERVICE_SECURITY_API_KEYS_ENABLED": "true",
        "CAMERA_SERVICE_VIRTUAL_CAMERAS": "[{id: camera100, pattern: smptebars}]",
        "CAMERA_SERVICE_SERVER_ENVIRONMENT": "123",
        "OTHER_VARIABLE": "ignored",
    })
    assert config.mediamtx.api_port == 9998
    assert config.external_discovery.skydio.enabled is False
    assert config.notifications.broadcast_to_all is True
    assert config.camera.device_range == (0, 3)
    assert config.security.cors_origins == ("http://a.example:8080", "*")
    assert config.security.api_keys.enabled == "true"
    assert config.server.environment == "123"  # strings take the raw value
    assert config.virtual_cameras == (
        VirtualCameraConfig(id="camera100", name="Virtual camera 100", pattern="smptebars", size="1280x720", rate=30),
    )
    assert config.env_keys == (
        "server.environment",
        "security.api_keys.enabled",
        "security.cors_origins",
        "notifications.broadcast_to_all",
        "camera.device_range",
        "virtual_cameras",
        "mediamtx.api_port",
        "external_discovery.skydio.enabled",
    )


def test_env_beats_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, "mediamtx:\n  api_port: 9000\n")
    assert load_config(path, {}).mediamtx.api_port == 9000
    assert load_config(path, {"CAMERA_SERVICE_MEDIAMTX_API_PORT": "9001"}).mediamtx.api_port == 9001


def test_env_bool_rejects_other_words() -> None:
    error = load_error(None, {"CAMERA_SERVICE_CAMERA_USE_UDEV": "yes"})
    assert error.line() == (
        "camera-service: config error: camera.use_udev: must be true, false, 1 or 0, got \"yes\""
        " (from CAMERA_SERVICE_CAMERA_USE_UDEV)"
    )


def test_api_md_aliases_override_and_win(tmp_path: Path) -> None:
    config = load_config(None, {
        "CAMERA_SERVICE_SECURITY_JWT_SECRET_KEY": "regular",
        "CAMERA_SERVICE_JWT_SECRET": "alias-secret",
        "CAMERA_SERVICE_API_KEYS_PATH": str(tmp_path / "keys.json"),
    })
    assert config.security.jwt_secret_key == "alias-secret"
    assert config.security.api_keys.file == str(tmp_path / "keys.json")
    assert config.env_keys == ("security.jwt_secret_key", "security.api_keys.file")
    assert "alias-secret" not in repr(config)


def test_empty_jwt_alias_does_not_erase_the_configured_secret(tmp_path: Path) -> None:
    path = write_config(tmp_path, "security:\n  jwt_secret_key: from-file\n")
    config = load_config(path, {"CAMERA_SERVICE_JWT_SECRET": ""})
    assert config.security.jwt_secret_key == "from-file"
    assert config.env_keys == ()


def test_unknown_env_variable_is_an_error_with_a_suggestion() -> None:
    error = load_error(None, {"CAMERA_SERVICE_MEDIAMTX_API_PROT": "9997"})
    assert error.key == "CAMERA_SERVICE_MEDIAMTX_API_PROT"
    assert "did you mean CAMERA_SERVICE_MEDIAMTX_API_PORT?" in error.problem
    assert "9997" not in error.line()


def test_env_value_that_is_not_yaml() -> None:
    error = load_error(None, {"CAMERA_SERVICE_CAMERA_DEVICE_RANGE": "[0, 3"})
    assert error.key == "camera.device_range"
    assert error.origin == "CAMERA_SERVICE_CAMERA_DEVICE_RANGE"


# --- file problems --------------------------------------------------------------------------


def test_unknown_file_key_suggests_the_closest(tmp_path: Path) -> None:
    path = write_config(tmp_path, "mediamtx:\n  api_prot: 9997\n")
    error = load_error(path)
    assert error.line() == (
        f"camera-service: config error: mediamtx.api_prot: unknown key; did you mean mediamtx.api_port?"
        f" (from {path})"
    )


def test_unknown_section_suggests_the_closest(tmp_path: Path) -> None:
    error = load_error(write_config(tmp_path, "retention:\n  enabled: false\n"))
    assert error.key == "retention"
    assert "did you mean retention_policy?" in error.problem


def test_wrong_type_bool_is_not_an_integer(tmp_path: Path) -> None:
    path = write_config(tmp_path, "server:\n  port: true\n")
    assert load_error(path).line() == (
        f"camera-service: config error: server.port: must be an integer from 1 to 65535, got true (from {path})"
    )


def test_integral_float_counts_as_integer_and_int_as_float(tmp_path: Path) -> None:
    path = write_config(tmp_path, "server:\n  port: 8100.0\ncamera:\n  poll_interval: 2\n")
    config = load_config(path, {})
    assert config.server.port == 8100 and isinstance(config.server.port, int)
    assert config.camera.poll_interval == 2.0 and isinstance(config.camera.poll_interval, float)
    error = load_error(write_config(tmp_path, "server:\n  port: 8100.5\n"))
    assert error.problem == "must be an integer from 1 to 65535" and error.value_repr == "8100.5"


def test_out_of_range_message_matches_the_spec_format() -> None:
    error = load_error(None, {"CAMERA_SERVICE_MEDIAMTX_API_PORT": "99999"})
    assert error.line() == (
        "camera-service: config error: mediamtx.api_port: must be an integer from 1 to 65535, got 99999"
        " (from CAMERA_SERVICE_MEDIAMTX_API_PORT)"
    )
    assert (error.key, error.problem, error.value_repr, error.origin) == (
        "mediamtx.api_port", "must be an integer from 1 to 65535", "99999", "CAMERA_SERVICE_MEDIAMTX_API_PORT",
    )


def test_device_range_message_matches_the_spec_format(tmp_path: Path) -> None:
    path = write_config(tmp_path, "camera:\n  device_range: [9, 0]\n")
    assert load_error(path).line() == (
        f"camera-service: config error: camera.device_range: min must be <= max, got [9, 0] (from {path})"
    )


def test_missing_file(tmp_path: Path) -> None:
    path = str(tmp_path / "absent.yaml")
    error = load_error(path)
    assert error.key == path
    assert error.line() == (
        f"camera-service: config error: {path}: cannot read the configuration file: No such file or directory"
    )


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    error = load_error(str(tmp_path))  # a directory cannot be read as a file
    assert error.key == str(tmp_path)
    assert "cannot read the configuration file" in error.problem


def test_invalid_yaml(tmp_path: Path) -> None:
    path = write_config(tmp_path, "server:\n  port: 8002\n   host: [oops\n")
    error = load_error(path)
    assert error.key == path
    assert error.problem.startswith("invalid YAML at line ")


def test_duplicate_yaml_key_is_refused(tmp_path: Path) -> None:
    error = load_error(write_config(tmp_path, "server:\n  port: 8002\n  port: 8004\n"))
    assert "duplicate key 'port'" in error.problem


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    error = load_error(write_config(tmp_path, "- server\n"))
    assert "mapping" in error.problem


def test_empty_file_and_empty_section_keep_defaults(tmp_path: Path) -> None:
    assert load_config(write_config(tmp_path, ""), {}).server.port == 8002
    assert load_config(write_config(tmp_path, "server:\n  # port: 1\n"), {}).server.port == 8002


def test_section_must_be_a_mapping(tmp_path: Path) -> None:
    error = load_error(write_config(tmp_path, "security: hunter2\n"))
    assert error.key == "security" and error.value_repr == "***"


# --- secrets --------------------------------------------------------------------------------


@pytest.mark.parametrize("text, key", [
    ("mediamtx:\n  api_password: 12345\n", "mediamtx.api_password"),
    ("security:\n  jwt_secret_key: [topsecret]\n", "security.jwt_secret_key"),
])
def test_secrets_are_masked_in_messages(tmp_path: Path, text: str, key: str) -> None:
    error = load_error(write_config(tmp_path, text))
    assert error.key == key
    assert error.value_repr == "***"
    assert "12345" not in error.line() and "topsecret" not in error.line()


def test_secrets_are_left_out_of_repr(tmp_path: Path) -> None:
    path = write_config(tmp_path, "mediamtx:\n  api_password: pw-value\nsecurity:\n  jwt_secret_key: jwt-value\n")
    config = load_config(path, {})
    assert config.mediamtx.api_password == "pw-value"
    assert "pw-value" not in repr(config) and "jwt-value" not in repr(config)


# --- paths ----------------------------------------------------------------------------------


def test_relative_paths_resolve_against_the_file_directory(tmp_path: Path) -> None:
    conf_dir = tmp_path / "etc"
    conf_dir.mkdir()
    path = write_config(conf_dir, """\
        server:
          state_dir: state
        security:
          jwt_secret_file: secrets/jwt
          api_keys:
            file: ../keys.json
        logging:
          file: logs/service.log
        mediamtx:
          recordings_path: state/recordings
          snapshots_path: ./media/snapshots
        """)
    config = load_config(path, {})
    assert config.server.state_dir == str(conf_dir / "state")
    assert config.security.jwt_secret_file == str(conf_dir / "secrets" / "jwt")
    assert config.security.api_keys.file == str(tmp_path / "keys.json")
    assert config.logging.file == str(conf_dir / "logs" / "service.log")
    assert config.mediamtx.recordings_path == str(conf_dir / "state" / "recordings")
    assert config.mediamtx.snapshots_path == str(conf_dir / "media" / "snapshots")
    assert not (conf_dir / "state").exists()  # loading creates nothing


def test_relative_paths_from_env_or_without_file_resolve_against_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(None, {"CAMERA_SERVICE_SERVER_STATE_DIR": "here"})
    assert config.server.state_dir == str(tmp_path / "here")
    assert config.security.jwt_secret_file == ""  # empty keeps its meaning (<state_dir>/jwt_secret)
    assert config.logging.file == ""


def test_path_that_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "plain-file").write_text("x")
    path = write_config(tmp_path, "server:\n  state_dir: plain-file/state\n")
    error = load_error(path)
    assert error.key == "server.state_dir"
    assert "cannot be created" in error.problem


def test_file_path_naming_a_directory(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    error = load_error(write_config(tmp_path, "security:\n  api_keys:\n    file: keys\n"))
    assert error.key == "security.api_keys.file" and "directory" in error.problem


# --- cross-key rules and per-key constraints ------------------------------------------------

RULE_CASES = [
    # (yaml, key, problem fragment)
    ("http_health:\n  port: 8002\n", "http_health.port", "must differ from server.port"),
    ("server:\n  host: 127.0.0.1\nhttp_health:\n  host: 0.0.0.0\n  port: 8002\n",
     "http_health.port", "must differ from server.port"),
    ("mediamtx:\n  hls_port: 8554\n", "mediamtx.hls_port", "must differ from mediamtx.rtsp_port"),
    ("recording:\n  segment_duration: 60\n  part_duration: 60\n",
     "recording.part_duration", "must be less than recording.segment_duration (60)"),
    ("mediamtx:\n  run_on_demand_start_timeout: 20\n",
     "recording.start_timeout", "must be >= mediamtx.run_on_demand_start_timeout + 2 (22)"),
    ("mediamtx:\n  run_on_demand_close_after: 0\n",
     "mediamtx.run_on_demand_close_after", "must be an integer from 1 to 3600"),
    ("mediamtx:\n  run_on_demand_start_timeout: 2.5\n",
     "mediamtx.run_on_demand_start_timeout", "must be an integer from 1 to 3600"),
    ("storage:\n  warn_percent: 85\n", "storage.warn_percent", "must be less than storage.block_percent (85)"),
    ("storage:\n  block_percent: 100\n", "storage.block_percent", "must be an integer from 1 to 99"),
    ("retention_policy:\n  type: size\n", "retention_policy.max_size_gb", "when retention_policy.type is size"),
    ("retention_policy:\n  max_age_days: null\n", "retention_policy.max_age_days", "when retention_policy.type is age"),
    ("retention_policy:\n  max_size_gb: 101\n", "retention_policy.max_size_gb", "<= 100"),
    ("snapshots:\n  quality: 0\n", "snapshots.quality", "must be an integer from 1 to 100"),
    ("camera:\n  device_range: [0, 256]\n", "camera.device_range", "from 0 to 255"),
    ("camera:\n  target_resolution: 1281x720\n", "camera.target_resolution", "even W from 16 to 7680"),
    ("camera:\n  target_fps: 121\n", "camera.target_fps", "must be an integer from 1 to 120"),
    ("encoding:\n  gop_seconds: 0.2\n", "encoding.gop_seconds", "must be a number from 0.25 to 10"),
    ("encoding:\n  bitrate_kbps: 99\n", "encoding.bitrate_kbps", "must be an integer from 100 to 50000"),
    ("camera:\n  format_preference: [MJPG, RGB3]\n", "camera.format_preference[1]", "must be one of MJPG"),
    ("camera:\n  overrides: {cam0: {format: MJPG, resolution: 640x480, fps: 30}}\n",
     "camera.overrides.cam0", "^camera[0-9]+$"),
    ("camera:\n  overrides: {camera0: {format: XVID, resolution: 640x480, fps: 30}}\n",
     "camera.overrides.camera0.format", "must be one of"),
    ("camera:\n  overrides: {camera0: {format: MJPG, resolution: 640x480}}\n",
     "camera.overrides.camera0.fps", "is required"),
    ("virtual_cameras: [{id: camera3}]\n", "virtual_cameras[0].id", "outside camera.device_range [0, 9]"),
    ("virtual_cameras: [{id: camera100}, {id: camera100}]\n", "virtual_cameras[1].id", "declared twice"),
    ("virtual_cameras: [{id: camera100, pattern: plasma}]\n", "virtual_cameras[0].pattern", "must be one of"),
    ("virtual_cameras: [{id: camera100, size: 4096x2160}]\n", "virtual_cameras[0].size", "3840"),
    ("virtual_cameras: [{id: camera100, rate: 61}]\n", "virtual_cameras[0].rate", "from 1 to 60"),
    ("virtual_cameras: [{id: camera100, colour: red}]\n", "virtual_cameras[0].colour", "unknown key"),
    ("virtual_cameras: [{name: x}]\n", "virtual_cameras[0].id", "is required"),
    ("camera:\n  max_cameras: 1\nvirtual_cameras: [{id: camera100}, {id: camera101}]\n",
     "virtual_cameras", "at most camera.max_cameras (1)"),
    ("mediamtx:\n  snapshots_path: /var/lib/camera-service/recordings/snaps\n",
     "mediamtx.snapshots_path", "must not lie inside mediamtx.recordings_path"),
    ("mediamtx:\n  snapshots_path: /var/lib/camera-service/recordings\n",
     "mediamtx.snapshots_path", "must differ from mediamtx.recordings_path"),
    ("server:\n  state_dir: /var/lib/camera-service/recordings/state\n",
     "server.state_dir", "must not lie inside mediamtx.recordings_path"),
    ("mediamtx:\n  recordings_path: /srv/my recordings\n", "mediamtx.recordings_path", "may contain only"),
    ("tools:\n  ffmpeg: ffmpeg -y\n", "tools.ffmpeg", "shell metacharacters"),
    ("tools:\n  ffprobe: ffprobe;reboot\n", "tools.ffprobe", "shell metacharacters"),
    ("external_discovery:\n  generic:\n    network_ranges: [10.0.0.0/22]\n",
     "external_discovery.generic.network_ranges", "more than external_discovery.max_hosts (1024)"),
    ("external_discovery:\n  skydio:\n    network_ranges: [192.168.42.1/24]\n",
     "external_discovery.skydio.network_ranges[0]", "CIDR"),
    ("external_discovery:\n  generic:\n    ports: [554, 0]\n",
     "external_discovery.generic.ports[1]", "from 1 to 65535"),
    ("external_discovery:\n  skydio:\n    eo_path: subject\n", "external_discovery.skydio.eo_path", "starts with /"),
    ("external_discovery:\n  candidates: ['http://192.0.2.1/stream']\n",
     "external_discovery.candidates[0]", "rtsp://"),
    ("external_discovery:\n  scan_interval: -1\n", "external_discovery.scan_interval", ">= 0"),
    ("camera:\n  poll_interval: 0\n", "camera.poll_interval", "must be a number > 0"),
    ("server:\n  websocket_path: ws\n", "server.websocket_path", "starts with /"),
    ("http_health:\n  metrics_endpoint: metrics\n", "http_health.metrics_endpoint", "starts with /"),
    ("server:\n  max_connections: 0\n", "server.max_connections", "must be an integer >= 1"),
    ("security:\n  rate_limit_requests: 0\n", "security.rate_limit_requests", "must be an integer >= 1"),
    ("logging:\n  level: verbose\n", "logging.level", "one of debug, info, warn, error, critical"),
    ("logging:\n  format: xml\n", "logging.format", "one of text, json"),
    ("security:\n  api_keys:\n    enabled: maybe\n", "security.api_keys.enabled", "one of auto, true, false"),
]


@pytest.mark.parametrize("text, key, fragment", RULE_CASES, ids=[case[1] for case in RULE_CASES])
def test_rule_violations(tmp_path: Path, text: str, key: str, fragment: str) -> None:
    path = write_config(tmp_path, text)
    error = load_error(path)
    assert error.key == key, error.line()
    assert fragment in error.problem, error.line()
    assert error.line().startswith(f"camera-service: config error: {key}: ")


def test_rule_error_names_the_origin_of_the_key(tmp_path: Path) -> None:
    error = load_error(None, {"CAMERA_SERVICE_MEDIAMTX_RUN_ON_DEMAND_START_TIMEOUT": "20"})
    assert error.key == "recording.start_timeout" and error.origin == "default"
    assert error.line().endswith("got 15.0 (from default)")


def test_listeners_on_different_addresses_may_share_a_port(tmp_path: Path) -> None:
    path = write_config(tmp_path, "server:\n  host: 127.0.0.1\nhttp_health:\n  host: 192.0.2.1\n  port: 8002\n")
    assert load_config(path, {}).http_health.port == 8002
    endpoint = write_config(tmp_path, "server:\n  endpoint: 'unix:/run/cs.sock'\nhttp_health:\n  port: 8002\n", "b.yaml")
    assert load_config(endpoint, {}).server.endpoint == "unix:/run/cs.sock"


def test_overrides_and_virtual_cameras_are_typed_and_read_only(tmp_path: Path) -> None:
    path = write_config(tmp_path, """\
        camera:
          overrides:
            camera0: {format: MJPG, resolution: 1920x1080, fps: 30}
        virtual_cameras:
          - {id: camera50, name: Bars, pattern: smptehdbars, size: 640x480, rate: 15.0}
        """)
    config = load_config(path, {})
    assert config.camera.overrides["camera0"] == CameraOverride(format="MJPG", resolution="1920x1080", fps=30.0)
    with pytest.raises(TypeError):
        config.camera.overrides["camera1"] = config.camera.overrides["camera0"]  # type: ignore[index]
    camera = config.virtual_cameras[0]
    assert (camera.id, camera.name, camera.pattern, camera.size, camera.rate) == (
        "camera50", "Bars", "smptehdbars", "640x480", 15,
    )
    assert (camera.width, camera.height) == (640, 480)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.server.port = 1  # type: ignore[misc]


def test_api_keys_enabled_accepts_yaml_booleans(tmp_path: Path) -> None:
    path = write_config(tmp_path, "security:\n  api_keys:\n    enabled: false\n")
    assert load_config(path, {}).security.api_keys.enabled == "false"


def test_retention_limits_may_be_unset_when_not_required(tmp_path: Path) -> None:
    path = write_config(tmp_path, "retention_policy:\n  type: manual\n  max_age_days: null\n")
    policy = load_config(path, {}).retention_policy
    assert policy.max_age_days is None and policy.max_size_gb is None


# --- the checker CLI ------------------------------------------------------------------------


def _run_check(path: str) -> subprocess.CompletedProcess[str]:
    environ = {name: value for name, value in os.environ.items() if not name.startswith("CAMERA_SERVICE_")}
    return subprocess.run(
        [sys.executable, "-m", "camera_service.config.check", path],
        cwd=REPO, env=environ, capture_output=True, text=True, timeout=60,
    )


def test_check_module_reports_a_bad_file_and_exits_78(tmp_path: Path) -> None:
    path = write_config(tmp_path, "mediamtx:\n  api_port: 99999\n")
    result = _run_check(path)
    assert result.returncode == EX_CONFIG == 78
    assert result.stdout == ""
    assert result.stderr == (
        f"camera-service: config error: mediamtx.api_port: must be an integer from 1 to 65535, got 99999"
        f" (from {path})\n"
    )


def test_check_module_accepts_the_shipped_file() -> None:
    result = _run_check(str(SHIPPED))
    assert (result.returncode, result.stdout, result.stderr) == (0, "ok\n", "")
