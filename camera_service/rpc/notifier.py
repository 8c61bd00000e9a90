"""Turns bus events into notifications for the connections that should get them.

Delivery rules are api.md §5.1: authenticated connections only (expired sessions
are reverted at send time), notification names and topics only to subscribers
whose filter matches, with ``notifications.broadcast_to_all`` as the one exception
for the two status notifications.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Protocol

from camera_service.events import (
    CAMERA_STATUS_UPDATE,
    RECORDING_STATUS_UPDATE,
    SYSTEM_HEALTH_UPDATE,
)
from camera_service.rpc.session import Session
from camera_service.timeutil import parse_rfc3339

# Producers put this in a payload's "streams" field; the notifier replaces it with
# the stream URLs built for each recipient's host (api.md §3.4).
STREAMS_FOR_RECIPIENT = object()

_BROADCASTABLE = frozenset({CAMERA_STATUS_UPDATE, RECORDING_STATUS_UPDATE})


class Recipient(Protocol):
    session: Session

    def notify(self, message: dict[str, Any]) -> None: ...


def filter_matches(flt: dict[str, Any], name: str, payload: dict[str, Any]) -> bool:
    """All present filter keys must match; a payload lacking a filtered key does not match."""
    if not flt:
        return True
    if "topic" in flt and flt["topic"] != name:
        return False
    if "device" in flt and payload.get("device") != flt["device"]:
        return False
    if "timestamp_after" in flt or "timestamp_before" in flt:
        stamp = payload.get("timestamp")
        if not isinstance(stamp, str):
            return False
        try:
            moment = parse_rfc3339(stamp)
        except ValueError:
            return False
        if "timestamp_after" in flt and not moment > parse_rfc3339(flt["timestamp_after"]):
            return False
        if "timestamp_before" in flt and not moment < parse_rfc3339(flt["timestamp_before"]):
            return False
    return True


class Notifier:
    def __init__(self, recipients: Callable[[], Iterable[Recipient]],
                 still_valid: Callable[[Any], bool], broadcast_to_all: bool,
                 stream_urls: Callable[[str, str], dict[str, str]]) -> None:
        self._recipients = recipients
        self._still_valid = still_valid
        self._broadcast_to_all = broadcast_to_all
        self._stream_urls = stream_urls

    def __call__(self, name: str, payload: dict[str, Any]) -> None:
        if name == "system.health":
            self._deliver("system.health", payload)
            self._deliver(SYSTEM_HEALTH_UPDATE, payload)
        else:
            self._deliver(name, payload)

    def _deliver(self, name: str, payload: dict[str, Any]) -> None:
        personalised = payload.get("streams") is STREAMS_FOR_RECIPIENT
        for recipient in list(self._recipients()):
            session = recipient.session
            if session.identity is None or session.closed:
                continue
            if not self._wants(session, name, payload):
                continue
            if not self._still_valid(session.identity):
                session.revert_to_unauthenticated()
                continue
            params = payload
            if personalised:
                params = dict(payload)
                params["streams"] = self._stream_urls(payload["device"], session.host)
            recipient.notify({"jsonrpc": "2.0", "method": name, "params": params})

    def _wants(self, session: Session, name: str, payload: dict[str, Any]) -> bool:
        flt = session.subscriptions.get(name)
        if flt is not None:
            return filter_matches(flt, name, payload)
        return self._broadcast_to_all and name in _BROADCASTABLE
