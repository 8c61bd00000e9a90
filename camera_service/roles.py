"""Roles, permissions and the method → minimum-role table (api.md §2.5, §2.6).

This is the one place the role table lives. The RPC dispatcher enforces it before
any handler runs, and the download endpoint uses ``VIEWER`` from here.
"""

from __future__ import annotations

from typing import Final

VIEWER: Final = "viewer"
OPERATOR: Final = "operator"
ADMIN: Final = "admin"

ROLES: Final[tuple[str, ...]] = (VIEWER, OPERATOR, ADMIN)
_RANK: Final[dict[str, int]] = {VIEWER: 1, OPERATOR: 2, ADMIN: 3}

PERMISSIONS: Final[dict[str, list[str]]] = {
    VIEWER: ["view"],
    OPERATOR: ["view", "control"],
    ADMIN: ["view", "control", "admin"],
}

# None means "no authentication needed".
METHOD_ROLES: Final[dict[str, str | None]] = {
    "ping": None,
    "authenticate": None,
    "get_camera_list": VIEWER,
    "get_camera_status": VIEWER,
    "get_camera_capabilities": VIEWER,
    "take_snapshot": OPERATOR,
    "start_recording": OPERATOR,
    "stop_recording": OPERATOR,
    "list_recordings": VIEWER,
    "list_snapshots": VIEWER,
    "get_recording_info": VIEWER,
    "get_snapshot_info": VIEWER,
    "delete_recording": ADMIN,
    "delete_snapshot": ADMIN,
    "start_streaming": OPERATOR,
    "stop_streaming": OPERATOR,
    "get_stream_url": VIEWER,
    "get_stream_status": VIEWER,
    "get_streams": VIEWER,
    "get_metrics": ADMIN,
    "get_status": ADMIN,
    "get_system_status": VIEWER,
    "get_server_info": VIEWER,
    "get_storage_info": ADMIN,
    "set_retention_policy": ADMIN,
    "cleanup_old_files": ADMIN,
    "subscribe_events": VIEWER,
    "unsubscribe_events": VIEWER,
    "get_subscription_stats": VIEWER,
    "discover_external_streams": OPERATOR,
    "add_external_stream": OPERATOR,
    "remove_external_stream": OPERATOR,
    "get_external_streams": VIEWER,
    "set_discovery_interval": ADMIN,
}

# Methods that answer while the service is still starting (api.md §8 step 7).
READINESS_EXEMPT: Final[frozenset[str]] = frozenset(
    {"ping", "authenticate", "get_system_status", "get_server_info"}
)


def is_role(value: object) -> bool:
    return isinstance(value, str) and value in _RANK


def role_allows(have: str, need: str | None) -> bool:
    """True when a session with role ``have`` may call a method needing ``need``."""
    if need is None:
        return True
    return _RANK.get(have, 0) >= _RANK[need]
