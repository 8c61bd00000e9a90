"""The health site (api.md §7.1) over a real socket, and the /metrics exposition."""

from __future__ import annotations

import json
import math
import re
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable

import pytest
import pytest_twisted
from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.internet.task import Clock
from twisted.logger import formatEvent, globalLogPublisher
from twisted.web.client import Agent, HTTPConnectionPool

from camera_service import __version__
from camera_service.health.http import HealthEndpoints, build_health_site
from camera_service.health.model import DEGRADED, HEALTHY, UNHEALTHY, HealthRegistry, Readiness
from camera_service.health.prometheus import (
    MetricFamily,
    Sample,
    escape_label_value,
    histogram_samples,
    render_prometheus,
)
from camera_service.metrics import RequestMetrics
from camera_service.system_metrics import SystemSample

# 2025-01-15T14:30:00Z, the instant used in the spec's examples.
T0 = 1736951400.0
NO_CACHE_HEADERS = {
    "Cache-Control": "no-cache, no-store, must-revalidate",
    "Pragma": "no-cache",
    "Expires": "0",
    "Access-Control-Allow-Origin": "*",
}
PROM_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
BUDGET_SECONDS = 0.100


# --------------------------------------------------------------------------------------
# A strict parser for the 0.0.4 text format, so the test does not need prometheus_client.

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE_RE = re.compile(rf"^({_NAME})(?:\{{(.*)\}})? (\S+)$")
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\\\|\\"|\\n)*)"(,|$)')
_SUFFIXES = {
    "counter": ("",),
    "gauge": ("",),
    "untyped": ("",),
    "summary": ("", "_sum", "_count"),
    "histogram": ("_bucket", "_sum", "_count"),
}


@dataclass
class ParsedFamily:
    name: str
    help: str | None = None
    type: str | None = None
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)

    def value(self, suffix: str = "", **labels: str) -> float:
        matches = [v for n, lab, v in self.samples if n == self.name + suffix and lab == labels]
        assert len(matches) == 1, (self.name, suffix, labels, self.samples)
        return matches[0]


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "\\": "\\", '"': '"'}[m.group(1)], value)


