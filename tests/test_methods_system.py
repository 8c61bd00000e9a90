"""Server-level and subscription methods (api.md §4.1, §4.20-4.23, §4.27-4.29, §3.6)."""

from __future__ import annotations

import platform
import re
import time
from typing import Any

import pytest
from twisted.internet import reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater

from camera_service.events import NOTIFICATION_NAMES, TOPICS
from camera_service.system_metrics import EMPTY_SAMPLE
from tests.conftest import free_port

RFC3339_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
COMPONENT_STATES = {"RUNNING", "STOPPED", "ERROR", "STARTING", "STOPPING"}
STATUS_BANDS = {"HEALTHY", "DEGRADED", "UNHEALTHY"}

# The 23 topics of api.md §5.4, in the table's order.
SPEC_TOPICS = [
    "camera.connected", "camera.disconnected", "camera.status_change", "camera.capability_detected",
    "camera.capability_error", "recording.start", "recording.stop", "recording.error",
    "recording.progress", "mediamtx.recording_started", "mediamtx.recording_stopped",
    "mediamtx.recording_failed", "mediamtx.stream_started", "mediamtx.stream_stopped",
    "mediamtx.stream", "mediamtx.path", "mediamtx.error", "snapshot.taken", "snapshot.error",
    "system.health", "system.startup", "system.shutdown", "system.error",
]
SPEC_NAMES = ["camera_status_update", "recording_status_update", "system_health_update"]


def assert_invalid(error: dict[str, Any], param: str, rule: str) -> None:
    """A -32602 error as §3.6 and §6.2 define it."""
    assert error["code"] == -32602, error
    assert error["message"] == "Invalid parameters"
    data = error["data"]
    assert set(data) == {"reason", "details", "suggestion", "param", "rule", "hint"}, data
    assert data["reason"] == "invalid_params"
    assert (data["param"], data["rule"]) == (param, rule), data
    for key in ("details", "suggestion", "hint"):
        assert isinstance(data[key], str) and data[key], data


def assert_denied(error: dict[str, Any], method: str, have: str) -> None:
    assert error == {"code": -32002, "message": "Permission denied", "data": {
        "reason": "permission_denied", "details": f"insufficient permissions for method {method}",
        "suggestion": "Use an account with permission", "required_role": "admin", "have_role": have}}


async def poll(check, *, deadline: float = 15.0, step: float = 0.05) -> Any:
    """Call ``check()`` (async) until it returns something truthy, or fail at the deadline."""
    end = time.monotonic() + deadline
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < end, "condition not reached before the deadline"
        await deferLater(reactor, step, lambda: None)


# -- ping, get_server_info (§4.1, §4.23) ---------------------------------------------------

async def test_ping(service):
    client = await service.client()
    response = await client.request("ping")
    assert response == {"jsonrpc": "2.0", "result": "pong", "id": response["id"]}
    assert await client.call("ping", {"ignored": True}) == "pong"


def _expected_architecture() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)


async def test_get_server_info(services, monkeypatch):
    monkeypatch.delenv("SERVICE_BUILD_DATE", raising=False)
    service = await services.start(CAMERA_SERVICE_CAMERA_MAX_CAMERAS="4")
    client = await service.authed_client("viewer")
    info = await client.call("get_server_info")
    assert info == {
        "name": "MediaMTX Camera Service",
        "version": "1.0.0",
        "build_date": "unknown",
        "python_version": platform.python_version(),
        "architecture": _expected_architecture(),
        "capabilities": ["snapshots", "recordings", "streaming"],
        "supported_formats": ["fmp4", "mp4", "jpg"],
        "max_cameras": 4,
    }
    assert "go_version" not in info


async def test_get_server_info_defaults_and_build_date_from_environment(services, monkeypatch):
    monkeypatch.setenv("SERVICE_BUILD_DATE", "2025-01-15T00:00:00Z")
    service = await services.start()
    info = await (await service.authed_client()).call("get_server_info")
    assert info["build_date"] == "2025-01-15T00:00:00Z"
    assert info["max_cameras"] == 10


@pytest.mark.parametrize("machine,expected", [("x86_64", "amd64"), ("AMD64", "amd64"),
                                              ("aarch64", "arm64"), ("arm64", "arm64")])
async def test_architecture_is_normalised(service, monkeypatch, machine, expected):
    monkeypatch.setattr(platform, "machine", lambda: machine)
    info = await (await service.authed_client()).call("get_server_info")
    assert info["architecture"] == expected


# -- get_system_status (§4.22) -------------------------------------------------------------

