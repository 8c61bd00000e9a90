"""The MediaMTX control-API client (media.md §2.1, §2.2, §2.3, §2.8).

No mocks of the client: every test drives a real :class:`MediaMTXClient` over a real
loopback socket (or, for exact timing on a ``Clock``, over ``treq.testing.StubTreq``).

TEMPORARY STAND-IN: ``camera_service/testing/fake_mediamtx.py`` (the faithful,
schema-validating MediaMTX fake) did not exist yet when these tests were written. The
:class:`StandIn` resource below implements only what each test scripts, and records every
request it saw (method, raw path, query, body, headers, timing, concurrency). Tests about
behaviour the real fake models (versions, outages, slowness) should move to it once it lands;
the tests about request counts, in-flight concurrency and connection reuse need the
instrumentation kept here.
"""

from __future__ import annotations

import base64
import json
import math
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import unquote

import pytest
import pytest_twisted
from treq.testing import StubTreq
from twisted.internet import defer, reactor
from twisted.internet.task import Clock, deferLater
from twisted.logger import formatEvent, globalLogPublisher
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from camera_service.mediamtx.client import (
    MAX_IN_FLIGHT,
    MediaMTXAuthError,
    MediaMTXClient,
    MediaMTXError,
    MediaMTXNotFound,
    MediaMTXProtocolError,
    MediaMTXRejected,
    MediaMTXServerError,
    MediaMTXUnavailable,
    PathState,
    is_managed_path_name,
)

# ------------------------------------------------------------------------------------------
# TEMPORARY local stand-in for MediaMTX (see the module docstring).

Payload = Any  # bytes (sent as is), None (empty body) or a JSON-able value
Handler = Callable[["Seen"], "tuple[int, Payload]"]

NOT_FOUND = (404, {"status": "error", "error": "path not found"})
OK = (200, {"status": "ok"})
EMPTY_OK = (200, None)


@dataclass
class Seen:
    method: str
    path: str          # decoded path
    raw_path: str      # as sent on the wire
    args: dict[str, list[str]]
    body: bytes
    headers: dict[str, str]
    user: str
    password: str
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class StandIn(Resource):
    clock: Any
    routes: dict[tuple[str, str], Handler] = field(default_factory=dict)
    requests: list[Seen] = field(default_factory=list)
    delay: float = 0.0
    in_flight: int = 0
    max_in_flight: int = 0
    url: str = ""
    connections: int = 0
    _pending: list[Any] = field(default_factory=list)
    isLeaf = True

    def __post_init__(self) -> None:
        Resource.__init__(self)

    def on(self, method: str, path: str, *responses: tuple[int, Payload] | Handler) -> None:
        """Script a route: a handler, or fixed answers given in turn (the last one repeats)."""
        if len(responses) == 1 and callable(responses[0]):
            self.routes[(method, path)] = responses[0]  # type: ignore[assignment]
            return
        queue = list(responses)

        def answer(_: Seen) -> tuple[int, Payload]:
            return queue.pop(0) if len(queue) > 1 else queue[0]  # type: ignore[return-value]

        self.routes[(method, path)] = answer

    def calls(self, method: str, path: str) -> list[Seen]:
        return [s for s in self.requests if s.method == method and s.path == path]

    def render(self, request: Any) -> Any:
        raw_path = request.path.decode("ascii")
        seen = Seen(
            method=request.method.decode("ascii"),
            path=unquote(raw_path),
            raw_path=raw_path,
            args={k.decode(): [v.decode() for v in vs] for k, vs in request.args.items()},
            body=request.content.read(),
            headers={k.decode().lower(): v[-1].decode()
                     for k, v in request.requestHeaders.getAllRawHeaders()},
            user=request.getUser().decode(),
            password=request.getPassword().decode(),
            at=self.clock.seconds(),
        )
        self.requests.append(seen)
        handler = self.routes.get((seen.method, seen.path))
        status, payload = handler(seen) if handler else NOT_FOUND
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        if status == -1:  # "reset": drop the connection without an answer
            self.in_flight -= 1
            request.transport.abortConnection()
            return NOT_DONE_YET
        if status == -2:  # "stall": headers and half a body, then nothing
            self.in_flight -= 1
            request.setResponseCode(200)
            request.setHeader(b"content-length", b"1000")
            request.write(b'{"items": [')
            return NOT_DONE_YET
        if not self.delay:
            return self._finish(request, status, payload, write=False)
        call = self.clock.callLater(self.delay, self._finish, request, status, payload)
        self._pending.append(call)

        def gone(_: Any) -> None:
            if call.active():
                call.cancel()
                self.in_flight -= 1

        request.notifyFinish().addErrback(gone)
        return NOT_DONE_YET

    def _finish(self, request: Any, status: int, payload: Payload, write: bool = True) -> Any:
        self.in_flight -= 1
        request.setResponseCode(status)
        if payload is None:
            data = b""
        elif isinstance(payload, bytes):
            data = payload
        else:
            data = json.dumps(payload).encode()
            request.setHeader(b"content-type", b"application/json; charset=utf-8")
        request.setHeader(b"content-length", str(len(data)).encode())
        if not write:
            return data
        request.write(data)
        request.finish()
        return None

    def cancel_pending(self) -> None:
        for call in self._pending:
            if call.active():
                call.cancel()


