"""Event subscription methods (api.md §4.27-4.29, §5.5)."""

from __future__ import annotations

from typing import Any

from camera_service.events import SUBSCRIBABLE
from camera_service.rpc.dispatcher import CallContext
from camera_service.rpc.params import CAMERA_ID, Param, ParamProblem, non_empty
from camera_service.rpc.errors import invalid_params
from camera_service.rpc.registry import MethodRegistry
from camera_service.timeutil import parse_rfc3339

_FILTER_KEYS = ("device", "topic", "timestamp_after", "timestamp_before")


def _known_topics(topics: list[str]) -> None:
    for topic in topics:
        if topic not in SUBSCRIBABLE:
            raise ParamProblem("unknown_topic", f"contains unknown topic {topic!r}")


def _validated_filter(raw: dict[str, Any]) -> dict[str, Any]:
    for key in raw:
        if key not in _FILTER_KEYS:
            raise invalid_params(f"filters.{key}", "unknown_filter", f"filters.{key} is not a known filter key",
                                 hint="Filter keys are device, topic, timestamp_after, timestamp_before")
    cleaned: dict[str, Any] = {}
    for key in _FILTER_KEYS:
        if key not in raw or raw[key] is None:
            continue
        value = raw[key]
        if not isinstance(value, str):
            raise invalid_params(f"filters.{key}", "type", f"filters.{key} must be a string")
        if key == "device" and not CAMERA_ID.fullmatch(value):
            raise invalid_params("filters.device", "pattern", "filters.device must match ^camera[0-9]+$",
                                 hint="Use a camera id such as camera0")
        if key == "topic" and value not in SUBSCRIBABLE:
            raise invalid_params("filters.topic", "unknown_topic", f"filters.topic {value!r} is not a known topic")
        if key.startswith("timestamp_"):
            try:
                parse_rfc3339(value)
            except ValueError:
                raise invalid_params(f"filters.{key}", "type",
                                     f"filters.{key} must be an RFC 3339 timestamp") from None
        cleaned[key] = value
    return cleaned


def _dedupe(topics: list[str]) -> list[str]:
    return list(dict.fromkeys(topics))


async def subscribe_events(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    """Subscribe this connection to event topics."""
    topics = _dedupe(params["topics"])
    flt = _validated_filter(params["filters"] or {})
    for topic in topics:
        ctx.session.subscriptions[topic] = dict(flt)
    return {"subscribed": True, "topics": topics, "filters": flt}


async def unsubscribe_events(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    """Remove topics from this connection's subscriptions."""
    subscriptions = ctx.session.subscriptions
    requested = params["topics"]
    names = list(subscriptions) if requested is None else _dedupe(requested)
    removed = [name for name in names if subscriptions.pop(name, None) is not None]
    return {"unsubscribed": True, "topics": removed}


async def get_subscription_stats(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    """Subscription statistics for the whole server and this connection."""
    topic_counts: dict[str, int] = {}
    active_clients = 0
    for recipient in ctx.app.recipients():
        session = recipient.session
        if session.closed or not session.subscriptions:
            continue
        active_clients += 1
        for topic in session.subscriptions:
            topic_counts[topic] = topic_counts.get(topic, 0) + 1
    return {
        "global_stats": {
            "total_subscriptions": sum(topic_counts.values()),
            "active_clients": active_clients,
            "topic_counts": dict(sorted(topic_counts.items())),
        },
        "client_topics": sorted(ctx.session.subscriptions),
        "client_id": ctx.session.session_id,
    }


def register(registry: MethodRegistry) -> None:
    registry.register("subscribe_events", subscribe_events, (
        Param("topics", "string_array", required=True,
              check=lambda topics: (non_empty(topics), _known_topics(topics)),
              hint="Topics are listed in the API reference, e.g. camera.connected"),
        Param("filters", "object"),
    ))
    registry.register("unsubscribe_events", unsubscribe_events, (
        Param("topics", "string_array", check=_known_topics),
    ))
    registry.register("get_subscription_stats", get_subscription_stats)
