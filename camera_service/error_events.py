"""``system.error``: an internal service error was logged (api.md §5.4).

A log observer, attached while the service runs, turns every error or critical event of
the service's own namespaces (``log.error``, ``log.failure``) into a ``system.error``
event. Only the one-line message travels, never a traceback; device paths are replaced
(api.md §5.1 rule 4). Two guards keep a broken listener from feeding itself: events from
the event bus's own namespace are ignored, and at most ``burst`` events per second go out.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.application.service import Service
from twisted.logger import ILogObserver, LogLevel, LogPublisher, formatEvent, globalLogPublisher
from zope.interface import implementer

from camera_service.procs import redact_devices

_OWN_NAMESPACE = "camera_service"
# The bus logs listener failures itself; publishing those would loop.
_IGNORED_NAMESPACES = ("camera_service.events",)
_MAX_LENGTH = 300


@implementer(ILogObserver)
class SystemErrorPublisher(Service):
    def __init__(self, publish: Callable[[str, dict[str, Any]], None], clock: Any, *,
                 publisher: LogPublisher = globalLogPublisher, burst: int = 10) -> None:
        self._publish = publish
        self._clock = clock
        self._publisher = publisher
        self._burst = burst
        self._window_start = 0.0
        self._sent_in_window = 0
        self.suppressed = 0

    def startService(self) -> None:
        super().startService()
        self._publisher.addObserver(self)

    def stopService(self) -> None:
        self._publisher.removeObserver(self)
        super().stopService()

    def __call__(self, event: dict[str, Any]) -> None:
        level = event.get("log_level")
        if level not in (LogLevel.error, LogLevel.critical):
            return
        namespace = str(event.get("log_namespace", ""))
        if not namespace.startswith(_OWN_NAMESPACE) or namespace.startswith(_IGNORED_NAMESPACES):
            return
        now = self._clock.seconds()
        if now - self._window_start >= 1.0:
            self._window_start, self._sent_in_window = now, 0
        if self._sent_in_window >= self._burst:
            self.suppressed += 1
            return
        self._sent_in_window += 1
        try:
            text = formatEvent(event) or "internal error"
        except Exception:  # noqa: BLE001 - a malformed event must not break logging
            text = "internal error"
        line = redact_devices(text.strip().splitlines()[0] if text.strip() else "internal error")
        self._publish("system.error", {"error": line[:_MAX_LENGTH]})