def _parse_labels(text: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    pos = 0
    while pos < len(text):
        match = _LABEL_RE.match(text, pos)
        assert match, f"bad label set {text!r} at {pos}"
        assert match.group(1) not in labels, f"duplicate label in {text!r}"
        labels[match.group(1)] = _unescape(match.group(2))
        pos = match.end()
    return labels


def _parse_value(text: str) -> float:
    if text in ("+Inf", "-Inf", "NaN"):
        return float(text.replace("Inf", "inf").replace("NaN", "nan"))
    assert re.match(r"^-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?$", text), f"bad value {text!r}"
    return float(text)


def parse_exposition(text: str) -> dict[str, ParsedFamily]:
    assert text.endswith("\n"), "exposition must end with a newline"
    families: dict[str, ParsedFamily] = {}
    current: ParsedFamily | None = None
    seen_series: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    for line in text[:-1].split("\n"):
        assert line, "blank lines are not emitted"
        if line.startswith("#"):
            match = re.match(rf"^# (HELP|TYPE) ({_NAME}) (.*)$", line)
            assert match, f"bad comment line {line!r}"
            kind, name, rest = match.groups()
            if current is None or current.name != name:
                assert name not in families, f"family {name} is split"
                current = families[name] = ParsedFamily(name)
            if kind == "HELP":
                assert current.help is None and current.type is None, f"HELP must come first for {name}"
                current.help = rest
            else:
                assert current.type is None, f"two TYPE lines for {name}"
                assert rest in _SUFFIXES, f"bad type {rest!r}"
                current.type = rest
            continue
        match = _SAMPLE_RE.match(line)
        assert match, f"bad sample line {line!r}"
        name, label_text, value_text = match.groups()
        assert current is not None and current.type is not None, f"sample {name} before HELP/TYPE"
        assert any(name == current.name + s for s in _SUFFIXES[current.type]), f"{name} outside its family"
        labels = _parse_labels(label_text or "")
        key = (name, tuple(sorted(labels.items())))
        assert key not in seen_series, f"duplicate series {key}"
        seen_series.add(key)
        current.samples.append((name, labels, _parse_value(value_text)))
    for family in families.values():
        assert family.help is not None and family.type is not None, f"{family.name} lacks HELP or TYPE"
    return families


# --------------------------------------------------------------------------------------
# Fixtures and helpers


@dataclass
class Env:
    clock: Clock
    registry: HealthRegistry
    readiness: Readiness
    metrics_text: Callable[[], str]


def make_env(started_at: float = T0) -> Env:
    clock = Clock()
    clock.advance(started_at)
    registry = HealthRegistry(clock)
    readiness = Readiness()
    request_metrics = RequestMetrics(clock.seconds)
    sample = SystemSample(12.5, 40.0, 45.5, 7, 50_000_000, 3.0, started_at)

    def metrics_text() -> str:
        return render_prometheus(
            request_metrics=request_metrics,
            system=sample,
            registry=registry,
            uptime_seconds=clock.seconds() - started_at,
            connections_open=2,
        )

    return Env(clock, registry, readiness, metrics_text)


@dataclass
class Reply:
    code: int
    headers: dict[str, list[str]]
    body: bytes
    elapsed: float

    def header(self, name: str) -> str:
        values = self.headers.get(name.lower(), [])
        assert len(values) == 1, (name, values)
        return values[0]

    def json(self) -> Any:
        assert self.header("Content-Type") == "application/json"
        return json.loads(self.body)


class Server:
    def __init__(self, base: str, client: HTTPClient) -> None:
        self.base = base
        self._client = client

    async def request(self, method: str, path: str) -> Reply:
        started = time.perf_counter()
        response = await self._client.request(method, self.base + path)
        body = await response.content()
        elapsed = time.perf_counter() - started
        headers = {k.decode().lower(): [v.decode() for v in vs] for k, vs in response.headers.getAllRawHeaders()}
        return Reply(response.code, headers, body, elapsed)

    async def get(self, path: str) -> Reply:
        reply = await self.request("GET", path)
        # api.md §7.1: every endpoint answers within 100 ms.
        assert reply.elapsed < BUDGET_SECONDS, f"GET {path} took {reply.elapsed * 1000:.1f} ms"
        return reply


@asynccontextmanager
async def serve(env: Env, endpoints: HealthEndpoints | None = None, environment: str = "production",
                render_metrics: Callable[[], str] | None = None) -> AsyncIterator[Server]:
    site = build_health_site(
        registry=env.registry,
        readiness=env.readiness,
        clock=env.clock,
        started_at=T0,
        version=__version__,
        environment=environment,
        endpoints=endpoints or HealthEndpoints(),
        render_metrics=render_metrics or env.metrics_text,
    )
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    # Non-persistent: no idle keep-alive connections outlive the test.
    pool = HTTPConnectionPool(reactor, persistent=False)
    client = HTTPClient(Agent(reactor, pool=pool))
    try:
        yield Server(f"http://127.0.0.1:{port.getHost().port}", client)
    finally:
        await pool.closeCachedConnections()
        await port.stopListening()


def assert_common_headers(reply: Reply) -> None:
    for name, value in NO_CACHE_HEADERS.items():
        assert reply.header(name) == value, name


def report_all_healthy(env: Env) -> None:
    env.registry.set("storage", HEALTHY, "Storage usage 45.0%", {"usage_percentage": 45.0})
    env.clock.advance(5)
    env.registry.set("mediamtx", HEALTHY, "MediaMTX reachable", {"active_streams": 1})
    env.clock.advance(5)
    env.registry.set("cameras", HEALTHY, "Camera monitoring active", {"connected_cameras": 1, "total_cameras": 1})


# --------------------------------------------------------------------------------------
# Endpoints


@pytest_twisted.ensureDeferred
async def test_basic_health_shape_and_headers() -> None:
    env = make_env()
    env.clock.advance(72 * 3600 + 15 * 60 + 30)
    async with serve(env) as server:
        reply = await server.get("/health")
    assert reply.code == 200
    assert_common_headers(reply)
    assert reply.json() == {
        "status": "healthy",
        "timestamp": "2025-01-18T14:45:30Z",
        "version": "1.0.0",
        "uptime": "72h15m30s",
    }


@pytest_twisted.ensureDeferred
async def test_uptime_string_drops_leading_zero_units() -> None:
    env = make_env()
    async with serve(env) as server:
        assert (await server.get("/health")).json()["uptime"] == "0s"
        env.clock.advance(45.9)  # whole seconds, rounded down
        assert (await server.get("/health")).json()["uptime"] == "45s"
        env.clock.advance(44.1)
        assert (await server.get("/health")).json()["uptime"] == "1m30s"
        env.clock.advance(2 * 3600 + 5 - 90)
        assert (await server.get("/health")).json()["uptime"] == "2h0m5s"


@pytest_twisted.ensureDeferred
async def test_basic_status_is_worst_present_component() -> None:
    env = make_env()
    async with serve(env) as server:
        env.registry.set("cameras", HEALTHY, "ok")
        assert (await server.get("/health")).json()["status"] == "healthy"
        env.registry.set("mediamtx", DEGRADED, "MediaMTX unreachable since 14:30:05")
        reply = await server.get("/health")
        # Health is carried in the body; the HTTP status stays 200.
        assert reply.code == 200
        assert reply.json()["status"] == "degraded"
        env.registry.set("storage", UNHEALTHY, "Storage full")
        assert (await server.get("/health")).json()["status"] == "unhealthy"


@pytest_twisted.ensureDeferred
async def test_detailed_and_system_alias() -> None:
    env = make_env()
    report_all_healthy(env)
    env.clock.advance(5)
    async with serve(env, environment="staging") as server:
        detailed = await server.get("/health/detailed")
        system = await server.get("/health/system")
    for reply in (detailed, system):
        assert reply.code == 200
        assert_common_headers(reply)
    assert detailed.json() == system.json()
    assert detailed.json() == {
        "status": "healthy",
        "timestamp": "2025-01-15T14:30:15Z",
        "version": "1.0.0",
        "uptime": "15s",
        "components": [
            {"name": "mediamtx", "status": "healthy", "message": "MediaMTX reachable",
             "last_checked": "2025-01-15T14:30:05Z", "details": {"active_streams": 1}},
            {"name": "cameras", "status": "healthy", "message": "Camera monitoring active",
             "last_checked": "2025-01-15T14:30:10Z", "details": {"connected_cameras": 1, "total_cameras": 1}},
            {"name": "storage", "status": "healthy", "message": "Storage usage 45.0%",
             "last_checked": "2025-01-15T14:30:00Z", "details": {"usage_percentage": 45.0}},
        ],
        "metrics": {"uptime_seconds": 15, "component_count": 3, "components_healthy": 3,
                    "components_degraded": 0, "components_unhealthy": 0},
        "environment": "staging",
    }


@pytest_twisted.ensureDeferred
async def test_detailed_counts_and_absent_components() -> None:
    env = make_env()
    async with serve(env) as server:
        empty = (await server.get("/health/detailed")).json()
        assert empty["status"] == "healthy"
        assert empty["components"] == []
        assert empty["metrics"]["component_count"] == 0
        assert empty["environment"] == "production"
        env.registry.set("mediamtx", DEGRADED, "MediaMTX starting")
        env.registry.set("storage", UNHEALTHY, "Recordings root not writable")
        body = (await server.get("/health/detailed")).json()
    assert body["status"] == "unhealthy"
    assert [c["name"] for c in body["components"]] == ["mediamtx", "storage"]
    assert body["metrics"] == {"uptime_seconds": 0, "component_count": 2, "components_healthy": 0,
                               "components_degraded": 1, "components_unhealthy": 1}


@pytest_twisted.ensureDeferred
async def test_ready_starting_then_ready() -> None:
    env = make_env()
    env.readiness.require("mediamtx")
    async with serve(env) as server:
        reply = await server.get("/health/ready")
        assert reply.code == 503
        assert_common_headers(reply)
        assert reply.json() == {"ready": False, "timestamp": "2025-01-15T14:30:00Z",
                                "message": "System not ready: service is starting"}
        env.readiness.mark_started()
        assert (await server.get("/health/ready")).code == 503  # a condition is still pending
        env.readiness.satisfy("mediamtx")
        env.clock.advance(1)
        reply = await server.get("/health/ready")
    assert reply.code == 200
    assert_common_headers(reply)
    assert reply.json() == {"ready": True, "timestamp": "2025-01-15T14:30:01Z", "message": "System is ready"}


@pytest_twisted.ensureDeferred
async def test_ready_partial_and_degraded_is_ready() -> None:
    env = make_env()
    env.readiness.require("mediamtx")
    env.readiness.mark_started()
    env.registry.set("mediamtx", DEGRADED, "MediaMTX unreachable")  # never unhealthy (media.md §6.1)
    async with serve(env) as server:
        assert (await server.get("/health/ready")).code == 503
        env.readiness.available_cameras = lambda: ["camera0"]
        reply = await server.get("/health/ready")
    assert reply.code == 200
    assert reply.json()["ready"] is True


@pytest_twisted.ensureDeferred
async def test_ready_names_unhealthy_component() -> None:
    env = make_env()
    env.readiness.mark_started()
    env.registry.set("cameras", HEALTHY, "ok")
    env.registry.set("storage", UNHEALTHY, "Storage usage 99.0%")
    async with serve(env) as server:
        reply = await server.get("/health/ready")
        assert reply.code == 503
        assert reply.json() == {"ready": False, "timestamp": "2025-01-15T14:30:00Z",
                                "message": "System not ready: storage is unhealthy"}
        env.registry.set("storage", DEGRADED, "Storage usage 91.0%")
        assert (await server.get("/health/ready")).code == 200


@pytest_twisted.ensureDeferred
async def test_live_until_shutdown() -> None:
    env = make_env()
    async with serve(env) as server:
        reply = await server.get("/health/live")
        assert reply.code == 200
        assert_common_headers(reply)
        assert reply.json() == {"alive": True, "timestamp": "2025-01-15T14:30:00Z", "message": "System is alive"}
        env.readiness.shutting_down = True
        reply = await server.get("/health/live")
    assert reply.code == 503
    assert_common_headers(reply)
    assert reply.json() == {"alive": False, "timestamp": "2025-01-15T14:30:00Z", "message": "System is not alive"}


@pytest_twisted.ensureDeferred
async def test_unknown_path_is_404_with_error_body() -> None:
    env = make_env()
    env.clock.advance(30)
    async with serve(env) as server:
        replies = [await server.get(p) for p in ("/nope", "/", "/health/detailed/extra", "/HEALTH")]
    for reply in replies:
        assert reply.code == 404
        assert_common_headers(reply)
        assert reply.json() == {"error": "Not found", "timestamp": "2025-01-15T14:30:30Z", "status": 404}


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "HEAD"])
@pytest_twisted.ensureDeferred
async def test_non_get_is_405(method: str) -> None:
    env = make_env()
    async with serve(env) as server:
        reply = await server.request(method, "/health")
    assert reply.code == 405
    assert_common_headers(reply)
    assert reply.header("Allow") == "GET"
    if method != "HEAD":  # HEAD responses carry no body
        assert reply.json() == {"error": "Method not allowed", "timestamp": "2025-01-15T14:30:00Z", "status": 405}


