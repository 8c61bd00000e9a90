"""The in-process event bus (api.md §5, media.md §0.1).

Producers publish named events with a payload; the API's notifier is one listener.
Delivery is eventual (next reactor turn) and strictly in publish order, so a
response written in the current turn always reaches its client before any
notification the request caused (api.md §5.1 rule 5).
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Final

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from camera_service.timeutil import rfc3339

TOPICS: Final[tuple[str, ...]] = (
    "camera.connected",
    "camera.disconnected",
    "camera.status_change",
    "camera.capability_detected",
    "camera.capability_error",
    "recording.start",
    "recording.stop",
    "recording.error",
    "recording.progress",
    "mediamtx.recording_started",
    "mediamtx.recording_stopped",
    "mediamtx.recording_failed",
    "mediamtx.stream_started",
    "mediamtx.stream_stopped",
    "mediamtx.stream",
    "mediamtx.path",
    "mediamtx.error",
    "snapshot.taken",
    "snapshot.error",
    "system.health",
    "system.startup",
    "system.shutdown",
    "system.error",
)

CAMERA_STATUS_UPDATE: Final = "camera_status_update"
RECORDING_STATUS_UPDATE: Final = "recording_status_update"
SYSTEM_HEALTH_UPDATE: Final = "system_health_update"
NOTIFICATION_NAMES: Final[tuple[str, ...]] = (
    CAMERA_STATUS_UPDATE,
    RECORDING_STATUS_UPDATE,
    SYSTEM_HEALTH_UPDATE,
)
SUBSCRIBABLE: Final[frozenset[str]] = frozenset(TOPICS) | frozenset(NOTIFICATION_NAMES)

# system_health_update is not published by producers: it is the system.health
# payload delivered under the notification name (api.md §5.1 rule 2).
_PUBLISHABLE: Final[frozenset[str]] = frozenset(TOPICS) | {CAMERA_STATUS_UPDATE, RECORDING_STATUS_UPDATE}

Listener = Callable[[str, dict[str, Any]], None]


class EventBus:
    _log = Logger()

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._listeners: list[Listener] = []
        self._queue: deque[tuple[str, dict[str, Any]]] = deque()
        self._flush_call: IDelayedCall | None = None
        self.published = 0

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def publish(self, name: str, payload: dict[str, Any]) -> None:
        """Queue an event. Topic events (and notifications) get a ``timestamp``."""
        if name not in _PUBLISHABLE:
            raise ValueError(f"unknown event name {name!r}")
        event = dict(payload)
        if name in TOPICS:
            event.setdefault("timestamp", rfc3339(self._clock.seconds()))
        self._queue.append((name, event))
        self.published += 1
        if self._flush_call is None:
            self._flush_call = self._clock.callLater(0, self._flush)

    def flush_now(self) -> None:
        """Deliver everything queued immediately (used during shutdown)."""
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush()

    def _flush(self) -> None:
        self._flush_call = None
        while self._queue:
            name, event = self._queue.popleft()
            for listener in list(self._listeners):
                try:
                    listener(name, event)
                except Exception:
                    self._log.failure("event listener failed for {name}", name=name)
