"""Authentication, sessions and the role table (api.md §2, §8 steps 5-7)."""

from __future__ import annotations

import json
import threading
import time

import pytest
from twisted.internet import reactor
from twisted.internet.task import deferLater

from camera_service.auth.apikeys import create_key, revoke_key
from camera_service.roles import METHOD_ROLES, PERMISSIONS, ROLES, role_allows


PROTECTED = sorted(name for name, role in METHOD_ROLES.items() if role is not None)


def test_role_table_has_all_34_methods():
    assert len(METHOD_ROLES) == 34


async def test_authenticate_result_shape(service):
    client = await service.client()
    token = service.token("operator", lifetime=600)
    result = await client.call("authenticate", {"auth_token": token})
    assert set(result) == {"authenticated", "role", "permissions", "expires_at", "session_id"}
    assert result["authenticated"] is True and result["role"] == "operator"
    assert result["permissions"] == ["view", "control"]
    assert result["expires_at"].endswith("Z")
    stats = await client.call("get_subscription_stats")
    assert stats["client_id"] == result["session_id"]


@pytest.mark.parametrize("params,details", [
    ({}, "auth_token parameter is required"),
    ({"auth_token": None}, "auth_token parameter is required"),
    ({"auth_token": ""}, "auth_token parameter is required"),
    ({"auth_token": 12}, "auth_token parameter is required"),
])
async def test_authenticate_without_token(service, params, details):
    client = await service.client()
    error = await client.error("authenticate", params)
    assert error["code"] == -32001 and error["message"] == "Authentication required"
    assert error["data"] == {"reason": "auth_required", "details": details,
                             "suggestion": "Provide a JWT or API key in auth_token"}


@pytest.mark.parametrize("token", ["not-a-token", "a.b.c", "csk_short"])
async def test_authenticate_with_bad_token(service, token):
    client = await service.client()
    error = await client.error("authenticate", {"auth_token": token})
    assert error == {"code": -32001, "message": "Authentication failed or token expired",
                     "data": {"reason": "auth_failed", "details": "Invalid or expired token",
                              "suggestion": "Provide valid token"}}


async def test_expired_token_is_refused_at_authenticate(service):
    client = await service.client()
    token = service.token("admin", lifetime=10, now=reactor.seconds() - 20)
    error = await client.error("authenticate", {"auth_token": token})
    assert error["data"]["reason"] == "auth_failed"


async def test_protected_methods_need_authentication(service):
    client = await service.client()
    for method in PROTECTED:
        error = await client.error(method, {})
        assert error == {"code": -32001, "message": "Authentication required",
                         "data": {"reason": "auth_required", "details": "Authentication required",
                                  "suggestion": "Call authenticate first"}}, method


@pytest.mark.parametrize("role", ROLES)
async def test_full_role_table(service, role):
    """Every method x this role: denied exactly when the table says so, never -32601."""
    client = await service.authed_client(role)
    for method in sorted(METHOD_ROLES):
        if method == "authenticate":
            continue
        response = await client.request(method, {})
        need = METHOD_ROLES[method]
        error = response.get("error")
        if role_allows(role, need):
            assert error is None or error["code"] not in (-32001, -32002, -32601), (method, error)
        else:
            assert error is not None and error["code"] == -32002, (method, response)
            assert error["message"] == "Permission denied"
            assert error["data"] == {
                "reason": "permission_denied",
                "details": f"insufficient permissions for method {method}",
                "suggestion": "Use an account with permission",
                "required_role": need, "have_role": role,
            }


async def test_every_method_of_the_role_table_has_a_handler(service):
    """All 34 methods are implemented: none answers the "not available" -32030 any more."""
    registry = service.root.factory.dispatcher.registry
    # authenticate is answered by the dispatcher itself (it changes the session).
    missing = [name for name in METHOD_ROLES if name != "authenticate"
               and (registry.get(name) is None or registry.get(name).handler is None)]
    assert missing == []


async def test_token_expiry_during_a_session(service):
    from camera_service.timeutil import parse_rfc3339

    client = await service.client()
    token = service.token("viewer", lifetime=2)
    granted = await client.call("authenticate", {"auth_token": token})
    await client.call("subscribe_events", {"topics": ["system.error"]})
    await client.call("get_server_info")
    # iat is whole seconds, so wait for the real expiry rather than a fixed delay.
    remaining = parse_rfc3339(granted["expires_at"]) - reactor.seconds()
    await deferLater(reactor, max(0.0, remaining) + 0.1, lambda: None)
    error = await client.error("get_server_info")
    assert error["data"] == {"reason": "token_expired", "details": "Session token expired",
                             "suggestion": "Obtain a new token and call authenticate again"}
    # The session reverted: later calls are auth_required, ping still works.
    assert (await client.error("get_server_info"))["data"]["reason"] == "auth_required"
    assert await client.call("ping") == "pong"
    # Subscriptions were dropped with the session.
    await client.call("authenticate", {"auth_token": service.token("viewer")})
    assert (await client.call("get_subscription_stats"))["client_topics"] == []


