"""StorageService (media.md §5.1, §5.3, §5.4, §6.1; api.md §3.5, §6.3): directories and their
modes, the write check, thresholds, the storage_critical error and the health component.

The service runs with a synchronous ``run_in_thread``, a ``Clock`` and an injected disk-usage
function, on real temporary directories.
"""

from __future__ import annotations

import grp
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import formatEvent, globalLogPublisher

from camera_service.health.model import DEGRADED, HEALTHY, UNHEALTHY, HealthRegistry
from camera_service.rpc.errors import RpcError
from camera_service.storage.files import RECORDINGS, SNAPSHOTS, FileStore
from camera_service.storage.service import StorageService, _DirSpec, prepare_directory
from camera_service.storage.space import DiskUsage, disk_usage
from tests.test_retention import NOW, config_for
from tests.test_storage_files import SyncThread, result_of, touch

GIB = 1 << 30
MIB = 1 << 20


class FakeDisk:
    """Injected disk_usage: a settable used percentage of a 100 GiB filesystem."""

    def __init__(self, percent: float = 40.0, total: int = 100 * GIB) -> None:
        self.total = total
        self.calls = 0
        self.set(percent)
        self.fail: Exception | None = None

    def set(self, percent: float, available: int | None = None) -> None:
        self.used = int(self.total * percent / 100)
        self.available = self.total - self.used if available is None else available

    def __call__(self, path: str) -> DiskUsage:
        self.calls += 1
        if self.fail is not None:
            raise self.fail
        return DiskUsage(self.total, self.used, self.available, self.used / self.total * 100)


class Harness:
    def __init__(self, tmp_path: Path, disk: FakeDisk | None = None, present: set[str] | None = None,
                 **overrides: str) -> None:
        self.config = config_for(tmp_path, **overrides)
        self.clock = Clock()
        self.clock.advance(NOW)
        self.thread = SyncThread()
        self.disk = disk or FakeDisk()
        self.health = HealthRegistry(self.clock)
        self.present = present if present is not None else set()
        self.stores = {
            RECORDINGS: FileStore(RECORDINGS, self.config.mediamtx.recordings_path, self.thread,
                                  self.clock, 2.0),
            SNAPSHOTS: FileStore(SNAPSHOTS, self.config.mediamtx.snapshots_path, self.thread,
                                 self.clock, 2.0)}
        self.service = StorageService(self.config, self.clock, self.stores, self.thread, self.health,
                                      None, lambda: set(self.present), disk_usage=self.disk)
        self.state = Path(self.config.server.state_dir)
        self.recordings = Path(self.config.mediamtx.recordings_path)
        self.snapshots = Path(self.config.mediamtx.snapshots_path)

    def start(self) -> StorageService:
        self.service.startService()
        return self.service

    def check(self) -> None:
        result_of(Deferred.fromCoroutine(self.service.check_now()))

    def can_write(self, kind: str) -> RpcError | None:
        d = Deferred.fromCoroutine(self.service.check_can_write(kind))
        results: list[Any] = []
        d.addBoth(results.append)
        if results[0] is None:
            return None
        return results[0].value

    def component(self) -> Any:
        return self.health.get("storage")

    def stop(self) -> None:
        result_of(self.service.stopService())


@pytest.fixture
def umask_restored() -> Iterator[None]:
    previous = os.umask(0o022)
    os.umask(previous)
    yield
    os.umask(previous)


@pytest.fixture
def logs() -> Iterator[list[str]]:
    seen: list[str] = []

    def observer(event: dict[str, Any]) -> None:
        if str(event.get("log_namespace", "")).startswith("camera_service.storage"):
            seen.append(formatEvent(event))

    globalLogPublisher.addObserver(observer)
    yield seen
    globalLogPublisher.removeObserver(observer)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- directories ------------------------------------------------------------------------------------