async def test_get_system_status_ready_without_mediamtx(service):
    client = await service.authed_client("viewer")
    assert await client.call("get_system_status") == {
        "status": "ready", "message": "System is fully operational",
        "available_cameras": [], "discovery_active": False}


async def test_get_system_status_starting_and_exempt_from_gate(services):
    service = await services.start(CAMERA_SERVICE_MEDIAMTX_ENABLED="true",
                                   CAMERA_SERVICE_MEDIAMTX_API_PORT=str(free_port()))
    client = await service.authed_client("viewer")
    assert await client.call("get_system_status") == {
        "status": "starting", "message": "System is initializing, please wait",
        "available_cameras": [], "discovery_active": False}
    assert (await client.call("get_server_info"))["version"] == "1.0.0"
    admin = await service.authed_client("admin")
    calls = [("get_status", None), ("get_metrics", None), ("subscribe_events", {"topics": ["camera.connected"]}),
             ("subscribe_events", {}),  # the gate comes before parameter validation (§8)
             ("unsubscribe_events", None), ("get_subscription_stats", None)]
    for method, params in calls:
        error = await admin.error(method, params)
        assert error["code"] == -32050 and error["message"] == "Dependency failed", method
        assert error["data"]["reason"] == "service_initializing"
        assert error["data"]["dependency"] == "service"


# -- get_status (§4.21) --------------------------------------------------------------------

async def test_get_status_shape(service):
    client = await service.authed_client("admin")
    first = await client.call("get_status")
    assert set(first) == {"status", "uptime", "version", "components"}
    assert first["status"] in STATUS_BANDS
    assert isinstance(first["uptime"], float) and first["uptime"] >= 0.0
    assert first["version"] == "1.0.0"
    assert first["components"] == {"websocket_server": "RUNNING",
                                   "camera_monitor": first["components"]["camera_monitor"],
                                   "mediamtx": "STOPPED"}
    assert first["components"]["camera_monitor"] in COMPONENT_STATES
    await deferLater(reactor, 0.01, lambda: None)
    second = await client.call("get_status")
    assert isinstance(second["uptime"], float) and second["uptime"] >= first["uptime"]


@pytest.mark.parametrize("role", ["viewer", "operator"])
async def test_get_status_and_get_metrics_are_admin_only(service, role):
    client = await service.authed_client(role)
    for method in ("get_status", "get_metrics"):
        assert_denied(await client.error(method), method, role)


class _Silent(Protocol):
    """Accepts the connection and never answers: an HTTP request to it just hangs."""

    def connectionMade(self) -> None:
        self.factory.held.append(self.transport)


async def test_get_status_follows_mediamtx_failures(services):
    # A MediaMTX stand-in that accepts connections and never answers keeps the first
    # probe pending, so the STARTING state can be observed without racing the probe.
    silent = Factory.forProtocol(_Silent)
    silent.held = []
    port = reactor.listenTCP(0, silent, interface="127.0.0.1")
    try:
        service = await services.start(
            CAMERA_SERVICE_MEDIAMTX_ENABLED="true",
            CAMERA_SERVICE_MEDIAMTX_API_PORT=str(port.getHost().port),
            CAMERA_SERVICE_MEDIAMTX_REQUEST_TIMEOUT="60",
            CAMERA_SERVICE_MEDIAMTX_HEALTH_CHECK_INTERVAL="0.1",
            CAMERA_SERVICE_MEDIAMTX_HEALTH_FAILURE_THRESHOLD="2",
            CAMERA_SERVICE_MEDIAMTX_HEALTH_MAX_BACKOFF="0.2")
        client = await service.authed_client("admin")
        assert (await client.error("get_status"))["data"]["reason"] == "service_initializing"
        # Let get_status past the readiness gate; MediaMTX itself is still unreached.
        service.app.readiness.satisfy("mediamtx")
        status = await client.call("get_status")
        assert status["components"]["mediamtx"] == "STARTING"

        # MediaMTX goes away: the pending probe fails, later ones are refused.
        await port.stopListening()
        for transport in silent.held:
            transport.abortConnection()

        async def mediamtx_error():
            result = await client.call("get_status")
            return result if result["components"]["mediamtx"] == "ERROR" else None

        status = await poll(mediamtx_error)
        assert service.app.health.get("mediamtx").details["consecutive_failures"] >= 2

        async def unhealthy():
            result = await client.call("get_status")
            return result if result["status"] == "UNHEALTHY" else None

        status = await poll(unhealthy)
        assert status["components"]["mediamtx"] == "ERROR"
        assert service.app.health.get("mediamtx").details["consecutive_failures"] >= 5
        assert "mediamtx_failures" in service.app.status.evaluate().reasons
    finally:
        for transport in silent.held:
            transport.abortConnection()
        if port.connected:
            await port.stopListening()


