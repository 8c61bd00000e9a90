"""An asynchronous client for the camera-service JSON-RPC 2.0 API over WebSocket.

    client = await connect("ws://localhost:8002/ws", token=jwt)
    cameras = await client.call("get_camera_list")
    await client.subscribe(["recording_status_update"], {"device": "camera0"})
    notification = await client.next_notification(timeout=30)
    await client.close()

Everything runs on the Twisted reactor and never blocks it. Responses are matched to
requests by ``id`` (api.md §1.3), so any number of calls may be in flight at once.
Server notifications (api.md §5) go to the callbacks registered with
:meth:`CameraServiceClient.on_notification` and to a bounded queue read with
:meth:`CameraServiceClient.next_notification`.
"""

from __future__ import annotations

import enum
import itertools
import json
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from autobahn.websocket.util import parse_url
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.logger import Logger

log = Logger(namespace="camera_service.client")

DEFAULT_URL = "ws://localhost:8002/ws"


class _Unset(enum.Enum):
    """Marks "argument not given" where None already means "no limit"."""

    UNSET = 0


UNSET = _Unset.UNSET


# --- errors --------------------------------------------------------------------------


class ClientError(Exception):
    """Base class of everything this client raises on purpose."""


class ConnectFailed(ClientError, ConnectionError):
    """The WebSocket could not be opened: refused, unreachable, timed out, or the server
    refused the upgrade (e.g. HTTP 503 when its connection limit is reached)."""


class ConnectionLost(ClientError, ConnectionError):
    """The connection closed while a call or a notification was awaited, or a call was
    made on a closed client."""


class ClientTimeout(ClientError, TimeoutError):
    """No response (or notification) arrived in time."""


class RpcError(ClientError):
    """A JSON-RPC error object returned by the server (api.md §6.1).

    Branch on :attr:`code` first and :attr:`reason` second, as the API recommends;
    ``message`` and ``data["details"]`` are for humans.
    """

    def __init__(self, code: int, message: str, data: Mapping[str, Any] | None = None) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message
        self.data: dict[str, Any] = dict(data or {})

    @property
    def reason(self) -> str | None:
        value = self.data.get("reason")
        return value if isinstance(value, str) else None

    @classmethod
    def from_error(cls, error: Any) -> RpcError:
        """Build from a response's ``error`` member, tolerating a malformed one."""
        if not isinstance(error, dict):
            return cls(-32603, "Malformed error object", {"error": error})
        code = error.get("code")
        data = error.get("data")
        return cls(code if isinstance(code, int) else -32603, str(error.get("message", "")),
                   data if isinstance(data, dict) else ({} if data is None else {"data": data}))

    def to_dict(self) -> dict[str, Any]:
        """The error object as the server sent it (what the CLI prints)."""
        return {"code": self.code, "message": self.message, "data": self.data}

    def __str__(self) -> str:
        details = self.data.get("details")
        reason = self.reason
        text = f"{self.code} {self.message}"
        if reason:
            text += f" ({reason})"
        if details and details != self.message:
            text += f": {details}"
        return text


# --- messages ------------------------------------------------------------------------


@dataclass(frozen=True)
class Notification:
    """A server-to-client notification: ``method`` is a notification name
    (``camera_status_update``...) or an event topic (``recording.start``...)."""

    method: str
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "params": self.params}


@dataclass(frozen=True)
class CloseInfo:
    """How the connection ended: the WebSocket close code and reason, and whether the
    closing handshake completed."""

    code: int | None
    reason: str | None
    clean: bool


NotificationCallback = Callable[[Notification], None]


# --- the Autobahn protocol -----------------------------------------------------------