class CountingSite(Site):
    """Counts TCP connections, so tests can see whether the pool reuses them."""

    def __init__(self, resource: StandIn) -> None:
        super().__init__(resource)
        self.stand_in = resource
        self.protocols: list[Any] = []

    def buildProtocol(self, addr: Any) -> Any:
        self.stand_in.connections += 1
        protocol = super().buildProtocol(addr)
        self.protocols.append(protocol)
        return protocol

    def log(self, request: Any) -> None:  # no access log in tests
        pass


@pytest.fixture
def stand_in():
    resource = StandIn(reactor)
    site = CountingSite(resource)
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    resource.url = f"http://127.0.0.1:{port.getHost().port}"
    yield resource
    resource.cancel_pending()
    for protocol in site.protocols:
        transport = getattr(protocol, "transport", None)
        if transport is not None and transport.connected:
            transport.abortConnection()
    pytest_twisted.blockon(defer.maybeDeferred(port.stopListening))


@pytest.fixture
def make_client(stand_in: StandIn):
    clients: list[MediaMTXClient] = []

    def make(*, url: str | None = None, timeout: float = 3.0,
             auth: tuple[str, str] | None = None) -> MediaMTXClient:
        client = MediaMTXClient(reactor, base_url=url or stand_in.url, auth=auth, timeout=timeout)
        clients.append(client)
        return client

    yield make
    for client in clients:
        pytest_twisted.blockon(client.close())


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def raises(kind: type[BaseException], awaitable: Any) -> BaseException:
    try:
        await awaitable
    except kind as error:
        return error
    raise AssertionError(f"{kind.__name__} not raised")


def v115_path(name: str, *, ready: bool, received: int = 0, sent: int = 0,
              readers: int = 0) -> dict[str, Any]:
    """A ``Path`` as MediaMTX v1.15 reports it (ready/readyTime/bytesReceived/bytesSent)."""
    return {
        "name": name, "confName": name,
        "source": {"type": "rtspSession", "id": "8d9c"} if ready else None,
        "ready": ready, "readyTime": "2025-01-15T14:30:00.5Z" if ready else None,
        "tracks": ["H264"] if ready else [],
        "bytesReceived": received, "bytesSent": sent,
        "readers": [{"type": "rtspSession", "id": f"r{i}"} for i in range(readers)],
    }


def v120_path(name: str, *, online: bool, inbound: int = 0, outbound: int = 0,
              readers: int = 0) -> dict[str, Any]:
    """A ``Path`` as MediaMTX v1.20 reports it (online/onlineTime/inboundBytes/outboundBytes)."""
    return {
        "name": name, "confName": name,
        "source": {"type": "rtspSession", "id": "8d9c"} if online else None,
        "available": online, "availableTime": "2025-01-15T14:31:00Z" if online else None,
        "online": online, "onlineTime": "2025-01-15T14:31:00Z" if online else None,
        "ready": online, "readyTime": "2025-01-15T14:31:00Z" if online else None,
        "tracks": [], "tracks2": [],
        # Deprecated counters, deliberately different: the new ones must win.
        "bytesReceived": 1, "bytesSent": 1,
        "inboundBytes": inbound, "outboundBytes": outbound, "inboundFramesInError": 0,
        "readers": [{"type": "webRTCSession", "id": f"w{i}"} for i in range(readers)],
    }


