"""The psutil sampler (media.md §6.2): a Clock drives the loop, a real pool does the work."""

from __future__ import annotations

import os
from typing import Any, Callable, Iterator

import psutil
import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.threads import deferToThreadPool
from twisted.logger import globalLogPublisher
from twisted.python.threadpool import ThreadPool

from camera_service import system_metrics
from camera_service.system_metrics import EMPTY_SAMPLE, SystemMetrics, nearest_existing_path

T0 = 1736951400.0


class PoolRunner:
    """run_in_thread over a real ThreadPool that remembers each Deferred it hands out,
    so a test can wait for exactly the samples the Clock triggered."""

    def __init__(self, pool: ThreadPool) -> None:
        self._pool = pool
        self.calls: list[Deferred[Any]] = []

    def __call__(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred[Any]:
        d = deferToThreadPool(reactor, self._pool, f, *args, **kwargs)
        self.calls.append(d)
        return d

    async def settle(self) -> None:
        """Wait until every sample handed to the pool has reached the reactor."""
        for d in list(self.calls):
            await _observe(d)


def _observe(d: Deferred[Any]) -> Deferred[None]:
    # Wait for d without taking its result away from the service's own callbacks.
    waiter: Deferred[None] = Deferred()
    d.addBoth(lambda result: (waiter.callback(None), result)[1])
    return waiter


@pytest.fixture
def pool() -> Iterator[ThreadPool]:
    pool = ThreadPool(minthreads=1, maxthreads=2, name="test-media")
    pool.start()
    yield pool
    pool.stop()


@pytest.fixture
def failures() -> Iterator[list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []

    def observer(event: dict[str, Any]) -> None:
        if event.get("log_failure") is not None:
            events.append(event)

    globalLogPublisher.addObserver(observer)
    yield events
    globalLogPublisher.removeObserver(observer)


def make_service(pool: ThreadPool, disk_path: str, interval: float = 5.0) -> tuple[SystemMetrics, Clock, PoolRunner]:
    clock = Clock()
    clock.advance(T0)
    runner = PoolRunner(pool)
    return SystemMetrics(clock, runner, disk_path, interval=interval), clock, runner


@pytest_twisted.ensureDeferred
async def test_samples_arrive_with_sane_values(pool: ThreadPool, tmp_path: Any) -> None:
    service, clock, runner = make_service(pool, str(tmp_path))
    assert service.latest == EMPTY_SAMPLE  # available before the first sample
    service.startService()
    try:
        await runner.settle()  # the priming sample taken at start
        assert len(runner.calls) == 1
        first = service.latest
        assert first.sampled_at == T0
        clock.advance(4.9)
        assert len(runner.calls) == 1  # not due yet
        clock.advance(0.1)
        assert len(runner.calls) == 2
        await runner.settle()
        sample = service.latest
    finally:
        await service.stopService()
    assert sample.sampled_at == T0 + 5
    assert 0.0 <= sample.cpu_usage <= 100.0
    assert 0.0 < sample.memory_usage <= 100.0
    expected_disk = psutil.disk_usage(str(tmp_path)).percent
    assert sample.disk_usage == pytest.approx(expected_disk, abs=5.0)
    assert 0.0 < sample.disk_usage <= 100.0
    assert sample.threads >= 1
    assert sample.rss_bytes > 0
    assert sample.process_cpu_percent >= 0.0


@pytest_twisted.ensureDeferred
async def test_stop_service_stops_the_loop(pool: ThreadPool, tmp_path: Any) -> None:
    service, clock, runner = make_service(pool, str(tmp_path))
    service.startService()
    await service.stopService()  # waits for the in-flight priming sample
    assert service.latest.sampled_at == T0
    clock.advance(60)
    assert len(runner.calls) == 1
    assert not clock.getDelayedCalls()


def test_missing_disk_path_walks_up(tmp_path: Any) -> None:
    missing = tmp_path / "recordings" / "not" / "yet"
    assert nearest_existing_path(str(missing)) == str(tmp_path)
    assert nearest_existing_path(str(tmp_path)) == str(tmp_path)
    assert nearest_existing_path("/") == "/"


@pytest_twisted.ensureDeferred
async def test_missing_disk_path_is_measured_on_its_ancestor(pool: ThreadPool, tmp_path: Any) -> None:
    service, _clock, runner = make_service(pool, str(tmp_path / "recordings" / "later"))
    service.startService()
    try:
        await runner.settle()
    finally:
        await service.stopService()
    assert service.latest.disk_usage == pytest.approx(psutil.disk_usage(str(tmp_path)).percent, abs=5.0)


@pytest_twisted.ensureDeferred
async def test_failing_sampler_keeps_the_loop_alive(
    pool: ThreadPool, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, failures: list[dict[str, Any]]
) -> None:
    real_virtual_memory = psutil.virtual_memory
    broken = {"on": True}

    def virtual_memory() -> Any:
        if broken["on"]:
            raise OSError("/proc/meminfo unreadable")
        return real_virtual_memory()

    monkeypatch.setattr(system_metrics.psutil, "virtual_memory", virtual_memory)
    service, clock, runner = make_service(pool, str(tmp_path))
    service.startService()
    try:
        await runner.settle()
        clock.advance(5)
        await runner.settle()
        assert service.latest == EMPTY_SAMPLE  # both runs failed, nothing cached
        assert len(failures) == 2  # each failure logged
        broken["on"] = False
        clock.advance(5)
        assert len(runner.calls) == 3  # the loop kept running
        await runner.settle()
    finally:
        await service.stopService()
    assert service.latest.sampled_at == T0 + 10
    assert service.latest.memory_usage > 0


@pytest_twisted.ensureDeferred
async def test_failing_disk_keeps_other_figures(
    pool: ThreadPool, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, failures: list[dict[str, Any]]
) -> None:
    # A path that is a file whose disk usage cannot be read (e.g. a dead NFS mount).
    target = tmp_path / "recordings"
    target.write_text("not a directory")
    real_disk_usage = psutil.disk_usage

    def disk_usage(path: str) -> Any:
        if path == str(target):
            raise OSError(5, "Input/output error", path)
        return real_disk_usage(path)

    monkeypatch.setattr(system_metrics.psutil, "disk_usage", disk_usage)
    service, clock, runner = make_service(pool, str(target))
    service.startService()
    try:
        await runner.settle()
        first = service.latest
        clock.advance(5)
        await runner.settle()
        second = service.latest
        os.unlink(target)  # now the parent is measured and the error clears
        clock.advance(5)
        await runner.settle()
        third = service.latest
    finally:
        await service.stopService()
    assert first.sampled_at == T0 and first.memory_usage > 0 and first.threads >= 1
    assert first.disk_usage == 0.0  # nothing measured yet: the initial value stays
    assert second.sampled_at == T0 + 5
    assert len(failures) == 1  # logged once per outage, not every 5 s
    assert third.disk_usage > 0.0


@pytest_twisted.ensureDeferred
async def test_run_in_thread_raising_keeps_the_loop_alive(failures: list[dict[str, Any]]) -> None:
    clock = Clock()
    calls: list[int] = []

    def run_in_thread(f: Callable[..., Any], *args: Any) -> Deferred[Any]:
        calls.append(1)
        raise RuntimeError("pool stopped")

    service = SystemMetrics(clock, run_in_thread, "/")
    service.startService()
    clock.advance(5)
    clock.advance(5)
    await service.stopService()
    assert len(calls) == 3
    assert len(failures) == 3
    assert service.latest == EMPTY_SAMPLE
