"""The media side end to end over real sockets: snapshot, record, list, inspect, download
(full and Range), delete, retention, and hostile names, all against files FFmpeg really made.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.task import deferLater

from tests.test_downloads import bearer, fetch
from tests.test_recording_direct import VIRTUAL, ffprobe, next_notification

HOSTILE = ["../x", "%2e%2e/", "/etc/passwd", "a\x00b.jpg", "x" * 300, "..", "a/b.jpg",
           "a\\b.jpg", "camera100_x.jpg\n"]


def jpeg_size(data: bytes) -> tuple[int, int]:
    """Width and height from a baseline JPEG's SOF0 marker."""
    assert data[:2] == b"\xff\xd8"
    offset = 2
    while offset < len(data):
        marker, length = data[offset + 1], struct.unpack(">H", data[offset + 2:offset + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            height, width = struct.unpack(">HH", data[offset + 5:offset + 9])
            return width, height
        offset += 2 + length
    raise AssertionError("no SOF marker")


async def start(services: Any, **env: str) -> Any:
    return await services.start(CAMERA_SERVICE_VIRTUAL_CAMERAS=VIRTUAL, **env)


async def test_snapshot_then_list_info_download_and_delete(services: Any) -> None:
    running = await start(services)
    operator = await running.authed_client("operator")
    await operator.call("subscribe_events", {"topics": ["snapshot.taken"]})
    shot = await operator.call("take_snapshot", {"device": "camera100"})
    assert shot["status"] == "SUCCESS" and shot["device"] == "camera100"
    assert shot["filename"].startswith("camera100_") and shot["filename"].endswith(".jpg")
    assert shot["file_path"] == os.path.join(running.app.stores["snapshots"].root, "camera100",
                                             shot["filename"])
    with open(shot["file_path"], "rb") as handle:
        on_disk = handle.read()
    assert shot["file_size"] == len(on_disk)
    assert jpeg_size(on_disk) == (320, 240)
    taken = await next_notification(operator, "snapshot.taken")
    assert taken["filename"] == shot["filename"] and taken["resolution"] == "320x240"

    listing = await operator.call("list_snapshots", {})
    assert listing["total"] == 1
    assert listing["files"][0]["filename"] == shot["filename"]
    url = listing["files"][0]["download_url"]
    assert url == f"/files/snapshots/{shot['filename']}"
    info = await operator.call("get_snapshot_info", {"filename": shot["filename"]})
    assert info["file_size"] == len(on_disk)

    token = running.token("viewer")
    full = await fetch(running, url, headers=bearer(token))
    assert full.status == 200 and full.body == on_disk
    assert full.header("content-type") == "image/jpeg"
    part = await fetch(running, f"{url}?token={token}", headers={"Range": "bytes=10-99"})
    assert part.status == 206 and part.body == on_disk[10:100]
    assert part.header("content-range") == f"bytes 10-99/{len(on_disk)}"

    denied = await operator.error("delete_snapshot", {"filename": shot["filename"]})
    assert denied["code"] == -32002
    admin = await running.authed_client("admin")
    deleted = await admin.call("delete_snapshot", {"filename": shot["filename"]})
    assert deleted == {"filename": shot["filename"], "deleted": True,
                       "message": "Snapshot file deleted successfully"}
    assert not os.path.exists(shot["file_path"])
    assert (await fetch(running, url, headers=bearer(token))).status == 404


async def test_recording_is_listed_inspected_downloaded_and_protected_while_active(services: Any) -> None:
    running = await start(services)
    operator = await running.authed_client("operator")
    admin = await running.authed_client("admin")
    started = await operator.call("start_recording", {"device": "camera100"})
    stem = started["filename"]

    # While recording: listed with its current size, duration 0, not deletable.
    listing = await operator.call("list_recordings", {})
    assert [f["filename"] for f in listing["files"]] == [stem]
    assert listing["files"][0]["download_url"] == f"/files/recordings/{stem}.mp4"
    info = await operator.call("get_recording_info", {"filename": stem})
    assert info["duration"] == 0
    busy = await admin.error("delete_recording", {"filename": stem})
    assert busy["code"] == -32020 and busy["data"]["reason"] == "file_in_use"
    cleanup = await admin.call("cleanup_old_files", {})
    assert cleanup["cleanup_executed"] is True and cleanup["files_deleted"] == 0

    await deferLater(reactor, 2.5, lambda: None)
    stopped = await operator.call("stop_recording", {"device": "camera100"})
    path = os.path.join(running.app.stores["recordings"].root, "camera100", stem + ".mp4")
    with open(path, "rb") as handle:
        on_disk = handle.read()
    assert stopped["file_size"] == len(on_disk)

    info = await operator.call("get_recording_info", {"filename": stem + ".mp4"})
    assert info["filename"] == stem
    assert info["file_size"] == len(on_disk)
    assert info["duration"] == int(float(ffprobe(path)["format"]["duration"]))
    assert info["duration"] >= 2
    assert info["created_time"] == started["start_time"]

    token = running.token("viewer")
    full = await fetch(running, f"/files/recordings/{stem}", headers=bearer(token))
    assert full.status == 200 and full.body == on_disk
    assert full.header("content-type") == "video/mp4"
    tail = await fetch(running, f"/files/recordings/{stem}.mp4", headers={
        **bearer(token), "Range": "bytes=-1000"})
    assert tail.status == 206 and tail.body == on_disk[-1000:]

    deleted = await admin.call("delete_recording", {"filename": stem})
    assert deleted == {"filename": stem, "deleted": True,
                       "message": "Recording file deleted successfully"}
    assert not os.path.exists(path)
    empty = await operator.call("list_recordings", {})
    assert empty == {"files": [], "total": 0, "limit": 50, "offset": 0}


async def test_hostile_names_are_refused_by_every_file_method(services: Any) -> None:
    running = await start(services)
    admin = await running.authed_client("admin")
    outside = running.state_dir / "secret.txt"
    outside.write_text("never served")
    calls = [("get_recording_info", {}), ("get_snapshot_info", {}), ("delete_recording", {}),
             ("delete_snapshot", {}), ("take_snapshot", {"device": "camera100"})]
    for name in HOSTILE:
        for method, extra in calls:
            error = await admin.error(method, {**extra, "filename": name})
            assert error["code"] == -32602, (method, name)
            assert error["data"]["param"] == "filename" and error["data"]["rule"] == "filename"
    token = running.token("viewer")
    for raw in ["..%2Fsecret.txt", "%2e%2e%2fsecret.txt", "%2Fetc%2Fpasswd", "a%00b.jpg",
                "%5C..%5Csecret.txt", "x" * 300]:
        for kind in ("recordings", "snapshots"):
            response = await fetch(running, f"/files/{kind}/{raw}", headers=bearer(token))
            assert response.status == 400, (kind, raw, response.status)
            assert json.loads(response.body) == {"error": "Invalid filename"}
    assert outside.read_text() == "never served"


async def test_snapshot_and_recording_are_refused_when_storage_is_critical(services: Any) -> None:
    running = await start(services, CAMERA_SERVICE_STORAGE_BLOCK_PERCENT="2",
                          CAMERA_SERVICE_STORAGE_WARN_PERCENT="1")
    operator = await running.authed_client("operator")
    for method in ("take_snapshot", "start_recording"):
        error = await operator.error(method, {"device": "camera100"})
        assert error["code"] == -32020, method
        assert error["data"]["reason"] == "storage_critical"
        assert error["data"]["state"] == "STORAGE_CRITICAL" and error["data"]["allowed_states"] == []
        assert error["data"]["block_percent"] == 2
    info = await (await running.authed_client("admin")).call("get_storage_info", {})
    assert info["low_space_warning"] is True


async def test_concurrent_snapshots_get_distinct_files(services: Any) -> None:
    running = await start(services)
    operator = await running.authed_client("operator")
    answers = await defer.gatherResults(
        [operator.request("take_snapshot", {"device": "camera100"}) for _ in range(3)])
    names = {answer["result"]["filename"] for answer in answers}
    assert len(names) == 3
    for answer in answers:
        assert os.path.getsize(answer["result"]["file_path"]) == answer["result"]["file_size"]


async def test_storage_threshold_crossing_publishes_system_health_at_once(services: Any) -> None:
    from camera_service.storage.space import DiskUsage

    running = await start(services)
    admin = await running.authed_client("admin")
    await admin.call("subscribe_events", {"topics": ["system.health"]})
    storage = running.app.storage
    measured = storage._disk_usage

    def nearly_full(path: str) -> DiskUsage:
        real = measured(path)
        return DiskUsage(total=real.total, used=int(real.total * 0.9),
                         available=int(real.total * 0.1), percent=90.0)

    storage._disk_usage = nearly_full
    await storage.check_now()
    # Well before the 5 s health loop would notice.
    event = await next_notification(admin, "system.health", timeout=2)
    assert event["status"] == "UNHEALTHY"
    status = await admin.call("get_status", {})
    assert status["status"] == "UNHEALTHY"
    refused = await admin.error("take_snapshot", {"device": "camera100"})
    assert refused["data"]["reason"] == "storage_critical"