@pytest_twisted.ensureDeferred
async def test_internal_failure_is_500_with_error_body() -> None:
    env = make_env()

    def boom() -> Any:
        raise RuntimeError("registry exploded")

    env.registry.components = boom  # type: ignore[method-assign]
    env.registry.overall = boom  # type: ignore[method-assign]
    errors: list[dict[str, Any]] = []

    def observer(event: dict[str, Any]) -> None:
        if event.get("log_failure") is not None:
            errors.append(event)

    globalLogPublisher.addObserver(observer)
    try:
        async with serve(env, render_metrics=boom) as server:
            replies = [await server.get(p) for p in ("/health", "/health/detailed", "/health/system",
                                                      "/health/ready", "/metrics")]
            live = await server.get("/health/live")  # does not read the registry
    finally:
        globalLogPublisher.removeObserver(observer)
    for reply in replies:
        assert reply.code == 500
        assert_common_headers(reply)
        body = reply.json()
        assert body == {"error": "Internal server error", "timestamp": "2025-01-15T14:30:00Z", "status": 500}
        assert "exploded" not in reply.body.decode()  # exception text stays in the log
    assert live.code == 200
    assert len(errors) == len(replies)


@pytest_twisted.ensureDeferred
async def test_configurable_paths() -> None:
    env = make_env()
    endpoints = HealthEndpoints(basic="/status", detailed="/status/full", ready="/k8s/readyz",
                                live="/k8s/livez", metrics="/prom")
    async with serve(env, endpoints=endpoints) as server:
        assert (await server.get("/status")).json()["status"] == "healthy"
        assert "components" in (await server.get("/status/full")).json()
        assert (await server.get("/k8s/readyz")).code == 503
        assert (await server.get("/k8s/livez")).code == 200
        assert (await server.get("/prom")).header("Content-Type") == PROM_CONTENT_TYPE
        assert "components" in (await server.get("/health/system")).json()
        for old in ("/health", "/health/detailed", "/health/ready", "/health/live", "/metrics"):
            assert (await server.get(old)).code == 404, old