def paginated(items: list[dict[str, Any]]) -> Handler:
    """MediaMTX's list pagination: ``page`` and ``itemsPerPage`` (default 100)."""

    def answer(seen: Seen) -> tuple[int, Payload]:
        per_page = int(seen.args.get("itemsPerPage", ["100"])[0])
        page = int(seen.args.get("page", ["0"])[0])
        return 200, {
            "itemCount": len(items),
            "pageCount": math.ceil(len(items) / per_page),
            "items": items[page * per_page:(page + 1) * per_page],
        }

    return answer


# ------------------------------------------------------------------------------------------
# Success paths and request shapes


async def test_both_success_body_forms_are_success(stand_in: StandIn, make_client: Any) -> None:
    client = make_client()
    route = "/v3/config/paths/replace/camera0"
    stand_in.on("POST", route, EMPTY_OK, OK)  # v1.15.0–1.15.4, then v1.15.5 on
    assert await client.replace_path_config("camera0", {"source": "publisher"}) is None
    assert await client.replace_path_config("camera0", {"source": "publisher"}) is None
    first, second = stand_in.calls("POST", route)
    assert first.json() == second.json() == {"source": "publisher"}
    assert first.headers["content-type"] == "application/json"
    assert first.headers["accept"] == "application/json"


async def test_set_record_sends_exactly_the_record_flag(stand_in: StandIn, make_client: Any) -> None:
    client = make_client()
    stand_in.on("PATCH", "/v3/config/paths/patch/camera3", OK)
    await client.set_record("camera3", True)
    await client.set_record("camera3", False)
    bodies = [json.loads(s.body) for s in stand_in.calls("PATCH", "/v3/config/paths/patch/camera3")]
    assert bodies == [{"record": True}, {"record": False}]
    assert [s.method for s in stand_in.requests] == ["PATCH", "PATCH"]
    with pytest.raises(TypeError):
        await client.set_record("camera3", 1)  # not a bool: refused, nothing sent
    assert len(stand_in.requests) == 2


async def test_every_endpoint_uses_its_method_and_route(stand_in: StandIn, make_client: Any) -> None:
    client = make_client()
    stand_in.on("DELETE", "/v3/config/paths/delete/ext_0123456789", EMPTY_OK)
    stand_in.on("GET", "/v3/config/paths/get/camera1", (200, {"name": "camera1", "record": False}))
    stand_in.on("GET", "/v3/config/global/get", (200, {"playback": True, "api": True}))
    stand_in.on("PATCH", "/v3/config/pathdefaults/patch", OK)
    stand_in.on("GET", "/v3/recordings/get/camera1",
                (200, {"name": "camera1", "segments": [{"start": "2025-01-15T14:30:00Z"}]}))
    stand_in.on("DELETE", "/v3/recordings/deletesegment", OK)
    stand_in.on("GET", "/v3/info", (200, {"version": "v1.20.1", "started": "2025-01-15T14:30:00Z"}))

    await client.delete_path_config("ext_0123456789")
    assert await client.get_path_config("camera1") == {"name": "camera1", "record": False}
    assert (await client.get_global_config())["playback"] is True
    await client.patch_path_defaults({"recordDeleteAfter": "0s"})
    assert (await client.get_recordings("camera1"))["segments"] == [{"start": "2025-01-15T14:30:00Z"}]
    await client.delete_segment("camera1", "2025-01-15T14:30:00.123456+01:00")
    assert await client.info() == {"version": "v1.20.1", "started": "2025-01-15T14:30:00Z"}

    assert [(s.method, s.path) for s in stand_in.requests] == [
        ("DELETE", "/v3/config/paths/delete/ext_0123456789"),
        ("GET", "/v3/config/paths/get/camera1"),
        ("GET", "/v3/config/global/get"),
        ("PATCH", "/v3/config/pathdefaults/patch"),
        ("GET", "/v3/recordings/get/camera1"),
        ("DELETE", "/v3/recordings/deletesegment"),
        ("GET", "/v3/info"),
    ]
    assert stand_in.requests[3].json() == {"recordDeleteAfter": "0s"}
    assert stand_in.requests[5].args == {"path": ["camera1"],
                                         "start": ["2025-01-15T14:30:00.123456+01:00"]}
    # GETs and DELETEs carry no body and no Content-Type.
    assert stand_in.requests[0].body == b"" and "content-type" not in stand_in.requests[0].headers


