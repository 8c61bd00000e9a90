"""External streams: the pure parts and the probe's protocol handling (media.md §7).

URL rules and masking, the SDP/SPS parser (with SPS units FFmpeg's libx264 produced), what
a scan plans to probe, and the RTSP probe against small RTSP answerers on loopback for the
outcomes rtsp-server-perl cannot produce (401, junk, oversized answers, no video).
"""

from __future__ import annotations

import base64
import hashlib
import time
from types import SimpleNamespace
from typing import Any

import pytest
from twisted.internet import defer, protocol, reactor
from twisted.internet.task import Clock, deferLater

from camera_service.external.probe import MAX_ANSWER, ProbeResult, RtspProber
from camera_service.external.scan import Target, plan, run_scan
from camera_service.external.sdp import h264_sps_resolution, parse_sdp
from camera_service.external.urls import (
    UrlProblem,
    check_url,
    identity,
    mask,
    proxy_path_name,
    request_url,
    scrub,
    split_target,
)

# --------------------------------------------------------------------------- URLs


@pytest.mark.parametrize("url", ["rtsp://h/x", "rtsps://h", "rtsp://u:p@10.0.0.1:8554/a/b?c=d",
                                 "rtsp://[2001:db8::1]:554/x", "rtsp://host.example:65535/"])
def test_acceptable_urls(url: str) -> None:
    check_url(url)


@pytest.mark.parametrize("url", ["", "rtsp:/h/x", "RTSP://h/x", "http://h/x", "rtsp://", "rtsp://:554/x",
                                 "rtsp://h:0/x", "rtsp://h:65536/x", "rtsp://h:/x", "rtsp://h:x/y",
                                 "rtsp://h/a b", "rtsp://h/a\tb", "rtsp://h/a\x7fb", "rtsp://h/\u0085",
                                 "rtsp://[::1/x"])
def test_refused_urls(url: str) -> None:
    with pytest.raises(UrlProblem):
        check_url(url)


def test_masking_identity_and_proxy_names() -> None:
    assert mask("rtsp://user:pw@host:554/p") == "rtsp://user:***@host:554/p"
    # The userinfo ends at the last '@': a password may contain '@' and ':'.
    assert mask("rtsp://user:p@ss:w@host/p") == "rtsp://user:***@host/p"
    assert mask("rtsp://user@host/p") == "rtsp://user@host/p"  # no password, nothing hidden
    assert mask("rtsp://host/p") == "rtsp://host/p"
    assert identity("rtsp://user:p@ss@host:1/p") == "rtsp://host:1/p"
    assert request_url("rtsp://user:pw@host/p#frag") == "rtsp://host/p"
    name = proxy_path_name("rtsp://a:b@192.168.42.20:554/stream")
    assert name == proxy_path_name("rtsp://192.168.42.20:554/stream") == "ext_" + \
        hashlib.sha256(b"rtsp://192.168.42.20:554/stream").hexdigest()[:10]
    assert split_target("rtsp://h/x") == ("h", 554, "/x")
    assert split_target("rtsps://h") == ("h", 322, "/")
    assert split_target("rtsp://[::1]:9/x?y") == ("::1", 9, "/x?y")
    assert scrub("invalid source: 'rtsp://u:secret@h/x' and rtsps://v:w@k") == \
        "invalid source: 'rtsp://u:***@h/x' and rtsps://v:***@k"


# --------------------------------------------------------------------------- SDP


@pytest.mark.parametrize(("sps", "size"), [
    ("Z2QAKKzZQHgCJ+XARAAAAwAEAAADAHg8YMZY", (1920, 1080)),   # high profile, cropped
    ("Z01AH+ygKALdgIgAAAMACAAAAwDweMGMsA==", (1280, 720)),    # main
    ("Z0LADNkBQfsBEAAAAwAQAAADAeDxQqSA", (320, 240)),         # baseline
    ("Z0LAFtoCgPbARAAAAwAEAAADAHo8WLqA", (640, 480)),         # what rtsp-server-perl relays
])
def test_sps_resolution(sps: str, size: tuple[int, int]) -> None:
    assert h264_sps_resolution(base64.b64decode(sps)) == size


