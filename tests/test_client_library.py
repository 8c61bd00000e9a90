"""camera_service.client as a library, in-process: against the real service on loopback
sockets, and against small misbehaving servers for the failure paths the service never
produces (no answer, stray frames, truncated or stalled downloads)."""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import pytest
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet import defer, reactor
from twisted.internet.task import deferLater
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from camera_service.client import (
    ClientTimeout,
    ConnectFailed,
    ConnectionLost,
    HttpError,
    IncompleteDownload,
    Notification,
    RpcError,
    auth_headers,
    connect,
    download_file,
    file_url,
    http_base,
)
from camera_service.client.cli import (
    Output,
    ProgressBar,
    format_pretty,
    with_legacy_call,
)
from tests.conftest import free_port

VIRTUAL = json.dumps([{"id": "camera100", "name": "Test pattern", "pattern": "testsrc2",
                       "size": "320x240", "rate": 15}])


async def start(services: Any, **env: str) -> Any:
    return await services.start(CAMERA_SERVICE_VIRTUAL_CAMERAS=VIRTUAL, **env)


# --- calls ---------------------------------------------------------------------------


async def test_concurrent_calls_are_matched_by_id_and_errors_are_typed(services: Any) -> None:
    running = await start(services)
    client = await connect(running.ws_url, token=running.token("operator"))
    try:
        assert client.session is not None and client.session["role"] == "operator"
        methods = [("ping", None), ("get_camera_list", None),
                   ("get_camera_status", {"device": "camera100"}),
                   ("get_camera_capabilities", {"device": "camera100"}),
                   ("list_recordings", {"limit": 3})] * 4
        results = await defer.gatherResults(
            [defer.ensureDeferred(client.call(m, p)) for m, p in methods])
        for (method, _), result in zip(methods, results):
            if method == "ping":
                assert result == "pong"
            elif method == "get_camera_list":
                assert result["total"] == 1
            elif method == "list_recordings":
                assert result["limit"] == 3
            else:
                assert result["device"] == "camera100"

        with pytest.raises(RpcError) as missing:
            await client.call("get_camera_status", {"device": "camera999"})
        assert missing.value.code == -32010 and missing.value.reason == "camera_not_found"
        assert missing.value.to_dict()["data"]["reason"] == "camera_not_found"
        assert "camera_not_found" in str(missing.value)
        with pytest.raises(RpcError) as denied:
            await client.call("delete_recording", {"filename": "x.mp4"})
        assert denied.value.code == -32002 and denied.value.data["have_role"] == "operator"
        with pytest.raises(TypeError):
            client.request("ping", ["positional"])  # type: ignore[arg-type]
    finally:
        info = await client.close()
    assert info.code == 1000 and info.clean
    assert not client.is_open
    with pytest.raises(ConnectionLost):
        await client.call("ping")
    with pytest.raises(ConnectionLost):
        await client.next_notification()


async def test_connect_failures(services: Any) -> None:
    running = await start(services)
    with pytest.raises(ConnectFailed, match="refused"):
        await connect(f"ws://127.0.0.1:{free_port()}/ws", timeout=5)
    with pytest.raises(RpcError) as failed:
        await connect(running.ws_url, token="not.a.jwt")
    assert failed.value.code == -32001 and failed.value.reason == "auth_failed"
    with pytest.raises(ValueError):
        await connect("http://example.invalid:8002/ws")
    # The upgrade refused with HTTP 403 (origin not allowed) is a connection failure.
    with pytest.raises(ConnectFailed, match="403"):
        await connect(running.ws_url, origin="http://evil.example")
    # Unauthenticated clients may ping.
    client = await connect(running.ws_url)
    try:
        assert client.session is None
        assert await client.call("ping") == "pong"
        with pytest.raises(RpcError) as required:
            await client.call("get_camera_list")
        assert required.value.reason == "auth_required"
    finally:
        await client.close()


# --- notifications -------------------------------------------------------------------


async def test_notifications_reach_callbacks_and_the_queue(services: Any) -> None:
    running = await start(services)
    client = await connect(running.ws_url, token=running.token("operator"))
    seen: list[Notification] = []
    remove = client.on_notification(seen.append)
    client.on_notification(lambda n: 1 / 0)  # a failing callback does not stop delivery
    try:
        subscribed = await client.subscribe(["recording_status_update", "recording.start"],
                                            {"device": "camera100"})
        assert subscribed == {"subscribed": True,
                              "topics": ["recording_status_update", "recording.start"],
                              "filters": {"device": "camera100"}}
        with pytest.raises(RpcError) as unknown:
            await client.subscribe(["no.such.topic"])
        assert unknown.value.code == -32602

        started = await client.call("start_recording", {"device": "camera100", "duration": 1})
        first = await client.next_notification(timeout=10)
        second = await client.next_notification(timeout=10)
        assert {first.method, second.method} == {"recording_status_update", "recording.start"}
        update = first if first.method == "recording_status_update" else second
        assert update.params == {"device": "camera100", "status": "STARTED",
                                 "filename": started["filename"], "duration": 0}
        stopped = await client.next_notification(timeout=20)
        assert stopped.method == "recording_status_update"
        assert stopped.params["status"] == "STOPPED"
        assert seen == [first, second, stopped]
        remove()

        removed = await client.unsubscribe()
        assert sorted(removed["topics"]) == ["recording.start", "recording_status_update"]
        with pytest.raises(ClientTimeout):
            await client.next_notification(timeout=0.2)
    finally:
        await client.close()


