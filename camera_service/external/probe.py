"""The RTSP probe of one candidate URL (media.md §7.2).

An in-process Twisted TCP client, so no URL ever reaches a command line and nothing blocks
the reactor: connect (``connect_timeout``), send ``OPTIONS`` then ``DESCRIBE``, read both
answers within ``probe_timeout`` for the whole exchange with a 64 KiB cap per answer, close.
``SETUP``/``PLAY`` are never sent, so a probe never starts media flowing.

Outcomes: ``200`` with an SDP that has an ``m=video`` section is *found* (codec, resolution,
KLV from :mod:`camera_service.external.sdp`); ``401`` is *found* with ``auth_required``;
anything else is *not found*. A connection that cannot be made is reported separately
(``connect_failed``) because the scanner then skips the other paths of that host and port.
Every probe is cancellable: cancelling aborts the connection attempt or the connection.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
)
from twisted.internet.interfaces import IReactorTCP, IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure

from camera_service import __version__
from camera_service.external.sdp import SdpInfo, parse_sdp
from camera_service.external.urls import request_url, split_target

__all__ = ["MAX_ANSWER", "ProbeResult", "RtspProber"]

#: Cap on the status line, headers and body of one RTSP answer (media.md §7.2 step 3).
MAX_ANSWER = 64 * 1024
_STATUS_LINE = re.compile(r"^RTSP/\d\.\d\s+(\d{3})(?:\s.*)?$")


@dataclass(frozen=True)
class ProbeResult:
    found: bool
    #: the TCP connection could not be made (refused, timed out, no route, name unknown)
    connect_failed: bool = False
    status: int | None = None
    sdp: SdpInfo | None = None
    auth_required: bool = False
    #: why the stream was not found, for debug logs (never contains credentials)
    reason: str = ""


class _BadAnswer(Exception):
    pass


class _Exchange(Protocol):
    """OPTIONS, then DESCRIBE; ``finished`` fires with ``(status, body)`` of the DESCRIBE."""

    def __init__(self, url: str, user_agent: str) -> None:
        self._url = url
        self._user_agent = user_agent
        self._buffer = b""
        self._describing = False
        self.finished: defer.Deferred[tuple[int, bytes]] = defer.Deferred(self._cancel)

    def _cancel(self, _: defer.Deferred[Any]) -> None:
        # Timeout or scan cancellation: drop the connection at once, without a FIN dance.
        if self.transport is not None:
            self.transport.abortConnection()

    def _send(self, method: str, cseq: int, extra: str = "") -> None:
        assert self.transport is not None
        self.transport.write(
            f"{method} {self._url} RTSP/1.0\r\nCSeq: {cseq}\r\n{extra}"
            f"User-Agent: {self._user_agent}\r\n\r\n".encode())

    def connectionMade(self) -> None:
        self._send("OPTIONS", 1)

    def dataReceived(self, data: bytes) -> None:
        if self.finished.called:
            return
        self._buffer += data
        try:
            while not self.finished.called:
                answer = self._next_answer()
                if answer is None:
                    return
                if not self._describing:
                    # Whatever OPTIONS answered (some servers want auth even for it), the
                    # DESCRIBE answer decides the outcome.
                    self._describing = True
                    self._send("DESCRIBE", 2, "Accept: application/sdp\r\n")
                    continue
                self.finished.callback(answer)
                assert self.transport is not None
                self.transport.loseConnection()
        except _BadAnswer as error:
            self.finished.errback(Failure(error))
            assert self.transport is not None
            self.transport.abortConnection()

    def _next_answer(self) -> tuple[int, bytes] | None:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > MAX_ANSWER:
                raise _BadAnswer("answer headers larger than 64 KiB")
            return None
        lines = self._buffer[:end].decode("latin-1").split("\r\n")
        match = _STATUS_LINE.match(lines[0].strip())
        if match is None:
            raise _BadAnswer("not an RTSP answer")
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                try:
                    length = int(value.strip())
                except ValueError:
                    raise _BadAnswer("bad Content-Length") from None
                if length < 0:
                    raise _BadAnswer("bad Content-Length")
        total = end + 4 + length
        if total > MAX_ANSWER:
            raise _BadAnswer("answer larger than 64 KiB")
        if len(self._buffer) < total:
            return None
        body = self._buffer[end + 4:total]
        self._buffer = self._buffer[total:]
        return int(match.group(1)), body

    def connectionLost(self, reason: Failure | None = None) -> None:
        if not self.finished.called:
            self.finished.errback(Failure(_BadAnswer("connection closed before the answer")))


class _ExchangeFactory(Factory):
    noisy = False

    def __init__(self, url: str, user_agent: str) -> None:
        self._url = url
        self._user_agent = user_agent

    def buildProtocol(self, addr: Any) -> _Exchange:
        protocol = _Exchange(self._url, self._user_agent)
        protocol.factory = self
        return protocol


def _is_ip(host: str) -> int | None:
    try:
        return ipaddress.ip_address(host).version
    except ValueError:
        return None


class RtspProber:
    """Probes RTSP URLs with the given timeouts; ``reactor`` provides TCP and the clock."""

    def __init__(self, reactor: Any, *, connect_timeout: float, probe_timeout: float,
                 user_agent: str = f"camera-service/{__version__}") -> None:
        assert IReactorTCP.providedBy(reactor) and IReactorTime.providedBy(reactor)
        self._reactor = reactor
        self._connect_timeout = float(connect_timeout)
        self._probe_timeout = float(probe_timeout)
        self._user_agent = user_agent

    def _endpoint(self, host: str, port: int) -> Any:
        timeout = self._connect_timeout
        version = _is_ip(host)
        # IP literals connect directly; only real names go through the resolver.
        if version == 4:
            return TCP4ClientEndpoint(self._reactor, host, port, timeout=timeout)
        if version == 6:
            return TCP6ClientEndpoint(self._reactor, host, port, timeout=timeout)
        return HostnameEndpoint(self._reactor, host, port, timeout=timeout)

    def probe(self, url: str) -> defer.Deferred[ProbeResult]:
        """Probe one URL. Never fails: every problem is a not-found result. Cancellable."""
        return defer.ensureDeferred(self._probe(url))

    async def _probe(self, url: str) -> ProbeResult:
        host, port, _ = split_target(url)
        factory = _ExchangeFactory(request_url(url), self._user_agent)
        connecting = self._endpoint(host, port).connect(factory)
        # connectTCP's own timeout covers TCP; this one also covers name resolution.
        connecting.addTimeout(self._connect_timeout, self._reactor)
        try:
            protocol: _Exchange = await connecting
        except defer.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - any failure to connect counts the same
            return ProbeResult(found=False, connect_failed=True,
                               reason=f"connect failed: {type(error).__name__}")
        exchange = protocol.finished
        exchange.addTimeout(self._probe_timeout, self._reactor)
        try:
            status, body = await exchange
        except defer.TimeoutError:
            return ProbeResult(found=False, reason=f"no answer within {self._probe_timeout:g} s")
        except _BadAnswer as error:
            return ProbeResult(found=False, reason=str(error))
        if status == 401:
            return ProbeResult(found=True, status=status, auth_required=True)
        if status != 200:
            return ProbeResult(found=False, status=status, reason=f"DESCRIBE answered {status}")
        sdp = parse_sdp(body.decode("utf-8", "replace"))
        if not sdp.has_video:
            return ProbeResult(found=False, status=status, sdp=sdp, reason="no video in the SDP")
        return ProbeResult(found=True, status=status, sdp=sdp)
