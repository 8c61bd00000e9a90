"""A small real WebSocket JSON-RPC client for the tests (Autobahn, over TCP)."""

from __future__ import annotations

import itertools
import json
from typing import Any

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol, connectWS
from twisted.internet.defer import Deferred, DeferredQueue
from twisted.internet.error import ConnectError


class _Protocol(WebSocketClientProtocol):
    def onOpen(self) -> None:
        self.factory.opened.callback(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.factory.client._received(payload)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        client = self.factory.client
        client.close_code = code
        client.close_reason = reason
        if not self.factory.opened.called:
            self.factory.opened.errback(ConnectError(string=f"closed before open: {code} {reason}"))
        if not client.closed.called:
            client.closed.callback(code)


class RpcClient:
    def __init__(self) -> None:
        self.protocol: _Protocol | None = None
        self.responses: dict[Any, Deferred[dict[str, Any]]] = {}
        self.notifications: DeferredQueue[dict[str, Any]] = DeferredQueue()
        self.raw: DeferredQueue[dict[str, Any]] = DeferredQueue()
        self.closed: Deferred[int | None] = Deferred()
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self._ids = itertools.count(1)

    def _received(self, payload: bytes) -> None:
        message = json.loads(payload)
        self.raw.put(message)
        if "id" in message and message["id"] in self.responses:
            self.responses.pop(message["id"]).callback(message)
        elif "method" in message and "id" not in message:
            self.notifications.put(message)

    def send_raw(self, payload: bytes | str, binary: bool = False) -> None:
        data = payload.encode("utf-8") if isinstance(payload, str) else payload
        assert self.protocol is not None
        self.protocol.sendMessage(data, isBinary=binary)

    def request(self, method: str, params: Any = None, request_id: Any = None) -> Deferred[dict[str, Any]]:
        """Send a request and return a Deferred for the whole response message."""
        if request_id is None:
            request_id = next(self._ids)
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": request_id}
        if params is not None:
            message["params"] = params
        waiter: Deferred[dict[str, Any]] = Deferred()
        self.responses[request_id] = waiter
        self.send_raw(json.dumps(message))
        return waiter

    async def call(self, method: str, params: Any = None) -> Any:
        """The result, or raise RpcFailure with the error object."""
        response = await self.request(method, params)
        if "error" in response:
            raise RpcFailure(response["error"])
        return response["result"]

    async def error(self, method: str, params: Any = None) -> dict[str, Any]:
        response = await self.request(method, params)
        assert "error" in response, f"expected an error from {method}, got {response}"
        return response["error"]

    def close(self, code: int = 1000) -> Deferred[int | None]:
        if self.protocol is not None and not self.closed.called:
            self.protocol.sendClose(code)
        return self.closed

    def drop(self) -> None:
        """Drop the TCP connection without a close handshake."""
        if self.protocol is not None and self.protocol.transport is not None:
            self.protocol.transport.abortConnection()


class RpcFailure(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"{error.get('code')} {error.get('message')}: {error.get('data')}")
        self.error = error
        self.code = error.get("code")
        self.data = error.get("data", {})


async def connect(url: str, *, headers: dict[str, str] | None = None, origin: str | None = None,
                  auto_pong: bool = True) -> RpcClient:
    client = RpcClient()
    factory = WebSocketClientFactory(url, headers=headers or {}, origin=origin)
    factory.protocol = _Protocol
    factory.setProtocolOptions(autoPingInterval=0)
    factory.opened = Deferred()
    factory.client = client
    connectWS(factory)
    client.protocol = await factory.opened
    if not auto_pong:
        client.protocol.onPing = lambda payload=None: None  # type: ignore[method-assign]
    return client