async def test_info_is_none_before_v1_15_2(stand_in: StandIn, make_client: Any) -> None:
    assert await make_client().info() is None  # the stand-in has no /v3/info route: 404
    assert len(stand_in.calls("GET", "/v3/info")) == 1


async def test_basic_auth_is_sent(stand_in: StandIn, make_client: Any) -> None:
    def guarded(seen: Seen) -> tuple[int, Payload]:
        if (seen.user, seen.password) != ("svc", "s3cret"):
            return 401, {"status": "error", "error": "authentication error"}
        return 200, {"itemCount": 0, "pageCount": 0, "items": []}

    stand_in.on("GET", "/v3/paths/list", guarded)
    assert await make_client(auth=("svc", "s3cret")).list_paths() == []
    assert stand_in.requests[0].headers["authorization"] == \
        "Basic " + base64.b64encode(b"svc:s3cret").decode()


# ------------------------------------------------------------------------------------------
# Pagination


async def test_lists_follow_every_page(stand_in: StandIn, make_client: Any) -> None:
    paths = [v120_path(f"camera{i}", online=i % 2 == 0) for i in range(2500)]
    stand_in.on("GET", "/v3/paths/list", paginated(paths))
    result = await make_client().list_paths()
    assert [p.name for p in result] == [f"camera{i}" for i in range(2500)]
    assert [p.live for p in result[:3]] == [True, False, True]
    calls = stand_in.calls("GET", "/v3/paths/list")
    assert [c.args for c in calls] == [
        {"page": [str(n)], "itemsPerPage": ["1000"]} for n in range(3)
    ]


async def test_config_and_recording_lists_paginate_too(stand_in: StandIn, make_client: Any) -> None:
    confs = [{"name": f"ext_{i:010x}", "source": "rtsp://x"} for i in range(1001)]
    recordings = [{"name": f"camera{i}", "segments": []} for i in range(3)]
    stand_in.on("GET", "/v3/config/paths/list", paginated(confs))
    stand_in.on("GET", "/v3/recordings/list", paginated(recordings))
    client = make_client()
    assert await client.list_path_configs() == confs
    assert await client.list_recordings() == recordings
    assert len(stand_in.calls("GET", "/v3/config/paths/list")) == 2
    assert len(stand_in.calls("GET", "/v3/recordings/list")) == 1


async def test_an_empty_list_is_one_request(stand_in: StandIn, make_client: Any) -> None:
    stand_in.on("GET", "/v3/paths/list", paginated([]))  # pageCount 0
    assert await make_client().list_paths() == []
    assert len(stand_in.requests) == 1


# ------------------------------------------------------------------------------------------
# Version normalisation (§2.1, §2.8)


async def test_path_state_from_v1_15(stand_in: StandIn, make_client: Any) -> None:
    stand_in.on("GET", "/v3/paths/get/camera0",
                (200, v115_path("camera0", ready=True, received=5000, sent=700, readers=2)))
    state = await make_client().get_path("camera0")
    assert state == PathState(name="camera0", live=True, ready=True, source_type="rtspSession",
                              readers=2, bytes_received=5000, bytes_sent=700,
                              live_since="2025-01-15T14:30:00.5Z")


async def test_path_state_from_v1_20(stand_in: StandIn, make_client: Any) -> None:
    stand_in.on("GET", "/v3/paths/list", paginated([
        v120_path("camera0", online=True, inbound=9000, outbound=300, readers=1),
        v120_path("camera1", online=False),
    ]))
    live, idle = await make_client().list_paths()
    assert live == PathState(name="camera0", live=True, ready=True, source_type="rtspSession",
                             readers=1, bytes_received=9000, bytes_sent=300,
                             live_since="2025-01-15T14:31:00Z")
    assert idle == PathState(name="camera1", live=False, ready=False, source_type="",
                             readers=0, bytes_received=0, bytes_sent=0, live_since=None)


