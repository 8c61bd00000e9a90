"""Notification delivery over real WebSocket connections (api.md §5, §2.1 expiry, §3.4 streams).

Events are produced with ``service.app.bus.publish``: the real bus feeds the real
notifier, which writes to the real sockets. Absence of a message is checked with a
ping round trip afterwards: a connection's messages leave in order on one TCP stream,
so once the ping's answer is in, anything sent before it has arrived too.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from autobahn.twisted.websocket import WebSocketClientFactory
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredQueue
from twisted.internet.task import deferLater

from camera_service.events import NOTIFICATION_NAMES, TOPICS
from camera_service.rpc.notifier import STREAMS_FOR_RECIPIENT
from camera_service.rpc.websocket import NOTIFICATION_BACKLOG
from camera_service.timeutil import parse_rfc3339
from tests.wsclient import RpcClient, _Protocol

RFC3339_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")

CAMERA_UPDATE = {"device": "camera0", "status": "CONNECTED", "name": "USB 2.0 Camera: USB 2.0 Camera",
                 "resolution": "1920x1080", "fps": 30,
                 "streams": {"rtsp": "rtsp://192.0.2.10:8554/camera0",
                             "hls": "http://192.0.2.10:8888/camera0/index.m3u8",
                             "webrtc": "http://192.0.2.10:8889/camera0"}}
RECORDING_UPDATE = {"device": "camera0", "status": "STOPPED", "filename": "camera0_2025-01-15_14-30-00",
                    "duration": 300}
HEALTH = {"status": "DEGRADED", "metrics": {"cpu_usage": 12.5, "memory_usage": 40.0, "disk_usage": 22.1}}


# -- helpers ----------------------------------------------------------------------------

def take(queue: DeferredQueue) -> list[Any]:
    """Everything a DeferredQueue holds right now, removed from it."""
    items = list(queue.pending)
    queue.pending.clear()
    return items


def _matches(expected: dict[str, Any], seen: dict[str, Any]) -> bool:
    # The bus hands listeners a copy that may carry an added "timestamp".
    return all(key in seen and seen[key] == value for key, value in expected.items()) and \
        set(seen) - set(expected) <= {"timestamp"}


async def publish(service: Any, *events: tuple[str, dict[str, Any]], timeout: float = 10.0) -> None:
    """Publish on the real bus and wait until the notifier has handled the last event.

    The notifier is the bus's first listener, so once a listener added here has seen
    the last of our events, every message they caused has been written to its socket.
    """
    bus = service.app.bus
    done: Deferred[None] = Deferred()
    expected = list(events)

    def listener(name: str, payload: dict[str, Any]) -> None:
        if expected and name == expected[0][0] and _matches(expected[0][1], payload):
            expected.pop(0)
            if not expected and not done.called:
                done.callback(None)

    bus.add_listener(listener)
    try:
        for name, payload in events:
            bus.publish(name, payload)
        done.addTimeout(timeout, reactor)
        await done
    finally:
        bus.remove_listener(listener)


async def inbox(client: RpcClient) -> list[dict[str, Any]]:
    """The notifications that reached ``client`` so far (after a ping round trip)."""
    assert (await client.request("ping"))["result"] == "pong"
    return take(client.notifications)


async def assert_silent(client: RpcClient) -> None:
    """Nothing but the answer to this ping arrived since the last ``take(client.raw)``."""
    response = await client.request("ping")
    assert take(client.raw) == [response]
    take(client.notifications)


def note(method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": method, "params": params}


async def connect(service: Any, *, host_header: str | None = None,
                  validate_utf8: bool = True) -> RpcClient:
    """A client like ``service.client()``, but able to send one chosen Host header.

    Autobahn always writes its own ``Host: <url host>:<url port>`` line; extra headers
    would add a second Host header. So the factory's host and port are replaced after
    the URL was parsed, and the TCP connection goes to the real address.
    """
    client = RpcClient()
    factory = WebSocketClientFactory(service.ws_url)
    factory.protocol = _Protocol
    factory.setProtocolOptions(autoPingInterval=0, utf8validateIncoming=validate_utf8)
    factory.opened = Deferred()
    factory.client = client
    address = (factory.host, factory.port)
    if host_header is not None:
        name, _, port = host_header.rpartition(":")
        factory.host, factory.port = name, int(port)
    reactor.connectTCP(address[0], address[1], factory)
    client.protocol = await factory.opened
    service.clients.append(client)
    return client


async def authed(service: Any, role: str = "viewer", **kwargs: Any) -> RpcClient:
    client = await connect(service, **kwargs)
    await client.call("authenticate", {"auth_token": service.token(role)})
    return client


async def next_message(queue: DeferredQueue, timeout: float = 10.0) -> Any:
    waiter = queue.get()
    waiter.addTimeout(timeout, reactor)
    return await waiter


# -- who receives what (§5.1 rules 1-3) --------------------------------------------------

async def test_nothing_reaches_an_unauthenticated_connection(services):
    service = await services.start(CAMERA_SERVICE_NOTIFICATIONS_BROADCAST_TO_ALL="true")
    never = await service.client()
    reverted = await service.authed_client()
    await reverted.call("subscribe_events", {"topics": list(TOPICS) + list(NOTIFICATION_NAMES)})
    assert (await reverted.error("authenticate", {"auth_token": "x.y.z"}))["data"]["reason"] == "auth_failed"
    # An unauthenticated connection cannot subscribe in the first place.
    error = await never.error("subscribe_events", {"topics": ["camera.connected"]})
    assert error["code"] == -32001 and error["data"]["reason"] == "auth_required"
    witness = await service.authed_client()
    for client in (never, reverted, witness):
        take(client.raw)

    await publish(service,
                  ("camera_status_update", CAMERA_UPDATE),
                  ("recording_status_update", RECORDING_UPDATE),
                  ("camera.connected", {"device": "camera0", "name": "cam", "status": "CONNECTED",
                                        "driver": "uvcvideo", "card_name": "cam"}),
                  ("system.health", HEALTH),
                  ("system.error", {"error": "boom"}))

    await assert_silent(never)
    await assert_silent(reverted)
    # The events did flow: an authenticated unsubscribed connection got the broadcasts.
    assert [m["method"] for m in await inbox(witness)] == ["camera_status_update", "recording_status_update"]


async def test_nothing_unsolicited_without_subscriptions(service):
    quiet = await service.authed_client("admin")
    listener = await service.authed_client()
    await listener.call("subscribe_events", {"topics": list(TOPICS) + list(NOTIFICATION_NAMES)})
    take(quiet.raw)
    events = [(topic, {"device": "camera0", "error": "x"}) for topic in TOPICS]
    events += [("camera_status_update", CAMERA_UPDATE), ("recording_status_update", RECORDING_UPDATE)]

    await publish(service, *events)

    await assert_silent(quiet)
    received = [m["method"] for m in await inbox(listener)]
    # system.health is also delivered as system_health_update to its subscribers.
    assert received == [name for name, _ in events[:20]] + ["system_health_update"] + \
        [name for name, _ in events[20:]]


async def test_broadcast_to_all_sends_only_the_two_status_notifications(services):
    service = await services.start(CAMERA_SERVICE_NOTIFICATIONS_BROADCAST_TO_ALL="true")
    plain = await service.authed_client()
    filtered = await service.authed_client()
    await filtered.call("subscribe_events", {"topics": ["camera_status_update"],
                                             "filters": {"device": "camera7"}})

    await publish(service,
                  ("camera.connected", {"device": "camera0", "status": "CONNECTED"}),
                  ("camera_status_update", CAMERA_UPDATE),
                  ("system.health", HEALTH),
                  ("recording_status_update", RECORDING_UPDATE),
                  ("mediamtx.error", {"error": "MediaMTX unreachable"}))

    assert await inbox(plain) == [note("camera_status_update", CAMERA_UPDATE),
                                  note("recording_status_update", RECORDING_UPDATE)]
    # A subscriber's filter still applies to the name it subscribed to.
    assert "camera_status_update" not in [m["method"] for m in await inbox(filtered)]


async def test_broadcast_is_off_by_default(service):
    plain = await service.authed_client()
    take(plain.raw)
    await publish(service, ("camera_status_update", CAMERA_UPDATE),
                  ("recording_status_update", RECORDING_UPDATE))
    await assert_silent(plain)


async def test_topic_event_shape(service):
    client = await service.authed_client()
    await client.call("subscribe_events", {"topics": ["camera.connected", "mediamtx.stream"]})
    payload = {"device": "camera0", "name": "USB 2.0 Camera: USB 2.0 Camera", "status": "CONNECTED",
               "driver": "uvcvideo", "card_name": "USB 2.0 Camera: USB 2.0 Camera"}
    before = time.time()

    await publish(service, ("camera.connected", payload),
                  ("mediamtx.stream", {"device": "camera2", "ready": False,
                                       "timestamp": "2025-01-15T14:30:00Z"}))

    first, second = await inbox(client)
    assert set(first) == {"jsonrpc", "method", "params"}  # a notification: no id
    assert first["jsonrpc"] == "2.0" and first["method"] == "camera.connected"
    stamp = first["params"]["timestamp"]
    assert RFC3339_Z.match(stamp), stamp
    assert before - 2 <= parse_rfc3339(stamp) <= time.time() + 1
    assert first["params"] == {**payload, "timestamp": stamp}
    # A timestamp set by the producer is kept; values pass through untouched.
    assert second == note("mediamtx.stream", {"device": "camera2", "ready": False,
                                              "timestamp": "2025-01-15T14:30:00Z"})


async def test_status_notifications_carry_no_added_timestamp(service):
    client = await service.authed_client()
    await client.call("subscribe_events", {"topics": ["camera_status_update", "recording_status_update"]})
    await publish(service, ("camera_status_update", CAMERA_UPDATE),
                  ("recording_status_update", RECORDING_UPDATE))
    # §5.2 / §5.3: exactly six and four fields.
    assert await inbox(client) == [note("camera_status_update", CAMERA_UPDATE),
                                   note("recording_status_update", RECORDING_UPDATE)]


async def test_system_health_goes_out_under_both_names(service):
    topic = await service.authed_client()
    name = await service.authed_client()
    both = await service.authed_client()
    neither = await service.authed_client()
    await topic.call("subscribe_events", {"topics": ["system.health"]})
    await name.call("subscribe_events", {"topics": ["system_health_update"]})
    await both.call("subscribe_events", {"topics": ["system_health_update", "system.health"]})
    take(neither.raw)

    await publish(service, ("system.health", HEALTH))

    [as_topic] = await inbox(topic)
    assert as_topic["method"] == "system.health"
    params = as_topic["params"]
    assert params == {**HEALTH, "timestamp": params["timestamp"]} and RFC3339_Z.match(params["timestamp"])
    assert await inbox(name) == [note("system_health_update", params)]
    assert await inbox(both) == [note("system.health", params), note("system_health_update", params)]
    await assert_silent(neither)


def test_system_health_update_is_not_a_producer_event(service):
    # It only exists as the system.health payload delivered under another name.
    with pytest.raises(ValueError):
        service.app.bus.publish("system_health_update", HEALTH)


# -- filters (§5.5) ----------------------------------------------------------------------

async def test_device_filter(service):
    client = await service.authed_client()
    result = await client.call("subscribe_events", {
        "topics": ["camera.connected", "system.error", "camera_status_update"],
        "filters": {"device": "camera1"}})
    assert result["filters"] == {"device": "camera1"}
    update1 = {**CAMERA_UPDATE, "device": "camera1"}

    await publish(service,
                  ("camera.connected", {"device": "camera0", "status": "CONNECTED"}),
                  ("camera.connected", {"device": "camera1", "status": "CONNECTED"}),
                  ("system.error", {"error": "no device key here"}),
                  ("system.error", {"error": "device of another camera", "device": "camera10"}),
                  ("camera_status_update", CAMERA_UPDATE),
                  ("camera_status_update", update1))

    received = await inbox(client)
    assert [(m["method"], m["params"]["device"]) for m in received] == [
        ("camera.connected", "camera1"), ("camera_status_update", "camera1")]
    assert received[1]["params"] == update1


async def test_topic_filter_uses_the_delivered_name(service):
    client = await service.authed_client()
    await client.call("subscribe_events", {"topics": ["camera.connected", "camera.disconnected"],
                                           "filters": {"topic": "camera.disconnected"}})
    health = await service.authed_client()
    await health.call("subscribe_events", {"topics": ["system.health", "system_health_update"],
                                           "filters": {"topic": "system_health_update"}})

    await publish(service,
                  ("camera.connected", {"device": "camera0"}),
                  ("camera.disconnected", {"device": "camera0", "status": "DISCONNECTED"}),
                  ("system.health", HEALTH))

    assert [m["method"] for m in await inbox(client)] == ["camera.disconnected"]
    assert [m["method"] for m in await inbox(health)] == ["system_health_update"]


async def test_timestamp_filters_are_strict(service):
    client = await service.authed_client()
    await client.call("subscribe_events", {"topics": ["system.error"], "filters": {
        "timestamp_after": "2025-01-15T14:30:00Z", "timestamp_before": "2025-01-15T14:30:03Z"}})
    stamps = [
        ("2025-01-15T14:29:59Z", False),
        ("2025-01-15T14:30:00Z", False),          # equal is not "after"
        ("2025-01-15T14:30:00.5Z", True),         # fractional seconds are understood
        ("2025-01-15T14:30:01Z", True),
        ("2025-01-15T15:30:02+01:00", True),      # 14:30:02Z with an offset
        ("2025-01-15T14:30:03Z", False),          # equal is not "before"
        ("2025-01-15T14:31:00Z", False),
        ("not a timestamp", False),
    ]
    await publish(service, *[("system.error", {"error": f"e{i}", "timestamp": stamp})
                             for i, (stamp, _) in enumerate(stamps)])

    got = [m["params"]["timestamp"] for m in await inbox(client)]
    assert got == [stamp for stamp, wanted in stamps if wanted]


async def test_timestamp_filter_excludes_events_without_timestamp(service):
    client = await service.authed_client()
    await client.call("subscribe_events", {"topics": ["camera_status_update", "camera.connected"],
                                           "filters": {"timestamp_after": "2020-01-01T00:00:00Z"}})
    # camera_status_update has no timestamp field; topic events get one from the bus.
    await publish(service, ("camera_status_update", CAMERA_UPDATE), ("camera.connected", {"device": "camera0"}))
    assert [m["method"] for m in await inbox(client)] == ["camera.connected"]


async def test_filter_keys_are_anded(service):
    client = await service.authed_client()
    await client.call("subscribe_events", {"topics": ["recording.stop"], "filters": {
        "device": "camera1", "topic": "recording.stop", "timestamp_before": "2025-01-15T14:30:02Z"}})
    await publish(service,
                  ("recording.stop", {"device": "camera1", "filename": "a", "timestamp": "2025-01-15T14:30:01Z"}),
                  ("recording.stop", {"device": "camera1", "filename": "b", "timestamp": "2025-01-15T14:30:05Z"}),
                  ("recording.stop", {"device": "camera0", "filename": "c", "timestamp": "2025-01-15T14:30:01Z"}),
                  ("recording.stop", {"filename": "d", "timestamp": "2025-01-15T14:30:01Z"}))
    assert [m["params"]["filename"] for m in await inbox(client)] == ["a"]


async def test_resubscribing_replaces_the_filter_of_the_named_topics_only(service):
    client = await service.authed_client()
    both = ["camera.connected", "camera.disconnected"]

    async def deliveries() -> list[tuple[str, str]]:
        await publish(service, *[(topic, {"device": device}) for topic in both
                                 for device in ("camera0", "camera1")])
        return [(m["method"], m["params"]["device"]) for m in await inbox(client)]

    await client.call("subscribe_events", {"topics": both, "filters": {"device": "camera0"}})
    assert await deliveries() == [("camera.connected", "camera0"), ("camera.disconnected", "camera0")]

    await client.call("subscribe_events", {"topics": ["camera.connected"], "filters": {"device": "camera1"}})
    assert await deliveries() == [("camera.connected", "camera1"), ("camera.disconnected", "camera0")]

    await client.call("subscribe_events", {"topics": ["camera.connected"], "filters": {}})
    assert await deliveries() == [("camera.connected", "camera0"), ("camera.connected", "camera1"),
                                  ("camera.disconnected", "camera0")]

    await client.call("subscribe_events", {"topics": ["camera.disconnected"], "filters": None})
    assert len(await deliveries()) == 4

    await client.call("subscribe_events", {"topics": both, "filters": {"device": "camera1"}})
    await client.call("subscribe_events", {"topics": both})  # absent filters: no filter either
    assert len(await deliveries()) == 4


# -- stream URLs built per recipient (§3.4) -----------------------------------------------

def _urls(host: str, device: str = "camera3", rtsp: int = 8554, hls: int = 8888, webrtc: int = 8889) -> dict:
    return {"rtsp": f"rtsp://{host}:{rtsp}/{device}",
            "hls": f"http://{host}:{hls}/{device}/index.m3u8",
            "webrtc": f"http://{host}:{webrtc}/{device}"}


async def test_streams_are_built_for_each_recipient(service):
    hosts = {"default": None, "name": "example.test:8002", "ipv6": "[::1]:8002", "ipv4": "192.0.2.10:8002"}
    clients = {}
    for key, header in hosts.items():
        clients[key] = await authed(service, host_header=header)
        await clients[key].call("subscribe_events", {"topics": ["camera_status_update"]})
    payload = {"device": "camera3", "status": "CONNECTED", "name": "Cam", "resolution": "1280x720",
               "fps": 15, "streams": STREAMS_FOR_RECIPIENT}

    await publish(service, ("camera_status_update", payload))

    expected_hosts = {"default": "127.0.0.1", "name": "example.test", "ipv6": "[::1]", "ipv4": "192.0.2.10"}
    for key, client in clients.items():
        [message] = await inbox(client)
        assert message == note("camera_status_update", {**payload, "streams": _urls(expected_hosts[key])}), key


async def test_streams_ipv6_host_keeps_brackets(service):
    client = await authed(service, host_header="[::1]:8002")
    await client.call("subscribe_events", {"topics": ["camera_status_update"]})
    await publish(service, ("camera_status_update", {**CAMERA_UPDATE, "streams": STREAMS_FOR_RECIPIENT}))
    [message] = await inbox(client)
    assert message["params"]["streams"] == {"rtsp": "rtsp://[::1]:8554/camera0",
                                            "hls": "http://[::1]:8888/camera0/index.m3u8",
                                            "webrtc": "http://[::1]:8889/camera0"}


async def test_public_host_and_ports_come_from_the_configuration(services):
    service = await services.start(CAMERA_SERVICE_SERVER_PUBLIC_HOST="public.example",
                                   CAMERA_SERVICE_MEDIAMTX_RTSP_PORT="9554",
                                   CAMERA_SERVICE_MEDIAMTX_HLS_PORT="9888",
                                   CAMERA_SERVICE_MEDIAMTX_WEBRTC_PORT="9889")
    clients = [await authed(service), await authed(service, host_header="example.test:8002")]
    for client in clients:
        await client.call("subscribe_events", {"topics": ["camera_status_update"]})
    payload = {**CAMERA_UPDATE, "device": "camera3", "streams": STREAMS_FOR_RECIPIENT}
    await publish(service, ("camera_status_update", payload))
    for client in clients:
        [message] = await inbox(client)
        assert message["params"] == {**payload, "streams": _urls("public.example", rtsp=9554, hls=9888,
                                                                 webrtc=9889)}


# -- ordering (§5.1 rule 5) ----------------------------------------------------------------

async def test_per_connection_order_is_publish_order(service):
    client = await service.authed_client()
    await client.call("subscribe_events", {"topics": ["recording.progress", "camera_status_update",
                                                      "mediamtx.stream"]})
    names = ["recording.progress", "camera_status_update", "mediamtx.stream"]
    events = [(names[seq % 3], {"device": "camera0", "seq": seq}) for seq in range(50)]

    await publish(service, *events)

    received = await inbox(client)
    assert [(m["method"], m["params"]["seq"]) for m in received] == [(n, p["seq"]) for n, p in events]


def _install(service: Any, method: str, handler: Any) -> None:
    """Replace one method's handler for this service only."""
    service.root.factory.dispatcher.registry.replace(method, handler)


