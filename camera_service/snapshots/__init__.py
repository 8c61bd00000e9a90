"""Snapshots (media.md §4): tier selection, FFmpeg commands, names and temporary files."""

from camera_service.snapshots.service import SnapshotService, snapshot_file_name

__all__ = ["SnapshotService", "snapshot_file_name"]