def test_start_creates_every_directory_with_mode_2775(tmp_path: Path, umask_restored: None) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "camera-ids.json").write_text(
        '{"version": 1, "cameras": {"usb-A": {"id": "camera3", "name": "A", "last_seen": '
        '"2025-01-01T00:00:00Z"}, "usb-B": {"id": "../evil", "name": "B", "last_seen": "x"}}}')
    h = Harness(tmp_path, present={"camera1"},
                CAMERA_SERVICE_VIRTUAL_CAMERAS="[{id: camera100, pattern: smptebars}]")
    h.start()
    assert mode(h.state) == 0o750
    for d in (h.state / "run", h.recordings, h.snapshots):
        assert mode(d) == 0o2775, d
        assert d.stat().st_gid == os.getegid()
    for camera in ("camera1", "camera3", "camera100"):
        for root in (h.recordings, h.snapshots):
            assert mode(root / camera) == 0o2775, root / camera
    assert sorted(os.listdir(h.recordings)) == ["camera1", "camera100", "camera3"]
    assert not (tmp_path / "evil").exists()
    # umask 0002: files created now are group-writable.
    assert os.umask(0o002) == 0o002
    assert h.component().status == HEALTHY
    assert h.component().details["problems"] == []
    h.stop()


def test_wrong_modes_are_repaired_when_owned(tmp_path: Path, umask_restored: None) -> None:
    h = Harness(tmp_path)
    h.recordings.mkdir(parents=True)
    os.chmod(h.recordings, 0o755)
    (h.recordings / "camera0").mkdir()
    os.chmod(h.recordings / "camera0", 0o700)
    h.present.add("camera0")
    h.start()
    assert mode(h.recordings) == 0o2775
    assert mode(h.recordings / "camera0") == 0o2775
    h.stop()


def test_a_directory_not_owned_gets_the_exact_fix(tmp_path: Path) -> None:
    d = tmp_path / "recordings"
    d.mkdir()
    os.chmod(d, 0o755)
    gid = os.getegid()
    label = grp.getgrgid(gid).gr_name
    problem = prepare_directory(_DirSpec(str(d), 0o2775, True), gid, label, euid=os.geteuid() + 4242)
    assert problem is not None
    assert problem.endswith(f"fix: chgrp -R {label} {d} && chmod 2775 {d}")
    assert mode(d) == 0o755  # not ours: left alone
    # A per-camera directory that is a symlink is refused, not followed.
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", d / "camera1")
    problem = prepare_directory(_DirSpec(str(d / "camera1"), 0o2775, False), gid, label, os.geteuid())
    assert problem is not None and "not a directory" in problem


def test_unknown_group_is_a_health_problem(tmp_path: Path, umask_restored: None) -> None:
    h = Harness(tmp_path, CAMERA_SERVICE_STORAGE_GROUP="no-such-group-xyz")
    h.start()
    component = h.component()
    assert component.status == DEGRADED
    assert any("no-such-group-xyz does not exist" in p for p in component.details["problems"])
    assert h.recordings.stat().st_gid == os.getegid()
    h.stop()


def test_ensure_camera_directories_and_the_monitor_hook(tmp_path: Path, umask_restored: None) -> None:
    h = Harness(tmp_path)
    h.start()
    result_of(Deferred.fromCoroutine(h.service.ensure_camera_directories("camera4")))
    assert mode(h.recordings / "camera4") == 0o2775 and mode(h.snapshots / "camera4") == 0o2775

    class Camera:
        id = "camera8"

    result_of(h.service.camera_connected(Camera()))
    assert (h.recordings / "camera8").is_dir() and (h.snapshots / "camera8").is_dir()
    for bad in ("../camera4", "camera4/x", "cam"):
        with pytest.raises(ValueError):
            result_of(Deferred.fromCoroutine(h.service.ensure_camera_directories(bad)))
    h.stop()


# -- the write check ----------------------------------------------------------------------------------

