"""Periodic psutil sampling of host and process figures (media.md §6.2).

``get_metrics``, ``get_status``, ``system.health`` and ``/metrics`` read only
:attr:`SystemMetrics.latest`, so none of them ever touches psutil or the disk on the
reactor thread. The sampling itself runs through ``run_in_thread`` (the ``media`` pool in
production) because ``/proc`` reads and ``statvfs`` are blocking system calls
(media.md §0.2).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

import psutil
from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

log = Logger()


@dataclass(frozen=True)
class SystemSample:
    cpu_usage: float  # host CPU, 0-100
    memory_usage: float  # host memory used, 0-100
    disk_usage: float  # recordings filesystem used, 0-100
    threads: int  # threads of this process
    rss_bytes: int
    process_cpu_percent: float  # of one core, so it may exceed 100 on multi-core hosts
    sampled_at: float  # clock.seconds() when the sample reached the reactor; 0 = never


EMPTY_SAMPLE = SystemSample(0.0, 0.0, 0.0, 0, 0, 0.0, 0.0)


@dataclass(frozen=True)
class _RawSample:
    """What the worker thread measured; turned into a SystemSample on the reactor thread."""

    cpu_usage: float
    memory_usage: float
    disk_usage: float | None  # None when the disk could not be measured
    disk_error: Failure | None
    threads: int
    rss_bytes: int
    process_cpu_percent: float


def nearest_existing_path(path: str) -> str:
    """``path`` or its closest existing ancestor.

    The recordings directory may not exist yet (it is created on first use), but the
    filesystem it will live on is what we want to measure.
    """
    current = os.path.abspath(path)
    while not os.path.exists(current):
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    return current


class SystemMetrics(Service):
    """Caches a :class:`SystemSample` every ``interval`` seconds."""

    def __init__(
        self,
        clock: IReactorTime,
        run_in_thread: Callable[..., Deferred[Any]],
        disk_path: str,
        interval: float = 5.0,
    ) -> None:
        self._clock = clock
        self._run_in_thread = run_in_thread
        self._disk_path = disk_path
        self._interval = interval
        # One Process object for the life of the service: cpu_percent(interval=None)
        # measures against the previous call on the same object.
        self._process = psutil.Process()
        self._loop: LoopingCall | None = None
        self._inflight: Deferred[None] | None = None
        self._disk_failing = False
        self.latest: SystemSample = EMPTY_SAMPLE

    # -- service lifecycle -------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        loop = LoopingCall(self._tick)
        loop.clock = self._clock
        self._loop = loop
        # now=True: the first run primes the psutil CPU counters straight away, so the
        # second sample (one interval later) already carries real CPU figures.
        loop.start(self._interval, now=True).addErrback(
            lambda f: log.failure("system metrics loop stopped unexpectedly", f)
        )

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        if self._inflight is None:
            return succeed(None)
        # Let a sample already running in the pool finish, so the pool is not torn down
        # under it during shutdown.
        waiter: Deferred[None] = Deferred()
        self._inflight.addBoth(lambda result: (waiter.callback(None), result)[1])
        return waiter

    # -- loop body ---------------------------------------------------------------------

    def _tick(self) -> Deferred[None] | None:
        """One loop run. Never raises and never returns a failing Deferred, because
        either would stop the LoopingCall for good (media.md §0.2)."""
        try:
            d: Deferred[None] = self._run_in_thread(self._collect)
            d.addCallback(self._store)
        except Exception:
            log.failure("system metrics sampling could not be scheduled")
            return None
        d.addErrback(lambda f: log.failure("system metrics sampling failed", f))

        def _done(result: None) -> None:
            self._inflight = None
            return result

        d.addBoth(_done)
        self._inflight = d
        # Returning the Deferred makes the LoopingCall wait for it, so a slow pool can
        # never pile up overlapping samples.
        return d

    def _collect(self) -> _RawSample:
        """Runs in a worker thread: blocking calls only, no reactor or logging calls."""
        # interval=None never sleeps; it compares with the previous call (the first call
        # returns a meaningless 0.0 and merely primes the counters).
        cpu = psutil.cpu_percent(interval=None)
        memory = psutil.virtual_memory().percent
        with self._process.oneshot():
            threads = self._process.num_threads()
            rss = self._process.memory_info().rss
            process_cpu = self._process.cpu_percent(interval=None)
        disk: float | None = None
        disk_error: Failure | None = None
        # The disk is measured separately so that a broken or unmounted recordings
        # filesystem does not also freeze the CPU and memory figures.
        try:
            disk = psutil.disk_usage(nearest_existing_path(self._disk_path)).percent
        except Exception:
            disk_error = Failure()
        return _RawSample(
            cpu_usage=float(cpu),
            memory_usage=float(memory),
            disk_usage=None if disk is None else float(disk),
            disk_error=disk_error,
            threads=int(threads),
            rss_bytes=int(rss),
            process_cpu_percent=float(process_cpu),
        )

    def _store(self, raw: _RawSample) -> None:
        if raw.disk_error is not None:
            # Log on the transition only: a missing mount would otherwise log every 5 s.
            if not self._disk_failing:
                log.failure(
                    "cannot measure disk usage of {path}; keeping the last value",
                    raw.disk_error,
                    path=self._disk_path,
                )
            self._disk_failing = True
            disk = self.latest.disk_usage
        else:
            if self._disk_failing:
                log.info("disk usage of {path} measurable again", path=self._disk_path)
            self._disk_failing = False
            disk = raw.disk_usage if raw.disk_usage is not None else self.latest.disk_usage
        self.latest = SystemSample(
            cpu_usage=raw.cpu_usage,
            memory_usage=raw.memory_usage,
            disk_usage=disk,
            threads=raw.threads,
            rss_bytes=raw.rss_bytes,
            process_cpu_percent=raw.process_cpu_percent,
            sampled_at=self._clock.seconds(),
        )