async def test_response_precedes_the_notification_the_request_caused(service):
    async def handler(ctx, params):
        ctx.after_response(lambda: ctx.app.bus.publish("snapshot.taken", {
            "device": "camera0", "filename": "camera0_1.jpg", "resolution": "640x480"}))
        # The response is only written after some asynchronous work.
        await deferLater(reactor, 0.05, lambda: None)
        return {"status": "SUCCESS"}

    async def eager(ctx, params):
        # Publishing inside the handler is fine too: the bus delivers on a later turn.
        ctx.app.bus.publish("snapshot.taken", {"device": "camera1", "filename": "camera1_1.jpg",
                                               "resolution": "640x480"})
        return {"status": "SUCCESS"}

    _install(service, "take_snapshot", handler)
    _install(service, "get_streams", eager)
    client = await service.authed_client("operator")
    await client.call("subscribe_events", {"topics": ["snapshot.taken"]})
    take(client.raw)

    response = await client.request("take_snapshot", {"device": "camera0"})
    note_message = await next_message(client.notifications)
    assert take(client.raw) == [response, note_message]
    assert response["result"] == {"status": "SUCCESS"}
    assert note_message["params"]["device"] == "camera0"

    response = await client.request("get_streams")
    note_message = await next_message(client.notifications)
    assert take(client.raw) == [response, note_message]
    assert note_message["params"]["device"] == "camera1"