def test_online_wins_over_ready_when_present() -> None:
    item = {"name": "camera0", "online": False, "ready": True, "onlineTime": None,
            "readyTime": "2025-01-15T14:30:00Z"}
    state = PathState.from_json(item)
    assert state.live is False and state.ready is True and state.live_since is None
    # Unknown fields are ignored; missing optional ones default.
    assert PathState.from_json({"name": "x", "futureField": {"a": 1}}) == PathState(
        name="x", live=False, ready=False, source_type="", readers=0, bytes_received=0,
        bytes_sent=0, live_since=None)
    with pytest.raises(MediaMTXProtocolError):
        PathState.from_json({"name": "camera0", "inboundBytes": "lots"})
    with pytest.raises(MediaMTXProtocolError):
        PathState.from_json({"online": True})


# ------------------------------------------------------------------------------------------
# Typed outcomes and retries (§2.2)


async def test_400_is_never_retried_and_surfaces_the_error_text(stand_in: StandIn,
                                                                make_client: Any) -> None:
    route = "/v3/config/paths/replace/camera0"
    stand_in.on("POST", route, (400, {"status": "error", "error": 'json: unknown field "foo"'}))
    error = await raises(MediaMTXRejected, make_client().replace_path_config("camera0", {"foo": 1}))
    assert error.status == 400 and error.error_text == 'json: unknown field "foo"'
    assert 'json: unknown field "foo"' in str(error)
    await deferLater(reactor, 0.7, lambda: None)  # longer than the 5xx retry delay
    assert len(stand_in.calls("POST", route)) == 1


async def test_400_without_a_json_body_keeps_the_raw_text(stand_in: StandIn, make_client: Any) -> None:
    stand_in.on("PATCH", "/v3/config/paths/patch/camera0", (400, b"invalid body\n"))
    error = await raises(MediaMTXRejected, make_client().set_record("camera0", True))
    assert error.error_text == "invalid body"


async def test_5xx_is_retried_once_after_half_a_second(stand_in: StandIn, make_client: Any) -> None:
    route = "/v3/config/paths/get/camera0"
    stand_in.on("GET", route, (500, {"status": "error", "error": "boom"}), (200, {"name": "camera0"}))
    assert await make_client().get_path_config("camera0") == {"name": "camera0"}
    first, second = stand_in.calls("GET", route)
    assert 0.45 <= second.at - first.at < 2.0


async def test_5xx_twice_raises_server_error(stand_in: StandIn, make_client: Any) -> None:
    route = "/v3/config/paths/delete/camera0"
    stand_in.on("DELETE", route, (503, {"status": "error", "error": "overloaded"}))
    error = await raises(MediaMTXServerError, make_client().delete_path_config("camera0"))
    assert error.status == 503 and error.error_text == "overloaded"
    await deferLater(reactor, 0.7, lambda: None)
    assert len(stand_in.calls("DELETE", route)) == 2


def test_retry_delay_runs_on_the_injected_clock() -> None:
    clock = Clock()
    resource = StandIn(clock)
    resource.on("GET", "/v3/info", (502, b""), (200, {"version": "v1.15.2"}))
    stub = StubTreq(resource)
    client = MediaMTXClient(clock, base_url="http://mediamtx.invalid:9997", auth=None,
                            timeout=5.0, http_client=stub)
    result = client.info()
    stub.flush()
    assert len(resource.requests) == 1 and not result.called
    clock.advance(0.49)
    stub.flush()
    assert len(resource.requests) == 1 and not result.called
    clock.advance(0.01)
    stub.flush()
    assert len(resource.requests) == 2
    assert result.result == {"version": "v1.15.2"}
    assert clock.getDelayedCalls() == []  # the timeouts were cancelled


async def test_404_is_not_found(stand_in: StandIn, make_client: Any) -> None:
    client = make_client()
    await raises(MediaMTXNotFound, client.delete_path_config("camera9"))
    await raises(MediaMTXNotFound, client.get_path("camera9"))
    await raises(MediaMTXNotFound, client.get_recordings("camera9"))
    assert len(stand_in.requests) == 3


