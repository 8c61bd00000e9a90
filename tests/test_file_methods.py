"""File and storage methods over a real WebSocket against the whole service (api.md §3.3,
§3.5, §3.6, §4.9-4.14, §4.24-4.26, §6; media.md §5).

Files are placed in the service's real media roots (``<state>/recordings``,
``<state>/snapshots``); a real fragmented MP4 made with ffmpeg checks the ffprobe duration.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from camera_service.storage.retention import POLICY_FILE
from camera_service.timeutil import rfc3339
from tests.conftest import RunningService, ServiceFactory

DAY = 86400
FILE_METHODS = ("get_recording_info", "get_snapshot_info", "delete_recording", "delete_snapshot")
HOSTILE = ["../x", "..", "%2e%2e", "%2e%2e%2fetc%2fpasswd", "/etc/passwd", "camera0/../../x",
           "x\x00y.mp4", "x\n", "a" * 300, "", "a b.mp4", "..\\x"]
ITEM_KEYS = {"filename", "file_size", "modified_time", "download_url"}
# Keeps the free-space floor (default 20 %) from reacting to how full the test host's disk is.
NO_FLOOR = {"CAMERA_SERVICE_RETENTION_POLICY_MIN_FREE_PERCENT": "0"}


@pytest.fixture(scope="module")
def real_mp4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.skip("ffmpeg not installed")
    out = tmp_path_factory.mktemp("media") / "out.mp4"
    subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-f", "lavfi", "-i",
                    "testsrc2=size=320x240:rate=15", "-t", "2", "-c:v", "libx264", "-pix_fmt",
                    "yuv420p", "-movflags", "+frag_keyframe+empty_moov+default_base_moof",
                    str(out)], check=True, timeout=120)
    return out


async def started(services: ServiceFactory, **env: str) -> RunningService:
    running = await services.start(**env)
    await running.app.storage.when_started()
    return running


def roots(running: RunningService) -> tuple[Path, Path]:
    return running.state_dir / "recordings", running.state_dir / "snapshots"


def put(path: Path, size: int = 100, mtime: float | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * size)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def file_methods(running: RunningService) -> Any:
    return running.root.factory.dispatcher.registry.get("get_recording_info").handler.__self__


# -- listings ------------------------------------------------------------------------------------

async def test_empty_stores_list_nothing(service: RunningService) -> None:
    await service.app.storage.when_started()
    client = await service.authed_client("viewer")
    for method in ("list_recordings", "list_snapshots"):
        assert await client.call(method) == {"files": [], "total": 0, "limit": 50, "offset": 0}
        assert await client.call(method, {"limit": 5, "offset": 10}) == {
            "files": [], "total": 0, "limit": 5, "offset": 10}


async def test_list_recordings_order_pages_and_shape(service: RunningService) -> None:
    await service.app.storage.when_started()
    rec, _ = roots(service)
    t = 1736951400
    put(rec / "camera0" / "camera0_2025-01-15_14-30-00.mp4", 1000, t)
    put(rec / "camera0" / "camera0_2025-01-15_14-40-00.ts", 2000, t + 600)
    put(rec / "camera1" / "camera1_2025-01-15_14-40-00.mp4", 3000, t + 600)  # tie: by name
    put(rec / "camera1" / "camera1_2025-01-15_15-00-00.mp4", 4000, t + 1800)
    put(rec / "loose.mp4", 5, t - 100)                                         # in the root
    put(rec / "camera1" / ".camera1_2025-01-15_16-00-00.mp4", 1, t + 9999)      # hidden
    put(rec / "camera1" / "notes.txt", 1, t + 9999)
    os.symlink("/etc/hostname", rec / "camera1" / "link.mp4")
    client = await service.authed_client("viewer")
    whole = await client.call("list_recordings")
    assert whole["total"] == 5 and whole["limit"] == 50 and whole["offset"] == 0
    assert [f["filename"] for f in whole["files"]] == [
        "camera1_2025-01-15_15-00-00", "camera0_2025-01-15_14-40-00", "camera1_2025-01-15_14-40-00",
        "camera0_2025-01-15_14-30-00", "loose"]
    first = whole["files"][1]
    assert set(first) == ITEM_KEYS
    assert first == {"filename": "camera0_2025-01-15_14-40-00", "file_size": 2000,
                     "modified_time": rfc3339(t + 600),
                     "download_url": "/files/recordings/camera0_2025-01-15_14-40-00.ts"}
    page = await client.call("list_recordings", {"limit": 2, "offset": 1})
    assert page["total"] == 5 and page["limit"] == 2 and page["offset"] == 1
    assert [f["filename"] for f in page["files"]] == [f["filename"] for f in whole["files"][1:3]]
    tail = await client.call("list_recordings", {"limit": 1000, "offset": 4})
    assert [f["filename"] for f in tail["files"]] == ["loose"]
    past = await client.call("list_recordings", {"limit": 3, "offset": 5})
    assert past == {"files": [], "total": 5, "limit": 3, "offset": 5}
    # 5.0 is an integer; null means absent.
    assert (await client.call("list_recordings", {"limit": 2.0, "offset": None}))["limit"] == 2


async def test_list_snapshots_names_carry_the_extension(service: RunningService) -> None:
    await service.app.storage.when_started()
    _, snap = roots(service)
    put(snap / "camera0" / "camera0_1736951400.jpg", 204800, 1736951400)
    put(snap / "camera0" / "mine.png", 10, 1736951500)
    put(snap / "camera0" / "video.mp4", 10, 1736951600)
    client = await service.authed_client("viewer")
    result = await client.call("list_snapshots", {"limit": 10})
    assert result == {"files": [
        {"filename": "mine.png", "file_size": 10, "modified_time": rfc3339(1736951500),
         "download_url": "/files/snapshots/mine.png"},
        {"filename": "camera0_1736951400.jpg", "file_size": 204800,
         "modified_time": "2025-01-15T14:30:00Z",
         "download_url": "/files/snapshots/camera0_1736951400.jpg"}],
        "total": 2, "limit": 10, "offset": 0}


@pytest.mark.parametrize("params, param, rule", [
    ({"limit": 0}, "limit", "range"), ({"limit": 1001}, "limit", "range"),
    ({"limit": 5.5}, "limit", "type"), ({"limit": True}, "limit", "type"),
    ({"limit": "5"}, "limit", "type"), ({"offset": -1}, "offset", "range"),
    ({"offset": False}, "offset", "type"), ({"limit": 0, "offset": -1}, "limit", "range"),
])
async def test_paging_parameters_are_validated(service: RunningService, params: dict[str, Any],
                                               param: str, rule: str) -> None:
    client = await service.authed_client("viewer")
    for method in ("list_recordings", "list_snapshots"):
        error = await client.error(method, params)
        assert error["code"] == -32602
        assert (error["data"]["param"], error["data"]["rule"]) == (param, rule)


async def test_listing_an_unreadable_root_is_an_internal_error(service: RunningService) -> None:
    await service.app.storage.when_started()
    rec, snap = roots(service)
    for root in (rec, snap):
        shutil.rmtree(root)
        put(root)  # a plain file where the directory was
    for store in service.app.stores.values():
        store.invalidate()
    client = await service.authed_client("admin")
    for method, label in (("list_recordings", "Recordings"), ("list_snapshots", "Snapshots")):
        error = await client.error(method)
        assert error["code"] == -32603 and error["message"] == "Internal server error"
        assert error["data"]["reason"] == "internal_error"
        assert error["data"]["details"] == f"{label} directory not found or inaccessible"
        assert error["data"]["suggestion"] == "Check storage configuration and permissions"
        assert error["data"]["request_id"]
    error = await client.error("get_recording_info", {"filename": "x"})
    assert error["code"] == -32603
    error = await client.error("get_storage_info")
    assert error["code"] == -32603


# -- info ---------------------------------------------------------------------------------------

async def test_recording_info_reads_the_duration_with_ffprobe(services: ServiceFactory,
                                                              real_mp4: Path) -> None:
    running = await started(services)
    rec, _ = roots(running)
    stem = "camera0_2025-01-15_14-30-00"
    target = rec / "camera0" / f"{stem}.mp4"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(real_mp4, target)
    os.utime(target, (1736952000, 1736952000))
    broken = put(rec / "camera0" / "camera0_2025-01-15_15-00-00.mp4", 4096)
    odd = rec / "holiday.mp4"
    shutil.copyfile(real_mp4, odd)
    os.utime(odd, (1736000000, 1736000000))
    client = await running.authed_client("viewer")
    info = await client.call("get_recording_info", {"filename": stem})
    assert info == {"filename": stem, "file_size": target.stat().st_size, "duration": 2,
                    "created_time": rfc3339(dt.datetime(2025, 1, 15, 14, 30, 0).timestamp()),
                    "download_url": f"/files/recordings/{stem}.mp4"}
    # By full name too; the second answer comes from the cache (no new ffprobe run).
    methods = file_methods(running)
    probes = methods.probes
    again = await client.call("get_recording_info", {"filename": f"{stem}.mp4"})
    assert again == info and methods.probes == probes
    # Not a real MP4: duration 0, not an error.
    bad = await client.call("get_recording_info", {"filename": broken.stem})
    assert bad["duration"] == 0 and bad["file_size"] == 4096
    # No timestamp in the name: created_time is the mtime.
    info = await client.call("get_recording_info", {"filename": "holiday"})
    assert info["created_time"] == rfc3339(1736000000) and info["duration"] == 2
    # A file of a recording in progress: 0, without probing.
    os.utime(target, (1736953000, 1736953000))   # (size, mtime) changed: cache key differs
    running.app.storage.busy_paths.append(lambda: [str(target)])
    for store in running.app.stores.values():
        store.invalidate()
    probes = methods.probes
    busy = await client.call("get_recording_info", {"filename": stem})
    assert busy["duration"] == 0 and methods.probes == probes


async def test_snapshot_info(service: RunningService) -> None:
    await service.app.storage.when_started()
    _, snap = roots(service)
    put(snap / "camera0" / "camera0_1736951400.jpg", 204800, 1736951400)
    client = await service.authed_client("viewer")
    assert await client.call("get_snapshot_info", {"filename": "camera0_1736951400.jpg"}) == {
        "filename": "camera0_1736951400.jpg", "file_size": 204800,
        "created_time": "2025-01-15T14:30:00Z",
        "download_url": "/files/snapshots/camera0_1736951400.jpg"}
    error = await client.error("get_snapshot_info", {"filename": "camera0_1736951400"})
    assert error["code"] == -32010 and error["message"] == "Snapshot not found"
    assert error["data"]["reason"] == "file_not_found"
    assert (error["data"]["resource"], error["data"]["id"]) == ("snapshot", "camera0_1736951400")


async def test_unknown_recording_is_not_found(service: RunningService) -> None:
    client = await service.authed_client("viewer")
    for method in ("get_recording_info",):
        error = await client.error(method, {"filename": "camera0_2025-01-15_14-30-00"})
        assert error["code"] == -32010 and error["message"] == "Recording not found"
        assert error["data"]["reason"] == "file_not_found"
        assert error["data"]["resource"] == "recording"
    admin = await service.authed_client("admin")
    error = await admin.error("delete_recording", {"filename": "nope.mp4"})
    assert error["code"] == -32010 and error["data"]["resource"] == "recording"
    error = await admin.error("delete_snapshot", {"filename": "nope.jpg"})
    assert error["code"] == -32010 and error["data"]["resource"] == "snapshot"


async def test_hostile_names_are_rejected_by_every_file_method(service: RunningService) -> None:
    await service.app.storage.when_started()
    rec, _ = roots(service)
    # Decoys a traversal would reach if names were ever joined to paths.
    put(service.state_dir / "x", 10)
    put(rec / "x", 10)
    client = await service.authed_client("admin")
    for method in FILE_METHODS:
        for name in HOSTILE:
            error = await client.error(method, {"filename": name})
            assert error["code"] == -32602, (method, name, error)
            assert (error["data"]["param"], error["data"]["rule"]) == ("filename", "filename"), \
                (method, name)
        error = await client.error(method, {})
        assert (error["data"]["param"], error["data"]["rule"]) == ("filename", "required")
        error = await client.error(method, {"filename": 5})
        assert (error["data"]["param"], error["data"]["rule"]) == ("filename", "type")
    assert (service.state_dir / "x").exists() and (rec / "x").exists()


# -- deletes ------------------------------------------------------------------------------------

async def test_delete_recording_is_admin_only_and_invalidates_the_listing(service: RunningService) -> None:
    await service.app.storage.when_started()
    rec, _ = roots(service)
    stem = "camera0_2025-01-15_14-30-00"
    mp4 = put(rec / "camera0" / f"{stem}.mp4", 10, 1736951400)
    ts = put(rec / "camera0" / f"{stem}.ts", 20, 1736951300)
    for role in ("viewer", "operator"):
        client = await service.authed_client(role)
        error = await client.error("delete_recording", {"filename": stem})
        assert error["code"] == -32002
        assert error["data"]["required_role"] == "admin" and error["data"]["have_role"] == role
        error = await client.error("delete_snapshot", {"filename": "x.jpg"})
        assert error["code"] == -32002
    assert mp4.exists()
    admin = await service.authed_client("admin")
    assert (await admin.call("list_recordings"))["total"] == 2     # primes the listing cache
    result = await admin.call("delete_recording", {"filename": stem})
    assert result == {"filename": stem, "deleted": True,
                      "message": "Recording file deleted successfully"}
    assert not mp4.exists() and ts.exists()                           # .mp4 wins for a stem
    listing = await admin.call("list_recordings")
    assert listing["total"] == 1 and listing["files"][0]["download_url"].endswith(".ts")
    result = await admin.call("delete_recording", {"filename": f"{stem}.ts"})
    assert result["filename"] == stem and not ts.exists()
    assert (await admin.call("list_recordings"))["total"] == 0
    error = await admin.error("delete_recording", {"filename": stem})
    assert error["code"] == -32010


async def test_delete_of_a_recording_in_progress_is_refused(service: RunningService) -> None:
    await service.app.storage.when_started()
    rec, _ = roots(service)
    live = put(rec / "camera0" / "camera0_2025-01-15_14-30-00.mp4", 10)
    service.app.storage.busy_paths.append(lambda: {str(live)})
    admin = await service.authed_client("admin")
    error = await admin.error("delete_recording", {"filename": "camera0_2025-01-15_14-30-00"})
    assert error["code"] == -32020 and error["message"] == "Invalid state"
    assert error["data"]["reason"] == "file_in_use"
    assert error["data"]["state"] == "RECORDING" and error["data"]["allowed_states"] == ["STOPPED"]
    assert live.exists()


async def test_delete_snapshot(service: RunningService) -> None:
    await service.app.storage.when_started()
    _, snap = roots(service)
    shot = put(snap / "camera0" / "camera0_1736951400.jpg", 10)
    admin = await service.authed_client("admin")
    assert (await admin.call("list_snapshots"))["total"] == 1
    assert await admin.call("delete_snapshot", {"filename": "camera0_1736951400.jpg"}) == {
        "filename": "camera0_1736951400.jpg", "deleted": True,
        "message": "Snapshot file deleted successfully"}
    assert not shot.exists()
    assert (await admin.call("list_snapshots"))["total"] == 0
    error = await admin.error("delete_snapshot", {"filename": "camera0_1736951400.jpg"})
    assert error["code"] == -32010 and error["data"]["resource"] == "snapshot"


async def test_a_symlink_in_a_root_is_never_deleted_or_followed(service: RunningService,
                                                                tmp_path: Path) -> None:
    await service.app.storage.when_started()
    rec, _ = roots(service)
    victim = put(tmp_path / "victim.mp4", 10)
    (rec / "camera0").mkdir(exist_ok=True)
    os.symlink(victim, rec / "camera0" / "link.mp4")
    admin = await service.authed_client("admin")
    error = await admin.error("delete_recording", {"filename": "link"})
    assert error["code"] == -32010
    assert victim.exists() and (rec / "camera0" / "link.mp4").is_symlink()


# -- storage methods ----------------------------------------------------------------------------------

async def test_get_storage_info(service: RunningService) -> None:
    await service.app.storage.when_started()
    rec, snap = roots(service)
    put(rec / "camera0" / "a.mp4", 1000)
    put(rec / "b.ts", 24)
    put(snap / "camera0" / "s.jpg", 300)
    viewer = await service.authed_client("operator")
    assert (await viewer.error("get_storage_info"))["code"] == -32002
    admin = await service.authed_client("admin")
    info = await admin.call("get_storage_info")
    assert set(info) == {"total_space", "used_space", "available_space", "usage_percentage",
                         "recordings_size", "snapshots_size", "low_space_warning"}
    st = os.statvfs(rec)
    assert info["total_space"] == st.f_blocks * st.f_frsize
    assert info["recordings_size"] == 1024 and info["snapshots_size"] == 300
    assert isinstance(info["usage_percentage"], float)
    assert info["usage_percentage"] == pytest.approx(info["used_space"] / info["total_space"] * 100, abs=1)
    assert info["low_space_warning"] is (info["usage_percentage"] >= 70)


@pytest.mark.parametrize("params, param, rule", [
    ({"enabled": True}, "policy_type", "required"),
    ({"policy_type": "weekly", "enabled": True}, "policy_type", "enum"),
    ({"policy_type": "AGE", "max_age_days": 3, "enabled": True}, "policy_type", "enum"),
    ({"policy_type": 1, "enabled": True}, "policy_type", "type"),
    ({"policy_type": "age", "enabled": True}, "max_age_days", "required"),
    ({"policy_type": "age", "max_age_days": None, "enabled": True}, "max_age_days", "required"),
    ({"policy_type": "size", "enabled": True}, "max_size_gb", "required"),
    ({"policy_type": "age", "max_age_days": 0, "enabled": True}, "max_age_days", "range"),
    ({"policy_type": "age", "max_age_days": -3, "enabled": True}, "max_age_days", "range"),
    ({"policy_type": "age", "max_age_days": 1.5, "enabled": True}, "max_age_days", "type"),
    ({"policy_type": "age", "max_age_days": True, "enabled": True}, "max_age_days", "type"),
    ({"policy_type": "size", "max_size_gb": 0, "enabled": True}, "max_size_gb", "range"),
    ({"policy_type": "size", "max_size_gb": 100.5, "enabled": True}, "max_size_gb", "range"),
    ({"policy_type": "size", "max_size_gb": "5", "enabled": True}, "max_size_gb", "type"),
    ({"policy_type": "manual", "max_size_gb": -1, "enabled": True}, "max_size_gb", "range"),
    ({"policy_type": "age", "max_age_days": 3}, "enabled", "required"),
    ({"policy_type": "age", "max_age_days": 3, "enabled": 1}, "enabled", "type"),
    ({"policy_type": "age", "max_age_days": 3, "enabled": "true"}, "enabled", "type"),
    # The first invalid parameter in table order is reported.
    ({"policy_type": "age", "enabled": "yes"}, "max_age_days", "required"),
    ({"policy_type": "size", "max_age_days": 0, "enabled": True}, "max_age_days", "range"),
])
async def test_set_retention_policy_validation(service: RunningService, params: dict[str, Any],
                                               param: str, rule: str) -> None:
    admin = await service.authed_client("admin")
    error = await admin.error("set_retention_policy", params)
    assert error["code"] == -32602 and error["data"]["reason"] == "invalid_params"
    assert (error["data"]["param"], error["data"]["rule"]) == (param, rule)


async def test_set_retention_policy_results_and_persistence(services: ServiceFactory) -> None:
    running = await started(services, **NO_FLOOR)
    operator = await running.authed_client("operator")
    assert (await operator.error("set_retention_policy",
                                 {"policy_type": "manual", "enabled": True}))["code"] == -32002
    admin = await running.authed_client("admin")
    assert await admin.call("set_retention_policy", {"policy_type": "age", "max_age_days": 30,
                                                     "enabled": True}) == {
        "policy_type": "age", "max_age_days": 30, "enabled": True,
        "message": "Retention policy configured successfully"}
    assert await admin.call("set_retention_policy", {"policy_type": "manual", "enabled": False}) == {
        "policy_type": "manual", "enabled": False, "message": "Retention policy configured successfully"}
    result = await admin.call("set_retention_policy", {"policy_type": "size", "max_size_gb": 2.5,
                                                        "enabled": True, "unknown": 1})
    assert result == {"policy_type": "size", "max_size_gb": 2.5, "enabled": True,
                      "message": "Retention policy configured successfully"}
    path = running.state_dir / POLICY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert json.loads(path.read_text())["max_size_gb"] == 2.5
    # A restart keeps the policy (it overrides the retention_policy section).
    for client in running.clients:
        client.drop()
    await running.root.stopService()
    again = await started(services, **NO_FLOOR)
    policy = again.app.storage.retention.policy
    assert (policy.policy_type, policy.max_size_gb, policy.enabled) == ("size", 2.5, True)
    admin = await again.authed_client("admin")
    # max_size_gb 2.5 GiB: nothing to delete here, but the sweep runs.
    result = await admin.call("cleanup_old_files")
    assert result == {"cleanup_executed": True, "files_deleted": 0, "space_freed": 0,
                      "message": "Cleanup completed successfully"}


async def test_cleanup_old_files_applies_the_policy(services: ServiceFactory) -> None:
    running = await started(services, **NO_FLOOR)
    rec, snap = roots(running)
    now = time.time()
    old = [put(rec / "camera0" / "camera0_old.mp4", 1000, now - 40 * DAY),
           put(snap / "camera0" / "camera0_old.jpg", 24, now - 31 * DAY)]
    keep = [put(rec / "camera0" / "camera0_new.mp4", 1000, now - 29 * DAY),
            put(snap / "camera0" / "fresh.jpg", 5, now - 10)]
    admin = await running.authed_client("admin")
    assert (await admin.call("list_recordings"))["total"] == 2
    await admin.call("set_retention_policy", {"policy_type": "age", "max_age_days": 30, "enabled": False})
    assert await admin.call("cleanup_old_files") == {
        "cleanup_executed": False, "files_deleted": 0, "space_freed": 0,
        "message": "Retention policy is disabled; no files deleted"}
    assert all(p.exists() for p in old)
    await admin.call("set_retention_policy", {"policy_type": "age", "max_age_days": 30, "enabled": True})
    assert await admin.call("cleanup_old_files") == {
        "cleanup_executed": True, "files_deleted": 2, "space_freed": 1024,
        "message": "Cleanup completed successfully"}
    assert not any(p.exists() for p in old) and all(p.exists() for p in keep)
    listing = await admin.call("list_recordings")
    assert [f["filename"] for f in listing["files"]] == ["camera0_new"]
    health = running.app.health.get("storage")
    assert health.details["retention"]["files_deleted"] == 2
    assert health.details["retention"]["bytes_freed"] == 1024
    viewer = await running.authed_client("operator")
    assert (await viewer.error("cleanup_old_files"))["code"] == -32002


async def test_every_storage_method_is_implemented(service: RunningService) -> None:
    """None of the nine answers -32030 feature_disabled any more."""
    await service.app.storage.when_started()
    admin = await service.authed_client("admin")
    calls = [("list_recordings", None), ("list_snapshots", None),
             ("get_recording_info", {"filename": "x"}), ("get_snapshot_info", {"filename": "x"}),
             ("delete_recording", {"filename": "x"}), ("delete_snapshot", {"filename": "x"}),
             ("get_storage_info", None),
             ("set_retention_policy", {"policy_type": "manual", "enabled": False}),
             ("cleanup_old_files", None)]
    for method, params in calls:
        response = await admin.request(method, params)
        assert response.get("error", {}).get("code") != -32030, (method, response)


async def test_storage_component_in_health(service: RunningService) -> None:
    await service.app.storage.when_started()
    component = service.app.health.get("storage")
    assert component is not None
    assert set(component.details) == {"usage_percentage", "free_bytes", "recordings_writable",
                                      "snapshots_writable", "retention", "problems"}
    assert component.details["recordings_writable"] is True
    rec, snap = roots(service)
    for d in (rec, snap, service.state_dir / "run"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o2775
