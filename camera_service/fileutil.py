"""Crash-safe writes of the service's small state files (key store, id map, ...).

Blocking: callers on the reactor thread run these in the thread pool.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any, Callable


def write_json_atomically(path: str, document: Any, mode: int, *,
                          prepare: Callable[[int], None] | None = None) -> None:
    """Temporary file beside ``path``, fsync, ``mode``, rename, fsync the directory.

    A crash at any point leaves either the old file or the new one, never a torn one.
    ``prepare(fd)`` runs on the temporary file before it is written (e.g. to chown it).
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o750, exist_ok=True)
    data = json.dumps(document, indent=2).encode("utf-8") + b"\n"
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        # fchmod, not the umask: the file must never exist with wider permissions.
        os.fchmod(fd, mode)
        if prepare is not None:
            prepare(fd)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