@pytest.mark.parametrize("status", [401, 403])
async def test_401_and_403_are_auth_errors(stand_in: StandIn, make_client: Any, status: int) -> None:
    stand_in.on("GET", "/v3/paths/list", (status, {"status": "error", "error": "authentication error"}))
    await raises(MediaMTXAuthError, make_client(auth=("svc", "wrong")).list_paths())
    assert len(stand_in.requests) == 1


async def test_refused_connection_is_unavailable_at_once(make_client: Any) -> None:
    client = make_client(url=f"http://127.0.0.1:{closed_port()}", timeout=5.0)
    started = time.monotonic()
    await raises(MediaMTXUnavailable, client.list_paths())
    await raises(MediaMTXUnavailable, client.set_record("camera0", False))
    assert time.monotonic() - started < 2.0


async def test_a_reset_connection_is_unavailable(stand_in: StandIn, make_client: Any) -> None:
    stand_in.on("GET", "/v3/paths/get/camera0", (-1, None))
    await raises(MediaMTXUnavailable, make_client().get_path("camera0"))
    assert len(stand_in.requests) == 1


async def test_a_slow_server_times_out_as_unavailable(stand_in: StandIn, make_client: Any) -> None:
    stand_in.on("GET", "/v3/paths/list", paginated([]))
    stand_in.delay = 30.0
    client = make_client(timeout=0.3)
    started = time.monotonic()
    await raises(MediaMTXUnavailable, client.list_paths())
    elapsed = time.monotonic() - started
    assert 0.25 <= elapsed < 1.5
    assert len(stand_in.requests) == 1  # not retried
    # The slot was given back: the client works again once the server does.
    stand_in.delay = 0.0
    assert await client.list_paths() == []


async def test_a_body_that_stalls_times_out_as_unavailable(stand_in: StandIn,
                                                           make_client: Any) -> None:
    stand_in.on("GET", "/v3/recordings/list", (-2, None))
    client = make_client(timeout=0.3)
    started = time.monotonic()
    error = await raises(MediaMTXUnavailable, client.list_recordings())
    assert time.monotonic() - started < 1.5
    assert "no answer within 0.3 s" in str(error)


async def test_a_cancelled_call_gives_its_slot_back(stand_in: StandIn, make_client: Any) -> None:
    stand_in.on("GET", "/v3/paths/get/camera0", (200, v120_path("camera0", online=True)))
    stand_in.delay = 30.0
    client = make_client(timeout=10.0)
    calls = [client.get_path("camera0") for _ in range(MAX_IN_FLIGHT)]
    await deferLater(reactor, 0.2, lambda: None)
    assert stand_in.in_flight == MAX_IN_FLIGHT
    for call in calls:
        call.cancel()
    for call in calls:
        await raises(defer.CancelledError, call)
    stand_in.delay = 0.0
    assert (await client.get_path("camera0")).live  # would wait forever if a slot leaked


async def test_credentials_are_never_logged(stand_in: StandIn, make_client: Any) -> None:
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        stand_in.on("GET", "/v3/paths/list", (401, {"status": "error", "error": "authentication error"}))
        stand_in.on("POST", "/v3/config/paths/replace/camera0", (400, {"error": "bad"}))
        stand_in.on("GET", "/v3/info", (500, {"error": "boom"}))
        client = make_client(auth=("svc-user", "pa55-w0rd"))
        await raises(MediaMTXAuthError, client.list_paths())
        await raises(MediaMTXRejected, client.replace_path_config("camera0", {}))
        await raises(MediaMTXServerError, client.info())
        unreachable = make_client(url=f"http://127.0.0.1:{closed_port()}",
                                  auth=("svc-user", "pa55-w0rd"))
        await raises(MediaMTXUnavailable, unreachable.info())
    finally:
        globalLogPublisher.removeObserver(events.append)
    text = "\n".join(formatEvent(event) + repr(event) for event in events)
    assert "authInternalUsers" in text  # the operator is told what to fix
    assert "pa55-w0rd" not in text and "svc-user" not in text


async def test_non_json_answers_are_protocol_errors(stand_in: StandIn, make_client: Any) -> None:
    client = make_client()
    stand_in.on("GET", "/v3/paths/list", (200, b"<html>proxy error</html>"))
    await raises(MediaMTXProtocolError, client.list_paths())
    stand_in.on("GET", "/v3/config/global/get", (200, [1, 2, 3]))  # JSON, wrong shape
    await raises(MediaMTXProtocolError, client.get_global_config())
    stand_in.on("GET", "/v3/config/paths/list", (200, {"items": "nope", "pageCount": 1}))
    await raises(MediaMTXProtocolError, client.list_path_configs())
    assert len(stand_in.requests) == 3  # none retried


