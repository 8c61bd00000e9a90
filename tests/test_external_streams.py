"""External streams end to end (api.md §4.30–4.34, media.md §7) with real parts.

The service runs on real sockets and is driven over a real WebSocket. Discovery probes a
real rtsp-server-perl on loopback that FFmpeg publishes H.264 test patterns to, a closed
port, a port that accepts connections but never answers, and a port whose accept queue is
full (so connection attempts hang): timeouts are honoured and ``ping`` keeps answering
within 50 ms while a probe waits. Proxy paths are checked against the OpenAPI-validating
MediaMTX stand-in. Every child process is stopped in teardown.
"""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import deferLater

from camera_service.external.urls import proxy_path_name
from camera_service.testing.fake_mediamtx import FakeMediaMTX, FakeMediaMTXServer
from tests.media_servers import RtspServer

SECRET = "s3cr3t-Pa55"
FEATURE_DISABLED = {"reason": "feature_disabled", "feature": "external_discovery",
                    "details": "External stream discovery is disabled in configuration",
                    "suggestion": "Enable external discovery in configuration"}
STREAM_KEYS = {"url", "type", "name", "status", "discovered_at", "last_seen", "capabilities"}
DISCOVER_KEYS = {"discovered_streams", "skydio_streams", "generic_streams", "scan_timestamp",
                 "total_found", "discovery_options", "scan_duration", "errors"}
LIST_KEYS = {"external_streams", "skydio_streams", "generic_streams", "total_count", "timestamp"}
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class SilentServer:
    """Listens (the kernel completes every handshake) but never accepts or answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = int(self.sock.getsockname()[1])

    def close(self) -> None:
        self.sock.close()


class FullBacklog:
    """A listener whose accept queue is full: new SYNs are dropped, so connecting hangs
    until the client's own timeout (a local stand-in for an address that never answers)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.port = int(self.sock.getsockname()[1])
        self.fillers: list[socket.socket] = []
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            try:
                filler.connect(("127.0.0.1", self.port))
            except BlockingIOError:
                pass
            self.fillers.append(filler)
        time.sleep(0.2)

    def close(self) -> None:
        for filler in self.fillers:
            filler.close()
        self.sock.close()