# -- expiry at send time (§2.1) ------------------------------------------------------------

async def test_expired_session_gets_nothing_and_loses_its_subscriptions(service):
    # mint_jwt truncates iat to whole seconds, so a 1 s token may be valid for only a few
    # milliseconds; a 2 s token is valid for more than 1 s, and its exact expiry is known.
    client = await service.client()
    result = await client.call("authenticate", {"auth_token": service.token("viewer", lifetime=2)})
    expires_at = parse_rfc3339(result["expires_at"])
    await client.call("subscribe_events", {"topics": ["camera.connected", "camera_status_update"]})
    await publish(service, ("camera.connected", {"device": "camera0"}))
    assert len(await inbox(client)) == 1  # delivery works while the token is valid

    await deferLater(reactor, max(0.0, expires_at - reactor.seconds()) + 0.1, lambda: None)
    take(client.raw)
    await publish(service, ("camera.connected", {"device": "camera0"}),
                  ("camera_status_update", CAMERA_UPDATE))
    await assert_silent(client)

    # Reverted at send time: the next call is auth_required, not token_expired.
    assert (await client.error("get_subscription_stats"))["data"]["reason"] == "auth_required"
    await client.call("authenticate", {"auth_token": service.token("viewer")})
    stats = await client.call("get_subscription_stats")
    assert stats["client_topics"] == []
    assert stats["global_stats"] == {"total_subscriptions": 0, "active_clients": 0, "topic_counts": {}}