async def test_bodies_over_8_mib_are_refused(stand_in: StandIn, make_client: Any) -> None:
    stand_in.on("GET", "/v3/config/global/get", (200, b'{"x": "' + b"a" * (8 * 1024 * 1024) + b'"}'))
    await raises(MediaMTXProtocolError, make_client().get_global_config())


async def test_error_bodies_are_read_so_connections_are_reused(stand_in: StandIn,
                                                               make_client: Any) -> None:
    stand_in.on("POST", "/v3/config/paths/replace/camera0",
                (400, {"status": "error", "error": "x" * 20000}))
    stand_in.on("GET", "/v3/config/paths/get/camera0", NOT_FOUND)
    client = make_client()
    for _ in range(3):
        await raises(MediaMTXRejected, client.replace_path_config("camera0", {}))
        await raises(MediaMTXNotFound, client.get_path_config("camera0"))
    assert len(stand_in.requests) == 6
    assert stand_in.connections == 1


def test_all_errors_share_a_base() -> None:
    for kind in (MediaMTXRejected, MediaMTXNotFound, MediaMTXAuthError, MediaMTXServerError,
                 MediaMTXUnavailable, MediaMTXProtocolError):
        assert issubclass(kind, MediaMTXError)


# ------------------------------------------------------------------------------------------
# Concurrency


async def test_at_most_eight_requests_in_flight(stand_in: StandIn, make_client: Any) -> None:
    stand_in.on("GET", "/v3/paths/get/camera0", (200, v120_path("camera0", online=True)))
    stand_in.delay = 0.15
    client = make_client(timeout=5.0)
    results = await defer.gatherResults([client.get_path("camera0") for _ in range(20)],
                                        consumeErrors=True)
    assert len(results) == 20 and all(r.live for r in results)
    assert len(stand_in.requests) == 20
    assert stand_in.max_in_flight == MAX_IN_FLIGHT == 8
    assert stand_in.in_flight == 0


# ------------------------------------------------------------------------------------------
# Path names (§2.3)


@pytest.mark.parametrize("name", [
    "all_others", "camera", "Camera1", "camera1 ", "camera1\n", "camera-1", "camera1/../x",
    "ext_012345678", "ext_0123456789a", "ext_ABCDEF0123", "", None, 7, "~^camera.*$",
])
async def test_writes_refuse_unmanaged_names_before_any_request(stand_in: StandIn,
                                                                 make_client: Any,
                                                                 name: Any) -> None:
    client = make_client()
    assert not is_managed_path_name(name)
    for call in (lambda: client.replace_path_config(name, {"source": "publisher"}),
                 lambda: client.set_record(name, True),
                 lambda: client.delete_path_config(name),
                 lambda: client.delete_segment(name, "2025-01-15T14:30:00Z")):
        with pytest.raises(ValueError):
            await call()
    assert stand_in.requests == []


async def test_reads_accept_reported_names_but_quote_them(stand_in: StandIn,
                                                          make_client: Any) -> None:
    stand_in.on("GET", "/v3/paths/get/live/cam 1?x", (200, v115_path("live/cam 1?x", ready=False)))
    client = make_client()
    state = await client.get_path("live/cam 1?x")
    assert state.name == "live/cam 1?x"
    assert stand_in.requests[0].raw_path == "/v3/paths/get/live%2Fcam%201%3Fx"
    assert stand_in.requests[0].args == {}
    for bad in ("", "cam\x00", None):
        with pytest.raises(ValueError):
            await client.get_path(bad)
    assert len(stand_in.requests) == 1


def test_managed_names() -> None:
    assert is_managed_path_name("camera0")
    assert is_managed_path_name("camera12")
    assert is_managed_path_name("ext_0123456789")
    assert is_managed_path_name("ext_abcdef0123")


# ------------------------------------------------------------------------------------------
# Against camera_service.testing.fake_mediamtx (the faithful, OpenAPI-validating fake) over a
# real listening port. Skipped when the module is not importable, so this file passes either way.