def test_sps_garbage_gives_no_resolution() -> None:
    assert h264_sps_resolution(b"\x67\x42") is None
    assert h264_sps_resolution(b"\x68\x42\x00\x1e\xff\xff") is None  # a PPS, not an SPS
    assert h264_sps_resolution(b"\x67\x42\x00\x1e" + b"\x00" * 8) is None


def test_sdp_attributes() -> None:
    sdp = ("v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=x\r\nt=0 0\r\n"
           "m=video 0 RTP/AVP 97\r\na=rtpmap:97 H265/90000\r\na=framesize:97 1280-720\r\n"
           "m=application 0 RTP/AVP 98\r\na=rtpmap:98 smpte336m/1000\r\n")
    info = parse_sdp(sdp)
    assert (info.has_video, info.codec, info.resolution, info.klv) == (True, "h265", "1280x720", True)
    info = parse_sdp("v=0\na=x-dimensions:704,576\nm=video 0 RTP/AVP 26\n")
    assert (info.codec, info.resolution) == ("jpeg", "704x576")
    info = parse_sdp("v=0\nm=audio 0 RTP/AVP 0\n")
    assert info.has_video is False
    info = parse_sdp("m=video 0 RTP/AVP 96\na=rtpmap:96 H264/90000\n"
                     "a=fmtp:96 sprop-parameter-sets=!!!,also-bad\n")
    assert (info.codec, info.resolution) == ("h264", None)


# --------------------------------------------------------------------------- scan plan


def _config(**over: Any) -> Any:
    skydio = SimpleNamespace(enabled=True, known_ips=("192.168.42.10",),
                             network_ranges=("192.168.42.8/30",), eo_port=5554, eo_path="/subject",
                             ir_port=6554, ir_path="/infrared")
    generic = SimpleNamespace(enabled=False, known_ips=("10.0.0.1",), network_ranges=("10.0.0.0/31",),
                              ports=(554, 8554), paths=("/stream", "/live"))
    values: dict[str, Any] = {
        "candidates": ("rtsp://u:p@cam.example/live", "rtsp://10.0.0.1:554/stream"),
        "skydio": skydio, "generic": generic}
    values.update(over)
    return SimpleNamespace(**values)


def test_plan_names_types_and_order() -> None:
    targets = plan(_config(), skydio=True, generic=True)
    urls = [t.url for t in targets]
    # Candidates first; known IPs before range hosts; network/broadcast of /30 excluded;
    # the known IP .10 is not probed twice; /31 has two hosts; duplicates probed once.
    assert urls[:2] == ["rtsp://u:p@cam.example/live", "rtsp://10.0.0.1:554/stream"]
    skydio_hosts = [t.host for t in targets if t.scanner == "skydio"]
    assert skydio_hosts == ["192.168.42.10", "192.168.42.10", "192.168.42.9", "192.168.42.9"]
    eo = next(t for t in targets if t.scanner == "skydio")
    assert (eo.type, eo.name, eo.url) == ("skydio_stanag4609", "Skydio_EO_192.168.42.10_eo_/subject",
                                          "rtsp://192.168.42.10:5554/subject")
    ir = [t for t in targets if t.scanner == "skydio"][1]
    assert ir.name == "Skydio_IR_192.168.42.10_ir_/infrared"
    generic = [t for t in targets if t.scanner == "generic"]
    assert {t.host for t in generic} == {"10.0.0.1", "10.0.0.0"}
    assert len(generic) == 2 * 2 * 2 - 1  # rtsp://10.0.0.1:554/stream is the candidate's
    assert targets[0].name == "Generic_cam.example_554/live"
    assert urls.count("rtsp://10.0.0.1:554/stream") == 1
    assert [t.url for t in plan(_config(), skydio=False, generic=False)] == urls[:2]