class _Probe:
    enabled = True
    last_latency = None

    def __init__(self, failures: int) -> None:
        self.consecutive_failures = failures

    def component_state(self) -> str:
        return "ERROR"


@pytest.mark.parametrize("failures,band", [(0, "HEALTHY"), (2, "HEALTHY"), (3, "DEGRADED"),
                                           (4, "DEGRADED"), (5, "UNHEALTHY"), (9, "UNHEALTHY")])
def test_consecutive_mediamtx_failure_bands(failures, band):
    from camera_service.metrics import RequestMetrics
    from camera_service.status import StatusEvaluator
    from camera_service.system_metrics import SystemSample

    class System:
        latest = SystemSample(1.0, 10.0, 10.0, 3, 0, 0.0, 1.0)

    evaluator = StatusEvaluator(system=System(), request_metrics=RequestMetrics(time.monotonic),
                                connections_open=lambda: 1, max_connections=100,
                                mediamtx=_Probe(failures), camera_monitor_state=lambda: "RUNNING",
                                shutting_down=lambda: False)
    assert evaluator.evaluate().status == band


# -- get_metrics (§4.20) -------------------------------------------------------------------

async def test_get_metrics_shape(service):
    client = await service.authed_client("admin")

    async def sampled():
        return service.app.system_metrics.latest.sampled_at

    await poll(sampled)
    metrics = await client.call("get_metrics")
    assert set(metrics) == {"timestamp", "system_metrics", "camera_metrics", "recording_metrics",
                            "stream_metrics"}
    assert RFC3339_Z.match(metrics["timestamp"])
    system = metrics["system_metrics"]
    assert set(system) == {"cpu_usage", "memory_usage", "disk_usage", "threads"}
    for key in ("cpu_usage", "memory_usage", "disk_usage"):
        assert isinstance(system[key], float) and 0.0 <= system[key] <= 100.0, (key, system)
    assert type(system["threads"]) is int and system["threads"] >= 1
    assert metrics["camera_metrics"] == {"connected_cameras": 0, "cameras": {}}
    assert metrics["recording_metrics"] == {}
    assert set(metrics["stream_metrics"]) == {"active_streams", "total_streams", "total_viewers"}
    assert all(type(value) is int and value >= 0 for value in metrics["stream_metrics"].values())


async def test_get_metrics_before_the_first_sample(service):
    """Right after start-up no sample exists yet; the figures must still be valid."""
    system_metrics = service.app.system_metrics

    async def sampled():
        return system_metrics.latest.sampled_at

    await poll(sampled)  # the start-up sample is in; the next one is 5 s away
    system_metrics.latest = EMPTY_SAMPLE
    system = (await (await service.authed_client("admin")).call("get_metrics"))["system_metrics"]
    for key in ("cpu_usage", "memory_usage", "disk_usage"):
        assert isinstance(system[key], float) and 0.0 <= system[key] <= 100.0
    assert type(system["threads"]) is int and system["threads"] >= 1


# -- subscribe_events (§4.27) --------------------------------------------------------------

def test_topic_list_matches_the_spec():
    assert list(TOPICS) == SPEC_TOPICS and len(TOPICS) == 23
    assert list(NOTIFICATION_NAMES) == SPEC_NAMES


async def test_every_topic_and_notification_name_is_accepted(service):
    client = await service.authed_client()
    for topic in SPEC_TOPICS + SPEC_NAMES:
        assert await client.call("subscribe_events", {"topics": [topic]}) == {
            "subscribed": True, "topics": [topic], "filters": {}}
    stats = await client.call("get_subscription_stats")
    assert stats["client_topics"] == sorted(SPEC_TOPICS + SPEC_NAMES)
    other = await service.authed_client()
    result = await other.call("subscribe_events", {"topics": SPEC_TOPICS + SPEC_NAMES})
    assert result["topics"] == SPEC_TOPICS + SPEC_NAMES


async def test_subscriptions_are_additive_and_deduplicated(service):
    client = await service.authed_client()
    first = await client.call("subscribe_events", {
        "topics": ["recording.start", "camera.connected", "recording.start", "camera.connected"]})
    assert first == {"subscribed": True, "topics": ["recording.start", "camera.connected"], "filters": {}}
    second = await client.call("subscribe_events", {"topics": ["system.error", "recording.start"],
                                                    "filters": {"device": "camera0"}})
    assert second == {"subscribed": True, "topics": ["system.error", "recording.start"],
                      "filters": {"device": "camera0"}}
    stats = await client.call("get_subscription_stats")
    assert stats["client_topics"] == ["camera.connected", "recording.start", "system.error"]


