"""Retention (media.md §5.5, api.md §4.25-4.26): the planner, the sweep on real directories,
its schedule, single flight and the persisted policy.

Time is a ``Clock`` set to a fixed epoch and file mtimes are set relative to it; free space
comes from an injected measurement, so every limit (age, size, floor) is hit exactly.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock

from camera_service.config import load_config
from camera_service.health.model import HealthRegistry
from camera_service.storage.files import RECORDINGS, SNAPSHOTS, FileStore, StoredFile
from camera_service.storage.retention import (
    AGE,
    DAY,
    GIB,
    MANUAL,
    POLICY_FILE,
    SIZE,
    Retention,
    RetentionPolicy,
    delete_files,
    plan_deletions,
    remove_empty_camera_dirs,
)
from camera_service.storage.service import StorageService
from camera_service.storage.space import DiskUsage
from tests.test_storage_files import GatedThread, SyncThread, result_of, touch

NOW = 1_750_000_000.0


def policy(policy_type: str = AGE, *, enabled: bool = True, max_age_days: int | None = None,
           max_size_gb: float | None = None, min_free_percent: float = 0,
           min_file_age: float = 60, cleanup_interval: float = 300) -> RetentionPolicy:
    return RetentionPolicy(policy_type, enabled, max_age_days, max_size_gb, min_free_percent,
                           cleanup_interval, min_file_age)


def sf(name: str, mtime: float, size: int = 100, directory: str = "camera0",
       root: str = "/media/recordings") -> StoredFile:
    return StoredFile(name, os.path.join(root, directory, name), size, mtime, directory)


# -- the planner (pure) -------------------------------------------------------------------------

def test_plan_age_takes_every_file_older_than_max_age() -> None:
    files = [sf("a", NOW - 40 * DAY), sf("b", NOW - 30 * DAY - 1), sf("c", NOW - 30 * DAY + 1),
             sf("d", NOW - 1 * DAY)]
    plan = plan_deletions(files, policy(AGE, max_age_days=30), None, NOW)
    assert [f.name for f in plan] == ["a", "b"]


def test_plan_size_takes_oldest_until_total_fits_counting_files_that_cannot_go() -> None:
    files = [sf(f"f{i}", NOW - 1000 + i, size=1000) for i in range(10)]
    limit_gb = 5000 / GIB
    plan = plan_deletions(files, policy(SIZE, max_size_gb=limit_gb), None, NOW)
    assert [f.name for f in plan] == ["f0", "f1", "f2", "f3", "f4"]
    # The oldest is busy: it stays, still counts, and one more newer file goes instead.
    plan = plan_deletions(files, policy(SIZE, max_size_gb=limit_gb), None, NOW,
                          busy=frozenset({files[0].path}))
    assert [f.name for f in plan] == ["f1", "f2", "f3", "f4", "f5"]


def test_plan_floor_deletes_oldest_until_min_free_percent() -> None:
    files = [sf(f"f{i}", NOW - 10_000 + i, size=30_000) for i in range(10)]
    usage = DiskUsage(total=1_000_000, used=900_000, available=100_000, percent=90.0)
    plan = plan_deletions(files, policy(AGE, max_age_days=365, min_free_percent=20), usage, NOW)
    # 100,000 bytes must go: four files of 30,000.
    assert [f.name for f in plan] == ["f0", "f1", "f2", "f3"]
    # Floor off: nothing.
    assert plan_deletions(files, policy(AGE, max_age_days=365, min_free_percent=0), usage, NOW) == []
    # Already enough free: nothing.
    roomy = DiskUsage(1_000_000, 800_000, 200_000, 80.0)
    assert plan_deletions(files, policy(AGE, max_age_days=365, min_free_percent=20), roomy, NOW) == []


def test_plan_floor_only_counts_files_on_the_floor_filesystem() -> None:
    other = [sf(f"s{i}", NOW - 20_000 + i, size=50_000, root="/other/snapshots") for i in range(3)]
    mine = [sf(f"r{i}", NOW - 10_000 + i, size=50_000) for i in range(3)]
    usage = DiskUsage(1_000_000, 900_000, 100_000, 90.0)
    plan = plan_deletions(other + mine, policy(AGE, max_age_days=365, min_free_percent=20), usage,
                          NOW, on_floor_filesystem=lambda f: f.path.startswith("/media/"))
    assert [f.name for f in plan] == ["r0", "r1"]


def test_plan_orders_oldest_first_ties_by_name_and_combines_rules() -> None:
    files = [sf("b", NOW - 50 * DAY), sf("a", NOW - 50 * DAY), sf("c", NOW - 2 * DAY, size=10_000),
             sf("d", NOW - 1 * DAY, size=10_000)]
    usage = DiskUsage(100_000, 85_000, 15_000, 85.0)
    plan = plan_deletions(files, policy(AGE, max_age_days=30, min_free_percent=20), usage, NOW)
    # Age takes a and b (tie: by name); the floor then needs 5,000 - 200 more bytes: c.
    assert [f.name for f in plan] == ["a", "b", "c"]


def test_plan_never_takes_young_or_busy_files() -> None:
    files = [sf("busy", NOW - 400 * DAY), sf("young", NOW - 59), sf("future", NOW + 3600),
             sf("old", NOW - 400 * DAY + 1)]
    usage = DiskUsage(1000, 999, 1, 99.9)
    plan = plan_deletions(files, policy(AGE, max_age_days=1, min_free_percent=50), usage, NOW,
                          busy=frozenset({files[0].path}))
    assert [f.name for f in plan] == ["old"]


def test_plan_manual_applies_only_on_request_and_only_limits_that_are_set() -> None:
    files = [sf("old", NOW - 100 * DAY, size=1000), sf("new", NOW - 2 * DAY, size=1000)]
    manual_age = policy(MANUAL, max_age_days=30)
    assert plan_deletions(files, manual_age, None, NOW) == []           # automatic: nothing
    assert [f.name for f in plan_deletions(files, manual_age, None, NOW, manual=True)] == ["old"]
    manual_size = policy(MANUAL, max_size_gb=1000 / GIB)
    assert [f.name for f in plan_deletions(files, manual_size, None, NOW, manual=True)] == ["old"]
    neither = policy(MANUAL)
    assert plan_deletions(files, neither, None, NOW, manual=True) == []
    # ... but the floor still applies to a manual run.
    usage = DiskUsage(10_000, 9_500, 500, 95.0)
    floor = policy(MANUAL, min_free_percent=10)
    assert [f.name for f in plan_deletions(files, floor, usage, NOW, manual=True)] == ["old"]
    # An age policy ignores a max_size_gb that happens to be set, and vice versa.
    both_age = policy(AGE, max_age_days=365, max_size_gb=1 / GIB)
    assert plan_deletions(files, both_age, None, NOW, manual=True) == []


def test_plan_disabled_policy_deletes_nothing() -> None:
    files = [sf("old", NOW - 100 * DAY)]
    usage = DiskUsage(1000, 999, 1, 99.9)
    assert plan_deletions(files, policy(AGE, enabled=False, max_age_days=1, min_free_percent=50),
                          usage, NOW, manual=True) == []


# -- the sweep on real directories --------------------------------------------------------------

class Tree:
    """state/ with recordings/ and snapshots/ inside (the default layout), plus decoys."""

    def __init__(self, tmp_path: Path) -> None:
        self.state = tmp_path / "state"
        self.recordings = self.state / "recordings"
        self.snapshots = self.state / "snapshots"
        self.outside = tmp_path / "outside"
        for d in (self.recordings, self.snapshots, self.outside):
            d.mkdir(parents=True)

    def file(self, relative: str, age: float, size: int = 100) -> Path:
        base = self.recordings if relative.endswith((".mp4", ".ts")) else self.snapshots
        return touch(base / relative, size, NOW - age)


def make_retention(tree: Tree, rule: RetentionPolicy, *, usage: DiskUsage | None = None,
                   busy: set[str] | None = None, present: set[str] | None = None,
                   thread: Any = None, clock: Clock | None = None) -> tuple[Retention, Clock]:
    clock = clock or Clock()
    if clock.seconds() == 0:
        clock.advance(NOW)
    thread = thread or SyncThread()
    stores = {RECORDINGS: FileStore(RECORDINGS, str(tree.recordings), thread, clock, 2.0),
              SNAPSHOTS: FileStore(SNAPSHOTS, str(tree.snapshots), thread, clock, 2.0)}
    roots = (str(tree.recordings), str(tree.snapshots))
    retention = Retention(rule, str(tree.state), stores, thread, clock,
                          measure=lambda: succeed((usage, roots)),
                          busy_paths=lambda: set(busy or ()),
                          present_cameras=lambda: set(present or ()))
    return retention, clock


def sweep(retention: Retention, manual: bool = False) -> Any:
    return result_of(Deferred.fromCoroutine(retention.sweep(manual)))


def remaining(tree: Tree) -> list[str]:
    found = []
    for base in (tree.recordings, tree.snapshots):
        for dirpath, _dirs, names in os.walk(base):
            found.extend(os.path.relpath(os.path.join(dirpath, n), tree.state) for n in names)
    return sorted(found)


def test_sweep_age_deletes_old_recordings_and_snapshots_only(tmp_path: Path) -> None:
    tree = Tree(tmp_path)
    tree.file("camera0/camera0_old.mp4", 40 * DAY, 1000)
    tree.file("camera0/camera0_new.mp4", 1 * DAY, 1000)
    tree.file("camera1/camera1_old.jpg", 35 * DAY, 500)
    tree.file("camera1/camera1_new.jpg", 2 * DAY, 500)
    retention, _ = make_retention(tree, policy(AGE, max_age_days=30))
    result = sweep(retention)
    assert (result.executed, result.files_deleted, result.space_freed) == (True, 2, 1500)
    assert remaining(tree) == ["recordings/camera0/camera0_new.mp4", "snapshots/camera1/camera1_new.jpg"]
    assert retention.last_run == NOW and retention.last_files_deleted == 2
    assert retention.health_details() == {"enabled": True, "type": "age", "last_run": "2025-06-15T15:06:40Z",
                                          "files_deleted": 2, "bytes_freed": 1500}


def test_sweep_size_deletes_oldest_first_and_keeps_busy_and_young(tmp_path: Path) -> None:
    tree = Tree(tmp_path)
    paths = [tree.file(f"camera0/r{i}.mp4", 10_000 - i * 100, 1000) for i in range(8)]
    busy = tree.file("camera0/busy.mp4", 20_000, 1000)      # oldest of all, in use
    young = tree.file("camera0/young.mp4", 30, 1000)        # newer than min_file_age
    # 10 files x 1000 bytes; keep at most 4000 bytes.
    retention, _ = make_retention(tree, policy(SIZE, max_size_gb=4000 / GIB), busy={str(busy)})
    result = sweep(retention)
    assert result.files_deleted == 6
    assert remaining(tree) == sorted(["recordings/camera0/busy.mp4", "recordings/camera0/young.mp4",
                                      "recordings/camera0/r6.mp4", "recordings/camera0/r7.mp4"])
    assert busy.exists() and young.exists() and not paths[0].exists()


def test_sweep_floor_uses_the_injected_disk_usage(tmp_path: Path) -> None:
    tree = Tree(tmp_path)
    for i in range(6):
        tree.file(f"camera0/r{i}.mp4", 5000 - i, 10_000)
    tree.file("s.jpg", 4000, 10_000)  # a snapshot in the root, newer than r0-r5? no: age 4000 < 4995
    usage = DiskUsage(total=200_000, used=185_000, available=15_000, percent=92.5)
    # Need used <= 160,000: 25,000 bytes, three files of 10,000, oldest first.
    retention, _ = make_retention(tree, policy(AGE, max_age_days=365, min_free_percent=20), usage=usage)
    result = sweep(retention)
    assert (result.files_deleted, result.space_freed) == (3, 30_000)
    assert remaining(tree) == ["recordings/camera0/r3.mp4", "recordings/camera0/r4.mp4",
                               "recordings/camera0/r5.mp4", "snapshots/s.jpg"]


def test_sweep_never_touches_anything_outside_the_media_roots(tmp_path: Path) -> None:
    tree = Tree(tmp_path)
    decoy_state = touch(tree.state / "old.mp4", 100, NOW - 900 * DAY)
    decoy_policy = touch(tree.state / POLICY_FILE, 10, NOW - 900 * DAY)
    decoy_run = touch(tree.state / "run" / "camera0.jpg", 10, NOW - 900 * DAY)
    target = touch(tree.outside / "victim.mp4", 100, NOW - 900 * DAY)
    target_dir = tree.outside / "dir"
    touch(target_dir / "victim2.mp4", 100, NOW - 900 * DAY)
    os.symlink(target, tree.recordings / "camera0_link.mp4")
    (tree.recordings / "camera0").mkdir()
    os.symlink(target, tree.recordings / "camera0" / "link.mp4")
    os.symlink(target_dir, tree.recordings / "camera9")          # symlinked "camera dir"
    tree.file("camera0/real.mp4", 900 * DAY)
    usage = DiskUsage(1000, 999, 1, 99.9)
    retention, _ = make_retention(tree, policy(AGE, max_age_days=1, min_free_percent=99), usage=usage)
    result = sweep(retention)
    assert result.files_deleted == 1
    for kept in (decoy_state, decoy_policy, decoy_run, target, target_dir / "victim2.mp4"):
        assert kept.exists()
    assert os.path.islink(tree.recordings / "camera0_link.mp4")
    assert os.path.islink(tree.recordings / "camera0" / "link.mp4")
    assert os.path.islink(tree.recordings / "camera9")


def test_executor_rechecks_each_path_before_unlinking(tmp_path: Path) -> None:
    """Even a plan that names something outside a root, a symlinked camera directory, a
    non-regular file or a file that changed since the scan unlinks nothing of it."""
    tree = Tree(tmp_path)
    roots = (str(tree.recordings), str(tree.snapshots))
    victim = touch(tree.outside / "victim.mp4", 100, NOW)
    os.symlink(tree.outside, tree.recordings / "camera5")
    link = tree.recordings / "camera0" / "link.mp4"
    link.parent.mkdir()
    os.symlink(victim, link)
    changed = tree.file("camera0/growing.mp4", 1000, 100)
    ok = tree.file("camera0/ok.mp4", 1000, 100)
    plan = [
        StoredFile("victim.mp4", str(victim), 100, NOW, ""),                       # outside
        StoredFile("victim.mp4", str(tree.recordings / "camera5" / "victim.mp4"), 100, NOW, "camera5"),
        StoredFile("x.mp4", str(tree.recordings / "camera0" / ".." / ".." / "x.mp4"), 1, NOW, "camera0"),
        StoredFile("link.mp4", str(link), 100, NOW, "camera0"),                    # symlink
        StoredFile("growing.mp4", str(changed), 50, NOW - 1000, "camera0"),         # size moved
        StoredFile("ok.mp4", str(ok), 100, NOW - 1000, "camera0"),
        StoredFile("gone.mp4", str(tree.recordings / "gone.mp4"), 1, NOW, ""),
    ]
    outcome = delete_files(plan, roots)
    assert [f.name for f in outcome.deleted] == ["ok.mp4"] and outcome.space_freed == 100
    assert victim.exists() and link.is_symlink() and changed.exists() and not ok.exists()
    assert len(outcome.skipped) == 5 and outcome.failed == []


def test_sweep_removes_empty_directories_of_absent_cameras_only(tmp_path: Path) -> None:
    tree = Tree(tmp_path)
    for d in ("camera0", "camera5", "camera6", "other"):
        (tree.recordings / d).mkdir()
    (tree.snapshots / "camera5").mkdir()
    (tree.snapshots / "camera7").mkdir()
    touch(tree.recordings / "camera6" / ".in-progress.mp4")       # hidden content still counts
    retention, _ = make_retention(tree, policy(AGE, max_age_days=30), present={"camera0", "camera7"})
    sweep(retention)
    assert sorted(os.listdir(tree.recordings)) == ["camera0", "camera6", "other"]
    assert sorted(os.listdir(tree.snapshots)) == ["camera7"]
    assert tree.recordings.is_dir() and tree.snapshots.is_dir()
    assert remove_empty_camera_dirs([str(tree.outside / "missing")], set()) == []


def test_disabled_policy_sweeps_nothing(tmp_path: Path) -> None:
    tree = Tree(tmp_path)
    old = tree.file("camera0/old.mp4", 400 * DAY)
    retention, _ = make_retention(tree, policy(AGE, enabled=False, max_age_days=1))
    result = sweep(retention, manual=True)
    assert result.executed is False and old.exists()


def test_a_request_during_a_sweep_waits_for_it_and_gets_its_result(tmp_path: Path) -> None:
    tree = Tree(tmp_path)
    tree.file("camera0/old.mp4", 400 * DAY, 777)
    thread = GatedThread()
    retention, _ = make_retention(tree, policy(AGE, max_age_days=1), thread=thread)
    first = Deferred.fromCoroutine(retention.sweep(manual=False))
    second = Deferred.fromCoroutine(retention.sweep(manual=True))
    runs = 0
    while thread.pending:
        thread.release()
        runs += 1
    a, b = result_of(first), result_of(second)
    assert a is b and a.files_deleted == 1 and a.space_freed == 777
    assert retention.sweeps == 1
    # 2 scans, 1 plan, 1 delete, 1 directory cleanup: one sweep's worth of pool work.
    assert runs == 5


def test_loop_runs_while_enabled_and_not_manual(tmp_path: Path) -> None:
    tree = Tree(tmp_path)
    retention, clock = make_retention(tree, policy(AGE, max_age_days=1, cleanup_interval=300))
    retention.start()
    old = tree.file("camera0/old.mp4", 400 * DAY)
    clock.advance(299)
    assert old.exists() and retention.sweeps == 0  # the first sweep is one interval after start
    clock.advance(1)
    assert not old.exists() and retention.sweeps == 1
    result_of(Deferred.fromCoroutine(retention.set_policy(MANUAL, True, 1, None)))
    old2 = tree.file("camera0/old2.mp4", 400 * DAY)
    clock.advance(3000)
    assert old2.exists() and retention.sweeps == 1
    result_of(Deferred.fromCoroutine(retention.set_policy(AGE, False, 1, None)))
    clock.advance(3000)
    assert old2.exists() and retention.sweeps == 1
    result_of(Deferred.fromCoroutine(retention.set_policy(AGE, True, 1, None)))
    clock.advance(300)
    assert not old2.exists() and retention.sweeps == 2
    retention.stop()
    clock.advance(3000)
    assert retention.sweeps == 2


def test_a_failing_sweep_does_not_stop_the_loop(tmp_path: Path) -> None:
    tree = Tree(tmp_path)
    retention, clock = make_retention(tree, policy(AGE, max_age_days=1, cleanup_interval=10))
    retention.start()
    tree.recordings.rename(tmp_path / "moved")
    clock.advance(10)  # the scan fails: logged
    (tmp_path / "moved").rename(tree.recordings)
    old = tree.file("camera0/old.mp4", 400 * DAY)
    clock.advance(10)
    assert not old.exists()


# -- persistence through the storage service ----------------------------------------------------

def config_for(tmp_path: Path, **overrides: str) -> Any:
    state = tmp_path / "state"
    env = {
        "CAMERA_SERVICE_SERVER_STATE_DIR": str(state),
        "CAMERA_SERVICE_MEDIAMTX_RECORDINGS_PATH": str(state / "recordings"),
        "CAMERA_SERVICE_MEDIAMTX_SNAPSHOTS_PATH": str(state / "snapshots"),
        "CAMERA_SERVICE_SECURITY_API_KEYS_FILE": str(state / "api-keys.json"),
        "CAMERA_SERVICE_VIRTUAL_CAMERAS": "[]",
    }
    env.update(overrides)
    return load_config(None, env)


def start_storage(config: Any, clock: Clock | None = None, usage: DiskUsage | None = None,
                  present: set[str] | None = None) -> StorageService:
    clock = clock or Clock()
    if clock.seconds() == 0:
        clock.advance(NOW)
    thread = SyncThread()
    stores = {RECORDINGS: FileStore(RECORDINGS, config.mediamtx.recordings_path, thread, clock, 2.0),
              SNAPSHOTS: FileStore(SNAPSHOTS, config.mediamtx.snapshots_path, thread, clock, 2.0)}
    fixed = usage or DiskUsage(1000, 100, 900, 10.0)
    service = StorageService(config, clock, stores, thread, HealthRegistry(clock), None,
                             lambda: set(present or ()), disk_usage=lambda path: fixed)
    service.startService()
    return service


def test_policy_persists_across_a_restart(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    first = start_storage(config)
    assert first.retention.policy.policy_type == AGE and first.retention.policy.max_age_days == 30
    result_of(Deferred.fromCoroutine(first.retention.set_policy(SIZE, True, None, 12.5)))
    result_of(first.stopService())
    path = tmp_path / "state" / POLICY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert json.loads(path.read_text()) == {"version": 1, "policy_type": "size", "enabled": True,
                                            "max_age_days": None, "max_size_gb": 12.5}
    second = start_storage(config)
    p = second.retention.policy
    assert (p.policy_type, p.enabled, p.max_age_days, p.max_size_gb) == (SIZE, True, None, 12.5)
    # The configuration-only settings still come from the configuration.
    assert (p.min_free_percent, p.cleanup_interval, p.min_file_age) == (20, 300, 60)
    result_of(second.stopService())


@pytest.mark.parametrize("content", [
    "{not json", "[]", '{"version": 1, "policy_type": "age", "enabled": true, "max_age_days": null}',
    '{"version": 1, "policy_type": "size", "enabled": true, "max_size_gb": 101}',
    '{"version": 1, "policy_type": "age", "enabled": "yes", "max_age_days": 3}',
    '{"version": 2, "policy_type": "age", "enabled": true, "max_age_days": 3}',
])
def test_a_corrupt_policy_file_is_ignored(tmp_path: Path, content: str) -> None:
    config = config_for(tmp_path, CAMERA_SERVICE_RETENTION_POLICY_MAX_AGE_DAYS="7")
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / POLICY_FILE).write_text(content)
    service = start_storage(config)
    p = service.retention.policy
    assert (p.policy_type, p.enabled, p.max_age_days) == (AGE, True, 7)
    assert service.retention.persisted is False
    result_of(service.stopService())