async def test_reauthentication_keeps_session_and_subscriptions(service):
    client = await service.authed_client("viewer")
    first = (await client.call("get_subscription_stats"))["client_id"]
    await client.call("subscribe_events", {"topics": ["camera.connected"]})
    result = await client.call("authenticate", {"auth_token": service.token("admin")})
    assert result["session_id"] == first and result["role"] == "admin"
    assert (await client.call("get_subscription_stats"))["client_topics"] == ["camera.connected"]
    await client.call("get_status")  # admin now


async def test_failed_reauthentication_drops_session(service):
    client = await service.authed_client("admin")
    await client.call("subscribe_events", {"topics": ["camera.connected"]})
    error = await client.error("authenticate", {"auth_token": "x.y.z"})
    assert error["data"]["reason"] == "auth_failed"
    assert (await client.error("get_status"))["data"]["reason"] == "auth_required"
    await client.call("authenticate", {"auth_token": service.token("viewer")})
    assert (await client.call("get_subscription_stats"))["client_topics"] == []


async def test_failed_authentications_are_rate_limited_per_connection(service):
    client = await service.client()
    for _ in range(5):
        assert (await client.error("authenticate", {"auth_token": "a.b.c"}))["code"] == -32001
    error = await client.error("authenticate", {"auth_token": service.token("viewer")})
    assert error["code"] == -32040 and error["data"]["retry_after_ms"] > 0
    # Another connection is unaffected.
    other = await service.client()
    await other.call("authenticate", {"auth_token": service.token("viewer")})


async def test_api_key_lifecycle(services, tmp_path):
    key_file = tmp_path / "keys" / "api-keys.json"
    key, record = create_key(str(key_file), "nvr", "operator", None, cost=4)
    service = await services.start(CAMERA_SERVICE_SECURITY_API_KEYS_FILE=str(key_file))
    client = await service.client()
    result = await client.call("authenticate", {"auth_token": key})
    assert result["role"] == "operator" and "expires_at" not in result
    assert result["permissions"] == PERMISSIONS["operator"]
    await client.call("get_server_info")
    revoke_key(str(key_file), record.key_id)
    deadline = time.monotonic() + 5
    while True:
        response = await client.request("get_server_info")
        if "error" in response:
            break
        assert time.monotonic() < deadline, "revocation never took effect"
        await deferLater(reactor, 0.2, lambda: None)
    assert response["error"]["data"]["reason"] == "token_expired"
    fresh = await service.client()
    error = await fresh.error("authenticate", {"auth_token": key})
    assert error["data"]["reason"] == "auth_failed"


async def test_api_keys_disabled_means_auth_failed(services, tmp_path):
    key_file = tmp_path / "api-keys.json"
    key, _ = create_key(str(key_file), "nvr", "operator", None, cost=4)
    service = await services.start(CAMERA_SERVICE_SECURITY_API_KEYS_FILE=str(key_file),
                                   CAMERA_SERVICE_SECURITY_API_KEYS_ENABLED="false")
    client = await service.client()
    assert (await client.error("authenticate", {"auth_token": key}))["data"]["reason"] == "auth_failed"


async def test_ping_stays_fast_while_bcrypt_runs(services, tmp_path):
    """Ten bcrypt verifications (cost 12) in flight; ping answers in < 50 ms meanwhile."""
    key_file = tmp_path / "api-keys.json"
    key, _ = create_key(str(key_file), "slow", "viewer", None)  # default cost 12
    service = await services.start(CAMERA_SERVICE_SECURITY_API_KEYS_FILE=str(key_file))
    authers = [await service.client() for _ in range(10)]
    pinger = await service.client()
    pending = [client.request("authenticate", {"auth_token": key}) for client in authers]
    await deferLater(reactor, 0.05, lambda: None)
    assert threading.active_count() > 1
    worst = 0.0
    for _ in range(10):
        started = time.perf_counter()
        assert (await pinger.request("ping"))["result"] == "pong"
        worst = max(worst, time.perf_counter() - started)
    still_running = sum(1 for waiter in pending if not waiter.called)
    assert still_running > 0, "bcrypt finished too early for the measurement to mean anything"
    assert worst < 0.050, f"ping took {worst * 1000:.1f} ms while bcrypt ran"
    for waiter in pending:
        assert (await waiter)["result"]["role"] == "viewer"


async def _starting_service(services):
    """MediaMTX enabled but nothing listening: start-up cannot complete."""
    from tests.conftest import free_port

    return await services.start(CAMERA_SERVICE_MEDIAMTX_ENABLED="true",
                                CAMERA_SERVICE_MEDIAMTX_API_PORT=str(free_port()))


async def test_readiness_gate(services):
    service = await _starting_service(services)
    assert service.app.readiness.status() == "starting"
    client = await service.authed_client("admin")
    for method in ("ping", "get_system_status", "get_server_info"):
        assert "result" in await client.request(method)
    error = await client.error("get_status")
    assert error["code"] == -32050 and error["data"]["reason"] == "service_initializing"
    assert error["data"]["dependency"] == "service"
    service.app.readiness.satisfy("mediamtx")
    assert (await client.call("get_status"))["version"] == "1.0.0"


async def test_permission_check_comes_before_readiness(services):
    service = await _starting_service(services)
    client = await service.authed_client("viewer")
    assert (await client.error("get_status"))["code"] == -32002


def test_json_dump_of_roles_is_stable():
    assert json.dumps(PERMISSIONS["admin"]) == '["view", "control", "admin"]'