def test_endpoints_must_be_distinct_absolute_paths() -> None:
    with pytest.raises(ValueError):
        HealthEndpoints(basic="health")
    with pytest.raises(ValueError):
        HealthEndpoints(ready="/health/live")


@pytest_twisted.ensureDeferred
async def test_metrics_endpoint() -> None:
    env = make_env()
    report_all_healthy(env)
    async with serve(env) as server:
        reply = await server.get("/metrics")
    assert reply.code == 200
    assert reply.header("Content-Type") == PROM_CONTENT_TYPE
    assert_common_headers(reply)
    families = parse_exposition(reply.body.decode("utf-8"))
    assert families["camera_service_up"].value() == 1
    assert families["camera_service_uptime_seconds"].value() == 10
    assert families["camera_service_websocket_connections"].value() == 2
    assert families["camera_service_component_health"].value(component="cameras", status="healthy") == 1


@pytest_twisted.ensureDeferred
async def test_probes_are_not_access_logged() -> None:
    env = make_env()
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        async with serve(env) as server:
            for path in ("/health", "/health/ready", "/health/live", "/metrics", "/nope"):
                await server.get(path)
    finally:
        globalLogPublisher.removeObserver(events.append)
    texts = [formatEvent(e) for e in events]
    # An access-log line reads '"GET /health HTTP/1.1" 200 ...'; a noisy factory logs
    # "Starting factory <..._QuietSite...>". (The listening port's own one-off
    # "starting on <port>" line is expected.)
    assert not [t for t in texts if '"GET ' in t or "Starting factory" in t and "Site" in t], texts


