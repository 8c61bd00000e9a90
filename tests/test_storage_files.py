"""FileStore: the scan, name rules, resolution and the scan cache (api.md §3.5, media.md §5.2).

Scans run on real temporary directories; ``run_in_thread`` is synchronous (or gated, to hold a
scan open) and time is a ``Clock``, so cache expiry is exact.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import Clock

from camera_service.storage.files import (
    RECORDINGS,
    SNAPSHOTS,
    FileStore,
    name_time,
    newest_first,
    scan_directory_tree,
    valid_file_name,
)

HOSTILE_NAMES = [
    "../x", "..", "../../etc/passwd", "%2e%2e", "%2e%2e%2fx", "/etc/passwd", "a/b", "a\\b",
    "x\x00.mp4", "x\n", "camera0_2025-01-15_14-30-00\n", "", " ", "x" * 256, "x" * 300,
    "..mp4", "a..b.mp4", "ümlaut.mp4", "name with space.mp4",
]


class SyncThread:
    """run_in_thread that runs at once and counts calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred[Any]:
        self.calls += 1
        return maybeDeferred(f, *args, **kwargs)


class GatedThread:
    """run_in_thread whose calls wait until the test releases them, one by one."""

    def __init__(self) -> None:
        self.pending: list[tuple[Deferred[Any], Callable[[], Any]]] = []

    def __call__(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.pending.append((d, lambda: f(*args, **kwargs)))
        return d

    def release(self, index: int = 0) -> None:
        d, work = self.pending.pop(index)
        try:
            result = work()
        except Exception as error:  # noqa: BLE001
            d.errback(error)
        else:
            d.callback(result)


def touch(path: Path, size: int = 10, mtime: float | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def result_of(d: Deferred[Any]) -> Any:
    results: list[Any] = []
    d.addBoth(results.append)
    assert results, "Deferred has not fired"
    if hasattr(results[0], "raiseException"):
        results[0].raiseException()
    return results[0]


def store_for(root: Path, kind: str = RECORDINGS, thread: Any = None, clock: Clock | None = None,
              cache_seconds: float = 2.0) -> FileStore:
    return FileStore(kind, str(root), thread or SyncThread(), clock or Clock(), cache_seconds)


# -- the scan ---------------------------------------------------------------------------------

def test_scan_covers_root_and_camera_dirs_and_skips_everything_else(tmp_path: Path) -> None:
    root = tmp_path / "recordings"
    outside = touch(tmp_path / "outside.mp4")
    touch(root / "top.mp4", 5)
    touch(root / "camera0" / "camera0_2025-01-15_14-30-00.mp4", 7)
    touch(root / "camera0" / "camera0_2025-01-15_15-30-00.ts", 9)
    touch(root / "camera0" / ".camera0_2025-01-15_16-30-00.mp4")   # hidden (in progress)
    touch(root / ".hidden" / "camera9_x.mp4")                         # hidden directory
    touch(root / "camera0" / "notes.txt")                             # wrong extension
    touch(root / "camera0" / "deeper" / "too_deep.mp4")               # two levels down
    (root / "dir.mp4").mkdir()                                        # a directory, not a file
    os.mkfifo(root / "camera0" / "pipe.mp4")                          # not a regular file
    os.symlink(outside, root / "camera0" / "link.mp4")                # symlink to a file
    os.symlink(tmp_path, root / "camera7")                            # symlinked directory
    files = scan_directory_tree(str(root), (".mp4", ".ts"))
    found = sorted((f.directory, f.name, f.size) for f in files)
    assert found == [("", "top.mp4", 5),
                     ("camera0", "camera0_2025-01-15_14-30-00.mp4", 7),
                     ("camera0", "camera0_2025-01-15_15-30-00.ts", 9)]
    for f in files:
        assert f.path == os.path.join(str(root), f.directory, f.name) if f.directory else \
            f.path == os.path.join(str(root), f.name)


def test_extensions_are_per_store_and_case_insensitive(tmp_path: Path) -> None:
    root = tmp_path / "snapshots"
    for name in ("a.jpg", "b.JPEG", "c.png", "d.mp4", "e.gif"):
        touch(root / "camera0" / name)
    store = store_for(root, SNAPSHOTS)
    assert sorted(f.name for f in result_of(store.scan())) == ["a.jpg", "b.JPEG", "c.png"]


def test_missing_root_fails_the_scan(tmp_path: Path) -> None:
    store = store_for(tmp_path / "nope")
    with pytest.raises(FileNotFoundError):
        result_of(store.scan())


def test_unreadable_subdirectory_is_skipped_not_fatal(tmp_path: Path) -> None:
    root = tmp_path / "recordings"
    touch(root / "a.mp4")
    touch(root / "camera1")  # a regular file named like a camera dir: not scanned into
    files = scan_directory_tree(str(root), (".mp4",))
    assert [f.name for f in files] == ["a.mp4"]


# -- names ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_names_fail_the_rule_and_never_resolve(tmp_path: Path, name: str) -> None:
    root = tmp_path / "recordings"
    touch(root / "camera0" / "x.mp4")
    touch(tmp_path / "etc" / "passwd")
    store = store_for(root)
    files = result_of(store.scan())
    assert not valid_file_name(name)
    assert store.resolve(files, name) is None
    assert result_of(Deferred.fromCoroutine(store.lookup(name))) is None


def test_rule_accepts_plain_names() -> None:
    for name in ("camera0_2025-01-15_14-30-00", "a.mp4", "A-b_c.9.jpg", "x" * 255):
        assert valid_file_name(name)
    assert not valid_file_name(123)
    assert not valid_file_name(None)


def test_recordings_resolve_by_stem_or_full_name_and_mp4_wins(tmp_path: Path) -> None:
    root = tmp_path / "recordings"
    touch(root / "camera0" / "camera0_2025-01-15_14-30-00.mp4", 1)
    touch(root / "camera0" / "camera0_2025-01-15_14-30-00.ts", 2)
    touch(root / "camera0" / "camera0_2025-01-15_15-00-00.ts", 3)
    store = store_for(root)
    files = result_of(store.scan())
    both = store.resolve(files, "camera0_2025-01-15_14-30-00")
    assert both is not None and both.name.endswith(".mp4")
    assert store.resolve(files, "camera0_2025-01-15_14-30-00.ts").size == 2
    assert store.resolve(files, "camera0_2025-01-15_14-30-00.mp4").size == 1
    only_ts = store.resolve(files, "camera0_2025-01-15_15-00-00")
    assert only_ts is not None and only_ts.name.endswith(".ts")
    assert store.resolve(files, "camera0_2025-01-15_15-00-00.mp4") is None
    assert store.resolve(files, "camera0_2025-01-15") is None  # no prefix matching
    assert store.api_name(both) == "camera0_2025-01-15_14-30-00"
    assert store.download_url(both) == "/files/recordings/camera0_2025-01-15_14-30-00.mp4"


def test_snapshots_resolve_by_full_name_only(tmp_path: Path) -> None:
    root = tmp_path / "snapshots"
    touch(root / "camera0" / "camera0_1736951400.jpg")
    store = store_for(root, SNAPSHOTS)
    files = result_of(store.scan())
    found = store.resolve(files, "camera0_1736951400.jpg")
    assert found is not None and store.api_name(found) == "camera0_1736951400.jpg"
    assert store.resolve(files, "camera0_1736951400") is None
    assert store.download_url(found) == "/files/snapshots/camera0_1736951400.jpg"


def test_duplicate_basename_prefers_the_root_then_first_directory(tmp_path: Path) -> None:
    root = tmp_path / "recordings"
    touch(root / "camera2" / "dup.mp4", 2)
    touch(root / "camera1" / "dup.mp4", 1)
    store = store_for(root)
    assert store.resolve(result_of(store.scan()), "dup").directory == "camera1"
    touch(root / "dup.mp4", 9)
    store.invalidate()
    assert store.resolve(result_of(store.scan()), "dup").directory == ""


def test_name_time_reads_the_standard_stem_in_local_time() -> None:
    import datetime as dt

    expected = dt.datetime(2025, 1, 15, 14, 30, 0).timestamp()
    assert name_time("camera0_2025-01-15_14-30-00") == expected
    assert name_time("camera12_2025-01-15_14-30-00-250000") == pytest.approx(expected + 0.25)
    assert name_time("camera0_2025-02-30_14-30-00") is None  # impossible date
    assert name_time("camera0_2025-01-15_14-30-00\n") is None
    assert name_time("holiday") is None


# -- listing order ----------------------------------------------------------------------------

def test_newest_first_with_name_ties(tmp_path: Path) -> None:
    root = tmp_path / "recordings"
    touch(root / "camera0" / "b.mp4", mtime=2000)
    touch(root / "camera0" / "a.mp4", mtime=2000)
    touch(root / "camera1" / "c.mp4", mtime=3000)
    touch(root / "d.mp4", mtime=1000)
    store = store_for(root)
    assert [f.name for f in newest_first(result_of(store.scan()))] == ["c.mp4", "a.mp4", "b.mp4", "d.mp4"]
    page, total = result_of(Deferred.fromCoroutine(store.page(2, 1)))
    assert [f.name for f in page] == ["a.mp4", "b.mp4"] and total == 4
    page, total = result_of(Deferred.fromCoroutine(store.page(50, 10)))
    assert page == [] and total == 4


# -- the cache --------------------------------------------------------------------------------

def test_scan_is_cached_for_cache_seconds(tmp_path: Path) -> None:
    root = tmp_path / "recordings"
    touch(root / "a.mp4")
    thread, clock = SyncThread(), Clock()
    store = store_for(root, thread=thread, clock=clock, cache_seconds=2.0)
    first = result_of(store.scan())
    touch(root / "b.mp4")
    clock.advance(1.5)
    assert result_of(store.scan()) is first and thread.calls == 1
    clock.advance(1.0)
    assert sorted(f.name for f in result_of(store.scan())) == ["a.mp4", "b.mp4"]
    assert thread.calls == 2


def test_invalidate_forces_a_new_scan(tmp_path: Path) -> None:
    root = tmp_path / "recordings"
    touch(root / "a.mp4")
    thread = SyncThread()
    store = store_for(root, thread=thread)
    result_of(store.scan())
    (root / "a.mp4").unlink()
    store.invalidate()
    assert result_of(store.scan()) == [] and thread.calls == 2


def test_concurrent_callers_share_one_scan(tmp_path: Path) -> None:
    root = tmp_path / "recordings"
    touch(root / "a.mp4")
    thread = GatedThread()
    store = store_for(root, thread=thread)
    one, two = store.scan(), store.scan()
    assert len(thread.pending) == 1
    thread.release()
    assert result_of(one) is result_of(two)


def test_caller_after_invalidate_never_joins_an_older_running_scan(tmp_path: Path) -> None:
    """A delete invalidates while a scan that started before it is still running: a list
    request after the delete must not be answered from that older scan."""
    root = tmp_path / "recordings"
    touch(root / "a.mp4")
    thread = GatedThread()
    store = store_for(root, thread=thread)
    old = store.scan()
    # The old scan's work captured "a.mp4" existing: run it now, deliver later.
    old_d, old_work = thread.pending.pop(0)
    old_result = old_work()
    (root / "a.mp4").unlink()
    store.invalidate()
    new = store.scan()
    assert len(thread.pending) == 1, "a new scan must start"
    old_d.callback(old_result)
    assert [f.name for f in result_of(old)] == ["a.mp4"]
    thread.release()
    assert result_of(new) == []
    # The stale result was not cached either.
    assert result_of(store.scan()) == []


def test_failed_scan_is_not_cached(tmp_path: Path) -> None:
    root = tmp_path / "recordings"
    thread = SyncThread()
    store = store_for(root, thread=thread)
    with pytest.raises(FileNotFoundError):
        result_of(store.scan())
    touch(root / "a.mp4")
    assert [f.name for f in result_of(store.scan())] == ["a.mp4"]


def test_camera_directory_only_for_camera_ids(tmp_path: Path) -> None:
    store = store_for(tmp_path / "recordings")
    assert store.camera_directory("camera3") == str(tmp_path / "recordings" / "camera3")
    for bad in ("../camera3", "camera3/..", "camera", "camera3\n", "x"):
        with pytest.raises(ValueError):
            store.camera_directory(bad)