def test_capabilities_from_a_probe() -> None:
    target = plan(_config(candidates=()), skydio=True, generic=False)[0]
    sdp = parse_sdp("m=video 0 RTP/AVP 96\na=rtpmap:96 H264/90000\na=framesize:96 640-480\n"
                    "m=application 0 RTP/AVP 97\na=rtpmap:97 smpte336m/1000\n")
    caps = target.capabilities(ProbeResult(found=True, status=200, sdp=sdp))
    assert caps == {"protocol": "rtsp", "stream_type": "eo", "port": 5554, "stream_path": "/subject",
                    "format": "stanag4609", "source": "skydio_uav", "metadata": "klv_mpegts",
                    "codec": "h264", "resolution": "640x480"}
    generic = Target(url="rtsp://h/x", scanner="candidate", type="generic_rtsp", name="n", host="h",
                     port=554, path="/x", stream_type="generic")
    assert generic.capabilities(ProbeResult(found=True, status=200, sdp=sdp))["metadata"] == "klv"
    assert generic.capabilities(ProbeResult(found=True, status=401, auth_required=True)) == {
        "protocol": "rtsp", "stream_type": "generic", "port": 554, "stream_path": "/x",
        "auth_required": True}


async def test_run_scan_bounds_concurrency_on_the_injected_clock() -> None:
    clock = Clock()
    running: list[defer.Deferred[ProbeResult]] = []
    peak = 0

    def probe(url: str) -> defer.Deferred[ProbeResult]:
        nonlocal peak
        waiter: defer.Deferred[ProbeResult] = defer.Deferred()
        running.append(waiter)
        peak = max(peak, sum(1 for d in running if not d.called))
        return waiter

    targets = [Target(url=f"rtsp://10.0.0.{i}/x", scanner="generic", type="generic_rtsp", name=str(i),
                      host=f"10.0.0.{i}", port=554, path="/x", stream_type="generic")
               for i in range(1, 11)]
    scan = defer.ensureDeferred(run_scan(targets, probe, clock=clock, max_concurrent=3,
                                         scan_timeout=30))
    assert len(running) == 3
    running[0].callback(ProbeResult(found=True, status=200))
    running[1].callback(ProbeResult(found=False))
    assert len(running) == 5 and peak == 3
    clock.advance(30)  # the scan timeout: the 3 running probes are cancelled, 5 never ran
    outcome = scan.result
    assert [t.url for t, _ in outcome.found] == ["rtsp://10.0.0.1/x"]
    assert outcome.not_found == {"rtsp://10.0.0.2/x"}
    assert outcome.errors == ["scan timed out after 30 s; 8 probes not run"]
    assert all(d.called for d in running)


# --------------------------------------------------------------------------- probe


class _Answerer(protocol.Protocol):
    """Answers every complete request with the next canned answer."""

    def connectionMade(self) -> None:
        self.buffer = b""
        self.answers = list(self.factory.answers)

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            request, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
            self.factory.requests.append(request.decode())
            if self.answers:
                self.transport.write(self.answers.pop(0))

    def connectionLost(self, reason: Any = None) -> None:
        self.factory.closed += 1


class _AnswerFactory(protocol.Factory):
    protocol = _Answerer

    def __init__(self, answers: list[bytes]) -> None:
        self.answers = answers
        self.requests: list[str] = []
        self.closed = 0


@pytest.fixture
def answering():
    ports: list[Any] = []

    def start(*answers: bytes) -> tuple[int, _AnswerFactory]:
        factory = _AnswerFactory(list(answers))
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        ports.append(port)
        return port.getHost().port, factory

    yield start
    for port in ports:
        port.stopListening()


OK_OPTIONS = b"RTSP/1.0 200 OK\r\nCSeq: 1\r\nPublic: OPTIONS, DESCRIBE\r\n\r\n"


