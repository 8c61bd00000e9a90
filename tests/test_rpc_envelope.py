"""api.md §1.2, §1.3 and §8 steps 1-4 over a real socket with a real WebSocket client."""

from __future__ import annotations

import json


def _error(message: dict) -> dict:
    assert set(message) == {"jsonrpc", "error", "id"}, message
    assert message["jsonrpc"] == "2.0"
    data = message["error"]["data"]
    assert {"reason", "details", "suggestion"} <= set(data)
    return message["error"]


async def test_ping_answers_pong_without_authentication(service):
    client = await service.client()
    response = await client.request("ping")
    assert response == {"jsonrpc": "2.0", "result": "pong", "id": 1}


async def test_ids_are_echoed_exactly(service):
    client = await service.client()
    for request_id in ("abc", 0, -7, 3.5, "", 12345678901234567890):
        response = await client.request("ping", request_id=request_id)
        assert response["id"] == request_id and type(response["id"]) is type(request_id)


async def test_invalid_json_is_a_parse_error_with_null_id(service):
    client = await service.client()
    client.send_raw('{"jsonrpc": "2.0", "method": "ping", "id": 1')
    message = await client.raw.get()
    error = _error(message)
    assert message["id"] is None
    assert error["code"] == -32700 and error["message"] == "Parse error"
    assert error["data"]["reason"] == "parse_error"


async def test_malformed_utf8_is_a_parse_error_and_keeps_the_connection(service):
    client = await service.client()
    client.send_raw(b'{"jsonrpc":"2.0","method":"\xff\xfe","id":1}')
    message = await client.raw.get()
    assert _error(message)["code"] == -32700
    assert (await client.request("ping"))["result"] == "pong"


async def test_nan_is_not_json(service):
    client = await service.client()
    client.send_raw('{"jsonrpc":"2.0","method":"ping","id":NaN}')
    assert _error(await client.raw.get())["code"] == -32700


async def test_binary_frame_is_rejected_unprocessed(service):
    client = await service.client()
    client.send_raw(json.dumps({"jsonrpc": "2.0", "method": "ping", "id": 5}), binary=True)
    message = await client.raw.get()
    error = _error(message)
    assert message["id"] is None
    assert error["code"] == -32600 and error["data"]["details"] == "Binary frames are not supported"


async def test_batch_is_rejected_and_no_element_runs(service):
    client = await service.client()
    client.send_raw(json.dumps([{"jsonrpc": "2.0", "method": "ping", "id": 1},
                                {"jsonrpc": "2.0", "method": "ping", "id": 2}]))
    message = await client.raw.get()
    assert _error(message)["code"] == -32600 and message["id"] is None
    # Nothing else arrives: the only other message answers a fresh request.
    after = await client.request("ping", request_id="after")
    assert client.raw.pending == [after]


async def test_non_object_json_is_invalid_request(service):
    client = await service.client()
    for payload in ("42", '"ping"', "null", "true"):
        client.send_raw(payload)
        message = await client.raw.get()
        assert _error(message)["code"] == -32600 and message["id"] is None


async def test_wrong_version_echoes_valid_id(service):
    client = await service.client()
    client.send_raw(json.dumps({"jsonrpc": "1.0", "method": "ping", "id": 9}))
    message = await client.raw.get()
    error = _error(message)
    assert message["id"] == 9
    assert error["code"] == -32600 and error["data"]["reason"] == "invalid_version"
    assert error["data"]["suggestion"] == "Set jsonrpc to '2.0'"


async def test_missing_version_is_invalid_version(service):
    client = await service.client()
    client.send_raw(json.dumps({"method": "ping", "id": "x"}))
    message = await client.raw.get()
    assert message["id"] == "x" and _error(message)["data"]["reason"] == "invalid_version"


async def test_method_must_be_a_string(service):
    client = await service.client()
    client.send_raw(json.dumps({"jsonrpc": "2.0", "method": 7, "id": 3}))
    message = await client.raw.get()
    error = _error(message)
    assert message["id"] == 3 and error["code"] == -32600 and error["data"]["reason"] == "invalid_request"


