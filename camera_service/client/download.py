"""Streaming file downloads from ``/files/recordings`` and ``/files/snapshots`` (api.md §7.2).

The body goes to disk chunk by chunk and is never held in memory: chunks are written in
a thread (file I/O must not block the reactor), one write at a time, and the HTTP
connection is paused while more than :data:`HIGH_WATER` bytes wait for the disk.
``resume=True`` continues a partial file with ``Range: bytes=<size>-``; the byte count
is checked against ``Content-Length`` (and ``Content-Range``) at the end, so a
truncated transfer is reported, never mistaken for a complete file. A failed download
leaves the partial file in place for a later resume.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO
from urllib.parse import quote, urlsplit, urlunsplit

import treq
from treq.client import HTTPClient
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import (
    ConnectError,
    ConnectingCancelledError,
    DNSLookupError,
)
from twisted.internet.protocol import Protocol
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.web.client import (
    Agent,
    HTTPConnectionPool,
    ResponseDone,
    ResponseNeverReceived,
)
from twisted.web.http import PotentialDataLoss

from camera_service.client.rpc import ClientError, ClientTimeout, ConnectFailed, log

KINDS = ("recordings", "snapshots")

HIGH_WATER = 1024 * 1024  # pause the connection above this many unwritten bytes
ERROR_BODY_LIMIT = 64 * 1024  # error bodies are small JSON objects (api.md §7.2)

ProgressCallback = Callable[[int, "int | None"], None]


class DownloadError(ClientError):
    """The download did not produce the complete file."""


class HttpError(DownloadError):
    """The server answered with an error status (400, 401, 404...)."""

    def __init__(self, status: int, message: str, url: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message
        self.url = url

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "error": self.message, "url": self.url}


class IncompleteDownload(DownloadError):
    """The transfer ended before the announced length arrived (the partial file stays)."""

    def __init__(self, message: str, received: int, expected: int | None) -> None:
        super().__init__(message)
        self.received = received
        self.expected = expected


@dataclass(frozen=True)
class DownloadResult:
    path: str
    url: str
    size: int  # the size of the complete file on disk
    received: int  # body bytes transferred by this download
    resumed_from: int  # the local size the transfer continued from (0: from scratch)
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "url": self.url, "size": self.size, "received": self.received,
                "resumed_from": self.resumed_from, "seconds": round(self.seconds, 3)}


# --- URLs and credentials ------------------------------------------------------------


def http_base(ws_url: str) -> str:
    """The HTTP origin of the API listener: ``ws://h:p/ws`` → ``http://h:p``.

    Downloads are served by the same listener as the WebSocket (api.md §1.1), always
    under ``/files``, so only the scheme changes and the path is dropped.
    """
    parts = urlsplit(ws_url)
    scheme = {"ws": "http", "wss": "https", "http": "http", "https": "https"}.get(parts.scheme.lower())
    if scheme is None or not parts.netloc:
        raise ValueError(f"not a ws:// or wss:// URL: {ws_url!r}")
    return urlunsplit((scheme, parts.netloc, "", "", ""))


def file_url(base: str, kind: str, name: str) -> str:
    """The download URL of a recording (stem or full name) or a snapshot."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    return f"{base.rstrip('/')}/files/{kind}/{quote(name, safe='')}"


def auth_headers(token: str | None = None, api_key: str | None = None) -> dict[str, str]:
    """The credential header for a download (api.md §7.2).

    A JWT goes in ``Authorization: Bearer``, an API key in ``X-API-Key``: the server only
    accepts each kind in its own header. A ``token`` that is really an API key (the CLI
    has always accepted either) is told apart the way ``authenticate`` does it: a JWT has
    exactly two dots (api.md §2.3).
    """
    credential = token or api_key
    if not credential:
        return {}
    if credential.count(".") == 2:
        return {"Authorization": f"Bearer {credential}"}
    return {"X-API-Key": credential}


_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)")
_DISPOSITION_NAME = re.compile(r'filename="([^"]+)"')


def _header(response: Any, name: str) -> str | None:
    values = response.headers.getRawHeaders(name)
    return values[-1] if values else None


def disposition_name(response: Any) -> str | None:
    """The file name from ``Content-Disposition``, reduced to a safe base name."""
    value = _header(response, "content-disposition")
    match = _DISPOSITION_NAME.search(value or "")
    if match is None:
        return None
    name = os.path.basename(match[1])
    return name if name not in ("", ".", "..") else None


# --- the downloader ------------------------------------------------------------------


