"""Prometheus text exposition (format 0.0.4) for ``/metrics`` on the health port.

The renderer is a pure function over already-cached state (request counters, the last
psutil sample, the health registry), so scraping never waits on MediaMTX, a process or
the disk (api.md §7.1). Other subsystems add their families (media.md §6.3) through
``extra`` as :class:`MetricFamily` values; this module does not know about them.

We deliberately do not depend on ``prometheus_client``: the format is small, and a
hand-rolled renderer lets every value come from our own caches at scrape time instead
of being mirrored into a second set of global collectors.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping, NamedTuple, Sequence

from camera_service.health.model import DEGRADED, HEALTHY, UNHEALTHY, HealthRegistry
from camera_service.metrics import RequestMetrics, percentile
from camera_service.system_metrics import SystemSample

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

METRIC_NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

METRIC_TYPES = frozenset({"counter", "gauge", "summary", "histogram", "untyped"})
# Which sample-name suffixes each family type may carry; anything else would produce
# samples that Prometheus attributes to a different (untyped) family.
_ALLOWED_SUFFIXES: dict[str, frozenset[str]] = {
    "counter": frozenset({""}),
    "gauge": frozenset({""}),
    "untyped": frozenset({""}),
    "summary": frozenset({"", "_sum", "_count"}),
    "histogram": frozenset({"_bucket", "_sum", "_count"}),
}

SUMMARY_QUANTILES = (0.5, 0.95, 0.99)
HEALTH_STATUSES = (HEALTHY, DEGRADED, UNHEALTHY)


class Sample(NamedTuple):
    """One exposition line: ``<family name><suffix>{labels} value``.

    ``suffix`` is empty for plain counters and gauges, and ``_sum``/``_count``/``_bucket``
    for the extra series of summaries and histograms.
    """

    labels: Mapping[str, str]
    value: float
    suffix: str = ""


SampleLike = Sample | tuple[Mapping[str, str], float] | tuple[Mapping[str, str], float, str]


@dataclass(frozen=True)
class MetricFamily:
    """A metric family ready to render.

    ``samples`` accepts ``(labels, value)`` pairs, ``(labels, value, suffix)`` triples or
    :class:`Sample` values; they are normalised to :class:`Sample` and validated here, so a
    bad family fails where it is built rather than when ``/metrics`` is scraped.
    """

    name: str
    type: str
    help: str
    samples: Sequence[SampleLike] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not METRIC_NAME_RE.match(self.name):
            raise ValueError(f"invalid Prometheus metric name {self.name!r}")
        if self.type not in METRIC_TYPES:
            raise ValueError(f"invalid Prometheus metric type {self.type!r} for {self.name}")
        normalised: list[Sample] = []
        seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
        allowed = _ALLOWED_SUFFIXES[self.type]
        for raw in self.samples:
            sample = raw if isinstance(raw, Sample) else Sample(*raw)
            if sample.suffix not in allowed:
                raise ValueError(f"suffix {sample.suffix!r} not allowed for {self.type} {self.name}")
            labels = {str(k): str(v) for k, v in sample.labels.items()}
            for label in labels:
                # Names starting with "__" are reserved for Prometheus itself.
                if not LABEL_NAME_RE.match(label) or label.startswith("__"):
                    raise ValueError(f"invalid Prometheus label name {label!r} in {self.name}")
            if not isinstance(sample.value, (int, float)):
                raise TypeError(f"non-numeric value {sample.value!r} in {self.name}")
            key = (sample.suffix, tuple(sorted(labels.items())))
            if key in seen:
                # Duplicate series make the whole scrape fail on the Prometheus side.
                raise ValueError(f"duplicate series {self.name}{sample.suffix}{labels}")
            seen.add(key)
            normalised.append(Sample(labels, sample.value, sample.suffix))
        object.__setattr__(self, "samples", tuple(normalised))


def histogram_samples(
    labels: Mapping[str, str],
    bounds: Sequence[float],
    cumulative_counts: Sequence[int],
    total: float,
    count: int,
) -> list[Sample]:
    """The ``_bucket``/``_sum``/``_count`` samples of one histogram series.

    ``cumulative_counts[i]`` is the number of observations <= ``bounds[i]``; the ``+Inf``
    bucket is added from ``count``, as the format requires.
    """
    if len(bounds) != len(cumulative_counts):
        raise ValueError("histogram bounds and counts differ in length")
    samples = [
        Sample({**labels, "le": format_value(bound)}, cumulative, "_bucket")
        for bound, cumulative in zip(bounds, cumulative_counts)
    ]
    samples.append(Sample({**labels, "le": "+Inf"}, count, "_bucket"))
    samples.append(Sample(dict(labels), total, "_sum"))
    samples.append(Sample(dict(labels), count, "_count"))
    return samples


def format_value(value: float) -> str:
    """Go's ParseFloat spellings: integers plainly, ``NaN``, ``+Inf``, ``-Inf``."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def escape_help(text: str) -> str:
    # HELP text escapes only backslash and newline; quotes stay as they are.
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _render_family(family: MetricFamily, out: list[str]) -> None:
    out.append(f"# HELP {family.name} {escape_help(family.help)}")
    out.append(f"# TYPE {family.name} {family.type}")
    for sample in family.samples:
        assert isinstance(sample, Sample)  # normalised in __post_init__
        if sample.labels:
            inner = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in sample.labels.items())
            out.append(f"{family.name}{sample.suffix}{{{inner}}} {format_value(sample.value)}")
        else:
            out.append(f"{family.name}{sample.suffix} {format_value(sample.value)}")