@pytest.fixture
def fake_server():
    fake_module = pytest.importorskip("camera_service.testing.fake_mediamtx")
    started: list[Any] = []

    def start(version: str = "v1.20.1", timeout: float = 0.5,
              **fake_options: Any) -> tuple[Any, MediaMTXClient, Any]:
        fake = fake_module.FakeMediaMTX(version=version, clock=reactor, **fake_options)
        server = fake_module.FakeMediaMTXServer(fake)
        server.start(reactor, port=0)
        client = MediaMTXClient(reactor, base_url=server.url, auth=None, timeout=timeout)
        started.append((server, client))
        return fake, client, server

    yield start
    for server, client in started:
        pytest_twisted.blockon(client.close())
        pytest_twisted.blockon(server.stop())


CAMERA_CONF = {"source": "publisher", "runOnDemand": "ffmpeg -i /dev/video0 -f rtsp x",
               "runOnDemandRestart": True, "runOnDemandStartTimeout": "10s",
               "runOnDemandCloseAfter": "10s", "record": False, "recordDeleteAfter": "0s"}


@pytest.mark.parametrize("version", ["v1.15.0", "v1.15.5", "v1.16.0", "v1.20.1"])
async def test_fake_round_trip_on_every_version(fake_server: Any, version: str) -> None:
    fake, client, _ = fake_server(version)
    await client.replace_path_config("camera0", CAMERA_CONF)   # empty body or {"status":"ok"}
    await client.set_record("camera0", True)
    assert (await client.get_path_config("camera0"))["record"] is True
    fake.set_live("camera0", readers=3, bytes_received=4096, bytes_sent=1024)
    state = await client.get_path("camera0")
    assert (state.live, state.ready, state.readers) == (True, True, 3)
    assert (state.bytes_received, state.bytes_sent) == (4096, 1024)
    assert state.source_type == "rtspSession" and state.live_since
    assert [p.name for p in await client.list_paths()] == ["camera0"]
    info = await client.info()
    assert info is None if version == "v1.15.0" else info["version"] == version
    await client.delete_path_config("camera0")
    await raises(MediaMTXNotFound, client.delete_path_config("camera0"))
    assert fake.violations == []
    assert [r.method for r in fake.requests_to("PATCH", "/v3/config/paths/patch/")] == ["PATCH"]


async def test_fake_rejects_unknown_fields_once(fake_server: Any) -> None:
    fake, client, _ = fake_server("v1.20.1")
    error = await raises(MediaMTXRejected,
                         client.replace_path_config("camera0", {**CAMERA_CONF, "bogus": 1}))
    assert error.status == 400 and "bogus" in error.error_text
    await deferLater(reactor, 0.7, lambda: None)
    assert len(fake.requests_to("POST", "/v3/config/paths/replace/")) == 1
    assert len(fake.violations) == 1


async def test_fake_pagination_over_many_paths(fake_server: Any) -> None:
    # Paths come from the fake's YAML: API writes re-validate the whole configuration each time.
    yaml_paths = {f"cam{i}": {"source": "publisher"} for i in range(1005)}
    fake, client, _ = fake_server("v1.20.1", timeout=10.0, yaml_paths=yaml_paths)
    configs = await client.list_path_configs()
    assert sorted(c["name"] for c in configs) == sorted(yaml_paths)
    assert [r.path for r in fake.requests_to("GET", "/v3/config/paths/list")] == [
        "/v3/config/paths/list?page=0&itemsPerPage=1000",
        "/v3/config/paths/list?page=1&itemsPerPage=1000",
    ]


async def test_fake_outage_slow_and_malformed(fake_server: Any) -> None:
    fake, client, _ = fake_server("v1.20.1")
    await fake.outage()
    await raises(MediaMTXUnavailable, client.list_paths())
    fake.recover()
    assert await client.list_paths() == []
    fake.slow(5.0)
    started = time.monotonic()
    await raises(MediaMTXUnavailable, client.list_paths())
    assert time.monotonic() - started < 1.5
    fake.slow(0)
    fake.malformed(True)
    await raises(MediaMTXProtocolError, client.list_paths())
    fake.malformed(False)
    assert await client.list_paths() == []
