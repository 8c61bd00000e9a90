"""Where the JWT secret comes from (api.md §2.2, media.md §8.2 and §8.4).

Runs once at start-up, before the reactor runs, so it does plain blocking I/O.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping

from twisted.logger import Logger

ENV_VAR = "CAMERA_SERVICE_JWT_SECRET"
STATE_FILE_NAME = "jwt_secret"

_log = Logger()


class SecretError(Exception):
    """The configured secret cannot be used. The message names the file, never a value."""


def adopt_owner(fd: int, reference: str) -> None:
    """When running as root, give the new file ``fd`` the owner of ``reference``.

    An administrator running ``camera-service-admin`` as root must not leave a 0600
    file behind that the service account cannot read. A no-op for other users.
    """
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return
    try:
        st = os.stat(reference)
        os.fchown(fd, st.st_uid, st.st_gid)
    except OSError as exc:
        _log.warn("Cannot match the owner of {reference}: {error}", reference=reference, error=exc)


def _read_secret_file(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            value = f.read().strip()
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise SecretError(f"JWT secret file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SecretError(f"JWT secret file {path} cannot be read: {exc}") from None
    if mode & 0o077:
        _log.warn(
            "JWT secret file {path} is readable by group or others (mode {mode:o});"
            " it should be 0600",
            path=path,
            mode=mode & 0o777,
        )
    return value


def _write_new(path: str, value: str, owner_reference: str) -> None:
    """Create ``path`` holding ``value``; ``FileExistsError`` if it already exists.

    O_EXCL with mode 0600 at creation, so the file is never readable by anyone else,
    not even for an instant.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        os.fchmod(fd, 0o600)  # exactly 0600 whatever the umask
        adopt_owner(fd, owner_reference)
        os.write(fd, (value + "\n").encode("ascii"))
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    os.close(fd)


def _generate(path: str, state_dir: str) -> str:
    """Write a new secret to ``path`` atomically; ``FileExistsError`` if one appeared.

    The secret is written to a private temporary file first and then hard-linked into
    place, so ``path`` never exists half-written and two processes starting at once
    cannot both win.
    """
    os.makedirs(state_dir, mode=0o750, exist_ok=True)
    value = secrets.token_urlsafe(48)
    tmp = os.path.join(state_dir, f".{STATE_FILE_NAME}.{secrets.token_hex(8)}.tmp")
    _write_new(tmp, value, state_dir)
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError:
        # A file system without hard links: fall back to creating the file directly.
        _write_new(path, value, state_dir)
    finally:
        os.unlink(tmp)
    return value


def _existing_state_secret(path: str) -> tuple[str, str]:
    value = _read_secret_file(path)
    if not value:
        # Generation never leaves an empty file (see _generate), so someone emptied it.
        # Refuse rather than silently replace a secret that tokens may depend on.
        raise SecretError(f"JWT secret file {path} is empty; delete it to generate a new one")
    return value, f"file:{path}"


def resolve_jwt_secret(
    configured_secret: str, secret_file: str, state_dir: str, environ: Mapping[str, str]
) -> tuple[str, str]:
    """Return ``(secret, source)``; ``source`` describes where it came from, never the value.

    Order: ``CAMERA_SERVICE_JWT_SECRET`` (when set and non-empty) → ``secret_file`` if
    configured (it must exist and be non-empty) → ``configured_secret`` →
    ``<state_dir>/jwt_secret`` if it exists → a new random secret written there (0600).
    """
    from_env = environ.get(ENV_VAR, "")
    if from_env:
        return from_env, f"environment {ENV_VAR}"

    if secret_file:
        value = _read_secret_file(secret_file)
        if not value:
            raise SecretError(f"JWT secret file {secret_file} is empty")
        return value, f"file:{secret_file}"

    if configured_secret:
        return configured_secret, "configuration security.jwt_secret_key"

    path = os.path.join(state_dir, STATE_FILE_NAME)
    if os.path.lexists(path):
        return _existing_state_secret(path)

    try:
        value = _generate(path, state_dir)
    except FileExistsError:
        # Another process generated it between our check and our create.
        return _existing_state_secret(path)
    except OSError as exc:
        raise SecretError(f"cannot create JWT secret file {path}: {exc}") from None
    _log.info("Generated a new JWT secret in {path}", path=path)
    return value, f"generated:{path}"