@pytest.mark.parametrize("filters,echo", [
    (None, {}),
    ({}, {}),
    ({"device": None}, {}),
    ({"device": "camera12"}, {"device": "camera12"}),
    ({"topic": "camera_status_update"}, {"topic": "camera_status_update"}),
    ({"timestamp_after": "2025-01-15T14:30:00Z", "timestamp_before": "2025-01-15T15:30:00+01:00",
      "device": "camera0", "topic": "camera.connected"},
     {"timestamp_after": "2025-01-15T14:30:00Z", "timestamp_before": "2025-01-15T15:30:00+01:00",
      "device": "camera0", "topic": "camera.connected"}),
])
async def test_filters_are_echoed(service, filters, echo):
    client = await service.authed_client()
    params: dict[str, Any] = {"topics": ["camera.connected"]}
    if filters is not None:
        params["filters"] = filters
    result = await client.call("subscribe_events", params)
    assert result == {"subscribed": True, "topics": ["camera.connected"], "filters": echo}


@pytest.mark.parametrize("params,param,rule", [
    ({}, "topics", "required"),
    ({"topics": None}, "topics", "required"),
    ({"filters": {"device": "camera0"}}, "topics", "required"),
    ({"topics": "camera.connected"}, "topics", "type"),
    ({"topics": True}, "topics", "type"),
    ({"topics": 1}, "topics", "type"),
    ({"topics": {"0": "camera.connected"}}, "topics", "type"),
    ({"topics": [1]}, "topics", "type"),
    ({"topics": ["camera.connected", None]}, "topics", "type"),
    ({"topics": ["camera.connected", True]}, "topics", "type"),
    ({"topics": [["camera.connected"]]}, "topics", "type"),
    ({"topics": []}, "topics", "non_empty"),
    ({"topics": ["camera.connected", "camera.exploded"]}, "topics", "unknown_topic"),
    ({"topics": ["Camera.Connected"]}, "topics", "unknown_topic"),
    ({"topics": ["camera_status_update", "system_health"]}, "topics", "unknown_topic"),
    # The first invalid parameter in table order is reported.
    ({"topics": [], "filters": {"bogus": 1}}, "topics", "non_empty"),
    ({"topics": ["camera.connected"], "filters": True}, "filters", "type"),
    ({"topics": ["camera.connected"], "filters": ["device"]}, "filters", "type"),
    ({"topics": ["camera.connected"], "filters": "device=camera0"}, "filters", "type"),
    ({"topics": ["camera.connected"], "filters": {"bogus": "x"}}, "filters.bogus", "unknown_filter"),
    ({"topics": ["camera.connected"], "filters": {"device": "camera0", "camera": "x"}},
     "filters.camera", "unknown_filter"),
    ({"topics": ["camera.connected"], "filters": {"device": "/dev/video0"}}, "filters.device", "pattern"),
    ({"topics": ["camera.connected"], "filters": {"device": "camera"}}, "filters.device", "pattern"),
    ({"topics": ["camera.connected"], "filters": {"device": "camera0/../x"}}, "filters.device", "pattern"),
    ({"topics": ["camera.connected"], "filters": {"device": 0}}, "filters.device", "type"),
    ({"topics": ["camera.connected"], "filters": {"device": True}}, "filters.device", "type"),
    ({"topics": ["camera.connected"], "filters": {"topic": "nope"}}, "filters.topic", "unknown_topic"),
    ({"topics": ["camera.connected"], "filters": {"topic": 3}}, "filters.topic", "type"),
    ({"topics": ["camera.connected"], "filters": {"timestamp_after": "yesterday"}},
     "filters.timestamp_after", "type"),
    ({"topics": ["camera.connected"], "filters": {"timestamp_after": "2025-01-15T14:30:00"}},
     "filters.timestamp_after", "type"),
    ({"topics": ["camera.connected"], "filters": {"timestamp_before": 1736951400}},
     "filters.timestamp_before", "type"),
    ({"topics": ["camera.connected"], "filters": {"timestamp_before": "2025-13-45T99:00:00Z"}},
     "filters.timestamp_before", "type"),
])
async def test_subscribe_events_validation(service, params, param, rule):
    client = await service.authed_client()
    assert_invalid(await client.error("subscribe_events", params), param, rule)
    # A rejected call changes nothing.
    assert (await client.call("get_subscription_stats"))["client_topics"] == []