async def test_invalid_id_types_answer_with_null_id(service):
    client = await service.client()
    for bad_id in ({"a": 1}, [1], True):
        client.send_raw(json.dumps({"jsonrpc": "2.0", "method": "ping", "id": bad_id}))
        message = await client.raw.get()
        assert message["id"] is None and _error(message)["code"] == -32600


async def test_positional_params_are_rejected(service):
    client = await service.client()
    response = await client.request("ping", params=[1, 2])
    error = _error(response)
    assert response["id"] == 1
    assert error["code"] == -32600 and error["data"]["details"] == "params must be an object"


async def test_unknown_method(service):
    client = await service.client()
    error = _error(await client.request("get_everything"))
    assert error["code"] == -32601 and error["message"] == "Method not found"
    assert error["data"]["details"] == "get_everything"
    assert error["data"]["suggestion"] == "Verify method name"
    assert error["data"]["reason"] == "method_not_found"


async def test_notification_names_cannot_be_called(service):
    client = await service.client()
    assert _error(await client.request("camera_status_update"))["code"] == -32601


async def test_client_notifications_get_no_reply_even_on_failure(service):
    client = await service.client()
    for message in ({"jsonrpc": "2.0", "method": "ping"},
                    {"jsonrpc": "2.0", "method": "ping", "id": None},
                    {"jsonrpc": "2.0", "method": "nope"},
                    {"jsonrpc": "2.0", "method": "get_status"}):
        client.send_raw(json.dumps(message))
    response = await client.request("ping", request_id="marker")
    assert response["id"] == "marker"
    # The only message that arrived is the answer to the marker request.
    assert client.raw.pending == [response]


async def test_client_notification_is_still_processed(service):
    """A notification runs the handler: subscribing by notification works."""
    client = await service.authed_client()
    client.send_raw(json.dumps({"jsonrpc": "2.0", "method": "subscribe_events",
                                "params": {"topics": ["system.error"]}}))
    stats = await client.call("get_subscription_stats")
    assert stats["client_topics"] == ["system.error"]


async def test_null_params_are_an_empty_object(service):
    client = await service.client()
    response = await client.request("ping", params=None)
    client.send_raw(json.dumps({"jsonrpc": "2.0", "method": "ping", "params": None, "id": "n"}))
    assert response["result"] == "pong"
    assert (await client.raw.get())["result"] == "pong"


async def test_unknown_top_level_members_are_ignored(service):
    client = await service.client()
    client.send_raw(json.dumps({"jsonrpc": "2.0", "method": "ping", "id": 1, "extra": {"x": 1}}))
    assert (await client.raw.get()) == {"jsonrpc": "2.0", "result": "pong", "id": 1}


async def test_oversized_message_closes_with_1009(service):
    client = await service.client()
    client.send_raw(json.dumps({"jsonrpc": "2.0", "method": "ping", "id": 1,
                                "params": {"pad": "x" * (1024 * 1024)}}))
    code = await client.closed
    assert code == 1009


async def test_message_just_under_the_limit_is_processed(service):
    client = await service.client()
    envelope = '{"jsonrpc":"2.0","method":"ping","id":1,"params":{"pad":"%s"}}'
    padding = 1024 * 1024 - len(envelope % "")
    client.send_raw(envelope % ("x" * padding))
    assert (await client.raw.get())["result"] == "pong"


async def test_handler_exception_is_internal_error_and_connection_survives(service):
    async def broken(ctx, params):
        raise RuntimeError("boom with /dev/video0 inside")

    service.root.factory.dispatcher.registry.replace("get_streams", broken)
    client = await service.authed_client()
    error = _error(await client.request("get_streams"))
    assert error["code"] == -32603 and error["message"] == "Internal server error"
    assert error["data"]["reason"] == "internal_error"
    assert "request_id" in error["data"] and "boom" not in json.dumps(error)
    assert (await client.request("ping"))["result"] == "pong"