def _describe(status: str, body: bytes = b"") -> bytes:
    return (f"RTSP/1.0 {status}\r\nCSeq: 2\r\nContent-Type: application/sdp\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def _prober(probe_timeout: float = 2.0) -> RtspProber:
    return RtspProber(reactor, connect_timeout=1.0, probe_timeout=probe_timeout)


async def test_probe_sends_options_then_describe_without_credentials(answering: Any) -> None:
    sdp = b"v=0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=x-dimensions:800,600\r\n"
    port, factory = answering(OK_OPTIONS, _describe("200 OK", sdp))
    result = await _prober().probe(f"rtsp://user:secret@127.0.0.1:{port}/cam")
    assert result.found and result.sdp is not None and result.sdp.resolution == "800x600"
    options, describe = factory.requests
    url = f"rtsp://127.0.0.1:{port}/cam"
    assert options.split("\r\n")[:2] == [f"OPTIONS {url} RTSP/1.0", "CSeq: 1"]
    assert describe.split("\r\n")[:3] == [f"DESCRIBE {url} RTSP/1.0", "CSeq: 2",
                                          "Accept: application/sdp"]
    assert describe.split("\r\n")[3].startswith("User-Agent: camera-service/")
    assert "secret" not in "".join(factory.requests)


async def test_probe_401_is_found_with_auth_required(answering: Any) -> None:
    port, _ = answering(b"RTSP/1.0 401 Unauthorized\r\nCSeq: 1\r\n\r\n",
                        b"RTSP/1.0 401 Unauthorized\r\nCSeq: 2\r\nWWW-Authenticate: Basic\r\n\r\n")
    result = await _prober().probe(f"rtsp://127.0.0.1:{port}/cam")
    assert (result.found, result.auth_required, result.status) == (True, True, 401)


@pytest.mark.parametrize("answers", [
    (OK_OPTIONS, _describe("404 Not Found")),
    (OK_OPTIONS, _describe("200 OK", b"v=0\r\nm=audio 0 RTP/AVP 0\r\n")),
    (b"HTTP/1.1 400 Bad Request\r\n\r\n",),
    (OK_OPTIONS, b"RTSP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % (MAX_ANSWER + 1)),
    (OK_OPTIONS, b"RTSP/1.0 200 OK\r\n" + b"X-Pad: " + b"a" * MAX_ANSWER),
])
async def test_probe_outcomes_that_are_not_found(answering: Any, answers: tuple[bytes, ...]) -> None:
    port, _ = answering(*answers)
    started = time.monotonic()
    result = await _prober().probe(f"rtsp://127.0.0.1:{port}/cam")
    assert not result.found and not result.connect_failed
    assert time.monotonic() - started < 1.0  # decided by the answer, not by the timeout


async def test_probe_timeout_and_refusal(answering: Any) -> None:
    port, _ = answering()  # accepts, reads, never answers
    started = time.monotonic()
    result = await _prober(probe_timeout=0.5).probe(f"rtsp://127.0.0.1:{port}/cam")
    assert not result.found and not result.connect_failed and "0.5 s" in result.reason
    assert 0.45 <= time.monotonic() - started < 1.5
    closed = reactor.listenTCP(0, protocol.Factory(), interface="127.0.0.1")
    number = closed.getHost().port
    await closed.stopListening()
    result = await _prober().probe(f"rtsp://127.0.0.1:{number}/cam")
    assert result.connect_failed and not result.found


async def test_cancelling_a_probe_closes_its_connection(answering: Any) -> None:
    port, factory = answering()
    probing = _prober(probe_timeout=30).probe(f"rtsp://127.0.0.1:{port}/cam")
    while not factory.requests:
        await deferLater(reactor, 0.01, lambda: None)
    probing.cancel()
    with pytest.raises(defer.CancelledError):
        await probing
    deadline = time.monotonic() + 2
    while not factory.closed:  # the server saw the connection go at once, not after 30 s
        assert time.monotonic() < deadline
        await deferLater(reactor, 0.01, lambda: None)
