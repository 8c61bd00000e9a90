"""Rules that involve more than one key (media.md §8.5), and the "can this path be created"
check. All run on coerced values with paths already absolute.

Each rule raises ``RuleViolation`` naming the key the operator has to change; the loader adds
that key's origin.
"""

from __future__ import annotations

import ipaddress
import os
import re
from typing import Any, Callable, Mapping

from ._errors import RuleViolation
from ._kinds import Path, camera_number
from .schema import SCHEMA

Values = Mapping[str, Any]

# Binding one of these makes a listener take the port on every address, so it clashes with
# any other listener on that port (Linux refuses the second bind even with SO_REUSEADDR).
_WILDCARD_HOSTS = {"0.0.0.0", "::"}
_SAFE_PATH = re.compile(r"[A-Za-z0-9._/-]+")
_MEDIAMTX_PORTS = ("mediamtx.api_port", "mediamtx.rtsp_port", "mediamtx.hls_port", "mediamtx.webrtc_port")
_RESTRICTED_PATHS = ("server.state_dir", "mediamtx.recordings_path", "mediamtx.snapshots_path")


def _num(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


def _listeners(values: Values) -> None:
    # An endpoint string replaces host/port, and a disabled health listener binds nothing.
    if values["server.endpoint"] or not values["http_health.enabled"]:
        return
    if values["server.port"] != values["http_health.port"]:
        return
    hosts = {values["server.host"], values["http_health.host"]}
    if len(hosts) == 1 or hosts & _WILDCARD_HOSTS:
        raise RuleViolation(
            "http_health.port", "must differ from server.port when both listeners bind the same address",
            values["http_health.port"],
        )


def _mediamtx_ports(values: Values) -> None:
    # Extra to §8.5: MediaMTX serves all four on one host, so equal ports cannot both work.
    if not values["mediamtx.enabled"]:
        return
    seen: dict[int, str] = {}
    for key in _MEDIAMTX_PORTS:
        port = values[key]
        if port in seen:
            raise RuleViolation(key, f"must differ from {seen[port]}", port)
        seen[port] = key


def _recording_durations(values: Values) -> None:
    segment = values["recording.segment_duration"]
    if values["recording.part_duration"] >= segment:
        raise RuleViolation(
            "recording.part_duration", f"must be less than recording.segment_duration ({_num(segment)})",
            values["recording.part_duration"],
        )


def _start_timeout(values: Values) -> None:
    # The recording start waits for the on-demand publisher, plus margin for the first segment.
    needed = values["mediamtx.run_on_demand_start_timeout"] + 2
    if values["recording.start_timeout"] < needed:
        raise RuleViolation(
            "recording.start_timeout", f"must be >= mediamtx.run_on_demand_start_timeout + 2 ({needed})",
            values["recording.start_timeout"],
        )


def _storage_levels(values: Values) -> None:
    block = values["storage.block_percent"]
    if values["storage.warn_percent"] >= block:
        raise RuleViolation(
            "storage.warn_percent", f"must be less than storage.block_percent ({block})",
            values["storage.warn_percent"],
        )


def _retention(values: Values) -> None:
    rule = values["retention_policy.type"]
    if rule == "age" and values["retention_policy.max_age_days"] is None:
        raise RuleViolation(
            "retention_policy.max_age_days", "must be an integer >= 1 when retention_policy.type is age", None
        )
    if rule == "size" and values["retention_policy.max_size_gb"] is None:
        raise RuleViolation(
            "retention_policy.max_size_gb",
            "must be a number > 0 and <= 100 when retention_policy.type is size",
            None,
        )


def _virtual_cameras(values: Values) -> None:
    low, high = values["camera.device_range"]
    cameras = values["virtual_cameras"]
    for index, camera in enumerate(cameras):
        if low <= camera_number(camera.id) <= high:
            raise RuleViolation(
                f"virtual_cameras[{index}].id",
                f"number must lie outside camera.device_range [{low}, {high}]",
                camera.id,
            )
    limit = values["camera.max_cameras"]
    if len(cameras) > limit:
        raise RuleViolation(
            "virtual_cameras", f"must declare at most camera.max_cameras ({limit}) cameras",
            [camera.id for camera in cameras],
        )


def _inside(path: str, root: str) -> bool:
    return path != root and path.startswith(root.rstrip("/") + "/")


def _media_paths(values: Values) -> None:
    for key in _RESTRICTED_PATHS:
        # These go into MediaMTX's configuration and into command lines (media.md §0.4).
        if not _SAFE_PATH.fullmatch(values[key]):
            raise RuleViolation(key, "may contain only letters, digits and . _ / -", values[key])
    recordings = values["mediamtx.recordings_path"]
    snapshots = values["mediamtx.snapshots_path"]
    state = values["server.state_dir"]
    if snapshots == recordings:
        raise RuleViolation("mediamtx.snapshots_path", "must differ from mediamtx.recordings_path", snapshots)
    if _inside(snapshots, recordings):
        raise RuleViolation(
            "mediamtx.snapshots_path", "must not lie inside mediamtx.recordings_path", snapshots
        )
    if _inside(recordings, snapshots):
        raise RuleViolation(
            "mediamtx.recordings_path", "must not lie inside mediamtx.snapshots_path", recordings
        )
    # Media roots may lie inside the state directory (the default), not the other way round.
    for key, root in (("mediamtx.recordings_path", recordings), ("mediamtx.snapshots_path", snapshots)):
        if state == root:
            raise RuleViolation("server.state_dir", f"must differ from {key}", state)
        if _inside(state, root):
            raise RuleViolation("server.state_dir", f"must not lie inside {key}", state)


def host_count(network: str) -> int:
    """Hosts a range expands to: network and broadcast addresses excluded below /31 (§7.1)."""
    net = ipaddress.ip_network(network)
    if net.prefixlen < net.max_prefixlen - 1:
        return net.num_addresses - 2
    return net.num_addresses


def _discovery_hosts(values: Values) -> None:
    keys = ("external_discovery.skydio.network_ranges", "external_discovery.generic.network_ranges")
    total = sum(host_count(network) for key in keys for network in values[key])
    limit = values["external_discovery.max_hosts"]
    if total <= limit:
        return
    running = 0
    for key in keys:
        running += sum(host_count(network) for network in values[key])
        if running > limit:
            raise RuleViolation(
                key,
                f"all network_ranges together expand to {total} hosts,"
                f" more than external_discovery.max_hosts ({limit})",
                list(values[key]),
            )


CROSS_KEY_RULES: tuple[Callable[[Values], None], ...] = (
    _listeners,
    _mediamtx_ports,
    _recording_durations,
    _start_timeout,
    _virtual_cameras,
    _storage_levels,
    _retention,
    _media_paths,
    _discovery_hosts,
)


def check_cross_key(values: Values) -> None:
    for rule in CROSS_KEY_RULES:
        rule(values)


def _blocking_ancestor(path: str) -> str | None:
    """The nearest existing ancestor of ``path`` (itself included), if it is not a directory."""
    current = path
    while True:
        if os.path.exists(current):
            return None if os.path.isdir(current) else current
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent


def check_creatable(values: Values) -> None:
    """Paths that could never be created. Nothing is created here: loading has no side effects."""
    for entry in SCHEMA:
        if not isinstance(entry.kind, Path) or not values[entry.key]:
            continue
        path = values[entry.key]
        start = path
        if not entry.kind.directory:
            if os.path.isdir(path):
                raise RuleViolation(entry.key, "names a directory, not a file", path)
            start = os.path.dirname(path)
        blocker = _blocking_ancestor(start)
        if blocker is not None:
            raise RuleViolation(entry.key, f"cannot be created because {blocker} is not a directory", path)
