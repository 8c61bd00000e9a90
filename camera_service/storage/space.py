"""Filesystem space figures from ``statvfs`` (media.md §5.3).

:func:`disk_usage` is blocking (a ``statvfs`` system call, which can hang on a dead network
mount), so callers on the reactor thread run it through the media thread pool.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from camera_service.system_metrics import nearest_existing_path


@dataclass(frozen=True)
class DiskUsage:
    """Space of one filesystem, in bytes; ``percent`` is used / total × 100."""

    total: int
    used: int
    available: int
    percent: float

    @property
    def free_percent(self) -> float:
        """The share not used (the retention floor's measure, media.md §5.5)."""
        return 100.0 - self.percent


def usage_from_statvfs(st: os.statvfs_result) -> DiskUsage:
    """media.md §5.3 exactly: f_frsize units; ``available`` is what non-root may use."""
    total = st.f_blocks * st.f_frsize
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    available = st.f_bavail * st.f_frsize
    percent = used / total * 100.0 if total > 0 else 0.0
    return DiskUsage(total=int(total), used=int(used), available=int(available), percent=percent)


def disk_usage(path: str) -> DiskUsage:
    """Blocking: the usage of the filesystem holding ``path``.

    A media root may not exist yet (it is created at start-up, and may be removed under
    us); the filesystem it will live on is what matters, so the nearest existing ancestor
    is measured instead.
    """
    return usage_from_statvfs(os.statvfs(nearest_existing_path(path)))


def filesystem_id(path: str) -> int:
    """Blocking: the device id of the filesystem holding ``path`` (or its nearest ancestor)."""
    return os.stat(nearest_existing_path(path)).st_dev