def test_write_check_failure_refuses_writes_with_internal_error(tmp_path: Path, umask_restored: None,
                                                                logs: list[str]) -> None:
    h = Harness(tmp_path)
    h.start()
    assert h.can_write(RECORDINGS) is None
    # The recordings root is replaced by a plain file: nothing can be created in it.
    os.rmdir(h.recordings)
    touch(h.recordings)
    h.check()
    error = h.can_write(RECORDINGS)
    assert isinstance(error, RpcError) and error.code == -32603
    assert error.data["reason"] == "internal_error"
    assert error.data["details"] == "Recordings directory is not writable"
    assert isinstance(error.data["request_id"], str) and error.data["request_id"]
    assert h.can_write(SNAPSHOTS) is None
    component = h.component()
    assert component.status == UNHEALTHY
    assert component.details["recordings_writable"] is False
    assert component.details["snapshots_writable"] is True
    h.check()
    assert sum("not writable" in line for line in logs if "request_id" not in line) == 1  # once
    os.unlink(h.recordings)
    os.mkdir(h.recordings)
    h.check()
    assert h.can_write(RECORDINGS) is None and h.component().status == HEALTHY
    # The write probe leaves nothing behind.
    assert os.listdir(h.recordings) == []
    h.stop()


def test_snapshots_not_writable_has_its_own_details(tmp_path: Path, umask_restored: None) -> None:
    h = Harness(tmp_path)
    h.start()
    os.rmdir(h.snapshots)
    touch(h.snapshots)
    h.check()
    error = h.can_write(SNAPSHOTS)
    assert isinstance(error, RpcError) and error.data["details"] == "Snapshots directory is not writable"
    h.stop()


# -- thresholds -----------------------------------------------------------------------------------------

def test_thresholds_drive_health_and_log_each_crossing_once(tmp_path: Path, umask_restored: None,
                                                            logs: list[str]) -> None:
    disk = FakeDisk(40.0)
    h = Harness(tmp_path, disk)
    h.start()
    assert h.component().status == HEALTHY
    assert h.component().details["usage_percentage"] == 40.0
    disk.set(72.0)
    h.check()
    h.check()
    assert h.component().status == DEGRADED
    disk.set(90.0)
    h.check()
    h.check()
    assert h.component().status == UNHEALTHY
    disk.set(50.0)
    h.check()
    assert h.component().status == HEALTHY
    warn = [line for line in logs if "storage.warn_percent (70%)" in line and "at or above" in line]
    block = [line for line in logs if "storage.block_percent (85%)" in line]
    back = [line for line in logs if "below storage.warn_percent again" in line]
    assert (len(warn), len(block), len(back)) == (1, 1, 1)
    details = h.component().details
    assert set(details) == {"usage_percentage", "free_bytes", "recordings_writable",
                            "snapshots_writable", "retention", "problems"}
    assert details["free_bytes"] == disk.available
    assert set(details["retention"]) == {"enabled", "type", "last_run", "files_deleted", "bytes_freed"}
    h.stop()


def test_storage_critical_error_data(tmp_path: Path, umask_restored: None) -> None:
    disk = FakeDisk(91.2)
    h = Harness(tmp_path, disk)
    h.start()
    for kind in (RECORDINGS, SNAPSHOTS):
        error = h.can_write(kind)
        assert isinstance(error, RpcError)
        assert error.to_json() == {
            "code": -32020, "message": "Invalid state",
            "data": {"reason": "storage_critical",
                     "details": "Storage usage 91.2% is at or above the block threshold of 85%",
                     "suggestion": "Free space or run cleanup_old_files",
                     "state": "STORAGE_CRITICAL", "allowed_states": [],
                     "usage_percentage": 91.2, "block_percent": 85}}
        assert isinstance(error.data["usage_percentage"], float)
    disk.set(85.0)
    h.clock.advance(10)
    assert isinstance(h.can_write(RECORDINGS), RpcError)   # at the threshold: refused
    disk.set(84.9)
    h.clock.advance(10)
    assert h.can_write(RECORDINGS) is None
    h.stop()


