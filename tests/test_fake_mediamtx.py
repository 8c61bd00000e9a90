"""The MediaMTX stand-in, exercised over a real listening port with treq (no mocks).

Every JSON answer the fake sends is checked against MediaMTX's openapi.yaml inside the fake;
the fixtures below also assert, per test and for the whole module, that no answer failed that
check and that requests the test did not mean to be rejected left no violation behind.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import treq
from treq.testing import StubTreq
from twisted.internet import reactor
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock, deferLater
from twisted.web.client import HTTPConnectionPool

from camera_service.testing.fake_mediamtx import (
    OPENAPI_ENV,
    FakeMediaMTX,
    FakeMediaMTXServer,
    default_openapi_path,
)

from tests.mediamtx_spec_example import SPEC_BODY  # noqa: E402

OPENAPI = Path(__file__).resolve().parents[1] / ".." / "shared" / "reference" / "mediamtx" / "openapi.yaml"

# media.md §2.4's example body.
CAMERA_PATH = SPEC_BODY

_ALL_FAKES: list[FakeMediaMTX] = []


@pytest.fixture(scope="module", autouse=True)
def _every_response_validated():
    yield
    assert _ALL_FAKES, "no fake was used"
    assert sum(f.responses_validated for f in _ALL_FAKES) > 0
    assert [bug for f in _ALL_FAKES for bug in f.fake_bugs] == []


class Api:
    """A real fake on a real loopback port, with a non-persistent treq pool."""

    def __init__(self, **kwargs: Any) -> None:
        self.fake = FakeMediaMTX(OPENAPI, **kwargs)
        _ALL_FAKES.append(self.fake)
        self.server = FakeMediaMTXServer(self.fake)
        self.server.start(reactor, port=0)
        self.pool = HTTPConnectionPool(reactor, persistent=False)

    async def call(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
                   timeout: float | None = None, pool: Any = None) -> tuple[int, Any, Any]:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        headers = {"Accept": ["application/json"]}
        if data is not None:
            headers["Content-Type"] = ["application/json"]
        response = await treq.request(method, self.server.url + path, data=data, headers=headers,
                                      pool=pool or self.pool, timeout=timeout)
        content = await treq.content(response)
        try:
            parsed = json.loads(content) if content else None
        except ValueError:
            parsed = content
        return response.code, parsed, response.headers

    async def close(self) -> None:
        await self.pool.closeCachedConnections()
        await self.server.stop()
        assert self.fake.fake_bugs == []


@pytest.fixture
def make_api():
    made: list[Api] = []

    def factory(**kwargs: Any) -> Api:
        api = Api(**kwargs)
        made.append(api)
        return api

    yield factory
    import pytest_twisted
    for api in made:
        pytest_twisted.blockon(_ensure(api.close()))


def _ensure(coro: Any) -> Any:
    from twisted.internet import defer
    return defer.ensureDeferred(coro)


@pytest.fixture
def api(make_api) -> Api:
    return make_api()


# --------------------------------------------------------------------------- spec location

def test_default_openapi_path_beside_checkout(monkeypatch):
    monkeypatch.delenv(OPENAPI_ENV, raising=False)
    assert default_openapi_path() == OPENAPI.resolve()
    assert default_openapi_path().exists()
    assert default_openapi_path({OPENAPI_ENV: "/elsewhere/openapi.yaml"}) == Path("/elsewhere/openapi.yaml")


def test_fake_refuses_to_send_a_response_the_schema_rejects():
    fake = FakeMediaMTX(OPENAPI)
    with pytest.raises(AssertionError, match="does not match openapi.yaml"):
        fake.spec.check_response("GET", "/v3/paths/get/{name}", 200, {"name": "x", "serverVersion": "1"})
    with pytest.raises(AssertionError, match="does not declare"):
        fake.spec.check_response("POST", "/v3/config/paths/add/{name}", 404, {"error": "x"})


# --------------------------------------------------------------------------- path configuration

async def test_typical_camera_path_is_accepted_and_read_back(api):
    code, body, headers = await api.call("POST", "/v3/config/paths/replace/camera0", CAMERA_PATH)
    assert (code, body) == (200, {"status": "ok"})
    assert headers.getRawHeaders("content-type") == ["application/json; charset=utf-8"]
    code, conf, _ = await api.call("GET", "/v3/config/paths/get/camera0")
    assert code == 200
    for key, value in CAMERA_PATH.items():
        assert conf[key] == value
    assert conf["name"] == "camera0"
    # Fields not sent come from pathDefaults (mediamtx.yml).
    assert conf["overridePublisher"] is True and conf["maxReaders"] == 0
    assert api.fake.violations == []


async def test_replace_creates_then_overwrites_everything(api):
    assert (await api.call("POST", "/v3/config/paths/replace/camera1",
                           {"source": "publisher", "maxReaders": 5, "record": True}))[0] == 200
    assert (await api.call("POST", "/v3/config/paths/replace/camera1", {"runOnDemand": "true"}))[0] == 200
    _, conf, _ = await api.call("GET", "/v3/config/paths/get/camera1")
    # replace is not a merge: maxReaders and record are back to the defaults.
    assert conf["runOnDemand"] == "true" and conf["maxReaders"] == 0 and conf["record"] is False
    assert api.fake.violations == []


async def test_add_on_existing_path_is_400(api):
    assert (await api.call("POST", "/v3/config/paths/add/camera2", {"record": False}))[0] == 200
    code, body, _ = await api.call("POST", "/v3/config/paths/add/camera2", {"record": False})
    assert (code, body) == (400, {"status": "error", "error": "path already exists"})
    # A YAML path exists too.
    assert (await api.call("POST", "/v3/config/paths/add/all_others", {}))[0] == 400


async def test_patch_merges_and_404s_on_unknown(api):
    await api.call("POST", "/v3/config/paths/replace/camera3", CAMERA_PATH)
    assert (await api.call("PATCH", "/v3/config/paths/patch/camera3", {"record": True}))[0] == 200
    _, conf, _ = await api.call("GET", "/v3/config/paths/get/camera3")
    assert conf["record"] is True
    assert conf["runOnDemand"] == CAMERA_PATH["runOnDemand"]
    code, body, _ = await api.call("PATCH", "/v3/config/paths/patch/nope", {"record": True})
    assert (code, body) == (404, {"status": "error", "error": "path not found"})
    assert api.fake.violations == []


async def test_delete_and_get_unknown_are_404(api):
    code, body, _ = await api.call("DELETE", "/v3/config/paths/delete/camera9")
    assert (code, body) == (404, {"status": "error", "error": "path not found"})
    code, _, _ = await api.call("GET", "/v3/config/paths/get/camera9")
    assert code == 404
    await api.call("POST", "/v3/config/paths/replace/camera9", {})
    assert (await api.call("DELETE", "/v3/config/paths/delete/camera9"))[:2] == (200, {"status": "ok"})
    assert (await api.call("GET", "/v3/config/paths/get/camera9"))[0] == 404


async def test_unknown_field_is_400_and_a_violation(api):
    code, body, _ = await api.call("POST", "/v3/config/paths/replace/camera0",
                                   {**CAMERA_PATH, "sourceProtocl": "tcp"})
    assert (code, body) == (400, {"status": "error", "error": 'json: unknown field "sourceProtocl"'})
    assert [(v.method, v.path, v.kind, v.error) for v in api.fake.violations] == [
        ("POST", "/v3/config/paths/replace/camera0", "json", 'json: unknown field "sourceProtocl"')]
    assert api.fake.violations[0].body["sourceProtocl"] == "tcp"
    assert (await api.call("GET", "/v3/config/paths/get/camera0"))[0] == 404  # nothing written


@pytest.mark.parametrize("body, error", [
    ({"record": "yes"}, "json: cannot unmarshal string into Go struct field PathConf.record of type bool"),
    ({"maxReaders": "2"}, "json: cannot unmarshal string into Go struct field PathConf.maxReaders of type int64"),
    ({"recordFormat": "mp4"}, "invalid value 'mp4' for field 'recordFormat'"),
    ({"runOnDemandCloseAfter": 10}, ("json: cannot unmarshal number into Go struct field "
                                     "PathConf.runOnDemandCloseAfter of type string")),
    ({"runOnDemandCloseAfter": "10"}, 'time: invalid duration "10"'),
])
async def test_wrong_types_are_400(api, body, error):
    code, answer, _ = await api.call("POST", "/v3/config/paths/replace/camera0", body)
    assert (code, answer) == (400, {"status": "error", "error": error})
    assert len(api.fake.violations) == 1


async def test_unparseable_and_empty_bodies_are_400(api):
    code, _, _ = await api.call("POST", "/v3/config/paths/replace/camera0", raw=b"{record: true")
    assert code == 400
    code, body, _ = await api.call("PATCH", "/v3/config/paths/patch/all_others", raw=b"")
    assert (code, body) == (400, {"status": "error", "error": "EOF"})
    assert [v.kind for v in api.fake.violations] == ["json", "json"]


async def test_source_on_demand_with_publisher_is_rejected(api):
    code, body, _ = await api.call("POST", "/v3/config/paths/replace/camera0",
                                   {**CAMERA_PATH, "sourceOnDemand": True})
    assert (code, body) == (400, {"status": "error",
                                  "error": "'sourceOnDemand' is useless when source is 'publisher'"})
    assert [v.kind for v in api.fake.violations] == ["semantic"]
    # The same flag is fine on a URL source (an external stream proxy, media.md 7.4).
    code, _, _ = await api.call("POST", "/v3/config/paths/replace/ext_0123456789",
                                {"source": "rtsp://10.0.0.5:554/stream", "sourceOnDemand": True})
    assert code == 200
    assert len(api.fake.violations) == 1


@pytest.mark.parametrize("body, error", [
    ({"source": "rtsp://cam/1", "runOnDemand": "ffmpeg"},
     "'runOnDemand' and 'runOnUnDemand' can be used only when source is 'publisher'"),
    ({"source": "v4l2:///dev/video0"}, "invalid source: 'v4l2:///dev/video0'"),
    ({"source": "redirect"}, "source redirect must be filled"),
])
async def test_other_invalid_combinations_are_400(api, body, error):
    code, answer, _ = await api.call("POST", "/v3/config/paths/replace/camera0", body)
    assert (code, answer) == (400, {"status": "error", "error": error})


async def test_invalid_path_name_is_400(api):
    code, body, _ = await api.call("POST", "/v3/config/paths/replace/bad%20name", {})
    assert code == 400 and body["error"].startswith("invalid path name 'bad name'")


async def test_playback_requires_microseconds_in_record_path(make_api):
    api = make_api(global_conf={"playback": True},
                   path_defaults={"recordPath": "/rec/%path/%Y-%m-%d_%H-%M-%S-%f"})
    code, body, _ = await api.call("POST", "/v3/config/paths/replace/camera0", CAMERA_PATH)
    assert code == 400 and "missing one of the mandatory elements" in body["error"]
    with_f = {**CAMERA_PATH, "recordPath": CAMERA_PATH["recordPath"] + "-%f"}
    assert (await api.call("POST", "/v3/config/paths/replace/camera0", with_f))[0] == 200
    _, conf, _ = await api.call("GET", "/v3/config/global/get")
    assert conf["playback"] is True


async def test_path_defaults_get_and_patch_merge(api):
    _, before, _ = await api.call("GET", "/v3/config/pathdefaults/get")
    assert before["recordDeleteAfter"] == "1d"  # MediaMTX's own default (mediamtx.yml)
    patch = {"recordPath": "/var/lib/camera-service/recordings/%path/%path_%Y-%m-%d_%H-%M-%S",
             "recordFormat": "fmp4", "recordDeleteAfter": "0s"}
    assert (await api.call("PATCH", "/v3/config/pathdefaults/patch", patch))[:2] == (200, {"status": "ok"})
    _, after, _ = await api.call("GET", "/v3/config/pathdefaults/get")
    assert {k: after[k] for k in patch} == patch
    assert after["runOnDemandStartTimeout"] == before["runOnDemandStartTimeout"]
    # Paths without their own value inherit the new defaults.
    _, conf, _ = await api.call("GET", "/v3/config/paths/get/all_others")
    assert conf["recordDeleteAfter"] == "0s"
    code, _, _ = await api.call("PATCH", "/v3/config/pathdefaults/patch", {"recordPaht": "/x"})
    assert code == 400
    assert len(api.fake.violations) == 1


async def test_config_paths_list_and_pagination(api):
    for i in range(5):
        await api.call("POST", f"/v3/config/paths/replace/camera{i}", CAMERA_PATH)
    _, page, _ = await api.call("GET", "/v3/config/paths/list?itemsPerPage=2&page=1")
    assert page["itemCount"] == 6 and page["pageCount"] == 3  # 5 cameras + all_others
    # Sorted by name, as MediaMTX does.
    assert [p["name"] for p in page["items"]] == ["camera1", "camera2"]
    _, last, _ = await api.call("GET", "/v3/config/paths/list?itemsPerPage=2&page=2")
    assert [p["name"] for p in last["items"]] == ["camera3", "camera4"]
    _, beyond, _ = await api.call("GET", "/v3/config/paths/list?itemsPerPage=2&page=7")
    assert beyond["items"] == [] and beyond["pageCount"] == 3
    _, default, _ = await api.call("GET", "/v3/config/paths/list")
    assert len(default["items"]) == 6
    assert (await api.call("GET", "/v3/config/paths/list?page=x"))[0] == 400


async def test_paths_list_pagination_and_live_state(api):
    for i in range(3):
        await api.call("POST", f"/v3/config/paths/replace/camera{i}", CAMERA_PATH)
    _, listed, _ = await api.call("GET", "/v3/paths/list?itemsPerPage=1000")
    # Every configured non-regexp path is listed, idle ones too; all_others is not.
    assert [p["name"] for p in listed["items"]] == ["camera0", "camera1", "camera2"]
    assert listed["items"][0]["ready"] is False and listed["items"][0]["online"] is False
    _, page, _ = await api.call("GET", "/v3/paths/list?itemsPerPage=2&page=1")
    assert (page["itemCount"], page["pageCount"], [p["name"] for p in page["items"]]) == (3, 2, ["camera2"])

    api.fake.set_live("camera1", readers=2, bytes_sent=1000, bytes_received=5000)
    _, path, _ = await api.call("GET", "/v3/paths/get/camera1")
    assert path["online"] is True and path["ready"] is True and path["onlineTime"]
    assert path["source"]["type"] == "rtspSession"
    assert len(path["readers"]) == 2
    assert (path["outboundBytes"], path["inboundBytes"]) == (1000, 5000)
    assert (path["bytesSent"], path["bytesReceived"]) == (1000, 5000)
    # A path that only a publisher made, under all_others, is listed while it is live.
    api.fake.set_live("visitor", readers=0)
    _, listed, _ = await api.call("GET", "/v3/paths/list")
    assert "visitor" in [p["name"] for p in listed["items"]]
    assert (await api.call("GET", "/v3/paths/get/visitor"))[1]["confName"] == "all_others"
    code, body, _ = await api.call("GET", "/v3/paths/get/camera7")
    assert (code, body) == (404, {"status": "error", "error": "path not found"})


async def test_only_record_changes_keep_a_live_path_up(api):
    await api.call("POST", "/v3/config/paths/replace/camera0", CAMERA_PATH)
    api.fake.set_live("camera0", readers=1)
    await api.call("PATCH", "/v3/config/paths/patch/camera0", {"record": True})
    assert api.fake.path_reloads == []
    assert (await api.call("GET", "/v3/paths/get/camera0"))[1]["ready"] is True
    await api.call("POST", "/v3/config/paths/replace/camera0", {**CAMERA_PATH, "runOnDemandCloseAfter": "20s"})
    # record went back to false too, but record* fields are hot-reloadable from v1.15.1.
    assert api.fake.path_reloads == [("camera0", ("runOnDemandCloseAfter",))]
    _, path, _ = await api.call("GET", "/v3/paths/get/camera0")
    assert path["ready"] is False and path["readers"] == []


# --------------------------------------------------------------------------- routes, versions

async def test_wrong_method_and_unknown_route_are_gin_404(api):
    for method, path in [("POST", "/v3/config/paths/delete/camera0"),   # POST for delete
                         ("GET", "/v3/config/paths/replace/camera0"),
                         ("PUT", "/v3/config/paths/patch/camera0"),
                         ("POST", "/v3/config/paths/edit/camera0"),
                         ("GET", "/v3/paths/camera0"),
                         ("GET", "/v3/metrics"),
                         ("PATCH", "/v3/config/paths/patch")]:
        code, body, headers = await api.call(method, path, {} if method != "GET" else None)
        assert (code, body) == (404, b"404 page not found"), (method, path)
        assert headers.getRawHeaders("content-type") == ["text/plain"]


async def test_info_by_version(make_api):
    new = make_api()
    code, info, _ = await new.call("GET", "/v3/info")
    assert code == 200 and info["version"] == "v1.20.1" and info["started"].endswith("Z")
    old = make_api(version="v1.15.1")
    code, body, _ = await old.call("GET", "/v3/info")
    assert (code, body) == (404, b"404 page not found")
    assert (await make_api(version="v1.15.2").call("GET", "/v3/info"))[0] == 200


async def test_success_and_error_bodies_by_version(make_api):
    old = make_api(version="v1.15.4")
    code, body, _ = await old.call("POST", "/v3/config/paths/replace/camera0", CAMERA_PATH)
    assert (code, body) == (200, None)  # empty body
    assert (await old.call("DELETE", "/v3/config/paths/delete/camera0"))[:2] == (200, None)
    code, body, _ = await old.call("DELETE", "/v3/config/paths/delete/camera0")
    assert (code, body) == (404, {"error": "path not found"})
    # Before v1.16 there is no online/inboundBytes: clients fall back to ready/bytesSent.
    await old.call("POST", "/v3/config/paths/replace/camera0", CAMERA_PATH)
    old.fake.set_live("camera0", bytes_sent=7)
    _, path, _ = await old.call("GET", "/v3/paths/get/camera0")
    assert "online" not in path and "outboundBytes" not in path
    assert path["ready"] is True and path["bytesSent"] == 7

    new = make_api(version="v1.15.5")
    code, body, _ = await new.call("POST", "/v3/config/paths/replace/camera0", CAMERA_PATH)
    assert (code, body) == (200, {"status": "ok"})


async def test_v1_15_0_restarts_a_live_path_on_any_non_record_change(make_api):
    api = make_api(version="v1.15.0")
    await api.call("POST", "/v3/config/paths/replace/camera0", CAMERA_PATH)
    api.fake.set_live("camera0")
    await api.call("PATCH", "/v3/config/paths/patch/camera0", {"recordSegmentDuration": "60s"})
    assert api.fake.path_reloads == [("camera0", ("recordSegmentDuration",))]


# --------------------------------------------------------------------------- recordings

async def test_recordings_list_get_and_delete_segment(api):
    api.fake.add_recording("camera0", "2025-01-15T14:30:00Z", "2025-01-15T13:30:00Z")
    _, listing, _ = await api.call("GET", "/v3/recordings/list")
    assert listing["itemCount"] == 1
    assert listing["items"][0]["segments"] == [{"start": "2025-01-15T13:30:00Z"},
                                               {"start": "2025-01-15T14:30:00Z"}]
    assert (await api.call("GET", "/v3/recordings/get/camera0"))[1]["name"] == "camera0"
    assert (await api.call("GET", "/v3/recordings/get/camera5"))[0] == 404
    code, body, _ = await api.call("DELETE", "/v3/recordings/deletesegment?path=camera0&start=2025-01-15T14:30:00%2B00:00")
    assert (code, body) == (200, {"status": "ok"})
    assert (await api.call("DELETE", "/v3/recordings/deletesegment?path=camera0&start=2025-01-15T14:30:00Z"))[0] == 404
    assert (await api.call("DELETE", "/v3/recordings/deletesegment?path=camera0&start=yesterday"))[0] == 400
    assert (await api.call("POST", "/v3/recordings/deletesegment?path=camera0&start=2025-01-15T13:30:00Z"))[0] == 404


# --------------------------------------------------------------------------- behaviour controls

async def test_restart_forgets_api_paths_but_keeps_yaml_paths(make_api):
    api = make_api(yaml_paths={"all_others": {}, "lobby": {"source": "rtsp://10.0.0.9/lobby"}})
    _, info_before, _ = await api.call("GET", "/v3/info")
    await api.call("POST", "/v3/config/paths/replace/camera0", CAMERA_PATH)
    await api.call("PATCH", "/v3/config/paths/patch/lobby", {"record": True})
    await api.call("PATCH", "/v3/config/pathdefaults/patch", {"recordDeleteAfter": "0s"})
    api.fake.set_live("camera0")
    await deferLater(reactor, 0.01, lambda: None)
    api.fake.restart()
    _, listed, _ = await api.call("GET", "/v3/config/paths/list")
    assert [p["name"] for p in listed["items"]] == ["all_others", "lobby"]
    assert listed["items"][1]["record"] is False  # back to the YAML's content
    assert (await api.call("GET", "/v3/config/paths/get/camera0"))[0] == 404
    assert (await api.call("GET", "/v3/config/pathdefaults/get"))[1]["recordDeleteAfter"] == "1d"
    _, paths, _ = await api.call("GET", "/v3/paths/list")
    assert [p["name"] for p in paths["items"]] == ["lobby"]
    _, info_after, _ = await api.call("GET", "/v3/info")
    assert info_after["started"] != info_before["started"]


def test_invalid_yaml_paths_refuse_to_start():
    with pytest.raises(ValueError, match="useless"):
        FakeMediaMTX(OPENAPI, yaml_paths={"cam": {"sourceOnDemand": True}})


async def test_outage_refuses_connections_then_recovers(api):
    port = api.server.port_number
    assert (await api.call("GET", "/v3/paths/list"))[0] == 200
    await api.fake.outage()
    with pytest.raises(ConnectionRefusedError):
        await api.call("GET", "/v3/paths/list")
    api.fake.recover()
    assert api.server.port_number == port
    assert (await api.call("GET", "/v3/paths/list"))[0] == 200


async def test_outage_drops_pooled_connections(api):
    from twisted.web._newclient import (
        RequestTransmissionFailed,
        ResponseFailed,
        ResponseNeverReceived,
    )

    pool = HTTPConnectionPool(reactor, persistent=True)
    try:
        assert (await api.call("GET", "/v3/paths/list", pool=pool))[0] == 200
        await api.fake.outage()
        with pytest.raises((ConnectionRefusedError, ResponseNeverReceived, ResponseFailed,
                            RequestTransmissionFailed)):
            await api.call("GET", "/v3/paths/list", pool=pool)
        api.fake.recover()
        assert (await api.call("GET", "/v3/paths/list", pool=pool))[0] == 200
    finally:
        await pool.closeCachedConnections()


async def test_slow_answers_are_late_and_time_out(api):
    api.fake.slow(0.3)
    started = time.monotonic()
    code, _, _ = await api.call("GET", "/v3/paths/list")
    assert code == 200 and time.monotonic() - started >= 0.29
    from twisted.internet.defer import CancelledError
    from twisted.web._newclient import ResponseNeverReceived

    with pytest.raises((CancelledError, ResponseNeverReceived)):
        await api.call("POST", "/v3/config/paths/replace/camera0", CAMERA_PATH, timeout=0.05)
    await deferLater(reactor, 0.4, lambda: None)  # the cancelled answer must not blow up
    assert api.fake.path_config("camera0") is not None  # the write happened; only the answer was late
    api.fake.slow(0)
    assert (await api.call("GET", "/v3/paths/list"))[0] == 200


async def test_malformed_answers(api):
    api.fake.malformed(True)
    code, body, _ = await api.call("GET", "/v3/paths/list")
    assert code == 200 and isinstance(body, bytes)
    with pytest.raises(ValueError):
        json.loads(body)
    assert (await api.call("POST", "/v3/config/paths/replace/camera0", CAMERA_PATH))[0] == 200
    api.fake.malformed(False)
    assert (await api.call("GET", "/v3/config/paths/get/camera0"))[0] == 404  # nothing was applied


async def test_requests_are_logged(api):
    await api.call("POST", "/v3/config/paths/replace/camera0", CAMERA_PATH)
    await api.call("GET", "/v3/paths/list?itemsPerPage=1000")
    assert api.fake.requests == [
        ("POST", "/v3/config/paths/replace/camera0", CAMERA_PATH),
        ("GET", "/v3/paths/list?itemsPerPage=1000", None),
    ]
    assert api.fake.requests_to("POST", "/v3/config/paths/add/") == []


# --------------------------------------------------------------------------- in memory

def test_works_with_stubtreq_and_an_injected_clock():
    clock = Clock()
    fake = FakeMediaMTX(OPENAPI, clock=clock)
    _ALL_FAKES.append(fake)
    stub = StubTreq(fake)
    results: list[Any] = []
    stub.post("http://mediamtx/v3/config/paths/replace/camera0",
              data=json.dumps(CAMERA_PATH).encode()).addBoth(results.append)
    stub.flush()
    assert results[0].code == 200

    fake.slow(5)
    results.clear()
    stub.get("http://mediamtx/v3/config/paths/get/camera0").addBoth(results.append)
    stub.flush()
    clock.advance(4.9)
    stub.flush()
    assert results == []
    clock.advance(0.1)
    stub.flush()
    response = results.pop()
    stub.content(response).addBoth(results.append)
    stub.flush()
    assert response.code == 200 and json.loads(results.pop())["name"] == "camera0"
    assert fake.violations == [] and fake.fake_bugs == []