class _FileSink(Protocol):
    """Receives the body and writes it to ``file`` in a thread, one write at a time.

    Unwritten bytes are bounded: above :data:`HIGH_WATER` the HTTP transport is paused
    until the disk catches up. ``idle_timeout`` aborts a transfer that stalls.
    """

    def __init__(self, file: BinaryIO, run_in_thread: Callable[..., Deferred[Any]], reactor: Any,
                 received_before: int, total: int | None, progress: ProgressCallback | None,
                 idle_timeout: float | None) -> None:
        self._file = file
        self._run = run_in_thread
        self._reactor = reactor
        self._before = received_before
        self._total = total
        self._progress = progress
        self._idle_timeout = idle_timeout
        self._idle_call: Any = None
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._writing = False
        self._paused = False
        self._ended: Failure | None | bool = False  # False: body still arriving
        self._write_error: Failure | None = None
        self.stalled = False
        self.received = 0
        self.done: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        self._arm_idle()

    def dataReceived(self, data: bytes) -> None:
        self._arm_idle()
        if self._write_error is not None:
            return
        self.received += len(data)
        self._buffer.append(data)
        self._buffered += len(data)
        if self._buffered > HIGH_WATER and not self._paused:
            self._paused = True
            self._producer.pauseProducing()
        if self._progress is not None:
            self._progress(self._before + self.received, self._total)
        self._write_next()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if self._idle_call is not None and self._idle_call.active():
            self._idle_call.cancel()
        # ResponseDone: the body is complete. PotentialDataLoss: no Content-Length, so the
        # end of the connection is the end of the body; the length check decides.
        clean = reason is None or reason.check(ResponseDone, PotentialDataLoss)
        self._ended = None if clean else reason
        self._maybe_finish()

    # internals

    @property
    def _producer(self) -> Any:
        """The body's transport, an IPushProducer (twisted.web's TransportProxyProducer)."""
        return self.transport

    def _arm_idle(self) -> None:
        if self._idle_timeout is None:
            return
        if self._idle_call is not None and self._idle_call.active():
            self._idle_call.reset(self._idle_timeout)
        else:
            self._idle_call = self._reactor.callLater(self._idle_timeout, self._stall)

    def _stall(self) -> None:
        self.stalled = True
        self._producer.stopProducing()  # aborts the connection: connectionLost follows

    def _write_next(self) -> None:
        if self._writing or not self._buffer:
            self._maybe_finish()
            return
        chunk = b"".join(self._buffer)
        self._buffer.clear()
        self._writing = True
        self._run(self._file.write, chunk).addCallbacks(self._written, self._write_failed,
                                                        callbackArgs=(len(chunk),))

    def _written(self, _: Any, size: int) -> None:
        self._writing = False
        self._buffered -= size
        if self._paused and self._buffered <= HIGH_WATER // 2 and self._ended is False:
            self._paused = False
            self._producer.resumeProducing()
        self._write_next()

    def _write_failed(self, failure: Failure) -> None:
        self._writing = False
        self._write_error = failure
        self._buffer.clear()
        if self._ended is False:
            self._producer.stopProducing()
        self._maybe_finish()

    def _maybe_finish(self) -> None:
        if self._ended is False or self._writing or (self._buffer and self._write_error is None):
            return
        if self.done.called:
            return
        if self._write_error is not None:
            self.done.errback(self._write_error)
        elif isinstance(self._ended, Failure):
            self.done.errback(self._ended)
        else:
            self.done.callback(None)