@pytest.fixture(scope="module")
def rtsp(tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("rtsp")
    server = RtspServer(work)
    try:
        server.publish("subject", work, "640x480")
        server.publish("live", work, "320x240")
        yield server
    finally:
        server.stop()


def flow(values: list[Any]) -> str:
    return json.dumps(values)


def discovery_env(**overrides: str) -> dict[str, str]:
    """Discovery on, nothing probed unless a test names it (never the default 192.168.42.0/24)."""
    env = {
        "CAMERA_SERVICE_EXTERNAL_DISCOVERY_ENABLED": "true",
        "CAMERA_SERVICE_EXTERNAL_DISCOVERY_SKYDIO_KNOWN_IPS": "[]",
        "CAMERA_SERVICE_EXTERNAL_DISCOVERY_SKYDIO_NETWORK_RANGES": "[]",
        "CAMERA_SERVICE_EXTERNAL_DISCOVERY_GENERIC_KNOWN_IPS": "[]",
        "CAMERA_SERVICE_EXTERNAL_DISCOVERY_GENERIC_NETWORK_RANGES": "[]",
    }
    env.update(overrides)
    return env


def assert_no_secret(*documents: Any) -> None:
    for document in documents:
        assert SECRET not in json.dumps(document), document


async def sleep(seconds: float) -> None:
    await deferLater(reactor, seconds, lambda: None)


# ---------------------------------------------------------------------------- discovery


async def test_discovery_finds_real_streams_with_codec_and_resolution(services: Any, rtsp: RtspServer) -> None:
    port = rtsp.client_port
    running = await services.start(**discovery_env(
        CAMERA_SERVICE_EXTERNAL_DISCOVERY_CANDIDATES=flow([rtsp.url("live")]),
        CAMERA_SERVICE_EXTERNAL_DISCOVERY_SKYDIO_KNOWN_IPS=flow(["127.0.0.1"]),
        CAMERA_SERVICE_EXTERNAL_DISCOVERY_SKYDIO_EO_PORT=str(port),
        CAMERA_SERVICE_EXTERNAL_DISCOVERY_SKYDIO_EO_PATH="/subject",
        CAMERA_SERVICE_EXTERNAL_DISCOVERY_SKYDIO_IR_PORT=str(closed_port()),
        CAMERA_SERVICE_EXTERNAL_DISCOVERY_GENERIC_ENABLED="true",
        CAMERA_SERVICE_EXTERNAL_DISCOVERY_GENERIC_KNOWN_IPS=flow(["127.0.0.1"]),
        CAMERA_SERVICE_EXTERNAL_DISCOVERY_GENERIC_PORTS=flow([port]),
        CAMERA_SERVICE_EXTERNAL_DISCOVERY_GENERIC_PATHS=flow(["/stream", "/video"])))
    client = await running.authed_client("operator")
    result = await client.call("discover_external_streams", {"generic_enabled": True})

    assert set(result) == DISCOVER_KEYS
    assert result["errors"] == []
    assert result["discovery_options"] == {"skydio_enabled": True, "generic_enabled": True,
                                           "force_rescan": False, "include_offline": False}
    assert RFC3339.match(result["scan_timestamp"])
    assert re.fullmatch(r"\d+\.\d+s", result["scan_duration"])
    assert result["total_found"] == len(result["discovered_streams"]) == 2
    by_url = {s["url"]: s for s in result["discovered_streams"]}
    assert set(by_url) == {rtsp.url("live"), rtsp.url("subject")}  # /stream, /video: 404

    skydio = by_url[rtsp.url("subject")]
    assert set(skydio) == STREAM_KEYS
    assert skydio["type"] == "skydio_stanag4609"
    assert skydio["name"] == "Skydio_EO_127.0.0.1_eo_/subject"
    assert skydio["status"] == "DISCOVERED"
    assert skydio["discovered_at"] == skydio["last_seen"]
    assert skydio["capabilities"] == {
        "protocol": "rtsp", "stream_type": "eo", "port": port, "stream_path": "/subject",
        "format": "stanag4609", "source": "skydio_uav", "metadata": "klv_mpegts",
        "codec": "h264", "resolution": "640x480"}

    generic = by_url[rtsp.url("live")]
    assert generic["type"] == "generic_rtsp"
    assert generic["name"] == f"Generic_127.0.0.1_{port}/live"
    assert generic["capabilities"] == {"protocol": "rtsp", "stream_type": "generic", "port": port,
                                       "stream_path": "/live", "codec": "h264",
                                       "resolution": "320x240"}
    assert result["skydio_streams"] == [skydio]
    assert result["generic_streams"] == [generic]

    listed = await client.call("get_external_streams")
    assert set(listed) == LIST_KEYS
    assert listed["total_count"] == 2
    assert sorted(s["url"] for s in listed["external_streams"]) == sorted(by_url)
    assert listed["skydio_streams"] == [skydio]


async def test_closed_port_fails_fast(services: Any) -> None:
    port = closed_port()
    running = await services.start(**discovery_env(
        CAMERA_SERVICE_EXTERNAL_DISCOVERY_CANDIDATES=flow([f"rtsp://127.0.0.1:{port}/live"]),
        CAMERA_SERVICE_EXTERNAL_DISCOVERY_CONNECT_TIMEOUT="5",
        CAMERA_SERVICE_EXTERNAL_DISCOVERY_PROBE_TIMEOUT="5"))
    client = await running.authed_client("operator")
    started = time.monotonic()
    result = await client.call("discover_external_streams")
    assert time.monotonic() - started < 1.0  # refused at once, no timeout waited for
    assert result["discovered_streams"] == [] and result["total_found"] == 0
    assert result["errors"] == []  # a refusal is not an error (media.md §7.2)


async def test_silent_hosts_honour_timeouts_while_ping_stays_fast(services: Any) -> None:
    silent = SilentServer()
    full = FullBacklog()
    try:
        running = await services.start(**discovery_env(
            CAMERA_SERVICE_EXTERNAL_DISCOVERY_CANDIDATES=flow(
                [f"rtsp://127.0.0.1:{silent.port}/never"]),
            CAMERA_SERVICE_EXTERNAL_DISCOVERY_GENERIC_ENABLED="true",
            CAMERA_SERVICE_EXTERNAL_DISCOVERY_GENERIC_KNOWN_IPS=flow(["127.0.0.1"]),
            CAMERA_SERVICE_EXTERNAL_DISCOVERY_GENERIC_PORTS=flow([full.port]),
            CAMERA_SERVICE_EXTERNAL_DISCOVERY_GENERIC_PATHS=flow(["/a", "/b", "/c"]),
            CAMERA_SERVICE_EXTERNAL_DISCOVERY_CONNECT_TIMEOUT="1",
            CAMERA_SERVICE_EXTERNAL_DISCOVERY_PROBE_TIMEOUT="1.5"))
        client = await running.authed_client("operator")
        started = time.monotonic()
        scan = client.request("discover_external_streams", {"generic_enabled": True})
        rtts = []
        while not scan.called:
            before = time.perf_counter()
            assert await client.call("ping") == "pong"
            rtts.append(time.perf_counter() - before)
            await sleep(0.05)
        elapsed = time.monotonic() - started
        response = await scan
        assert len(rtts) >= 10, rtts  # the scan really was running meanwhile
        assert max(rtts) < 0.050, rtts
        result = response["result"]
        assert result["discovered_streams"] == [] and result["errors"] == []
        # The silent server is given the probe timeout (1.5 s), the full backlog the connect
        # timeout (1 s) once: its other two paths are not probed (3 x 1 s otherwise).
        assert 1.4 <= elapsed < 2.8, elapsed
    finally:
        silent.close()
        full.close()


async def test_scan_timeout_cancels_outstanding_probes(services: Any) -> None:
    silent = SilentServer()
    try:
        urls = [f"rtsp://127.0.0.1:{silent.port}/{name}" for name in ("a", "b", "c")]
        running = await services.start(**discovery_env(
            CAMERA_SERVICE_EXTERNAL_DISCOVERY_CANDIDATES=flow(urls),
            CAMERA_SERVICE_EXTERNAL_DISCOVERY_PROBE_TIMEOUT="20",
            CAMERA_SERVICE_EXTERNAL_DISCOVERY_SCAN_TIMEOUT="1"))
        client = await running.authed_client("operator")
        started = time.monotonic()
        result = await client.call("discover_external_streams")
        assert time.monotonic() - started < 2.0
        assert result["errors"] == ["scan timed out after 1 s; 3 probes not run"]
        assert result["total_found"] == 0
    finally:
        silent.close()


async def test_concurrent_calls_share_one_scan_and_results_are_reused(services: Any, rtsp: RtspServer) -> None:
    silent = SilentServer()
    try:
        running = await services.start(**discovery_env(
            CAMERA_SERVICE_EXTERNAL_DISCOVERY_CANDIDATES=flow(
                [rtsp.url("live"), f"rtsp://127.0.0.1:{silent.port}/x"]),
            CAMERA_SERVICE_EXTERNAL_DISCOVERY_PROBE_TIMEOUT="1",
            CAMERA_SERVICE_EXTERNAL_DISCOVERY_SCAN_INTERVAL="300"))
        external = running.root.getServiceNamed("external_streams")
        client = await running.authed_client("operator")
        first = client.request("discover_external_streams")
        second = client.request("discover_external_streams", {"force_rescan": True})
        one, two = (await first)["result"], (await second)["result"]
        assert external.scans == 1  # the second call waited for the running scan
        assert one["scan_timestamp"] == two["scan_timestamp"]
        assert one["discovered_streams"] == two["discovered_streams"]
        assert two["discovery_options"]["force_rescan"] is True
        # Within the interval a scan is reused; force_rescan scans again.
        again = await client.call("discover_external_streams")
        assert external.scans == 1 and again["discovered_streams"] == one["discovered_streams"]
        await client.call("discover_external_streams", {"force_rescan": True})
        assert external.scans == 2
    finally:
        silent.close()


async def test_include_offline_and_error_status(services: Any, tmp_path: Path) -> None:
    """A stream seen earlier and gone now: ERROR with include_offline, and in the list."""
    work = tmp_path / "own-rtsp"
    work.mkdir()
    server = RtspServer(work)
    try:
        server.publish("gone", work, "320x240")
        running = await services.start(**discovery_env(
            CAMERA_SERVICE_EXTERNAL_DISCOVERY_CANDIDATES=flow([server.url("gone")])))
        client = await running.authed_client("operator")
        first = await client.call("discover_external_streams")
        assert [s["status"] for s in first["discovered_streams"]] == ["DISCOVERED"]
        publisher = server.children[-1]
        publisher.terminate()
        publisher.wait(timeout=10)
        deadline = time.monotonic() + 15
        while True:  # until the server has unmounted the stream
            later = await client.call("discover_external_streams",
                                      {"force_rescan": True, "include_offline": True})
            if later["discovered_streams"] and later["discovered_streams"][0]["status"] == "ERROR":
                break
            assert time.monotonic() < deadline, later
            await sleep(0.3)
        assert later["total_found"] == 1
        offline = later["discovered_streams"][0]
        assert offline["url"] == server.url("gone")
        assert offline["discovered_at"] == first["discovered_streams"][0]["discovered_at"]
        without = await client.call("discover_external_streams", {"force_rescan": True})
        assert without["discovered_streams"] == [] and without["total_found"] == 0
        listed = await client.call("get_external_streams")
        assert [s["status"] for s in listed["external_streams"]] == ["ERROR"]
    finally:
        server.stop()


async def test_periodic_scans_follow_set_discovery_interval(services: Any, rtsp: RtspServer) -> None:
    running = await services.start(**discovery_env(
        CAMERA_SERVICE_EXTERNAL_DISCOVERY_CANDIDATES=flow([rtsp.url("live")]),
        CAMERA_SERVICE_EXTERNAL_DISCOVERY_STARTUP_SCAN="true"))
    external = running.root.getServiceNamed("external_streams")
    admin = await running.authed_client("admin")
    deadline = time.monotonic() + 10
    while external.scans < 1:  # the start-up scan
        assert time.monotonic() < deadline
        await sleep(0.05)
    listed = await admin.call("get_external_streams")
    assert [s["url"] for s in listed["external_streams"]] == [rtsp.url("live")]
    await sleep(1.5)
    assert external.scans == 1  # interval 0: no periodic scans

    result = await admin.call("set_discovery_interval", {"scan_interval": 1})
    assert set(result) == {"scan_interval", "status", "message", "timestamp"}
    assert result["scan_interval"] == 1 and result["status"] == "UPDATED"
    assert result["message"] == "Discovery interval updated successfully"
    assert RFC3339.match(result["timestamp"])
    await sleep(2.6)
    assert 3 <= external.scans <= 4, external.scans
    first_seen = listed["external_streams"][0]["discovered_at"]
    now_listed = (await admin.call("get_external_streams"))["external_streams"][0]
    assert now_listed["discovered_at"] == first_seen and now_listed["last_seen"] >= first_seen

    stopped = await admin.call("set_discovery_interval", {"scan_interval": 0})
    assert stopped["scan_interval"] == 0
    count = external.scans
    await sleep(1.6)
    assert external.scans == count


# ---------------------------------------------------------------------------- add / remove


class MediaMTXWorld:
    def __init__(self) -> None:
        self.fake = FakeMediaMTX()
        self.server = FakeMediaMTXServer(self.fake)
        self.server.start(reactor, port=0)

    def env(self) -> dict[str, str]:
        return {"CAMERA_SERVICE_MEDIAMTX_ENABLED": "true",
                "CAMERA_SERVICE_MEDIAMTX_HOST": "127.0.0.1",
                "CAMERA_SERVICE_MEDIAMTX_API_PORT": str(self.server.port_number),
                "CAMERA_SERVICE_MEDIAMTX_RTSP_PORT": "18554",
                "CAMERA_SERVICE_MEDIAMTX_HEALTH_CHECK_INTERVAL": "0.3",
                "CAMERA_SERVICE_MEDIAMTX_REQUEST_TIMEOUT": "2"}

    async def start(self, services: Any, **env: str) -> Any:
        running = await services.start(**discovery_env(**self.env(), **env))
        mediamtx = running.root.getServiceNamed("mediamtx")
        deadline = time.monotonic() + 10
        while not (mediamtx.state == "up" and mediamtx.first_provisioning_done
                   and running.app.readiness.status() == "ready"):
            assert time.monotonic() < deadline, "MediaMTX stand-in never provisioned"
            await sleep(0.05)
        return running

    async def until_path(self, name: str, present: bool, seconds: float = 10) -> None:
        deadline = time.monotonic() + seconds
        while (self.fake.path_config(name) is not None) != present:
            assert time.monotonic() < deadline, (name, present, self.fake.api_paths())
            await sleep(0.05)


@pytest.fixture
def mediamtx(services: Any):
    world = MediaMTXWorld()
    yield world
    services.stop_all()
    pytest_twisted.blockon(world.server.stop())
    assert world.fake.violations == []
    assert world.fake.fake_bugs == []


async def test_add_and_remove_through_mediamtx_with_masked_passwords(services: Any, mediamtx: MediaMTXWorld) -> None:
    running = await mediamtx.start(services)
    client = await running.authed_client("operator")
    url = f"rtsp://gate:{SECRET}@192.0.2.20:554/stream"
    masked = "rtsp://gate:***@192.0.2.20:554/stream"
    name = proxy_path_name(url)
    assert name == proxy_path_name("rtsp://192.0.2.20:554/stream")

    added = await client.call("add_external_stream", {"stream_url": url, "stream_name": "Gate camera"})
    assert set(added) == {"stream_url", "stream_name", "stream_type", "status", "timestamp"}
    assert added["stream_url"] == masked
    assert (added["stream_name"], added["stream_type"], added["status"]) == (
        "Gate camera", "generic_rtsp", "ADDED")
    assert RFC3339.match(added["timestamp"])

    conf = mediamtx.fake.path_config(name)  # written at once, MediaMTX being UP
    assert conf is not None
    assert conf["source"] == url  # MediaMTX needs the credentials; only it gets them
    assert conf["sourceOnDemand"] is True
    assert conf["sourceOnDemandStartTimeout"] == "10s"
    assert conf["sourceOnDemandCloseAfter"] == "10s"
    assert conf["rtspTransport"] == "automatic" and conf["record"] is False
    assert conf["recordDeleteAfter"] == "0s"
    assert conf["recordPath"].endswith("/%path/%path_%Y-%m-%d_%H-%M-%S")
    replaced = mediamtx.fake.requests_to("POST", f"/v3/config/paths/replace/{name}")
    assert len(replaced) == 1

    listed = await client.call("get_external_streams")
    assert listed["total_count"] == 1 and listed["skydio_streams"] == []
    stream = listed["external_streams"][0]
    assert listed["generic_streams"] == [stream]
    assert set(stream) == STREAM_KEYS
    assert stream["url"] == masked and stream["status"] == "DISCOVERED"
    assert stream["name"] == "Gate camera" and stream["type"] == "generic_rtsp"
    assert stream["discovered_at"] == stream["last_seen"] == added["timestamp"]
    assert stream["capabilities"] == {"proxy_path": name,
                                      "proxy_url": f"rtsp://127.0.0.1:18554/{name}"}
    streams = await client.call("get_streams")
    assert name in [s["name"] for s in streams]

    # A duplicate, also with other credentials (same source): already_exists.
    for again in (url, f"rtsp://other:{SECRET}x@192.0.2.20:554/stream"):
        error = await client.error("add_external_stream", {"stream_url": again, "stream_name": "x"})
        assert error["code"] == -32020
        assert error["data"]["reason"] == "already_exists"
        assert error["data"]["state"] == "ADDED" and error["data"]["allowed_states"] == []
        assert_no_secret(error)

    # A skydio-typed stream lands in skydio_streams.
    sky = await client.call("add_external_stream", {
        "stream_url": "rtsps://192.0.2.21/subject", "stream_name": "Drone",
        "stream_type": "skydio_stanag4609"})
    assert sky["stream_type"] == "skydio_stanag4609"
    listed = await client.call("get_external_streams")
    assert [s["name"] for s in listed["skydio_streams"]] == ["Drone"]
    assert [s["name"] for s in listed["generic_streams"]] == ["Gate camera"]

    # MediaMTX restarts: provisioning writes every proxy path again.
    mediamtx.fake.restart()
    await mediamtx.until_path(name, present=True)
    await mediamtx.until_path(proxy_path_name("rtsps://192.0.2.21/subject"), present=True)
    assert mediamtx.fake.path_config(name)["source"] == url

    removed = await client.call("remove_external_stream", {"stream_url": masked})
    assert removed == {"stream_url": masked, "status": "REMOVED", "timestamp": removed["timestamp"]}
    assert RFC3339.match(removed["timestamp"])
    assert mediamtx.fake.path_config(name) is None  # deleted at once
    missing = await client.error("remove_external_stream", {"stream_url": url})
    assert missing["code"] == -32010
    assert missing["message"] == "External stream not found"
    assert missing["data"]["reason"] == "external_stream_not_found"
    assert missing["data"]["resource"] == "external_stream"
    assert missing["data"]["id"] == masked
    assert_no_secret(added, listed, removed, missing, streams)
    # Removing by the URL exactly as added works too.
    await client.call("remove_external_stream", {"stream_url": "rtsps://192.0.2.21/subject"})
    assert (await client.call("get_external_streams"))["total_count"] == 0
    # Nothing ever published carried the password either.
    assert SECRET not in json.dumps([r.body for r in mediamtx.fake.requests
                                     if not r.path.startswith("/v3/config/paths/replace/")],
                                    default=str)


async def test_added_streams_persist_across_a_restart(services: Any, mediamtx: MediaMTXWorld) -> None:
    first = await mediamtx.start(services)
    client = await first.authed_client("operator")
    url = f"rtsp://viewer:{SECRET}@192.0.2.30:8554/live"
    added = await client.call("add_external_stream", {"stream_url": url, "stream_name": "Yard",
                                                      "stream_type": "custom"})
    state_file = first.state_dir / "external-streams.json"
    assert stat.S_IMODE(os.stat(state_file).st_mode) == 0o600
    document = json.loads(state_file.read_text())
    assert [s["url"] for s in document["streams"]] == [url]  # the file keeps the password
    name = proxy_path_name(url)
    await first.root.stopService()

    # MediaMTX lost everything meanwhile; the new service provisions the proxy path again
    # at its first provisioning (and never deletes it as stale).
    mediamtx.fake.restart()
    assert mediamtx.fake.path_config(name) is None
    second = await mediamtx.start(services)
    assert second.state_dir == first.state_dir
    await mediamtx.until_path(name, present=True)
    assert mediamtx.fake.requests_to("DELETE", f"/v3/config/paths/delete/{name}") == []
    client = await second.authed_client("viewer")
    listed = await client.call("get_external_streams")
    stream = listed["external_streams"][0]
    assert listed["total_count"] == 1
    assert stream["url"] == "rtsp://viewer:***@192.0.2.30:8554/live"
    assert (stream["name"], stream["type"], stream["discovered_at"]) == (
        "Yard", "custom", added["timestamp"])
    assert listed["generic_streams"] == [stream]

    operator = await second.authed_client("operator")
    await operator.call("remove_external_stream", {"stream_url": url})
    assert json.loads(state_file.read_text())["streams"] == []
    assert stat.S_IMODE(os.stat(state_file).st_mode) == 0o600
    await mediamtx.until_path(name, present=False)


async def test_add_while_mediamtx_is_down_is_provisioned_later(services: Any, mediamtx: MediaMTXWorld) -> None:
    running = await mediamtx.start(services)
    service = running.root.getServiceNamed("mediamtx")
    client = await running.authed_client("operator")
    await mediamtx.fake.outage()
    deadline = time.monotonic() + 10
    while service.state != "down":
        assert time.monotonic() < deadline
        await sleep(0.05)
    url = "rtsp://192.0.2.40/cam"
    added = await client.call("add_external_stream", {"stream_url": url, "stream_name": "Late"})
    assert added["status"] == "ADDED"
    mediamtx.fake.recover()
    await mediamtx.until_path(proxy_path_name(url), present=True, seconds=20)


# ---------------------------------------------------------------------------- errors


async def test_every_method_with_discovery_disabled(service: Any) -> None:
    operator = await service.authed_client("admin")
    calls = [("discover_external_streams", {}),
             ("add_external_stream", {"stream_url": "rtsp://192.0.2.1/x", "stream_name": "x"}),
             ("remove_external_stream", {"stream_url": "rtsp://192.0.2.1/x"}),
             ("set_discovery_interval", {"scan_interval": 10})]
    for method, params in calls:
        error = await operator.error(method, params)
        assert error["code"] == -32030 and error["message"] == "Unsupported", method
        assert error["data"] == FEATURE_DISABLED, method
    listed = await operator.call("get_external_streams")
    assert set(listed) == LIST_KEYS
    assert listed["external_streams"] == listed["skydio_streams"] == listed["generic_streams"] == []
    assert listed["total_count"] == 0 and RFC3339.match(listed["timestamp"])
    assert not (service.state_dir / "external-streams.json").exists()


@pytest.mark.parametrize(("method", "params", "param", "rule"), [
    ("add_external_stream", {"stream_name": "x"}, "stream_url", "required"),
    ("add_external_stream", {"stream_url": None, "stream_name": "x"}, "stream_url", "required"),
    ("add_external_stream", {"stream_url": 5, "stream_name": "x"}, "stream_url", "type"),
    ("add_external_stream", {"stream_url": "", "stream_name": "x"}, "stream_url", "non_empty"),
    ("add_external_stream", {"stream_url": "http://h/x", "stream_name": "x"}, "stream_url", "url_scheme"),
    ("add_external_stream", {"stream_url": "rtmp://h/x", "stream_name": "x"}, "stream_url", "url_scheme"),
    ("add_external_stream", {"stream_url": "rtsp://", "stream_name": "x"}, "stream_url", "url_scheme"),
    ("add_external_stream", {"stream_url": "rtsp:///x", "stream_name": "x"}, "stream_url", "url_scheme"),
    ("add_external_stream", {"stream_url": "rtsp://h:0/x", "stream_name": "x"}, "stream_url", "url_scheme"),
    ("add_external_stream", {"stream_url": "rtsp://h:70000/x", "stream_name": "x"}, "stream_url", "url_scheme"),
    ("add_external_stream", {"stream_url": "rtsp://h/a b", "stream_name": "x"}, "stream_url", "url_scheme"),
    ("add_external_stream", {"stream_url": "rtsp://h/a\r\nX: y", "stream_name": "x"}, "stream_url",
     "url_scheme"),
    ("add_external_stream", {"stream_url": "rtsp://h/x"}, "stream_name", "required"),
    ("add_external_stream", {"stream_url": "rtsp://h/x", "stream_name": ""}, "stream_name", "non_empty"),
    ("add_external_stream", {"stream_url": "rtsp://h/x", "stream_name": "n" * 256}, "stream_name", "range"),
    ("add_external_stream", {"stream_url": "rtsp://h/x", "stream_name": ["x"]}, "stream_name", "type"),
    ("add_external_stream", {"stream_url": "rtsp://h/x", "stream_name": "x", "stream_type": ""},
     "stream_type", "non_empty"),
    ("add_external_stream", {"stream_url": "rtsp://h/x", "stream_name": "x", "stream_type": "t" * 65},
     "stream_type", "range"),
    # The first invalid parameter in table order is reported.
    ("add_external_stream", {"stream_url": "ftp://h/x", "stream_name": ""}, "stream_url", "url_scheme"),
    ("remove_external_stream", {}, "stream_url", "required"),
    ("remove_external_stream", {"stream_url": ""}, "stream_url", "non_empty"),
    ("remove_external_stream", {"stream_url": 1}, "stream_url", "type"),
    ("set_discovery_interval", {}, "scan_interval", "required"),
    ("set_discovery_interval", {"interval": 300}, "scan_interval", "required"),
    ("set_discovery_interval", {"scan_interval": -1}, "scan_interval", "range"),
    ("set_discovery_interval", {"scan_interval": 1.5}, "scan_interval", "type"),
    ("set_discovery_interval", {"scan_interval": True}, "scan_interval", "type"),
    ("set_discovery_interval", {"scan_interval": "300"}, "scan_interval", "type"),
    ("discover_external_streams", {"skydio_enabled": "true"}, "skydio_enabled", "type"),
    ("discover_external_streams", {"generic_enabled": 1}, "generic_enabled", "type"),
    ("discover_external_streams", {"force_rescan": 0}, "force_rescan", "type"),
    ("discover_external_streams", {"include_offline": "yes"}, "include_offline", "type"),
])
async def test_parameter_validation(services: Any, method: str, params: dict[str, Any], param: str,
                                    rule: str) -> None:
    running = await services.start(**discovery_env())
    client = await running.authed_client("admin")
    error = await client.error(method, params)
    assert error["code"] == -32602, error
    assert (error["data"]["param"], error["data"]["rule"]) == (param, rule), error
    assert error["data"]["reason"] == "invalid_params"


async def test_roles_and_accepted_parameter_forms(services: Any) -> None:
    running = await services.start(**discovery_env())
    viewer = await running.authed_client("viewer")
    operator = await running.authed_client("operator")
    for method, client, need in (("discover_external_streams", viewer, "operator"),
                                 ("add_external_stream", viewer, "operator"),
                                 ("remove_external_stream", viewer, "operator"),
                                 ("set_discovery_interval", operator, "admin")):
        error = await client.error(method, {})
        assert error["code"] == -32002 and error["data"]["required_role"] == need, method
    assert (await viewer.call("get_external_streams"))["total_count"] == 0
    # 5.0 is an integer, null is absent, unknown names are ignored (api.md §3.6).
    admin = await running.authed_client("admin")
    assert (await admin.call("set_discovery_interval", {"scan_interval": 5.0}))["scan_interval"] == 5
    result = await operator.call("discover_external_streams", {"skydio_enabled": None, "other": 1})
    assert result["discovery_options"]["skydio_enabled"] is True
    added = await operator.call("add_external_stream", {"stream_url": "rtsp://[2001:db8::1]:8554/x",
                                                        "stream_name": "v6", "stream_type": None})
    assert added["stream_type"] == "generic_rtsp"
    assert added["stream_url"] == "rtsp://[2001:db8::1]:8554/x"


async def test_mediamtx_rejections_never_carry_a_password(services: Any, mediamtx: MediaMTXWorld) -> None:
    """A MediaMTX error text that echoes a source URL is masked in the -32050 detail, the
    mediamtx.error event and the health details (media.md §7.4)."""
    from camera_service.rpc.errors import RpcError

    running = await mediamtx.start(services)
    client = await running.authed_client("admin")
    await client.call("subscribe_events", {"topics": ["mediamtx.error"]})
    service = running.root.getServiceNamed("mediamtx")
    name = proxy_path_name("rtsp://192.0.2.50/x")
    with pytest.raises(RpcError) as raised:
        # The stand-in answers 400 "invalid source: '<source>'", as MediaMTX does.
        await service.write_external_path(name, {"source": f"bogus://u:{SECRET}@192.0.2.50/x"})
    assert raised.value.data["dependency"] == "mediamtx"
    assert "bogus://u:***@192.0.2.50/x" in raised.value.data["detail"]
    waiting = client.notifications.get()
    waiting.addTimeout(5, reactor)
    event = await waiting
    assert event["method"] == "mediamtx.error" and "u:***@" in event["params"]["error"]
    assert_no_secret(raised.value.data, event, running.app.health.get("mediamtx").details)
    # The one request the stand-in refused is the deliberate one above.
    assert [v.path for v in mediamtx.fake.violations] == [f"/v3/config/paths/replace/{name}"]
    mediamtx.fake.violations.clear()