# --------------------------------------------------------------------------------------
# Prometheus rendering


def _full_render(extra: list[MetricFamily] | None = None) -> str:
    clock = Clock()
    clock.advance(T0)
    registry = HealthRegistry(clock)
    registry.set("mediamtx", DEGRADED, "MediaMTX starting")
    registry.set("storage", HEALTHY, "ok")
    rm = RequestMetrics(clock.seconds)
    rm.connections_total = 7
    rm.refused("max_connections")
    rm.refused("max_connections")
    rm.refused('we"ird\\reason\n')
    rm.notifications_sent = 11
    rm.notifications_dropped = 1
    for latency in range(1, 101):
        rm.record("ping", float(latency), None)
    rm.record("take_snapshot", 2500.0, -32603)
    rm.record("take_snapshot", 500.0, -32010)
    rm.record("take_snapshot", 700.0, -32010)
    sample = SystemSample(cpu_usage=23.1, memory_usage=41.7, disk_usage=45.5, threads=12,
                          rss_bytes=123_456_789, process_cpu_percent=150.5, sampled_at=T0)
    return render_prometheus(request_metrics=rm, system=sample, registry=registry, uptime_seconds=3600.5,
                             connections_open=3, extra=extra or ())


def test_render_core_families() -> None:
    families = parse_exposition(_full_render())
    expected_types = {
        "camera_service_up": "gauge",
        "camera_service_uptime_seconds": "gauge",
        "camera_service_websocket_connections": "gauge",
        "camera_service_websocket_connections_total": "counter",
        "camera_service_connections_refused_total": "counter",
        "camera_service_rpc_requests_total": "counter",
        "camera_service_rpc_errors_total": "counter",
        "camera_service_rpc_request_duration_seconds": "summary",
        "camera_service_notifications_sent_total": "counter",
        "camera_service_notifications_dropped_total": "counter",
        "camera_service_process_resident_memory_bytes": "gauge",
        "camera_service_process_cpu_percent": "gauge",
        "camera_service_host_cpu_percent": "gauge",
        "camera_service_host_memory_percent": "gauge",
        "camera_service_threads": "gauge",
        "camera_service_component_health": "gauge",
    }
    assert {name: f.type for name, f in families.items()} == expected_types
    assert families["camera_service_uptime_seconds"].value() == 3600.5
    assert families["camera_service_websocket_connections"].value() == 3
    assert families["camera_service_websocket_connections_total"].value() == 7
    refused = families["camera_service_connections_refused_total"]
    assert refused.value(reason="max_connections") == 2
    assert refused.value(reason='we"ird\\reason\n') == 1  # escaping round-trips
    requests = families["camera_service_rpc_requests_total"]
    assert requests.value(method="ping") == 100
    assert requests.value(method="take_snapshot") == 3
    errors = families["camera_service_rpc_errors_total"]
    assert errors.value(method="take_snapshot", code="-32603") == 1
    assert errors.value(method="take_snapshot", code="-32010") == 2
    assert len(errors.samples) == 2
    duration = families["camera_service_rpc_request_duration_seconds"]
    assert duration.value(method="ping", quantile="0.5") == pytest.approx(0.05, abs=0.0011)
    assert duration.value(method="ping", quantile="0.95") == pytest.approx(0.095, abs=0.0011)
    assert duration.value(method="ping", quantile="0.99") == pytest.approx(0.099, abs=0.0011)
    assert duration.value("_sum", method="ping") == pytest.approx(5.050)
    assert duration.value("_count", method="ping") == 100
    assert duration.value("_count", method="take_snapshot") == 3
    assert families["camera_service_notifications_sent_total"].value() == 11
    assert families["camera_service_notifications_dropped_total"].value() == 1
    assert families["camera_service_process_resident_memory_bytes"].value() == 123_456_789
    assert families["camera_service_process_cpu_percent"].value() == 150.5
    assert families["camera_service_host_cpu_percent"].value() == 23.1
    assert families["camera_service_host_memory_percent"].value() == 41.7
    assert families["camera_service_threads"].value() == 12
    health = families["camera_service_component_health"]
    assert health.value(component="mediamtx", status="degraded") == 1
    assert health.value(component="mediamtx", status="healthy") == 0
    assert health.value(component="mediamtx", status="unhealthy") == 0
    assert health.value(component="storage", status="healthy") == 1
    assert {lab["component"] for _, lab, _ in health.samples} == {"mediamtx", "storage"}  # absent = not reported


