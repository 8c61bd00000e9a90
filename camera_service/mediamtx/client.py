"""The MediaMTX control-API client (media.md §2.2).

This is the only module that knows MediaMTX's URLs and JSON shapes. Everything else calls
the methods of :class:`MediaMTXClient`; they are written as ``async def`` and return
Deferreds at the boundary (style.md 1.5), so Twisted code can add callbacks and async code
can simply ``await`` them.

Transport and failure rules, all from §2.2:

- treq over a persistent ``HTTPConnectionPool`` (4 connections per host, idle connections
  closed after 30 s), HTTP Basic auth when credentials are configured, ``Accept:
  application/json`` and ``Content-Type: application/json`` on bodies;
- at most :data:`MAX_IN_FLIGHT` requests in flight (a ``DeferredSemaphore``);
- every response body is read in full, error responses included, capped at
  :data:`MAX_BODY_BYTES`, so the pool always gets its connection back;
- each attempt (sending the request and reading the whole answer) is bounded by the
  configured timeout, measured on the injected reactor from the moment the request holds one
  of the eight slots;
- typed outcomes: 400 → :class:`MediaMTXRejected` (never retried), 404 →
  :class:`MediaMTXNotFound`, 401/403 → :class:`MediaMTXAuthError`, 5xx →
  :class:`MediaMTXServerError` after exactly one retry 0.5 s later, refused/reset/timed-out
  connections → :class:`MediaMTXUnavailable` (not retried: it feeds the health state machine),
  an unparseable answer → :class:`MediaMTXProtocolError`.

Path names are checked before any request: writes only ever touch the two managed families
of §2.3; reads accept any name MediaMTX reported, URL-quoted.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Mapping, TypeVar
from urllib.parse import quote

from twisted.internet import defer, error as internet_error
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import (
    Agent,
    HTTPConnectionPool,
    _HTTP11ClientFactory,
    ResponseDone,
    ResponseFailed,
    ResponseNeverReceived,
)
from twisted.web._newclient import RequestTransmissionFailed
from twisted.web.http import PotentialDataLoss

from camera_service.external.urls import scrub

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_IN_FLIGHT",
    "PAGE_SIZE",
    "RETRY_DELAY",
    "MediaMTXAuthError",
    "MediaMTXClient",
    "MediaMTXError",
    "MediaMTXNotFound",
    "MediaMTXProtocolError",
    "MediaMTXRejected",
    "MediaMTXServerError",
    "MediaMTXUnavailable",
    "PathState",
    "is_managed_path_name",
]

MAX_IN_FLIGHT = 8
MAX_BODY_BYTES = 8 * 1024 * 1024
RETRY_DELAY = 0.5
PAGE_SIZE = 1000
POOL_MAX_PER_HOST = 4
POOL_IDLE_TIMEOUT = 30

_MANAGED_NAME = re.compile(r"^(?:camera[0-9]+|ext_[0-9a-f]{10})\Z")
_ERROR_TEXT_LIMIT = 500


# --------------------------------------------------------------------------- errors


class _QuietClientFactory(_HTTP11ClientFactory):
    noisy = False


class MediaMTXError(Exception):
    """Base of every failure this client raises."""


class MediaMTXRejected(MediaMTXError):
    """MediaMTX refused the request (400, or another 4xx without a type of its own).

    A rejection is deterministic: it is never retried. ``error_text`` is MediaMTX's own
    ``{"error": ...}`` message (or the raw body when there is none).
    """

    def __init__(self, status: int, error_text: str) -> None:
        super().__init__(f"MediaMTX rejected the request (HTTP {status}): {error_text}")
        self.status = status
        self.error_text = error_text


class MediaMTXNotFound(MediaMTXError):
    """404: the path, configuration or recording does not exist. Callers decide what it means."""


class MediaMTXAuthError(MediaMTXError):
    """401/403: the API user lacks the ``api`` permission."""


class MediaMTXServerError(MediaMTXError):
    """5xx, still failing after the one retry."""

    def __init__(self, status: int, error_text: str) -> None:
        super().__init__(f"MediaMTX server error (HTTP {status}): {error_text}")
        self.status = status
        self.error_text = error_text


class MediaMTXUnavailable(MediaMTXError):
    """Connection refused or reset, or no complete answer within the timeout."""


class MediaMTXProtocolError(MediaMTXError):
    """The answer could not be understood (not JSON, wrong shape, oversized, odd status)."""


# --------------------------------------------------------------------------- path state


@dataclass(frozen=True)
class PathState:
    """A path's runtime state, normalised across MediaMTX v1.15 … v1.20 (§2.1, §2.8).

    - ``live``: ``online`` when the key is present (v1.16 on), otherwise ``ready``.
    - ``ready``: the ``ready`` flag as reported (deprecated upstream); equal to ``live`` when
      a release no longer sends it.
    - ``bytes_received``/``bytes_sent``: ``inboundBytes``/``outboundBytes`` when present
      (v1.17 on), otherwise ``bytesReceived``/``bytesSent``; 0 when neither is sent.
    - ``live_since``: ``onlineTime`` when present, otherwise ``readyTime``; ``None`` when
      not live.
    - ``source_type``: the source's ``type``, or ``""`` without a source.
    - ``readers``: the number of readers MediaMTX reports.
    """

    name: str
    live: bool
    ready: bool
    source_type: str
    readers: int
    bytes_received: int
    bytes_sent: int
    live_since: str | None

    @classmethod
    def from_json(cls, item: Any) -> "PathState":
        if not isinstance(item, dict):
            raise MediaMTXProtocolError(f"path entry is not an object: {_short(item)}")
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise MediaMTXProtocolError("path entry without a name")
        ready_flag = _opt_bool(item, "ready", name)
        online_flag = _opt_bool(item, "online", name)
        live = online_flag if online_flag is not None else bool(ready_flag)
        ready = ready_flag if ready_flag is not None else live

        source = item.get("source")
        source_type = ""
        if isinstance(source, dict):
            raw_type = source.get("type")
            if raw_type is not None and not isinstance(raw_type, str):
                raise MediaMTXProtocolError(f"path {name!r}: source.type is not a string")
            source_type = raw_type or ""
        elif source is not None:
            raise MediaMTXProtocolError(f"path {name!r}: source is not an object")

        readers_raw = item.get("readers")
        if readers_raw is None:
            readers = 0
        elif isinstance(readers_raw, list):
            readers = len(readers_raw)
        else:
            raise MediaMTXProtocolError(f"path {name!r}: readers is not a list")

        bytes_received = _first_counter(item, ("inboundBytes", "bytesReceived"), name)
        bytes_sent = _first_counter(item, ("outboundBytes", "bytesSent"), name)

        key = "onlineTime" if "onlineTime" in item else "readyTime"
        live_since = item.get(key)
        if live_since is not None and not isinstance(live_since, str):
            raise MediaMTXProtocolError(f"path {name!r}: {key} is not a string")
        return cls(name=name, live=live, ready=ready, source_type=source_type, readers=readers,
                   bytes_received=bytes_received, bytes_sent=bytes_sent,
                   live_since=live_since or None)


def _opt_bool(item: Mapping[str, Any], key: str, name: str) -> bool | None:
    value = item.get(key)
    if value is None or isinstance(value, bool):
        return value
    raise MediaMTXProtocolError(f"path {name!r}: {key} is not a boolean")


def _first_counter(item: Mapping[str, Any], keys: tuple[str, ...], name: str) -> int:
    for key in keys:
        if key in item and item[key] is not None:
            value = item[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise MediaMTXProtocolError(f"path {name!r}: {key} is not a counter")
            return value
    return 0


# --------------------------------------------------------------------------- helpers


def is_managed_path_name(name: object) -> bool:
    """True for the two families of path names the service writes (§2.3)."""
    return isinstance(name, str) and _MANAGED_NAME.match(name) is not None


def _check_write_name(name: object) -> str:
    if not is_managed_path_name(name):
        raise ValueError(f"not a managed MediaMTX path name: {name!r}")
    assert isinstance(name, str)
    return name


def _check_read_name(name: object) -> str:
    if not isinstance(name, str) or not name or any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise ValueError(f"invalid MediaMTX path name: {name!r}")
    return name


def _quote(name: str) -> str:
    return quote(name, safe="")


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= _ERROR_TEXT_LIMIT else text[:_ERROR_TEXT_LIMIT] + "…"


def _error_text(raw: bytes) -> str:
    """MediaMTX's ``{"error": "..."}`` message, or the (shortened) raw body."""
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return body["error"]
    return _short(raw.decode("utf-8", "replace").strip())