async def test_server_shutdown_fails_waiters_with_connection_lost(services: Any) -> None:
    running = await start(services)
    client = await connect(running.ws_url, token=running.token("viewer"))
    await client.subscribe(["system.shutdown"])
    shutdown_event = client.next_notification()
    closed = client.when_closed()
    await running.root.stopService()
    event = await shutdown_event
    assert event.method == "system.shutdown"
    waiting = client.next_notification()
    info = await closed
    assert info.code == 1001 and info.reason == "server shutdown"
    with pytest.raises(ConnectionLost, match="1001"):
        await waiting


# --- a server that misbehaves --------------------------------------------------------


class _Scripted(WebSocketServerProtocol):
    """Answers ``ping`` after stray frames; never answers ``slow``."""

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        request = json.loads(payload)
        if request["method"] == "slow":
            return
        self.sendMessage(b"\x00\x01", isBinary=True)
        self.sendMessage(b"not json")
        self.sendMessage(b"[1, 2]")
        self.sendMessage(json.dumps({"jsonrpc": "2.0", "result": "stray", "id": 999}).encode())
        parse_error = {"code": -32700, "message": "Parse error", "data": {}}
        self.sendMessage(json.dumps({"jsonrpc": "2.0", "error": parse_error, "id": None}).encode())
        self.sendMessage(json.dumps({"jsonrpc": "2.0", "method": "camera.connected",
                                     "params": {"device": "camera0"}}).encode())
        self.sendMessage(json.dumps({"jsonrpc": "2.0", "result": "pong", "id": request["id"]}).encode())


async def test_timeouts_and_stray_frames_from_a_scripted_server() -> None:
    factory = WebSocketServerFactory()
    factory.protocol = _Scripted
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    try:
        url = f"ws://127.0.0.1:{port.getHost().port}/ws"
        client = await connect(url, call_timeout=0.3, queue_size=2)
        try:
            with pytest.raises(ClientTimeout):
                await client.call("slow")
            assert await client.call("ping") == "pong"  # after the noise, still in step
            assert (await client.next_notification(timeout=1)).params == {"device": "camera0"}
            for _ in range(3):
                await client.call("ping")
            assert client.dropped == 1  # queue of 2: the oldest of three was dropped
        finally:
            await client.close()
    finally:
        await port.stopListening()


# --- downloads -----------------------------------------------------------------------


def test_urls_and_credential_headers() -> None:
    assert http_base("ws://localhost:8002/ws") == "http://localhost:8002"
    assert http_base("wss://[::1]:9000/proxy/ws") == "https://[::1]:9000"
    with pytest.raises(ValueError):
        http_base("ftp://host/ws")
    assert file_url("http://h:1", "recordings", "a b/../c") == \
        "http://h:1/files/recordings/a%20b%2F..%2Fc"
    with pytest.raises(ValueError):
        file_url("http://h:1", "other", "x")
    assert auth_headers("a.b.c") == {"Authorization": "Bearer a.b.c"}
    assert auth_headers(None, "csk_k7f3a9q2_x") == {"X-API-Key": "csk_k7f3a9q2_x"}
    assert auth_headers("csk_k7f3a9q2_x") == {"X-API-Key": "csk_k7f3a9q2_x"}
    assert auth_headers() == {}


async def test_download_streams_a_large_file_with_progress_and_resume(services: Any,
                                                                       tmp_path: Path) -> None:
    running = await start(services)
    directory = Path(running.app.stores["recordings"].root) / "camera100"
    directory.mkdir(parents=True, exist_ok=True)
    data = os.urandom(6 * 1024 * 1024)  # several HIGH_WATER marks: pauses the connection
    (directory / "camera100_2025-01-15_16-00-00.ts").write_bytes(data)
    base = http_base(running.ws_url)
    url = file_url(base, "recordings", "camera100_2025-01-15_16-00-00")
    headers = auth_headers(running.token("viewer"))

    progress: list[tuple[int, int | None]] = []
    target = tmp_path / "big.ts"
    result = await download_file(url, str(target), headers=headers,
                                 progress=lambda done, total: progress.append((done, total)))
    assert hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(data).digest()
    assert result.size == result.received == len(data) and result.resumed_from == 0
    assert progress[0] == (0, len(data)) and progress[-1] == (len(data), len(data))
    assert [done for done, _ in progress] == sorted(done for done, _ in progress)

    target.write_bytes(data[:1000])
    progress.clear()
    resumed = await download_file(url, str(target), headers=headers, resume=True,
                                  progress=lambda done, total: progress.append((done, total)))
    assert target.read_bytes() == data
    assert (resumed.resumed_from, resumed.received) == (1000, len(data) - 1000)
    assert progress[0] == (1000, len(data))

    target.write_bytes(data + b"extra")
    with pytest.raises(Exception, match="cannot resume"):
        await download_file(url, str(target), headers=headers, resume=True)

    with pytest.raises(HttpError) as unauthorized:
        await download_file(url, str(tmp_path / "nope.ts"))
    assert unauthorized.value.status == 401
    assert unauthorized.value.message == "Authentication required"
    assert not (tmp_path / "nope.ts").exists()


