"""Per-camera device leases (media.md §3.3).

A V4L2 capture device serves one reader at a time. A direct-device snapshot holds the
camera's lease while FFmpeg has the device open; anything that makes MediaMTX's publisher
open the device (a recording's keep-alive reader, an RTSP snapshot) waits for the lease
first, for at most a bounded time.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, DeferredLock
from twisted.internet.defer import TimeoutError as DeferredTimeout


class LeaseTimeout(Exception):
    """The device stayed leased for longer than the caller was willing to wait."""


class DeviceLeases:
    def __init__(self, clock: Any) -> None:
        self._clock = clock
        self._locks: dict[str, DeferredLock] = {}

    def _lock(self, camera_id: str) -> DeferredLock:
        lock = self._locks.get(camera_id)
        if lock is None:
            lock = self._locks[camera_id] = DeferredLock()
        return lock

    def held(self, camera_id: str) -> bool:
        lock = self._locks.get(camera_id)
        return lock is not None and lock.locked

    async def acquire(self, camera_id: str, timeout: float) -> None:
        """Take the lease; raises LeaseTimeout after ``timeout`` seconds of waiting."""
        acquiring: Deferred[Any] = self._lock(camera_id).acquire()
        acquiring.addTimeout(timeout, self._clock)
        try:
            await acquiring
        except DeferredTimeout:
            raise LeaseTimeout(f"device of {camera_id} busy for more than {timeout:g} s") from None

    def release(self, camera_id: str) -> None:
        self._lock(camera_id).release()

    async def wait_free(self, camera_id: str, timeout: float) -> None:
        """Wait until nobody holds the lease (without keeping it)."""
        if not self.held(camera_id):
            return
        await self.acquire(camera_id, timeout)
        self.release(camera_id)
