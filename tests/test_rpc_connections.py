"""Connection management (api.md §1.4, §1.5): limits, origins, keep-alive, rate limiting."""

from __future__ import annotations

import pytest
import treq
from twisted.internet import reactor
from twisted.internet.task import deferLater

from tests.wsclient import connect


async def _upgrade_status(url: str, origin: str | None = None) -> tuple[int, bytes]:
    http_url = url.replace("ws://", "http://")
    headers = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    if origin is not None:
        headers["Origin"] = origin
    response = await treq.get(http_url, headers=headers, persistent=False)
    return response.code, await response.content()


async def test_rate_limit_per_connection(services):
    service = await services.start(CAMERA_SERVICE_SECURITY_RATE_LIMIT_REQUESTS="5",
                                   CAMERA_SERVICE_SECURITY_RATE_LIMIT_WINDOW="30")
    client = await service.client()
    for _ in range(5):
        assert "result" in await client.request("ping")
    error = await client.error("ping")
    assert error["code"] == -32040 and error["message"] == "Rate limited"
    assert error["data"]["reason"] == "rate_limit"
    assert error["data"]["details"] == "rate limit exceeded"
    assert error["data"]["suggestion"] == "Reduce request rate or wait"
    assert 0 < error["data"]["retry_after_ms"] <= 30000
    # Unknown methods count too, and the limiter never closes the connection.
    assert (await client.error("no_such_method"))["code"] == -32040
    assert not client.closed.called
    other = await service.client()
    assert "result" in await other.request("ping")


async def test_rate_limit_window_resets(services):
    service = await services.start(CAMERA_SERVICE_SECURITY_RATE_LIMIT_REQUESTS="2",
                                   CAMERA_SERVICE_SECURITY_RATE_LIMIT_WINDOW="0.5")
    client = await service.client()
    await client.call("ping")
    await client.call("ping")
    error = await client.error("ping")
    await deferLater(reactor, error["data"]["retry_after_ms"] / 1000.0 + 0.05, lambda: None)
    assert await client.call("ping") == "pong"


async def test_envelope_errors_are_not_counted(services):
    service = await services.start(CAMERA_SERVICE_SECURITY_RATE_LIMIT_REQUESTS="2")
    client = await service.client()
    for _ in range(5):
        client.send_raw("not json")
        assert (await client.raw.get())["error"]["code"] == -32700
    assert await client.call("ping") == "pong"


async def test_max_connections_refused_before_upgrade(services):
    service = await services.start(CAMERA_SERVICE_SERVER_MAX_CONNECTIONS="3")
    held = [await service.client() for _ in range(3)]
    status, body = await _upgrade_status(service.ws_url)
    assert status == 503 and body == b"Maximum connections reached"
    await held[0].close()
    await deferLater(reactor, 0.1, lambda: None)
    fourth = await service.client()
    assert await fourth.call("ping") == "pong"


@pytest.mark.parametrize("origin,allowed", [
    ("http://localhost:3000", True),
    ("https://localhost:3000", True),
    ("http://evil.example", False),
    (None, True),
])
async def test_origin_allow_list(service, origin, allowed):
    if allowed:
        client = await connect(service.ws_url, origin=origin)
        assert await client.call("ping") == "pong"
        client.drop()
    else:
        status, body = await _upgrade_status(service.ws_url, origin)
        assert status == 403


async def test_origin_wildcard(services):
    service = await services.start(CAMERA_SERVICE_SECURITY_CORS_ORIGINS='["*"]')
    client = await service.client(origin="http://anything.example")
    assert await client.call("ping") == "pong"


async def test_other_paths_answer_404(service):
    http = service.ws_url.replace("ws://", "http://").rsplit("/ws", 1)[0]
    for path in ("/", "/nothing", "/ws/extra", "/files/"):
        response = await treq.get(http + path, persistent=False)
        await response.content()
        assert response.code == 404, path


async def test_dead_peer_is_dropped(services):
    service = await services.start(ping_interval=0.2, ping_timeout=0.4)
    silent = await service.client(auto_pong=False)
    alive = await service.client()
    code = await silent.closed
    assert code != 1000
    assert alive.closed.called is False
    assert await alive.call("ping") == "pong"


async def test_silent_client_that_answers_pings_stays(services):
    service = await services.start(ping_interval=0.1, ping_timeout=0.3)
    client = await service.client()
    await deferLater(reactor, 2.5, lambda: None)
    assert not client.closed.called
    assert await client.call("ping") == "pong"


async def test_shutdown_closes_with_1001(services):
    service = await services.start()
    client = await service.authed_client()
    await client.call("subscribe_events", {"topics": ["system.shutdown"]})
    stopping = service.root.stopService()
    event = await client.notifications.get()
    assert event["method"] == "system.shutdown" and event["params"]["reason"]
    code = await client.closed
    await stopping
    assert code == 1001 and client.close_reason == "server shutdown"


async def test_connection_ids_are_uuid4(service):
    import uuid

    first = await service.authed_client()
    second = await service.authed_client()
    ids = [(await c.call("get_subscription_stats"))["client_id"] for c in (first, second)]
    assert ids[0] != ids[1]
    assert all(uuid.UUID(i).version == 4 for i in ids)