class _Liar(Resource):
    """Announces 1000 bytes, sends 500, then hangs up (``/cut``) or stalls (``/stall``)."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[Any] = []

    def render_GET(self, request: Any) -> Any:
        self.requests.append(request)
        request.setHeader(b"Content-Length", b"1000")
        request.write(b"x" * 500)
        if request.path == b"/files/recordings/cut":
            reactor.callLater(0.05, request.loseConnection)
        return NOT_DONE_YET


async def test_download_reports_a_truncated_or_stalled_transfer(tmp_path: Path) -> None:
    resource = _Liar()
    port = reactor.listenTCP(0, Site(resource), interface="127.0.0.1")
    try:
        base = f"http://127.0.0.1:{port.getHost().port}"
        with pytest.raises(IncompleteDownload, match="connection was lost") as cut:
            await download_file(file_url(base, "recordings", "cut"), str(tmp_path / "cut"))
        assert (cut.value.received, cut.value.expected) == (500, 1000)
        assert (tmp_path / "cut").read_bytes() == b"x" * 500  # kept for a resume

        with pytest.raises(IncompleteDownload, match="stalled"):
            await download_file(file_url(base, "recordings", "stall"), str(tmp_path / "stall"),
                                timeout=0.5)
        assert (tmp_path / "stall").stat().st_size == 500
    finally:
        for request in resource.requests:
            if request.channel is not None:
                request.channel.transport.abortConnection()
        await port.stopListening()
        await deferLater(reactor, 0, lambda: None)


# --- the CLI's pieces ----------------------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_and_formats() -> None:
    stderr = _Terminal()
    out = Output(io.StringIO(), stderr)
    assert out.stderr_is_tty and not Output(io.StringIO(), io.StringIO()).stderr_is_tty
    now = [0.0]
    bar = ProgressBar(out, "clip.mp4", clock=lambda: now[0], columns=100)
    bar.update(0, 4 * 1024 * 1024)
    now[0] = 0.05
    bar.update(1024, 4 * 1024 * 1024)  # throttled: within 0.1 s of the last draw
    now[0] = 1.0
    bar.update(2 * 1024 * 1024, 4 * 1024 * 1024)
    now[0] = 2.0
    bar.update(4 * 1024 * 1024, 4 * 1024 * 1024)
    bar.clear()
    frames = stderr.getvalue().split("\r")
    assert frames[0] == ""
    drawn = [frame for frame in frames[1:] if frame.strip()]
    assert len(drawn) == 3
    assert " 50.0% 2.0 MiB/4.0 MiB 2.0 MiB/s ETA 0:01" in drawn[1]
    assert "100.0%" in drawn[2]
    assert len({frame.index("]") - frame.index("[") for frame in drawn}) == 1  # a steady bar
    assert all(len(frame) < 100 for frame in frames)
    assert frames[-1] == ""  # the bar is wiped

    note = Notification("recording_status_update", {"device": "camera0", "status": "STOPPED",
                                                     "filename": "f", "duration": 3})
    assert format_pretty(note).endswith(" recording_status_update camera0 STOPPED filename=f duration=3")
    event = Notification("system.health", {"status": "DEGRADED", "metrics": {"cpu_usage": 1},
                                           "timestamp": "2025-01-15T14:30:00Z"})
    assert format_pretty(event) == \
        '2025-01-15T14:30:00Z system.health DEGRADED metrics={"cpu_usage":1}'


def test_legacy_method_form_becomes_call() -> None:
    commands = {"call", "cameras", "watch"}
    assert with_legacy_call(["get_camera_list"], commands) == ["call", "get_camera_list"]
    assert with_legacy_call(["--url", "ws://h/ws", "--token", "t", "get_status", "{}"], commands) == \
        ["--url", "ws://h/ws", "--token", "t", "call", "get_status", "{}"]
    assert with_legacy_call(["--timeout=3", "cameras"], commands) == ["--timeout=3", "cameras"]
    assert with_legacy_call(["--help"], commands) == ["--help"]
    assert with_legacy_call(["watch", "recording.start"], commands) == ["watch", "recording.start"]