def test_render_escapes_label_values_on_the_wire() -> None:
    text = _full_render()
    assert 'camera_service_connections_refused_total{reason="we\\"ird\\\\reason\\n"} 1\n' in text
    assert escape_label_value('a"b\\c\nd') == 'a\\"b\\\\c\\nd'


def test_render_extra_families() -> None:
    extra = [
        MetricFamily("camera_service_cameras", "gauge", "Cameras by status.",
                     [({"status": "CONNECTED"}, 1), ({"status": "ERROR"}, 0)]),
        MetricFamily("camera_service_mediamtx_up", "gauge", "1 if MediaMTX is UP.\nSecond line \\ here.", [({}, 1)]),
        MetricFamily("camera_service_snapshot_seconds", "histogram", "Snapshot latency.",
                     histogram_samples({"tier": "mediamtx"}, [0.5, 1.0, 2.5], [3, 5, 6], 4.25, 7)),
        MetricFamily("camera_service_retention_deleted_files_total", "counter", "Files deleted by retention.", []),
        MetricFamily("camera_service_stream_inbound_bytes", "gauge", "Inbound bytes.",
                     [Sample({"camera": "camera0"}, float("nan")), Sample({"camera": "camera1"}, float("inf"))]),
    ]
    text = _full_render(extra)
    families = parse_exposition(text)
    assert families["camera_service_cameras"].value(status="CONNECTED") == 1
    assert "# HELP camera_service_mediamtx_up 1 if MediaMTX is UP.\\nSecond line \\\\ here.\n" in text
    hist = families["camera_service_snapshot_seconds"]
    assert hist.type == "histogram"
    assert hist.value("_bucket", tier="mediamtx", le="0.5") == 3
    assert hist.value("_bucket", tier="mediamtx", le="+Inf") == 7
    assert hist.value("_sum", tier="mediamtx") == 4.25
    assert hist.value("_count", tier="mediamtx") == 7
    assert families["camera_service_retention_deleted_files_total"].samples == []
    inbound = families["camera_service_stream_inbound_bytes"]
    assert math.isnan(inbound.value(camera="camera0"))
    assert inbound.value(camera="camera1") == math.inf


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": "camera-service_up"},
        {"name": "9lives"},
        {"name": ""},
        {"type": "timer"},
        {"samples": [({"bad-label": "x"}, 1)]},
        {"samples": [({"__reserved": "x"}, 1)]},
        {"samples": [({"a": "x"}, 1), ({"a": "x"}, 2)]},
        {"samples": [({}, 1, "_sum")]},
        {"samples": [({}, "1")]},
    ],
)
def test_metric_family_validation(kwargs: dict[str, Any]) -> None:
    args: dict[str, Any] = {"name": "camera_service_x", "type": "gauge", "help": "x", "samples": []}
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError)):
        MetricFamily(**args)


def test_duplicate_family_name_is_rejected() -> None:
    with pytest.raises(ValueError):
        _full_render([MetricFamily("camera_service_up", "gauge", "again", [({}, 1)])])