class Downloader:
    """Downloads over one treq client. ``reactor`` defaults to the global reactor; file
    I/O runs in that reactor's thread pool."""

    def __init__(self, *, reactor: Any = None, timeout: float | None = 30.0,
                 http_client: HTTPClient | None = None) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self._reactor = reactor
        self._timeout = timeout
        if http_client is None:
            # Not persistent: a one-shot command must not leave idle sockets behind.
            pool = HTTPConnectionPool(reactor, persistent=False)
            agent: Any = Agent(reactor, pool=pool, connectTimeout=timeout)
            http_client = HTTPClient(agent)
        self._http = http_client

    def _in_thread(self, f: Callable[..., Any], *args: Any) -> Deferred[Any]:
        return deferToThreadPool(self._reactor, self._reactor.getThreadPool(), f, *args)

    async def _send(self, method: str, url: str, headers: Mapping[str, str]) -> Any:
        try:
            # No redirects: a credential header must not follow a redirect elsewhere.
            request_headers: Any = dict(headers)
            return await self._http.request(method, url, headers=request_headers, unbuffered=True,
                                            allow_redirects=False, timeout=self._timeout)
        except (ConnectError, DNSLookupError) as error:
            raise ConnectFailed(f"cannot connect to {url}: {error}") from None
        except (CancelledError, ConnectingCancelledError):
            raise ClientTimeout(f"no response from {url} within {self._timeout:g} s") from None
        except ResponseNeverReceived as error:
            if any(reason.check(CancelledError) for reason in error.reasons):
                raise ClientTimeout(f"no response from {url} within {self._timeout:g} s") from None
            raise ConnectFailed(f"{url}: the connection closed before a response") from None

    async def _refuse(self, response: Any, url: str) -> HttpError:
        """The :class:`HttpError` for an error response, with the server's message."""
        message = f"HTTP {response.code}"
        try:
            body = await _read_limited(response, ERROR_BODY_LIMIT)
            parsed = json.loads(body)
            if isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
                message = parsed["error"]
        except Exception as error:  # noqa: BLE001 - an unreadable body still leaves the status
            log.debug("unreadable error body from {url}: {error}", url=url, error=error)
        return HttpError(response.code, message, url)

    async def remote_name(self, url: str, headers: Mapping[str, str] | None = None) -> str:
        """The real file name (with extension) the server would send, by ``HEAD``."""
        response = await self._send("HEAD", url, headers or {})
        if response.code != 200:
            raise await self._refuse(response, url)
        name = disposition_name(response)
        if name is None:
            name = os.path.basename(urlsplit(url).path)
        return name

    async def download(self, url: str, path: str, *, headers: Mapping[str, str] | None = None,
                       resume: bool = False, progress: ProgressCallback | None = None) -> DownloadResult:
        """Stream ``url`` to ``path``. With ``resume``, an existing ``path`` is continued
        from its current size by a Range request; otherwise it is overwritten.

        ``progress(done, total)`` is called once when the response starts and after each
        chunk, with the bytes of the file now received (including a resumed part) and
        the file's total size when known.
        """
        started = time.monotonic()
        offset = 0
        if resume:
            offset = await self._in_thread(_existing_size, path)
        request_headers = dict(headers or {})
        if offset:
            request_headers["Range"] = f"bytes={offset}-"
        response = await self._send("GET", url, request_headers)

        if response.code == 416 and offset:
            # Nothing from `offset` on: complete if the remote file is exactly that long.
            await _discard(response)
            match = _UNSATISFIED_RANGE.fullmatch(_header(response, "content-range") or "")
            remote = int(match[1]) if match else None
            if remote == offset:
                return DownloadResult(path, url, offset, 0, offset, time.monotonic() - started)
            raise DownloadError(f"cannot resume: {path} has {offset} bytes, the remote file "
                                f"{'has ' + str(remote) if remote is not None else 'is smaller'}")
        if response.code == 206 and offset:
            match = _CONTENT_RANGE.fullmatch(_header(response, "content-range") or "")
            if match is None or int(match[1]) != offset:
                await _discard(response)
                raise DownloadError(f"the server sent an unexpected range: "
                                    f"{_header(response, 'content-range')!r}")
            total = None if match[3] == "*" else int(match[3])
            mode = "r+b"
        elif response.code == 200:
            offset = 0  # the whole file (also when the server ignored the Range)
            total = response.length if isinstance(response.length, int) else None
            mode = "wb"
        else:
            raise await self._refuse(response, url)

        length = response.length if isinstance(response.length, int) else None
        file = await self._in_thread(_open_at, path, mode, offset)
        sink = _FileSink(file, self._in_thread, self._reactor, offset, total, progress,
                         self._timeout)
        if progress is not None:
            progress(offset, total)
        try:
            response.deliverBody(sink)
            try:
                await sink.done
            except Exception as error:
                if isinstance(error, OSError):
                    raise  # a local write failed: not a transfer problem
                why = "the transfer stalled" if sink.stalled else "the connection was lost"
                raise IncompleteDownload(f"{why} after {offset + sink.received} bytes of "
                                         f"{total if total is not None else 'unknown'}",
                                         offset + sink.received, total) from None
        finally:
            await self._in_thread(file.close)
        received = sink.received
        if length is not None and received != length:
            raise IncompleteDownload(f"received {received} bytes, Content-Length was {length}",
                                     offset + received, total)
        if total is not None and offset + received != total:
            raise IncompleteDownload(f"the file has {offset + received} bytes, expected {total}",
                                     offset + received, total)
        return DownloadResult(path, url, offset + received, received, offset,
                              time.monotonic() - started)


async def download_file(url: str, path: str, *, headers: Mapping[str, str] | None = None,
                        resume: bool = False, progress: ProgressCallback | None = None,
                        timeout: float | None = 30.0, reactor: Any = None) -> DownloadResult:
    """One download with a fresh :class:`Downloader` (see :meth:`Downloader.download`).

    ``timeout`` limits the wait for the response headers and any pause in the body.
    """
    downloader = Downloader(reactor=reactor, timeout=timeout)
    return await downloader.download(url, path, headers=headers, resume=resume, progress=progress)


# --- blocking helpers, run in a thread -----------------------------------------------


def _existing_size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def _open_at(path: str, mode: str, offset: int) -> BinaryIO:
    """``wb`` truncates; ``r+b`` keeps the first ``offset`` bytes and drops anything
    after them, so the file is exactly the resumed prefix plus what arrives."""
    file = open(path, mode)  # noqa: SIM115 - closed by the caller
    if mode == "r+b":
        file.seek(offset)
        file.truncate(offset)
    return file  # type: ignore[return-value]


async def _read_limited(response: Any, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0

    def collect(data: bytes) -> None:
        nonlocal size
        if size < limit:
            chunks.append(data[: limit - size])
        size += len(data)

    await treq.collect(response, collect)
    return b"".join(chunks)


async def _discard(response: Any) -> None:
    try:
        await treq.collect(response, lambda _: None)
    except Exception as error:  # noqa: BLE001 - the status is what matters here
        log.debug("discarding a response body failed: {error}", error=error)