def test_check_can_write_reuses_a_reading_up_to_5_seconds_old(tmp_path: Path, umask_restored: None) -> None:
    disk = FakeDisk(40.0)
    h = Harness(tmp_path, disk)
    h.start()
    calls = disk.calls
    disk.set(95.0)
    h.clock.advance(5)
    assert h.can_write(RECORDINGS) is None and disk.calls == calls
    h.clock.advance(0.5)
    assert isinstance(h.can_write(RECORDINGS), RpcError) and disk.calls == calls + 1
    # The fresh reading re-evaluated health too.
    assert h.component().status == UNHEALTHY
    disk.fail = OSError(5, "Input/output error")
    h.clock.advance(6)
    error = h.can_write(SNAPSHOTS)
    assert isinstance(error, RpcError) and error.code == -32603
    h.stop()


def test_low_free_space_calls_the_hooks_and_refuses_recordings(tmp_path: Path, umask_restored: None,
                                                              logs: list[str]) -> None:
    disk = FakeDisk(50.0)
    h = Harness(tmp_path, disk)
    called: list[str] = []
    h.service.on_free_space_low.append(lambda: called.append("a"))
    h.service.on_free_space_low.append(lambda: 1 / 0)       # a broken hook is only logged
    h.service.on_free_space_low.append(lambda: called.append("b"))
    h.start()
    assert called == []
    disk.set(50.0, available=255 * MIB)
    h.check()
    assert called == ["a", "b"]
    h.check()
    assert called == ["a", "b", "a", "b"]   # every check while low: recordings started since end too
    error = h.can_write(RECORDINGS)
    assert isinstance(error, RpcError) and error.data["reason"] == "storage_critical"
    assert "below the minimum of 256 MiB" in error.data["details"]
    assert h.can_write(SNAPSHOTS) is None
    assert h.component().status == UNHEALTHY
    assert sum("below storage.min_free_mb" in line for line in logs) == 1
    disk.set(50.0, available=300 * MIB)
    h.check()
    assert called == ["a", "b", "a", "b"] and h.component().status == HEALTHY
    h.stop()


def test_the_check_runs_every_check_interval(tmp_path: Path, umask_restored: None) -> None:
    disk = FakeDisk(40.0)
    h = Harness(tmp_path, disk, CAMERA_SERVICE_STORAGE_CHECK_INTERVAL="30")
    h.start()
    calls = disk.calls
    disk.set(90.0)
    h.clock.advance(29)
    assert h.component().status == HEALTHY
    h.clock.advance(1)
    assert h.component().status == UNHEALTHY and disk.calls > calls
    disk.fail = RuntimeError("boom")
    h.clock.advance(30)      # a failing measurement keeps the loop alive
    disk.fail = None
    disk.set(10.0)
    h.clock.advance(30)
    assert h.component().status == HEALTHY
    h.stop()
    calls = disk.calls
    h.clock.advance(300)
    assert disk.calls == calls


# -- get_storage_info ------------------------------------------------------------------------------------

def test_storage_info_sums_both_stores(tmp_path: Path, umask_restored: None) -> None:
    disk = FakeDisk(72.5)
    h = Harness(tmp_path, disk)
    h.start()
    touch(h.recordings / "camera0" / "a.mp4", 1000)
    touch(h.recordings / "b.ts", 24)
    touch(h.recordings / "camera0" / ".partial.mp4", 5000)
    touch(h.snapshots / "camera0" / "s.jpg", 300)
    info = result_of(Deferred.fromCoroutine(h.service.storage_info()))
    assert info == {"total_space": disk.total, "used_space": disk.used, "available_space": disk.available,
                    "usage_percentage": 72.5, "recordings_size": 1024, "snapshots_size": 300,
                    "low_space_warning": True}
    assert isinstance(info["usage_percentage"], float)
    h.stop()


def test_real_disk_usage_follows_statvfs(tmp_path: Path) -> None:
    usage = disk_usage(str(tmp_path / "not" / "yet" / "created"))
    st = os.statvfs(tmp_path)
    assert usage.total == st.f_blocks * st.f_frsize
    assert usage.total > 0 and 0 <= usage.percent <= 100
    assert usage.used == usage.total - st.f_bfree * st.f_frsize or abs(
        usage.used - (usage.total - st.f_bfree * st.f_frsize)) < 64 * MIB