async def test_subscribe_events_ignores_unknown_parameters(service):
    client = await service.authed_client()
    result = await client.call("subscribe_events", {"topics": ["camera.connected"], "since": 5})
    assert result == {"subscribed": True, "topics": ["camera.connected"], "filters": {}}


async def test_subscribe_events_needs_authentication(service):
    client = await service.client()
    error = await client.error("subscribe_events", {"topics": ["camera.connected"]})
    assert error["code"] == -32001 and error["data"]["reason"] == "auth_required"


# -- unsubscribe_events (§4.28) ------------------------------------------------------------

async def test_unsubscribe_reports_what_was_removed(service):
    client = await service.authed_client()
    await client.call("subscribe_events", {"topics": ["camera.connected", "recording.start", "system.error"]})
    result = await client.call("unsubscribe_events", {
        "topics": ["recording.stop", "system.error", "camera.connected", "system.error"]})
    assert result == {"unsubscribed": True, "topics": ["system.error", "camera.connected"]}
    assert (await client.call("get_subscription_stats"))["client_topics"] == ["recording.start"]
    # Nothing left to remove is not an error.
    assert await client.call("unsubscribe_events", {"topics": ["system.error"]}) == {
        "unsubscribed": True, "topics": []}
    assert await client.call("unsubscribe_events", {"topics": []}) == {"unsubscribed": True, "topics": []}
    assert (await client.call("get_subscription_stats"))["client_topics"] == ["recording.start"]


@pytest.mark.parametrize("params", [{}, {"topics": None}, None])
async def test_unsubscribe_without_topics_removes_everything(service, params):
    client = await service.authed_client()
    await client.call("subscribe_events", {"topics": ["camera_status_update", "camera.connected"]})
    result = await client.call("unsubscribe_events", params)
    assert result["unsubscribed"] is True
    assert sorted(result["topics"]) == ["camera.connected", "camera_status_update"]
    assert (await client.call("get_subscription_stats"))["client_topics"] == []
    assert await client.call("unsubscribe_events", params) == {"unsubscribed": True, "topics": []}


@pytest.mark.parametrize("params,rule", [
    ({"topics": ["camera.connected", "camera.exploded"]}, "unknown_topic"),
    ({"topics": "camera.connected"}, "type"),
    ({"topics": True}, "type"),
    ({"topics": [7]}, "type"),
])
async def test_unsubscribe_events_validation(service, params, rule):
    client = await service.authed_client()
    await client.call("subscribe_events", {"topics": ["camera.connected"]})
    assert_invalid(await client.error("unsubscribe_events", params), "topics", rule)
    assert (await client.call("get_subscription_stats"))["client_topics"] == ["camera.connected"]


# -- get_subscription_stats (§4.29) --------------------------------------------------------

async def test_subscription_stats_across_clients(service):
    first = await service.client()
    first_id = (await first.call("authenticate", {"auth_token": service.token()}))["session_id"]
    second = await service.client()
    second_id = (await second.call("authenticate", {"auth_token": service.token("admin")}))["session_id"]
    idle = await service.authed_client()  # authenticated, subscribed to nothing
    await service.client()  # never authenticated

    empty = await first.call("get_subscription_stats")
    assert empty == {"global_stats": {"total_subscriptions": 0, "active_clients": 0, "topic_counts": {}},
                     "client_topics": [], "client_id": first_id}

    await first.call("subscribe_events", {"topics": ["recording.start", "camera.connected"]})
    await second.call("subscribe_events", {"topics": ["camera.connected"], "filters": {"device": "camera1"}})
    expected_global = {"total_subscriptions": 3, "active_clients": 2,
                       "topic_counts": {"camera.connected": 2, "recording.start": 1}}
    assert await first.call("get_subscription_stats") == {
        "global_stats": expected_global, "client_topics": ["camera.connected", "recording.start"],
        "client_id": first_id}
    assert await second.call("get_subscription_stats") == {
        "global_stats": expected_global, "client_topics": ["camera.connected"], "client_id": second_id}
    assert (await idle.call("get_subscription_stats"))["client_topics"] == []
    assert first_id != second_id

    await first.call("unsubscribe_events", {"topics": ["camera.connected"]})
    stats = await second.call("get_subscription_stats")
    assert stats["global_stats"] == {"total_subscriptions": 2, "active_clients": 2,
                                     "topic_counts": {"camera.connected": 1, "recording.start": 1}}

    # A closed connection no longer counts.
    await first.close()
    stats = await second.call("get_subscription_stats")
    assert stats["global_stats"] == {"total_subscriptions": 1, "active_clients": 1,
                                     "topic_counts": {"camera.connected": 1}}
