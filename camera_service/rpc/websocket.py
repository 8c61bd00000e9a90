"""The WebSocket side of the API: Autobahn protocol, factory and the upgrade gate.

The gate is a twisted.web resource in front of Autobahn's ``WebSocketResource`` so
that the Origin allow-list (403) and the connection limit (503) are enforced with a
plain HTTP answer before any upgrade happens (api.md §1.4).
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any, Callable

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IPushProducer, IReactorTime
from twisted.application.service import Service
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Request
from zope.interface import implementer

from camera_service.rpc.dispatcher import Dispatcher
from camera_service.rpc.ratelimit import FixedWindow
from camera_service.rpc.session import Session
from camera_service.streams import host_from_header

MAX_MESSAGE_BYTES = 1024 * 1024
# Queued notifications per connection while its socket is backed up; beyond this
# they are dropped (responses are never dropped).
NOTIFICATION_BACKLOG = 256
# Failed authenticate calls allowed per connection per minute before -32040.
AUTH_FAILURE_LIMIT = 5
AUTH_FAILURE_WINDOW = 60.0
SHUTDOWN_CLOSE_CODE = 1001
SHUTDOWN_REASON = "server shutdown"
# Built once: json.dumps() with any keyword builds a new encoder on every call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


@implementer(IPushProducer)
class _Backpressure:
    """Registered with the TCP transport so we learn when its write buffer is full."""

    def __init__(self, protocol: "ApiServerProtocol") -> None:
        self._protocol = protocol

    def pauseProducing(self) -> None:
        self._protocol.backed_up = True

    def resumeProducing(self) -> None:
        self._protocol.backed_up = False
        self._protocol.flush_backlog()

    def stopProducing(self) -> None:
        self._protocol.backed_up = False


class ApiServerProtocol(WebSocketServerProtocol):
    # Autobahn claims ``.log`` for itself.
    _log = Logger()
    factory: "ApiServerFactory"

    def __init__(self) -> None:
        super().__init__()
        self.session: Session | None = None
        self.backed_up = False
        self._backlog: deque[tuple[bool, bytes]] = deque()
        self._backlog_notifications = 0
        self._dropping = False
        self._counted = False
        self._pending: set[Deferred[None]] = set()
        # Keep-alive bookkeeping, driven by KeepAliveService.
        self.last_heard = 0.0
        self.last_ping = 0.0
        self.awaiting_since: float | None = None

    # -- Autobahn callbacks ----------------------------------------------------------

    def onConnect(self, request: Any) -> None:
        try:
            app = self.factory.app
            local = self.transport.getHost()
            host = host_from_header(request.headers.get("host"), getattr(local, "host", "localhost"))
            now = app.clock.seconds
            self.session = Session(
                send=self.send_response,
                host=host,
                rate=FixedWindow(app.config.security.rate_limit_requests,
                                 app.config.security.rate_limit_window, now),
                auth_failures=FixedWindow(AUTH_FAILURE_LIMIT, AUTH_FAILURE_WINDOW, now),
            )
        except Exception:
            self._log.failure("could not set up a WebSocket session")
            raise

    def onOpen(self) -> None:
        try:
            # twisted.web's HTTPChannel registered itself as the transport's producer
            # before Autobahn took the socket over; it no longer uses the transport.
            if getattr(self.transport, "producer", None) is not None:
                self.transport.unregisterProducer()
            self.transport.registerProducer(_Backpressure(self), True)
        except Exception:
            self._log.failure("could not register backpressure producer")
        now = self.factory.app.clock.seconds()
        self.last_heard = self.last_ping = now
        self.factory.tracker.opened(self)

    def onPong(self, payload: bytes) -> None:
        self.last_heard = self.factory.app.clock.seconds()

    def onPing(self, payload: bytes) -> None:
        self.last_heard = self.factory.app.clock.seconds()
        super().onPing(payload)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.last_heard = self.factory.app.clock.seconds()
        if self.session is None:
            return
        finished = self.factory.dispatcher.process(self.session, payload, isBinary)
        if finished is not None:
            self._pending.add(finished)
            finished.addBoth(self._request_done, finished)

    def _request_done(self, result: Any, finished: Deferred[None]) -> None:
        self._pending.discard(finished)
        if hasattr(result, "printTraceback"):
            self._log.failure("request processing failed", failure=result)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if self.session is not None:
            self.session.closed = True
            self.session.subscriptions.clear()
        self._backlog.clear()

    def connectionLost(self, reason: Any) -> None:
        try:
            super().connectionLost(reason)
        finally:
            self.factory.tracker.released(self)

    # -- sending -----------------------------------------------------------------------

    def _encode(self, message: dict[str, Any]) -> bytes:
        return _ENCODER.encode(message).encode("utf-8")

    def send_response(self, message: dict[str, Any]) -> None:
        if self.state != WebSocketServerProtocol.STATE_OPEN:
            return
        data = self._encode(message)
        if self.backed_up or self._backlog:
            self._backlog.append((False, data))
            return
        self.sendMessage(data, isBinary=False)

    def notify(self, message: dict[str, Any]) -> None:
        """Send a notification unless the socket is backed up and the backlog is full."""
        if self.state != WebSocketServerProtocol.STATE_OPEN:
            return
        metrics = self.factory.app.metrics
        if self.backed_up or self._backlog:
            if self._backlog_notifications >= NOTIFICATION_BACKLOG:
                metrics.notifications_dropped += 1
                if not self._dropping:
                    self._dropping = True
                    self._log.warn("client {session_id} is not reading; dropping notifications",
                                   session_id=self.session.session_id if self.session else "?")
                return
            self._backlog.append((True, self._encode(message)))
            self._backlog_notifications += 1
            return
        metrics.notifications_sent += 1
        self.sendMessage(self._encode(message), isBinary=False)

    def flush_backlog(self) -> None:
        while self._backlog and not self.backed_up:
            is_notification, data = self._backlog.popleft()
            if is_notification:
                self._backlog_notifications -= 1
                self.factory.app.metrics.notifications_sent += 1
            if self.state == WebSocketServerProtocol.STATE_OPEN:
                self.sendMessage(data, isBinary=False)
        if not self._backlog:
            self._dropping = False


class ConnectionTracker:
    """Counts connections from upgrade acceptance until the socket is gone."""

    def __init__(self, metrics: Any) -> None:
        self._metrics = metrics
        self.reserved = 0
        self.open: set[ApiServerProtocol] = set()

    def reserve(self, protocol: ApiServerProtocol) -> None:
        protocol._counted = True
        self.reserved += 1
        self._metrics.connections_total += 1
        self._metrics.connections_open = self.reserved

    def opened(self, protocol: ApiServerProtocol) -> None:
        self.open.add(protocol)

    def released(self, protocol: ApiServerProtocol) -> None:
        self.open.discard(protocol)
        if protocol._counted:
            protocol._counted = False
            self.reserved -= 1
            self._metrics.connections_open = self.reserved

    def recipients(self) -> list[ApiServerProtocol]:
        return list(self.open)


class ApiServerFactory(WebSocketServerFactory):
    protocol = ApiServerProtocol

    def __init__(self, app: Any, dispatcher: Dispatcher, tracker: ConnectionTracker) -> None:
        super().__init__()
        self.app = app
        self.dispatcher = dispatcher
        self.tracker = tracker
        self.setProtocolOptions(
            maxMessagePayloadSize=MAX_MESSAGE_BYTES,
            maxFramePayloadSize=MAX_MESSAGE_BYTES,
            # Keep-alive is KeepAliveService's job: one timer on the injected clock
            # for all connections instead of two timers per connection.
            autoPingInterval=0,
            # Invalid UTF-8 is answered with -32700 like any other unparsable payload
            # instead of failing the connection (api.md §8 step 1).
            utf8validateIncoming=False,
            # Our own 1001 close must not wait long for a silent peer at shutdown.
            closeHandshakeTimeout=1,
            # Fail with a close frame (1009 for oversized messages) rather than a bare drop.
            failByDrop=False,
            openHandshakeTimeout=10,
        )

    def buildProtocol(self, addr: Any) -> ApiServerProtocol:
        protocol = super().buildProtocol(addr)
        self.tracker.reserve(protocol)
        return protocol

    def close_all(self, clock: IReactorTime, timeout: float) -> Deferred[None]:
        """Send 1001 to every open connection; fire once all are gone or at ``timeout``.

        Connections still open at the deadline are aborted, so shutdown never hangs
        on a peer that does not answer the close handshake.
        """
        waits = []
        for protocol in list(self.tracker.open):
            if protocol.state == WebSocketServerProtocol.STATE_OPEN:
                # sendClose() only allows 1000 and 3000-4999; 1001 ("going away") is
                # the code RFC 6455 defines for a server shutting down.
                protocol.sendCloseFrame(code=SHUTDOWN_CLOSE_CODE,
                                        reasonUtf8=SHUTDOWN_REASON.encode("utf-8"), isReply=False)
            waits.append(protocol.is_closed)
        finished: Deferred[None] = Deferred()

        def fire(_: Any = None) -> None:
            if finished.called:
                return
            for straggler in list(self.tracker.open):
                if straggler.transport is not None:
                    straggler.transport.abortConnection()
            finished.callback(None)

        DeferredList(waits, consumeErrors=True).addBoth(fire)
        timer = clock.callLater(timeout, fire)

        def cancel_timer(result: Any) -> Any:
            if timer.active():
                timer.cancel()
            return result

        return finished.addBoth(cancel_timer)


class KeepAliveService(Service):
    """Pings every connection each ``interval``; drops one that stays silent ``timeout``
    after a ping (api.md §1.4: any frame counts as a sign of life, not only a pong)."""

    _log = Logger()

    def __init__(self, tracker: ConnectionTracker, clock: IReactorTime, interval: float,
                 timeout: float) -> None:
        self._tracker = tracker
        self._clock = clock
        self._interval = interval
        self._timeout = timeout
        self._loop = LoopingCall(self.tick)
        self._loop.clock = clock

    def startService(self) -> None:
        super().startService()
        granularity = max(0.05, min(self._interval, self._timeout) / 4.0)
        self._loop.start(granularity, now=False).addErrback(
            lambda failure: self._log.failure("keep-alive loop stopped", failure=failure))

    def stopService(self) -> Any:
        if self._loop.running:
            self._loop.stop()
        return super().stopService()

    def tick(self) -> None:
        now = self._clock.seconds()
        for protocol in list(self._tracker.open):
            try:
                self._check(protocol, now)
            except Exception:
                self._log.failure("keep-alive check failed")

    def _check(self, protocol: ApiServerProtocol, now: float) -> None:
        if protocol.state != WebSocketServerProtocol.STATE_OPEN:
            return
        if protocol.awaiting_since is not None:
            if protocol.last_heard >= protocol.awaiting_since:
                protocol.awaiting_since = None
            elif now - protocol.awaiting_since >= self._timeout:
                self._log.info("dropping silent client {session_id}",
                               session_id=protocol.session.session_id if protocol.session else "?")
                protocol.dropConnection(abort=True)
                return
        if now - protocol.last_ping >= self._interval:
            protocol.sendPing()
            protocol.last_ping = now
            if protocol.awaiting_since is None:
                protocol.awaiting_since = now


class WebSocketGate(Resource):
    """Origin and connection-limit checks, then hand the request to Autobahn."""

    isLeaf = True

    def __init__(self, factory: ApiServerFactory, max_connections: int,
                 allowed_origins: tuple[str, ...], on_refused: Callable[[str], None]) -> None:
        super().__init__()
        self._factory = factory
        self._ws = WebSocketResource(factory)
        self._max = max_connections
        self._any_origin = "*" in allowed_origins
        self._origins = frozenset(allowed_origins)
        self._on_refused = on_refused

    def render(self, request: Request) -> bytes | int:
        if request.postpath and request.postpath != [b""]:
            return self._refuse(request, 404, b"Not found")
        upgrade = (request.getHeader("upgrade") or "").lower()
        if upgrade != "websocket":
            request.setHeader("upgrade", "websocket")
            return self._refuse(request, 426, b"WebSocket upgrade required")
        origin = request.getHeader("origin")
        if origin is not None and not self._any_origin and origin not in self._origins:
            self._on_refused("origin")
            return self._refuse(request, 403, b"Origin not allowed")
        if self._factory.tracker.reserved >= self._max:
            self._on_refused("max_connections")
            return self._refuse(request, 503, b"Maximum connections reached")
        return self._ws.render(request)

    @staticmethod
    def _refuse(request: Request, code: int, body: bytes) -> bytes:
        request.setResponseCode(code)
        request.setHeader("content-type", "text/plain; charset=utf-8")
        request.setHeader("connection", "close")
        return body
