"""Recording with the direct FFmpeg backend (media.md §3.10), through the real service.

MediaMTX is disabled, so a virtual camera records with a supervised FFmpeg process that
writes real fragmented-MP4 segments; every file is checked with ffprobe.
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.task import deferLater

VIRTUAL = json.dumps([{"id": "camera100", "name": "Test pattern", "pattern": "testsrc2",
                       "size": "320x240", "rate": 15}])


def ffprobe(path: str) -> dict[str, Any]:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries",
                          "format=duration:stream=width,height,codec_name", "-of", "json", path],
                         capture_output=True, check=True, timeout=30)
    return json.loads(out.stdout)


async def next_notification(client: Any, method: str, timeout: float = 15.0) -> dict[str, Any]:
    deadline = reactor.seconds() + timeout
    while True:
        remaining = deadline - reactor.seconds()
        if remaining <= 0:
            raise AssertionError(f"no {method} notification within {timeout} s")
        waiting = client.notifications.get()
        waiting.addTimeout(remaining, reactor)
        message = await waiting
        if message["method"] == method:
            return message["params"]


async def recording_service(services: Any, **env: str) -> Any:
    return await services.start(CAMERA_SERVICE_VIRTUAL_CAMERAS=VIRTUAL, **env)


async def test_duration_recording_makes_a_playable_file_and_announces_stop(services: Any) -> None:
    running = await recording_service(services)
    client = await running.authed_client("operator")
    await client.call("subscribe_events", {"topics": ["recording_status_update"]})

    result = await client.call("start_recording", {"device": "camera100", "duration": 3})
    assert result["status"] == "RECORDING"
    assert result["format"] == "fmp4"
    assert result["filename"].startswith("camera100_")
    started = await next_notification(client, "recording_status_update")
    assert started == {"device": "camera100", "status": "STARTED",
                       "filename": result["filename"], "duration": 0}

    stopped = await next_notification(client, "recording_status_update", timeout=15)
    assert stopped["status"] == "STOPPED"
    assert stopped["filename"] == result["filename"]
    assert stopped["duration"] in (2, 3, 4)

    path = os.path.join(running.app.stores["recordings"].root, "camera100",
                        result["filename"] + ".mp4")
    assert os.path.exists(path)
    probe = ffprobe(path)
    assert abs(float(probe["format"]["duration"]) - 3.0) <= 0.5, probe
    assert probe["streams"][0]["codec_name"] == "h264"
    assert (probe["streams"][0]["width"], probe["streams"][0]["height"]) == (320, 240)

    # The camera is idle again: a second stop is not_recording.
    error = await client.error("stop_recording", {"device": "camera100"})
    assert error["code"] == -32020 and error["data"]["reason"] == "not_recording"


async def test_manual_stop_reports_the_file(services: Any) -> None:
    running = await recording_service(services)
    client = await running.authed_client("operator")
    started = await client.call("start_recording", {"device": "camera100"})
    second = await client.error("start_recording", {"device": "camera100"})
    assert second["code"] == -32020
    assert second["data"]["reason"] == "already_recording"
    assert second["data"]["state"] == "RECORDING" and second["data"]["allowed_states"] == ["STOPPED"]

    await deferLater(reactor, 2.0, lambda: None)
    stopped = await client.call("stop_recording", {"device": "camera100"})
    assert stopped["status"] == "STOPPED"
    assert stopped["filename"] == started["filename"]
    assert stopped["start_time"] == started["start_time"]
    assert stopped["format"] == "fmp4"
    assert stopped["duration"] >= 1
    path = os.path.join(running.app.stores["recordings"].root, "camera100",
                        started["filename"] + ".mp4")
    assert stopped["file_size"] == os.path.getsize(path) > 0
    duration = float(ffprobe(path)["format"]["duration"])
    assert duration >= 1.0


async def test_concurrent_starts_give_one_success_and_one_already_recording(services: Any) -> None:
    running = await recording_service(services)
    client = await running.authed_client("operator")
    first = client.request("start_recording", {"device": "camera100"})
    second = client.request("start_recording", {"device": "camera100"})
    answers = await defer.gatherResults([first, second])
    results = [a for a in answers if "result" in a]
    errors = [a for a in answers if "error" in a]
    assert len(results) == 1 and len(errors) == 1
    assert errors[0]["error"]["data"]["reason"] == "already_recording"
    await client.call("stop_recording", {"device": "camera100"})


async def test_parameter_and_state_errors(services: Any) -> None:
    running = await recording_service(services)
    client = await running.authed_client("operator")
    for params, param, rule in [
        ({"device": "camera100", "duration": 0}, "duration", "range"),
        ({"device": "camera100", "duration": 86401}, "duration", "range"),
        ({"device": "camera100", "duration": 2.5}, "duration", "type"),
        ({"device": "camera100", "duration": True}, "duration", "type"),
        ({"device": "camera100", "format": "avi"}, "format", "enum"),
        ({"device": "/dev/video0"}, "device", "pattern"),
        ({"device": "camera100\n"}, "device", "pattern"),
    ]:
        error = await client.error("start_recording", params)
        assert error["code"] == -32602, params
        assert (error["data"]["param"], error["data"]["rule"]) == (param, rule), params
    mkv = await client.error("start_recording", {"device": "camera100", "format": "mkv"})
    assert mkv["code"] == -32030
    assert mkv["data"]["reason"] == "unsupported_format"
    assert mkv["data"]["feature"] == "recording_format_mkv"
    missing = await client.error("start_recording", {"device": "camera7"})
    assert missing["code"] == -32010 and missing["data"]["reason"] == "camera_not_found"
    idle = await client.error("stop_recording", {"device": "camera100"})
    assert idle["data"]["reason"] == "not_recording"
    assert idle["data"]["state"] == "STOPPED" and idle["data"]["allowed_states"] == ["RECORDING"]
    viewer = await running.authed_client("viewer")
    denied = await viewer.error("start_recording", {"device": "camera100"})
    assert denied["code"] == -32002


async def test_recorder_that_cannot_start_fails_cleanly(services: Any, tmp_path: Any) -> None:
    broken = tmp_path / "ffmpeg"
    broken.write_text("#!/bin/sh\necho 'cannot open input' >&2\nexit 1\n")
    broken.chmod(0o755)
    running = await recording_service(services, CAMERA_SERVICE_TOOLS_FFMPEG=str(broken))
    client = await running.authed_client("operator")
    error = await client.error("start_recording", {"device": "camera100"})
    assert error["code"] == -32050
    assert error["data"]["dependency"] == "ffmpeg"
    assert "cannot open input" in error["data"]["detail"]
    # Nothing stuck: the camera is idle again.
    idle = await client.error("stop_recording", {"device": "camera100"})
    assert idle["data"]["reason"] == "not_recording"


async def test_shutdown_stops_the_recording_and_clients_hear_it(services: Any) -> None:
    running = await recording_service(services)
    client = await running.authed_client("operator")
    await client.call("subscribe_events", {"topics": ["recording_status_update"]})
    await client.call("start_recording", {"device": "camera100"})
    await next_notification(client, "recording_status_update")
    await deferLater(reactor, 1.5, lambda: None)
    await running.root.stopService()
    stopped = await next_notification(client, "recording_status_update", timeout=5)
    assert stopped["status"] == "STOPPED"
    assert running.app.recorder.state("camera100") == "IDLE"



async def test_duration_stop_needs_no_connected_client(services: Any) -> None:
    running = await recording_service(services)
    client = await running.authed_client("operator")
    started = await client.call("start_recording", {"device": "camera100", "duration": 2})
    await client.close()
    assert running.app.recorder.state("camera100") == "RECORDING"
    await deferLater(reactor, 4.0, lambda: None)
    assert running.app.recorder.state("camera100") == "IDLE"
    later = await running.authed_client("viewer")
    info = await later.call("get_recording_info", {"filename": started["filename"]})
    path = os.path.join(running.app.stores["recordings"].root, "camera100",
                        started["filename"] + ".mp4")
    media = float(ffprobe(path)["format"]["duration"])
    assert abs(media - 2.0) <= 0.5
    assert info["duration"] == int(media)
