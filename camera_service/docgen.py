"""Generated operator documentation: the configuration and API references.

``docs/configuration.md`` is rendered from ``camera_service.config.schema.SCHEMA`` and
``docs/api-reference.md`` from ``camera_service.roles`` (the 34 methods and their minimum
roles), ``camera_service.events`` (topics), ``camera_service.rpc.errors`` (codes) and the
method table below. Both files are checked in; a test regenerates them in memory and
fails when they differ, so a schema or registry change without ``--write`` is caught::

    python -m camera_service.docgen --write    # regenerate both files
    python -m camera_service.docgen --check    # exit 1 and show a diff when out of date

The parameter tables below restate api.md §4 (the OpenRPC file is not shipped); the
test suite compares them with the ``Param`` declarations of every registered handler.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from camera_service.config.schema import ENV_ALIASES, SCHEMA, SchemaEntry
from camera_service.events import NOTIFICATION_NAMES, TOPICS
from camera_service.roles import METHOD_ROLES, PERMISSIONS, READINESS_EXEMPT, ROLES
from camera_service.rpc import errors as rpc_errors

GENERATOR = "python -m camera_service.docgen --write"
CONFIG_DOC = "configuration.md"
API_DOC = "api-reference.md"

# --- configuration reference ----------------------------------------------------------

# One line per section; a section the schema gains later renders without one.
SECTION_TITLES: dict[str, str] = {
    "server": "API listener: WebSocket JSON-RPC on `websocket_path` and file downloads under `/files/`.",
    "security": "Authentication, rate limiting and allowed browser origins.",
    "security.api_keys": "API keys for scripts and services (managed with `camera-service-admin keys`).",
    "notifications": "Events pushed to WebSocket clients.",
    "notifications.real_time": "Periodic progress events.",
    "http_health": "Separate plain-HTTP listener for health checks and Prometheus metrics.",
    "logging": "Service log output.",
    "tools": "External programs. Names without `/` are looked up in `PATH`; no arguments allowed.",
    "camera": "USB camera discovery, capability probing and streaming-mode choice.",
    "virtual_cameras": "FFmpeg test-pattern cameras.",
    "encoding": "H.264 encoding of camera streams published to MediaMTX.",
    "mediamtx": "The MediaMTX instance that publishes streams and writes recordings.",
    "recording": "Recordings (written by MediaMTX, or by FFmpeg directly).",
    "snapshots": "JPEG snapshots.",
    "storage": "Free-space levels and permissions of the media directories.",
    "retention_policy": "Automatic deletion of old recordings and snapshots.",
    "external_discovery": "Discovery of external RTSP streams. Only the hosts and URLs named here are probed.",
    "external_discovery.skydio": "The Skydio scanner.",
    "external_discovery.generic": "The generic RTSP scanner.",
}

_CONFIG_INTRO = """\
The service reads one YAML file, given by `twistd camera-service --config PATH`
(default `/etc/camera-service/camera-service.yaml`, which the Debian package installs as
a conffile; the source tree's copy is `conf/camera-service.yaml`). Every key below is in
that file with a comment. A key that is missing keeps its default; an unknown key is an
error.

- **Precedence:** built-in defaults < the file < the environment.
- **Environment:** every key can be set by `CAMERA_SERVICE_<SECTION>_<KEY>` (the dotted
  key upper-cased with `.` replaced by `_`; each key's variable is listed below).
  Strings are taken verbatim; numbers, lists and maps are YAML flow values, e.g.
  `CAMERA_SERVICE_CAMERA_DEVICE_RANGE='[0, 3]'`; booleans accept `true`, `false`, `1`,
  `0`. A `CAMERA_SERVICE_*` variable that names no key is an error. Under systemd, set
  them in a drop-in (`systemctl edit camera-service`, `Environment=...`).
- **Relative paths** in the file are resolved against the file's directory.
- **Durations** are seconds unless the key name says otherwise (`_days`, `_mb`,
  `_kbps`, `_gb`).
- **Validation** happens before anything starts. The first problem ends the process with
  exit status 78 (the unit does not restart on it) and one line naming the key, the
  problem, the value and where it came from; secret values are shown as `***`:

  ```
  camera-service: config error: mediamtx.api_port: must be an integer from 1 to 65535, got 99999 (from CAMERA_SERVICE_MEDIAMTX_API_PORT)
  ```

  Check a file without starting the service:
  `/opt/camera-service/bin/python -m camera_service.config.check /etc/camera-service/camera-service.yaml`
  (`make check-config` in a source checkout).

**What the Debian package changes.** The packaged file sets `storage.group:
camera-media` (the schema default `""` means the process's own group); everything else
is as listed here. The unit makes the file system read-only except
`/var/lib/camera-service`: if `mediamtx.recordings_path`, `mediamtx.snapshots_path`,
`server.state_dir`, `security.api_keys.file` or `logging.file` point elsewhere, add that
directory with a drop-in:

```
# systemctl edit camera-service
[Service]
ReadWritePaths=/srv/camera-recordings
```

A different recordings root must also be changed in MediaMTX's `pathDefaults.recordPath`
(see `troubleshooting.md`) and in the MediaMTX unit's `ReadWritePaths=`.
"""


def _yaml_scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return value if value else '""'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_yaml_scalar(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_yaml_scalar(v)}" for k, v in value.items()) + "}"
    return str(value)


def _section_of(entry: SchemaEntry) -> str:
    parts = entry.key.split(".")
    return ".".join(parts[:-1]) if len(parts) > 1 else entry.key


def _code(text: str) -> str:
    """Inline code that survives backticks in the text."""
    fence = "``" if "`" in text else "`"
    pad = " " if "`" in text else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def render_config_reference(schema: Sequence[SchemaEntry] = SCHEMA) -> str:
    aliases: dict[str, list[str]] = {}
    for name, key in ENV_ALIASES.items():
        aliases.setdefault(key, []).append(name)
    out: list[str] = [
        "# Configuration reference",
        "",
        (f"<!-- Generated by `{GENERATOR}` from camera_service.config.schema.SCHEMA."
         " Do not edit by hand. -->"),
        "",
        _CONFIG_INTRO,
        "## Sections",
        "",
    ]
    sections: list[str] = []
    for entry in schema:
        section = _section_of(entry)
        if section not in sections:
            sections.append(section)
    for section in sections:
        count = sum(1 for entry in schema if _section_of(entry) == section)
        anchor = section.replace(".", "")
        out.append(f"- [`{section}`](#{anchor}) ({count} key{'s' if count != 1 else ''})")
    out.append("")
    for section in sections:
        out.append(f"## {section}")
        out.append("")
        title = SECTION_TITLES.get(section)
        if title:
            out += [title, ""]
        for entry in schema:
            if _section_of(entry) != section:
                continue
            out.append(f"### `{entry.key}`")
            out.append("")
            out.append(entry.description)
            out.append("")
            out.append(f"- Default: {_code(_yaml_scalar(entry.default))}")
            out.append(f"- Valid values: {entry.requirement}")
            env = [entry.env_name] + aliases.get(entry.key, [])
            env_text = ", ".join(f"`{name}`" for name in env)
            if len(env) > 1:
                env_text += f" (`{env[-1]}` wins)"
            out.append(f"- Environment: {env_text}")
            if entry.secret:
                out.append("- Secret: never logged; shown as `***` in error messages."
                           " Prefer the environment or a file over writing it here.")
            out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


# --- API reference ------------------------------------------------------------------------

_KIND_NAMES = {"string": "string", "integer": "integer", "number": "number",
               "boolean": "boolean", "object": "object", "string_array": "string[]"}


@dataclass(frozen=True)
class ParamDoc:
    name: str
    kind: str  # the vocabulary of camera_service.rpc.params.Param.kind
    required: bool
    rules: str


@dataclass(frozen=True)
class MethodDoc:
    summary: str
    result: str
    params: tuple[ParamDoc, ...] = ()


_DEVICE = ParamDoc("device", "string", True, "camera id, `^camera[0-9]+$`")
_LIMIT = ParamDoc("limit", "integer", False, "1–1000, default 50")
_OFFSET = ParamDoc("offset", "integer", False, "≥ 0, default 0")
_FILE_RULE = "`^[A-Za-z0-9._-]{1,255}$`, no `..`"

METHOD_DOCS: dict[str, MethodDoc] = {
    "ping": MethodDoc("Connectivity check; any parameters are ignored.", 'the string `"pong"`'),
    "authenticate": MethodDoc(
        "Authenticates the connection with a JWT or an API key (see security.md). Later calls"
        " on the connection carry no credentials.",
        "`{authenticated, role, permissions, expires_at, session_id}`",
        (ParamDoc("auth_token", "string", True,
                  "a JWT (HS256), or an API key `csk_<key_id>_<secret>` when API keys are enabled"),)),
    "get_camera_list": MethodDoc(
        "All known cameras, ordered by number.",
        "`{cameras: [{device, status, name, resolution, fps, streams}], total, connected}`"),
    "get_camera_status": MethodDoc(
        "Status of one camera, with its stream metrics and probed capabilities.",
        "a camera object with `metrics` and, once probed, `capabilities`", (_DEVICE,)),
    "get_camera_capabilities": MethodDoc(
        "Formats, resolutions and frame rates of one camera.",
        "`{device, formats, resolutions, fps_options, frame_rates, validation_status}`", (_DEVICE,)),
    "take_snapshot": MethodDoc(
        "Captures a JPEG from a camera (through MediaMTX when the stream is live, from the"
        " idle device otherwise).",
        "`{device, filename, status, timestamp, file_size, file_path}`",
        (_DEVICE, ParamDoc("filename", "string", False,
                           f"{_FILE_RULE}; `.jpg` is appended unless it ends in .jpg/.jpeg"))),
    "start_recording": MethodDoc(
        "Starts recording a camera; answers once the first segment exists.",
        "`{device, filename, status, start_time, format}`",
        (_DEVICE,
         ParamDoc("duration", "integer", False, "seconds, 1–86400; absent = until stop_recording"),
         ParamDoc("format", "string", False, "`fmp4` (default) or `mp4`; `mkv` is refused"))),
    "stop_recording": MethodDoc(
        "Stops a camera's recording.",
        "`{device, filename, status, start_time, end_time, duration, file_size, format}`",
        (_DEVICE,)),
    "list_recordings": MethodDoc(
        "Recording files, newest first, paged.",
        "`{files: [{filename, file_size, modified_time, download_url}], total, limit, offset}`",
        (_LIMIT, _OFFSET)),
    "list_snapshots": MethodDoc(
        "Snapshot files, newest first, paged.",
        "`{files: [{filename, file_size, modified_time, download_url}], total, limit, offset}`",
        (_LIMIT, _OFFSET)),
    "get_recording_info": MethodDoc(
        "Size, duration and start time of one recording.",
        "`{filename, file_size, duration, created_time, download_url}`",
        (ParamDoc("filename", "string", True, f"stem or full name; {_FILE_RULE}"),)),
    "get_snapshot_info": MethodDoc(
        "Size and capture time of one snapshot.",
        "`{filename, file_size, created_time, download_url}`",
        (ParamDoc("filename", "string", True, f"full name; {_FILE_RULE}"),)),
    "delete_recording": MethodDoc(
        "Deletes a recording file (not one being recorded).",
        "`{filename, deleted, message}`",
        (ParamDoc("filename", "string", True, f"stem or full name; {_FILE_RULE}"),)),
    "delete_snapshot": MethodDoc(
        "Deletes a snapshot file.",
        "`{filename, deleted, message}`",
        (ParamDoc("filename", "string", True, f"full name; {_FILE_RULE}"),)),
    "start_streaming": MethodDoc(
        "Opens a streaming session; MediaMTX starts the camera's publisher when the first"
        " viewer connects.",
        "`{device, stream_name, stream_url, status, start_time, auto_close_after}`", (_DEVICE,)),
    "stop_streaming": MethodDoc(
        "Closes the streaming session; never kicks viewers or stops a recording.",
        "`{device, stream_name, status, start_time, end_time, duration, stream_continues}`",
        (_DEVICE,)),
    "get_stream_url": MethodDoc(
        "The camera's RTSP URL and whether opening it will deliver video.",
        "`{device, stream_name, stream_url, available, active_consumers, stream_status}`",
        (_DEVICE,)),
    "get_stream_status": MethodDoc(
        "State of the camera's MediaMTX path and publisher.",
        "`{device, stream_name, status, ready, ffmpeg_process, mediamtx_path, metrics}`",
        (_DEVICE,)),
    "get_streams": MethodDoc(
        "Every path MediaMTX reports.",
        "array of `{name, source, ready, readers, bytes_sent}`"),
    "get_metrics": MethodDoc(
        "Request, system, camera and stream metrics.",
        "`{timestamp, system_metrics, camera_metrics, recording_metrics, stream_metrics}`"),
    "get_status": MethodDoc(
        "Overall service health and component states.",
        "`{status, uptime, version, components}`"),
    "get_system_status": MethodDoc(
        "Start-up readiness: `starting`, `partial` or `ready`.",
        "`{status, message, available_cameras, discovery_active}`"),
    "get_server_info": MethodDoc(
        "Server identity, runtime and limits.",
        "`{name, version, build_date, python_version, architecture, capabilities,"
        " supported_formats, max_cameras}`"),
    "get_storage_info": MethodDoc(
        "Disk usage of the recordings filesystem and the size of the media files.",
        "`{total_space, used_space, available_space, usage_percentage, recordings_size,"
        " snapshots_size, low_space_warning}`"),
    "set_retention_policy": MethodDoc(
        "Replaces the retention policy while the service runs.",
        "`{policy_type, max_age_days, max_size_gb, enabled, message}`",
        (ParamDoc("policy_type", "string", True, "`age`, `size` or `manual`"),
         ParamDoc("max_age_days", "integer", False, "> 0; required when policy_type is `age`"),
         ParamDoc("max_size_gb", "number", False, "> 0 and ≤ 100; required when policy_type is `size`"),
         ParamDoc("enabled", "boolean", True, ""))),
    "cleanup_old_files": MethodDoc(
        "Runs one retention sweep now.",
        "`{cleanup_executed, files_deleted, space_freed, message}`"),
    "subscribe_events": MethodDoc(
        "Subscribes the connection to event topics (listed below).",
        "`{subscribed, topics, filters}`",
        (ParamDoc("topics", "string_array", True, "non-empty; each a topic or notification name"),
         ParamDoc("filters", "object", False,
                  "any of `device`, `topic`, `timestamp_after`, `timestamp_before`"))),
    "unsubscribe_events": MethodDoc(
        "Removes topics from the connection's subscription; all of them when `topics` is absent.",
        "`{unsubscribed, topics}`",
        (ParamDoc("topics", "string_array", False, "each a known topic; absent = all"),)),
    "get_subscription_stats": MethodDoc(
        "Subscription counts for the server and this connection.",
        "`{global_stats, client_topics, client_id}`"),
    "discover_external_streams": MethodDoc(
        "Scans for external RTSP streams (needs `external_discovery.enabled`).",
        "`{discovered_streams, skydio_streams, generic_streams, scan_timestamp,"
        " total_found, discovery_options, scan_duration, errors}`",
        (ParamDoc("skydio_enabled", "boolean", False, "default true"),
         ParamDoc("generic_enabled", "boolean", False, "default false"),
         ParamDoc("force_rescan", "boolean", False, "default false"),
         ParamDoc("include_offline", "boolean", False, "default false"))),
    "add_external_stream": MethodDoc(
        "Adds an external RTSP stream and gives it a MediaMTX proxy path.",
        "`{stream_url, stream_name, stream_type, status, timestamp}`",
        (ParamDoc("stream_url", "string", True, "`rtsp://` or `rtsps://` with a host"),
         ParamDoc("stream_name", "string", True, "non-empty, at most 255 characters"),
         ParamDoc("stream_type", "string", False,
                  "default `generic_rtsp`; non-empty, at most 64 characters"))),
    "remove_external_stream": MethodDoc(
        "Removes an external stream (added or discovered); an added one also loses its proxy path.",
        "`{stream_url, status, timestamp}`",
        (ParamDoc("stream_url", "string", True, "non-empty; the URL as added, or its masked form"),)),
    "get_external_streams": MethodDoc(
        "Every added or discovered external stream.",
        "`{external_streams, skydio_streams, generic_streams, total_count, timestamp}`"),
    "set_discovery_interval": MethodDoc(
        "Sets the periodic external-discovery interval; 0 = only on request.",
        "`{scan_interval, status, message, timestamp}`",
        (ParamDoc("scan_interval", "integer", True, "seconds, ≥ 0"),)),
}

# Code constant name in camera_service.rpc.errors -> when it is used.
ERROR_DOCS: dict[str, str] = {
    "PARSE_ERROR": "The frame is not valid JSON (or not UTF-8).",
    "INVALID_REQUEST": "Not a JSON-RPC 2.0 request object: batch, wrong `jsonrpc`, bad `params`, binary frame.",
    "METHOD_NOT_FOUND": "Unknown method.",
    "INVALID_PARAMS": "A parameter failed validation; `data.param` and `data.rule` say which and why.",
    "INTERNAL_ERROR": "Unexpected failure; `data.request_id` is also in the service log.",
    "AUTH": "Not authenticated (`auth_required`), bad credential (`auth_failed`) or expired session (`token_expired`).",
    "PERMISSION_DENIED": "The session's role is below the method's minimum role.",
    "NOT_FOUND": "The camera, file, stream or external stream does not exist.",
    "INVALID_STATE": "Not allowed now: already recording, storage critical, file in use, ...",
    "UNSUPPORTED": "Feature disabled (e.g. external discovery) or unsupported format.",
    "RATE_LIMITED": "Too many messages on this connection; `data.retry_after_ms`.",
    "DEPENDENCY_FAILED": "MediaMTX, FFmpeg or V4L2 failed, or the service is still starting"
                         " (`service_initializing`).",
}


def error_codes() -> dict[str, int]:
    """Every JSON-RPC error code constant of ``camera_service.rpc.errors``."""
    return {name: value for name, value in vars(rpc_errors).items()
            if name.isupper() and isinstance(value, int) and not isinstance(value, bool)
            and -32768 <= value <= -32000}


_API_INTRO = """\
The API is JSON-RPC 2.0 over a WebSocket: `ws://<host>:8002/ws` (`server.port`,
`server.websocket_path`), one JSON object per text frame, no batches. Requests on one
connection may be answered out of order; match responses by `id`. The full contract,
with every result field and error case, is the project's API specification (`api.md`);
this page is the quick reference for operators and client authors.

A connection starts unauthenticated: only `ping` and `authenticate` may be called until
`authenticate` succeeds (see `security.md` for tokens, API keys and roles). Until the
service has finished starting, every method except those marked *exempt* below answers
`-32050` with reason `service_initializing`.

```
→ {"jsonrpc":"2.0","method":"authenticate","params":{"auth_token":"eyJ..."},"id":1}
← {"jsonrpc":"2.0","result":{"authenticated":true,"role":"operator","permissions":["view","control"],"expires_at":"...","session_id":"..."},"id":1}
→ {"jsonrpc":"2.0","method":"get_camera_status","params":{"device":"camera0"},"id":2}
```

From a shell: `camera-service-cli --token "$TOKEN" get_camera_status '{"device": "camera0"}'`.
"""


def _error_order(item: tuple[str, int]) -> tuple[int, int]:
    """-32700, then the other JSON-RPC codes ascending by magnitude, then the service's."""
    code = item[1]
    if code == rpc_errors.PARSE_ERROR:
        return (0, 0)
    return (1 if code <= -32600 else 2, -code)


def _role_text(role: str | None) -> str:
    return "none (no authentication)" if role is None else role


def render_api_reference() -> str:
    missing = [name for name in METHOD_ROLES if name not in METHOD_DOCS]
    extra = [name for name in METHOD_DOCS if name not in METHOD_ROLES]
    if missing or extra:
        raise ValueError(
            "camera_service.docgen.METHOD_DOCS and camera_service.roles.METHOD_ROLES disagree:"
            + (f" no description for {', '.join(missing)};" if missing else "")
            + (f" described but not a method: {', '.join(extra)};" if extra else ""))
    codes = error_codes()
    undocumented = sorted(set(codes) - set(ERROR_DOCS))
    if undocumented:
        raise ValueError(f"camera_service.docgen.ERROR_DOCS has no text for {', '.join(undocumented)}")

    out: list[str] = [
        "# API reference",
        "",
        (f"<!-- Generated by `{GENERATOR}` from camera_service.roles.METHOD_ROLES and the"
         " method table in camera_service/docgen.py. Do not edit by hand. -->"),
        "",
        _API_INTRO,
        "## Roles",
        "",
        "`viewer` < `operator` < `admin`: a higher role may call everything a lower one may.",
        "",
        "| Role | `permissions` in the authenticate result |",
        "|---|---|",
    ]
    for role_name in ROLES:
        permissions = json.dumps(PERMISSIONS[role_name], separators=(",", ":"))
        out.append(f"| `{role_name}` | `{permissions}` |")
    out += [
        "",
        f"## Methods ({len(METHOD_ROLES)})",
        "",
        "| # | Method | Minimum role | While starting |",
        "|---|---|---|---|",
    ]
    for number, (name, role) in enumerate(METHOD_ROLES.items(), start=1):
        gate = "exempt" if name in READINESS_EXEMPT else "`-32050`"
        out.append(f"| {number} | [`{name}`](#{name}) | {_role_text(role)} | {gate} |")
    out += [
        "| — | HTTP `GET /files/recordings/{name}`, `/files/snapshots/{name}` (port 8002) | viewer | |",
        "| — | HTTP health endpoints and `/metrics` (port 8003) | none | |",
        "",
    ]
    for name, role in METHOD_ROLES.items():
        doc = METHOD_DOCS[name]
        out += [f"### `{name}`", "", doc.summary, ""]
        exempt = " Answers while the service is starting." if name in READINESS_EXEMPT else ""
        out.append(f"- Minimum role: {_role_text(role)}.{exempt}")
        if doc.params:
            out.append("- Parameters:")
            out.append("")
            out.append("  | Name | Type | Required | Rules |")
            out.append("  |---|---|---|---|")
            for param in doc.params:
                required = "yes" if param.required else "no"
                out.append(f"  | `{param.name}` | {_KIND_NAMES[param.kind]} | {required} |"
                           f" {param.rules} |")
            out.append("")
        else:
            out.append("- Parameters: none.")
        out.append(f"- Result: {doc.result}.")
        out.append("")
    out += [
        "## Notifications and event topics",
        "",
        ("`subscribe_events` accepts these topics and notification names; anything else is"
         " `-32602`. Each arrives as a JSON-RPC notification whose `method` is the topic and"
         " whose `params` carry a `timestamp`. `camera_status_update` and"
         " `recording_status_update` also go to every authenticated connection when"
         " `notifications.broadcast_to_all` is true."),
        "",
        "Notification names: " + ", ".join(f"`{name}`" for name in NOTIFICATION_NAMES) + ".",
        "",
        "Topics:",
        "",
    ]
    for topic in TOPICS:
        out.append(f"- `{topic}`")
    out += [
        "",
        "## Error codes",
        "",
        "Every error has `data.reason`, `data.details` and `data.suggestion`.",
        "",
        "| Code | Constant | When |",
        "|---|---|---|",
    ]
    for const, code in sorted(codes.items(), key=_error_order):
        out.append(f"| {code} | `{const}` | {ERROR_DOCS[const]} |")
    return "\n".join(out).rstrip("\n") + "\n"


# --- command line -------------------------------------------------------------------------

def default_docs_dir() -> Path:
    """``docs/`` of the source checkout this module lives in."""
    return Path(__file__).resolve().parent.parent / "docs"


def generated(docs_dir: Path) -> dict[Path, str]:
    return {docs_dir / CONFIG_DOC: render_config_reference(),
            docs_dir / API_DOC: render_api_reference()}


def check(docs_dir: Path, out: Any = sys.stdout) -> int:
    stale = 0
    for path, text in generated(docs_dir).items():
        try:
            current = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            current = ""
        if current != text:
            stale += 1
            out.writelines(difflib.unified_diff(current.splitlines(keepends=True),
                                                text.splitlines(keepends=True),
                                                f"{path} (checked in)", f"{path} (generated)"))
    if stale:
        out.write(f"{stale} generated file(s) out of date: run {GENERATOR}\n")
        return 1
    return 0


def write(docs_dir: Path, out: Any = sys.stdout) -> int:
    docs_dir.mkdir(parents=True, exist_ok=True)
    for path, text in generated(docs_dir).items():
        try:
            unchanged = path.read_text(encoding="utf-8") == text
        except FileNotFoundError:
            unchanged = False
        if not unchanged:
            path.write_text(text, encoding="utf-8")
        out.write(f"{'unchanged' if unchanged else 'wrote'} {path}\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m camera_service.docgen",
        description=f"Regenerate or check {CONFIG_DOC} and {API_DOC}.")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="exit 1 if a file is out of date")
    mode.add_argument("--write", action="store_true", help="rewrite the files")
    parser.add_argument("--docs-dir", type=Path, default=None,
                        help="directory of the generated files (default: docs/ of the checkout)")
    args = parser.parse_args(argv)
    docs_dir = args.docs_dir or default_docs_dir()
    return write(docs_dir) if args.write else check(docs_dir)


if __name__ == "__main__":
    sys.exit(main())