_T = TypeVar("_T")


def _deferred(function: Callable[..., Awaitable[_T]]) -> Callable[..., "defer.Deferred[_T]"]:
    """Deferreds at the boundary: an ``async def`` method that returns a Deferred."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> "defer.Deferred[_T]":
        return defer.Deferred.fromCoroutine(function(*args, **kwargs))  # type: ignore[arg-type]

    return wrapper


class _BodyTooLarge(Exception):
    pass


class _CappedBody(Protocol):
    """Collects a whole response body, up to ``limit`` bytes; aborts the connection beyond."""

    def __init__(self, finished: "defer.Deferred[bytes]", limit: int) -> None:
        self._finished: defer.Deferred[bytes] | None = finished
        self._limit = limit
        self._chunks: list[bytes] = []
        self._size = 0

    def dataReceived(self, data: bytes) -> None:
        if self._finished is None:
            return
        self._size += len(data)
        if self._size > self._limit:
            finished, self._finished = self._finished, None
            self.abort()
            finished.errback(Failure(_BodyTooLarge(f"response body larger than {self._limit} bytes")))
            return
        self._chunks.append(data)

    def detach(self) -> None:
        self._finished = None

    def abort(self) -> None:
        transport = self.transport
        if transport is not None:
            transport.loseConnection()  # a body half read cannot go back to the pool

    def connectionLost(self, reason: Failure = Failure(ResponseDone())) -> None:
        if self._finished is None:
            return
        finished, self._finished = self._finished, None
        if reason.check(ResponseDone, PotentialDataLoss):
            finished.callback(b"".join(self._chunks))
        else:
            finished.errback(reason)


def _read_body(response: Any) -> "defer.Deferred[bytes]":
    if response.length == 0:
        return defer.succeed(b"")
    protocol: _CappedBody

    def cancel(_: Any) -> None:
        protocol.detach()  # Deferred.cancel() fires CancelledError itself
        protocol.abort()

    finished: defer.Deferred[bytes] = defer.Deferred(cancel)
    protocol = _CappedBody(finished, MAX_BODY_BYTES)
    response.deliverBody(protocol)
    return finished


# Everything that means "MediaMTX could not be talked to" (not retried; §2.2, §2.7).
_UNAVAILABLE = (
    internet_error.ConnectError,        # refused, no route, DNS …
    internet_error.ConnectionLost,
    internet_error.ConnectionDone,
    internet_error.TimeoutError,
    ResponseNeverReceived,
    ResponseFailed,
    RequestTransmissionFailed,
    ConnectionError,
)


# --------------------------------------------------------------------------- the client


class MediaMTXClient:
    """MediaMTX's control API (v1.15.0 … v1.20.1), as used by the service (§2.2)."""

    _log = Logger()

    def __init__(self, reactor: Any, *, base_url: str, auth: tuple[str, str] | None,
                 timeout: float, http_client: Any = None) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self._reactor = reactor
        self._base = base_url.rstrip("/")
        self._auth = auth
        self._timeout = float(timeout)
        self._semaphore = defer.DeferredSemaphore(MAX_IN_FLIGHT)
        self._pool: HTTPConnectionPool | None = None
        if http_client is None:
            import treq.client

            self._pool = HTTPConnectionPool(reactor, persistent=True)
            # One "Starting factory" log line per new connection is noise, not information.
            self._pool._factory = _QuietClientFactory
            self._pool.maxPersistentPerHost = POOL_MAX_PER_HOST
            self._pool.cachedConnectionTimeout = POOL_IDLE_TIMEOUT
            http_client = treq.client.HTTPClient(Agent(reactor, pool=self._pool))
        self._http = http_client
        self._auth_warned = False

    # ------------------------------------------------------------------ runtime state

    @_deferred
    async def list_paths(self) -> list[PathState]:
        """``GET /v3/paths/list``, every page: the runtime state of all paths."""
        items = await self._list_all("/v3/paths/list")
        return [PathState.from_json(item) for item in items]

    @_deferred
    async def get_path(self, name: str) -> PathState:
        """``GET /v3/paths/get/{name}``; 404 (path not live/known) → :class:`MediaMTXNotFound`."""
        name = _check_read_name(name)
        body = await self._request_object("GET", f"/v3/paths/get/{_quote(name)}")
        return PathState.from_json(body)

    # ------------------------------------------------------------------ path configuration

    @_deferred
    async def replace_path_config(self, name: str, conf: dict[str, Any]) -> None:
        """``POST /v3/config/paths/replace/{name}``: the only way a path is written."""
        name = _check_write_name(name)
        if not isinstance(conf, dict):
            raise TypeError("conf must be a dict")
        await self._request("POST", f"/v3/config/paths/replace/{_quote(name)}", body=conf)

    @_deferred
    async def set_record(self, name: str, record: bool) -> None:
        """``PATCH /v3/config/paths/patch/{name}`` with exactly ``{"record": record}``."""
        name = _check_write_name(name)
        if not isinstance(record, bool):
            raise TypeError("record must be a bool")
        await self._request("PATCH", f"/v3/config/paths/patch/{_quote(name)}",
                            body={"record": record})

    @_deferred
    async def delete_path_config(self, name: str) -> None:
        """``DELETE /v3/config/paths/delete/{name}``; 404 → :class:`MediaMTXNotFound`."""
        name = _check_write_name(name)
        await self._request("DELETE", f"/v3/config/paths/delete/{_quote(name)}")

    @_deferred
    async def get_path_config(self, name: str) -> dict[str, Any]:
        """``GET /v3/config/paths/get/{name}``; 404 → :class:`MediaMTXNotFound`."""
        name = _check_read_name(name)
        return await self._request_object("GET", f"/v3/config/paths/get/{_quote(name)}")

    @_deferred
    async def list_path_configs(self) -> list[dict[str, Any]]:
        """``GET /v3/config/paths/list``, every page."""
        return await self._list_all("/v3/config/paths/list")

    @_deferred
    async def get_global_config(self) -> dict[str, Any]:
        """``GET /v3/config/global/get``."""
        return await self._request_object("GET", "/v3/config/global/get")

    @_deferred
    async def patch_path_defaults(self, conf: dict[str, Any]) -> None:
        """``PATCH /v3/config/pathdefaults/patch``."""
        if not isinstance(conf, dict):
            raise TypeError("conf must be a dict")
        await self._request("PATCH", "/v3/config/pathdefaults/patch", body=conf)

    # ------------------------------------------------------------------ recordings

    @_deferred
    async def list_recordings(self) -> list[dict[str, Any]]:
        """``GET /v3/recordings/list``, every page."""
        return await self._list_all("/v3/recordings/list")

    @_deferred
    async def get_recordings(self, name: str) -> dict[str, Any]:
        """``GET /v3/recordings/get/{name}``; 404 → :class:`MediaMTXNotFound`."""
        name = _check_read_name(name)
        return await self._request_object("GET", f"/v3/recordings/get/{_quote(name)}")

    @_deferred
    async def delete_segment(self, path: str, start: str) -> None:
        """``DELETE /v3/recordings/deletesegment?path=&start=`` (the deletion fallback, §5.6)."""
        path = _check_write_name(path)
        if not isinstance(start, str) or not start:
            raise ValueError(f"invalid segment start: {start!r}")
        await self._request("DELETE", "/v3/recordings/deletesegment",
                            params={"path": path, "start": start})

    # ------------------------------------------------------------------ misc

    @_deferred
    async def info(self) -> dict[str, Any] | None:
        """``GET /v3/info``; ``None`` when it is 404 (MediaMTX older than v1.15.2)."""
        try:
            return await self._request_object("GET", "/v3/info")
        except MediaMTXNotFound:
            return None

    @_deferred
    async def close(self) -> None:
        """Close the pool's idle connections (a no-op with an injected HTTP client)."""
        if self._pool is not None:
            await self._pool.closeCachedConnections()

    # ------------------------------------------------------------------ internals

    async def _list_all(self, path: str) -> list[dict[str, Any]]:
        """Read every page of a list endpoint (``page + 1 < pageCount``)."""
        items: list[dict[str, Any]] = []
        page = 0
        while True:
            body = await self._request_object(
                "GET", path, params={"page": str(page), "itemsPerPage": str(PAGE_SIZE)})
            page_items = body.get("items")
            if page_items is None:
                page_items = []
            if not isinstance(page_items, list) or not all(isinstance(i, dict) for i in page_items):
                raise MediaMTXProtocolError(f"{path}: items is not a list of objects")
            items.extend(page_items)
            page_count = body.get("pageCount", 1)
            if page_count is None:
                page_count = 1
            if isinstance(page_count, bool) or not isinstance(page_count, int):
                raise MediaMTXProtocolError(f"{path}: pageCount is not an integer")
            if page + 1 >= page_count:
                return items
            page += 1

    async def _request_object(self, method: str, path: str,
                              params: dict[str, str] | None = None) -> dict[str, Any]:
        result = await self._request(method, path, params=params)
        if not isinstance(result, dict):
            raise MediaMTXProtocolError(f"{method} {path}: expected a JSON object, got {_short(result)}")
        return result

    async def _request(self, method: str, path: str, *, params: dict[str, str] | None = None,
                       body: dict[str, Any] | None = None) -> Any:
        """One call: at most two attempts (the second only after a 5xx), typed outcomes."""
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode("utf-8")
        try:
            status, raw = await self._attempt(method, path, params, data)
            if status >= 500:
                self._log.warn("MediaMTX {method} {path}: HTTP {status}, retrying once in {delay} s",
                               method=method, path=path, status=status, delay=RETRY_DELAY)
                await deferLater(self._reactor, RETRY_DELAY, lambda: None)
                status, raw = await self._attempt(method, path, params, data)
        except MediaMTXUnavailable as failure:
            self._log.info("MediaMTX {method} {path}: unavailable ({error})",
                           method=method, path=path, error=str(failure))
            raise
        return self._outcome(method, path, status, raw)

    async def _attempt(self, method: str, path: str, params: dict[str, str] | None,
                       data: bytes | None) -> tuple[int, bytes]:
        """Send one request holding one of the eight slots; the timeout covers the whole answer."""
        await self._semaphore.acquire()
        try:
            exchange = defer.Deferred.fromCoroutine(self._exchange(method, path, params, data))
            timed_out = False

            def expire() -> None:
                nonlocal timed_out
                timed_out = True
                exchange.cancel()  # aborts the connection, whether in the headers or the body

            timer = self._reactor.callLater(self._timeout, expire)
            try:
                return await exchange
            except _BodyTooLarge as failure:
                raise MediaMTXProtocolError(f"{method} {path}: {failure}") from None
            except (defer.CancelledError, *_UNAVAILABLE) as failure:
                if timed_out:
                    raise MediaMTXUnavailable(
                        f"{method} {path}: no answer within {self._timeout:g} s") from None
                if _is_cancellation(failure):
                    raise defer.CancelledError() from None  # the caller cancelled the call
                raise MediaMTXUnavailable(f"{method} {path}: {_describe(failure)}") from None
            finally:
                if timer.active():
                    timer.cancel()
        finally:
            self._semaphore.release()

    async def _exchange(self, method: str, path: str, params: dict[str, str] | None,
                        data: bytes | None) -> tuple[int, bytes]:
        headers = {"Accept": ["application/json"]}
        kwargs: dict[str, Any] = {"headers": headers}
        if data is not None:
            headers["Content-Type"] = ["application/json"]
            kwargs["data"] = data
        if params:
            kwargs["params"] = params
        if self._auth is not None:
            kwargs["auth"] = self._auth
        response = await self._http.request(method, self._base + path, **kwargs)
        raw = await _read_body(response)  # always in full, errors included (§2.2)
        return response.code, raw

    def _outcome(self, method: str, path: str, status: int, raw: bytes) -> Any:
        if 200 <= status < 300:
            if not raw.strip():
                return None
            try:
                return json.loads(raw)
            except ValueError:
                raise MediaMTXProtocolError(
                    f"{method} {path}: answer is not JSON: {_short(raw.decode('utf-8', 'replace'))}"
                ) from None
        # Masked: MediaMTX may echo an external source URL, password included (media.md §7.4).
        text = scrub(_error_text(raw))
        if status == 404:
            raise MediaMTXNotFound(f"{method} {path}: not found ({text})")
        if status in (401, 403):
            if not self._auth_warned:
                self._auth_warned = True
                self._log.error(
                    "MediaMTX refused the service's API credentials (HTTP {status}) for {method} "
                    "{path}: grant the 'api' action to the service's user in MediaMTX's "
                    "authInternalUsers", status=status, method=method, path=path)
            raise MediaMTXAuthError(f"{method} {path}: HTTP {status} ({text})")
        if 400 <= status < 500:
            self._log.warn("MediaMTX rejected {method} {path} (HTTP {status}): {error}",
                           method=method, path=path, status=status, error=text)
            raise MediaMTXRejected(status, text)
        if status >= 500:
            self._log.error("MediaMTX {method} {path}: HTTP {status} after a retry: {error}",
                            method=method, path=path, status=status, error=text)
            raise MediaMTXServerError(status, text)
        raise MediaMTXProtocolError(f"{method} {path}: unexpected HTTP {status}")


def _is_cancellation(failure: BaseException) -> bool:
    if isinstance(failure, defer.CancelledError):
        return True
    reasons = getattr(failure, "reasons", None) or []
    return any(reason.check(defer.CancelledError) for reason in reasons)


def _describe(failure: BaseException) -> str:
    reasons = getattr(failure, "reasons", None)
    if reasons:
        return "; ".join(str(reason.value) for reason in reasons)
    return str(failure) or type(failure).__name__