def _core_families(
    request_metrics: RequestMetrics,
    system: SystemSample,
    registry: HealthRegistry,
    uptime_seconds: float,
    connections_open: int,
) -> list[MetricFamily]:
    p = "camera_service_"
    methods = sorted(request_metrics.methods.items())

    errors: list[Sample] = []
    durations: list[Sample] = []
    for method, stats in methods:
        for code, n in sorted(stats.errors_by_code.items()):
            errors.append(Sample({"method": method, "code": str(code)}, n))
        # Quantiles come from the bounded latency ring (the most recent samples), while
        # _sum and _count cover the whole life of the process, as a summary should.
        ordered = sorted(stats.latencies_ms)
        for q in SUMMARY_QUANTILES:
            durations.append(Sample({"method": method, "quantile": format_value(q)}, percentile(ordered, q) / 1000.0))
        durations.append(Sample({"method": method}, stats.latency_sum_ms / 1000.0, "_sum"))
        durations.append(Sample({"method": method}, stats.requests, "_count"))

    health: list[Sample] = []
    components = registry.components()
    for component in components:
        for status in HEALTH_STATUSES:
            health.append(Sample({"component": component.name, "status": status}, 1 if component.status == status else 0))

    return [
        MetricFamily(p + "up", "gauge", "1 while the service answers scrapes.", [({}, 1)]),
        MetricFamily(p + "uptime_seconds", "gauge", "Seconds since the service started.", [({}, float(uptime_seconds))]),
        MetricFamily(p + "websocket_connections", "gauge", "Open WebSocket connections.", [({}, connections_open)]),
        MetricFamily(
            p + "websocket_connections_total", "counter", "WebSocket connections accepted since start.",
            [({}, request_metrics.connections_total)],
        ),
        MetricFamily(
            p + "connections_refused_total", "counter", "Connections refused, by reason.",
            [({"reason": reason}, n) for reason, n in sorted(request_metrics.connections_refused.items())],
        ),
        MetricFamily(
            p + "rpc_requests_total", "counter", "JSON-RPC requests handled, by method.",
            [({"method": method}, stats.requests) for method, stats in methods],
        ),
        MetricFamily(p + "rpc_errors_total", "counter", "JSON-RPC error responses, by method and error code.", errors),
        MetricFamily(
            p + "rpc_request_duration_seconds", "summary",
            "JSON-RPC request latency in seconds; quantiles over the most recent requests per method.", durations,
        ),
        MetricFamily(
            p + "notifications_sent_total", "counter", "Notifications delivered to clients.",
            [({}, request_metrics.notifications_sent)],
        ),
        MetricFamily(
            p + "notifications_dropped_total", "counter", "Notifications dropped (slow or closed clients).",
            [({}, request_metrics.notifications_dropped)],
        ),
        MetricFamily(
            p + "process_resident_memory_bytes", "gauge", "Resident set size of the service process in bytes.",
            [({}, system.rss_bytes)],
        ),
        MetricFamily(
            p + "process_cpu_percent", "gauge",
            "CPU used by the service process in percent of one core (may exceed 100).",
            [({}, system.process_cpu_percent)],
        ),
        MetricFamily(p + "host_cpu_percent", "gauge", "Host CPU usage in percent (0-100).", [({}, system.cpu_usage)]),
        MetricFamily(p + "host_memory_percent", "gauge", "Host memory used in percent (0-100).", [({}, system.memory_usage)]),
        MetricFamily(p + "threads", "gauge", "Threads of the service process.", [({}, system.threads)]),
        MetricFamily(
            p + "component_health", "gauge",
            "Component health: 1 for the component's current status, 0 for the others.", health,
        ),
    ]


def render_prometheus(
    *,
    request_metrics: RequestMetrics,
    system: SystemSample,
    registry: HealthRegistry,
    uptime_seconds: float,
    connections_open: int,
    extra: Iterable[MetricFamily] = (),
) -> str:
    """The full ``/metrics`` body. Raises ValueError if two families share a name."""
    families = _core_families(request_metrics, system, registry, uptime_seconds, connections_open)
    families.extend(extra)
    out: list[str] = []
    names: set[str] = set()
    for family in families:
        if family.name in names:
            raise ValueError(f"metric family {family.name} rendered twice")
        names.add(family.name)
        _render_family(family, out)
    return "\n".join(out) + "\n"


__all__ = [
    "CONTENT_TYPE",
    "MetricFamily",
    "Sample",
    "escape_help",
    "escape_label_value",
    "format_value",
    "histogram_samples",
    "render_prometheus",
]