# -- a client that stops reading (§1.4 outbound backlog) ------------------------------------

def _server_side(service: Any, session_id: str) -> Any:
    return next(p for p in service.root.factory.tracker.recipients() if p.session.session_id == session_id)


def _buffered(transport: Any) -> int:
    """Bytes waiting in a Twisted TCP transport's write buffer."""
    return len(transport.dataBuffer) - transport.offset + transport._tempDataLen


async def test_slow_client_backlog_is_bounded(service):
    slow = await authed(service, validate_utf8=False)
    fast = [await authed(service, validate_utf8=False) for _ in range(2)]
    for client in [slow, *fast]:
        await client.call("subscribe_events", {"topics": ["system.error"]})
    slow_side = _server_side(service, (await slow.call("get_subscription_stats"))["client_id"])
    metrics = service.app.metrics
    dropped_before = metrics.notifications_dropped
    blob = "x" * 16384
    total, batch = 2000, 50

    slow.protocol.transport.pauseProducing()
    worst_ping = 0.0
    for start in range(0, total, batch):
        for seq in range(start, start + batch):
            service.app.bus.publish("system.error", {"error": blob, "seq": seq})
        # Paced like a real producer: the healthy clients keep up between bursts.
        for client in fast:
            for seq in range(start, start + batch):
                assert (await next_message(client.notifications))["params"]["seq"] == seq
        began = time.perf_counter()
        assert await fast[start // batch % 2].call("ping") == "pong"
        worst_ping = max(worst_ping, time.perf_counter() - began)
        # What the server holds for the stuck client stays bounded.
        assert slow_side._backlog_notifications <= NOTIFICATION_BACKLOG
        assert _buffered(slow_side.transport) < 1024 * 1024

    assert metrics.notifications_dropped - dropped_before > 0
    assert worst_ping < 1.0, f"a healthy client waited {worst_ping:.3f} s for ping"
    for client in fast:
        assert take(client.notifications) == []

    # A request from the stuck client is answered (queued behind its backlog, never dropped).
    pending = slow.request("ping")
    slow.protocol.transport.resumeProducing()
    pending.addTimeout(30, reactor)
    assert (await pending)["result"] == "pong"
    assert await slow.call("get_server_info")
    seqs = [m["params"]["seq"] for m in take(slow.notifications)]
    assert 0 < len(seqs) < total
    # Every notification was either delivered or counted as dropped.
    assert len(seqs) + metrics.notifications_dropped - dropped_before == total
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