class _Protocol(WebSocketClientProtocol):
    """Forwards everything to the :class:`CameraServiceClient` that owns the factory."""

    factory: _Factory

    def onOpen(self) -> None:
        self.factory.client._opened(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.factory.client._received(payload, isBinary)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.factory.client._lost(CloseInfo(code, reason, wasClean))


class _Factory(WebSocketClientFactory):
    protocol = _Protocol
    noisy = False  # no "Starting factory" log lines for every connection

    def __init__(self, client: CameraServiceClient, url: str, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self.client = client


# --- the client ----------------------------------------------------------------------


class CameraServiceClient:
    """One WebSocket connection to the service. Create it with :func:`connect`.

    ``call_timeout`` is the default time limit of :meth:`call` (None: wait forever).
    ``queue_size`` bounds the notification queue read by :meth:`next_notification`:
    when it is full the oldest notification is dropped (and counted in
    :attr:`dropped`), so a program that only uses callbacks never grows without bound;
    0 disables the queue.
    """

    def __init__(self, url: str, *, reactor: Any, call_timeout: float | None = 30.0,
                 queue_size: int = 1000) -> None:
        self.url = url
        self.call_timeout = call_timeout
        self.session: dict[str, Any] | None = None  # the authenticate result
        self.close_info: CloseInfo | None = None
        self.dropped = 0
        self._reactor = reactor
        self._protocol: _Protocol | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, Deferred[dict[str, Any]]] = {}
        self._callbacks: list[NotificationCallback] = []
        self._queue: deque[Notification] = deque()
        self._queue_size = queue_size
        self._waiters: deque[Deferred[Notification]] = deque()
        self._close_waiters: list[Deferred[CloseInfo]] = []
        self._open_waiter: Deferred[_Protocol] | None = None

    # -- state -------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._protocol is not None and self.close_info is None

    def when_closed(self) -> Deferred[CloseInfo]:
        """A Deferred that fires with the :class:`CloseInfo` once the connection has
        ended, however it ended. Each call returns a new Deferred, so several parties
        can wait."""
        if self.close_info is not None:
            return succeed(self.close_info)
        waiter: Deferred[CloseInfo] = Deferred()
        self._close_waiters.append(waiter)
        return waiter

    # -- calls -------------------------------------------------------------------

    def request(self, method: str, params: Mapping[str, Any] | None = None, *,
                timeout: float | None = None) -> Deferred[dict[str, Any]]:
        """Send one request; a Deferred for the whole response message (``result`` or
        ``error``). Fails with :class:`ConnectionLost` or :class:`ClientTimeout`."""
        if params is not None and not isinstance(params, Mapping):
            # api.md §1.3: positional (array) params are refused by the server anyway.
            raise TypeError("params must be a mapping (JSON object) or None")
        if not self.is_open:
            return fail(ConnectionLost(self._closed_text()))
        request_id = next(self._ids)
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": request_id}
        if params is not None:
            message["params"] = dict(params)
        payload = json.dumps(message, separators=(",", ":")).encode("utf-8")

        def forget(_: Deferred[dict[str, Any]]) -> None:
            # Cancelling (or timing out) forgets the id, so a late answer is ignored.
            self._pending.pop(request_id, None)

        waiter: Deferred[dict[str, Any]] = Deferred(forget)
        self._pending[request_id] = waiter
        assert self._protocol is not None
        self._protocol.sendMessage(payload, isBinary=False)
        if timeout is not None:
            waiter.addTimeout(timeout, self._reactor, onTimeoutCancel=_timed_out(
                f"no response to {method} within {timeout:g} s"))
        return waiter

    async def call(self, method: str, params: Mapping[str, Any] | None = None, *,
                   timeout: float | None | _Unset = UNSET) -> Any:
        """Call ``method`` and return its ``result``; raise :class:`RpcError` for an
        error response. ``timeout`` defaults to the client's ``call_timeout``."""
        limit = self.call_timeout if isinstance(timeout, _Unset) else timeout
        response = await self.request(method, params, timeout=limit)
        if "error" in response:
            raise RpcError.from_error(response["error"])
        return response.get("result")

    async def authenticate(self, credential: str) -> dict[str, Any]:
        """Authenticate the connection with a JWT or an API key (api.md §2.1, §4.2)."""
        result = await self.call("authenticate", {"auth_token": credential})
        self.session = result
        return result  # type: ignore[no-any-return]

    async def subscribe(self, topics: Sequence[str],
                        filters: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """``subscribe_events`` (api.md §4.27): additive; ``filters`` replaces the filter
        of the named topics."""
        params: dict[str, Any] = {"topics": list(topics)}
        if filters:
            params["filters"] = dict(filters)
        return await self.call("subscribe_events", params)  # type: ignore[no-any-return]

    async def unsubscribe(self, topics: Sequence[str] | None = None) -> dict[str, Any]:
        """``unsubscribe_events`` (api.md §4.28); None removes every topic."""
        params = {} if topics is None else {"topics": list(topics)}
        return await self.call("unsubscribe_events", params)  # type: ignore[no-any-return]

    # -- notifications -----------------------------------------------------------

    def on_notification(self, callback: NotificationCallback) -> Callable[[], None]:
        """Call ``callback`` with every notification, in arrival order. Returns a function
        that removes the callback. An exception in a callback is logged, not raised."""
        self._callbacks.append(callback)

        def remove() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

        return remove

    def next_notification(self, timeout: float | None = None) -> Deferred[Notification]:
        """The oldest queued notification, or the next one to arrive. Fails with
        :class:`ConnectionLost` once the connection is gone and the queue is empty,
        and with :class:`ClientTimeout` after ``timeout`` seconds."""
        if self._queue:
            return succeed(self._queue.popleft())
        if self.close_info is not None:
            return fail(ConnectionLost(self._closed_text()))
        waiter: Deferred[Notification] = Deferred(self._forget_waiter)
        self._waiters.append(waiter)
        if timeout is not None:
            waiter.addTimeout(timeout, self._reactor,
                              onTimeoutCancel=_timed_out(f"no notification within {timeout:g} s"))
        return waiter

    def _forget_waiter(self, waiter: Deferred[Notification]) -> None:
        if waiter in self._waiters:
            self._waiters.remove(waiter)

    # -- closing -----------------------------------------------------------------

    def close(self, code: int = 1000, timeout: float = 5.0) -> Deferred[CloseInfo]:
        """Start the closing handshake; the Deferred fires once the connection has
        ended. A server that does not answer within ``timeout`` seconds is dropped."""
        if self._protocol is None and self.close_info is None:
            return succeed(CloseInfo(None, "never opened", True))
        closed = self.when_closed()
        if self.close_info is None and self._protocol is not None:
            protocol = self._protocol
            protocol.sendClose(code)
            call = self._reactor.callLater(timeout, self.abort)
            closed.addBoth(_cancel_call, call)
        return closed

    def abort(self) -> None:
        """Drop the TCP connection at once, without a closing handshake."""
        if self.close_info is None and self._protocol is not None:
            self._protocol.dropConnection(abort=True)

    # -- from the protocol -------------------------------------------------------

    def _opened(self, protocol: _Protocol) -> None:
        self._protocol = protocol
        waiter, self._open_waiter = self._open_waiter, None
        if waiter is not None:
            waiter.callback(protocol)

    def _received(self, payload: bytes, is_binary: bool) -> None:
        if is_binary:
            log.warn("ignoring a binary frame of {size} bytes", size=len(payload))
            return
        try:
            message = json.loads(payload)
        except ValueError:
            log.warn("ignoring a frame that is not JSON: {head!r}", head=payload[:80])
            return
        if not isinstance(message, dict):
            log.warn("ignoring a JSON frame that is not an object")
            return
        if "result" in message or "error" in message:
            request_id = message.get("id")
            waiter = self._pending.pop(request_id, None) if isinstance(request_id, int) else None
            if waiter is not None:
                waiter.callback(message)
            elif request_id is None and "error" in message:
                # -32700/-32600 answers carry id null and cannot be matched (api.md §1.3).
                log.warn("server error without a request id: {error}", error=message["error"])
            else:
                log.debug("ignoring a response to unknown id {id!r}", id=request_id)
            return
        method = message.get("method")
        if isinstance(method, str) and message.get("id") is None:
            params = message.get("params")
            self._notify(Notification(method, params if isinstance(params, dict) else {}))
            return
        log.warn("ignoring an unexpected message: {message!r}", message=message)

    def _notify(self, notification: Notification) -> None:
        for callback in list(self._callbacks):
            try:
                callback(notification)
            except Exception:  # noqa: BLE001 - one bad callback must not stop the others
                log.failure("notification callback {callback!r} failed", callback=callback)
        if self._waiters:
            self._waiters.popleft().callback(notification)
            return
        if self._queue_size <= 0:
            return
        if len(self._queue) >= self._queue_size:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append(notification)

    def _lost(self, info: CloseInfo) -> None:
        if self.close_info is not None:
            return
        self.close_info = info
        waiter, self._open_waiter = self._open_waiter, None
        if waiter is not None:
            waiter.errback(ConnectFailed(info.reason or f"connection closed ({info.code})"))
        failure_text = self._closed_text()
        pending, self._pending = self._pending, {}
        for call in pending.values():
            call.errback(ConnectionLost(failure_text))
        waiters, self._waiters = self._waiters, deque()
        for notification_waiter in waiters:
            notification_waiter.errback(ConnectionLost(failure_text))
        close_waiters, self._close_waiters = self._close_waiters, []
        for close_waiter in close_waiters:
            close_waiter.callback(info)

    def _closed_text(self) -> str:
        info = self.close_info
        if info is None:
            return "not connected"
        text = f"connection closed (code {info.code})"
        return f"{text}: {info.reason}" if info.reason else text

    # -- opening (used by connect) -----------------------------------------------

    async def _open(self, *, timeout: float, origin: str | None, headers: Mapping[str, str] | None,
                    keepalive: float | None) -> None:
        try:
            secure, host, port, _, _, _ = parse_url(self.url)
        except Exception as error:  # noqa: BLE001 - autobahn raises a bare Exception for bad URLs
            raise ValueError(f"invalid WebSocket URL {self.url!r}: {error}") from None
        factory = _Factory(self, self.url, origin=origin, headers=dict(headers or {}),
                           reactor=self._reactor)
        factory.setProtocolOptions(
            openHandshakeTimeout=timeout,
            # Client-side pings find a dead server (or NAT) on long-lived connections
            # such as `watch`; the server answers pings itself (api.md §1.4).
            autoPingInterval=keepalive or 0,
            autoPingTimeout=(keepalive * 2) if keepalive else 0,
        )
        endpoint: Any = HostnameEndpoint(self._reactor, host, port, timeout=timeout)
        if secure:
            from twisted.internet.ssl import optionsForClientTLS

            endpoint = wrapClientTLS(optionsForClientTLS(host), endpoint)

        def cancel_open(_: Deferred[_Protocol]) -> None:
            self._open_waiter = None
            if self._protocol is None and connected_protocol:
                connected_protocol[0].dropConnection(abort=True)

        connected_protocol: list[_Protocol] = []
        self._open_waiter = Deferred(cancel_open)
        opened = self._open_waiter

        def then_handshake(protocol: _Protocol) -> Deferred[_Protocol]:
            connected_protocol.append(protocol)
            return opened

        attempt = endpoint.connect(factory).addCallback(then_handshake)
        attempt.addTimeout(timeout, self._reactor)
        try:
            await attempt
        except ConnectFailed as error:
            raise ConnectFailed(f"cannot connect to {self.url}: {error}") from None
        except (CancelledError, TimeoutError):
            raise ConnectFailed(f"cannot connect to {self.url}: "
                                f"no answer within {timeout:g} s") from None
        except Exception as error:  # noqa: BLE001 - DNS, refused, TLS...: all "cannot connect"
            raise ConnectFailed(f"cannot connect to {self.url}: {error}") from None


def _timed_out(text: str) -> Callable[[Any, float], Any]:
    def on_timeout(result: Any, timeout: float) -> Any:
        raise ClientTimeout(text)

    return on_timeout


def _cancel_call(result: Any, call: Any) -> Any:
    if call.active():
        call.cancel()
    return result


async def connect(url: str = DEFAULT_URL, token: str | None = None, api_key: str | None = None, *,
                  timeout: float = 10.0, call_timeout: float | None = 30.0,
                  reactor: Any = None, origin: str | None = None,
                  headers: Mapping[str, str] | None = None, queue_size: int = 1000,
                  keepalive: float | None = 30.0) -> CameraServiceClient:
    """Open a connection and, given ``token`` (a JWT) or ``api_key``, authenticate it.

    Raises :class:`ConnectFailed` when the connection cannot be opened within
    ``timeout`` seconds, and :class:`RpcError` (-32001) when authentication fails; the
    connection is closed then. ``token`` wins when both are given. ``keepalive`` is the
    client's ping interval in seconds (None: no client pings).
    """
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    client = CameraServiceClient(url, reactor=reactor, call_timeout=call_timeout,
                                 queue_size=queue_size)
    await client._open(timeout=timeout, origin=origin, headers=headers, keepalive=keepalive)
    credential = token or api_key
    if credential:
        try:
            await client.authenticate(credential)
        except BaseException:
            await client.close(timeout=min(timeout, 2.0))
            raise
    return client
