"""API keys (api.md §2.3): the key file, verification and the management helpers.

The key file is JSON, mode 0600::

    {"version": "1.0",
     "keys": [{"key_id": "k7f3a9q2", "name": "nvr-uploader", "role": "operator",
               "key_hash": "$2b$12$…", "created_at": "2025-01-15T14:30:00Z",
               "expires_at": null, "is_active": true}]}

``ApiKeyStore`` is the service side: it keeps an in-memory copy of the file, re-reads
it when it changes, and verifies keys with exactly one ``bcrypt.checkpw`` run off the
reactor thread. ``create_key``/``list_keys``/``revoke_key``/``delete_key`` are the
blocking helpers behind ``camera-service-admin``.
"""

from __future__ import annotations

import datetime as _dt
import errno
import fcntl
import json
import os
import re
import secrets
import string
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import bcrypt
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger, LogLevel

from camera_service.roles import is_role
from camera_service.timeutil import rfc3339

from camera_service.fileutil import write_json_atomically

from .identity import API_KEY, AuthFailed, Identity
from .secret import adopt_owner

FILE_VERSION = "1.0"
DEFAULT_COST = 12
KEY_PATTERN = re.compile(r"csk_([a-z0-9]{8})_[A-Za-z0-9]{32}")
KEY_ID_PATTERN = re.compile(r"[a-z0-9]{8}")
_BCRYPT_HASH_PATTERN = re.compile(r"\$2[abxy]?\$\d\d\$[./A-Za-z0-9]{53}")
_KEY_ID_ALPHABET = string.ascii_lowercase + string.digits
_SECRET_ALPHABET = string.ascii_letters + string.digits
_MAX_FILE_BYTES = 16 * 1024 * 1024
_MAX_NAME_LENGTH = 128

_log = Logger()


class KeyFileError(Exception):
    """The key file cannot be read or is not a valid key file (management helpers)."""


@dataclass(frozen=True)
class KeyRecord:
    """One entry of the key file. Times are epoch seconds."""

    key_id: str
    name: str
    role: str
    key_hash: str = field(repr=False)
    created_at: float
    expires_at: float | None
    is_active: bool

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    def usable(self, now: float) -> bool:
        return self.is_active and not self.expired(now)

    def to_json(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "name": self.name,
            "role": self.role,
            "key_hash": self.key_hash,
            "created_at": rfc3339(self.created_at),
            "expires_at": None if self.expires_at is None else rfc3339(self.expires_at),
            "is_active": self.is_active,
        }


# --- parsing -------------------------------------------------------------------------


def parse_timestamp(value: str) -> float:
    """ISO 8601 / RFC 3339 to epoch seconds; a time without zone is taken as UTC."""
    if not isinstance(value, str):
        raise ValueError("not a string")
    moment = _dt.datetime.fromisoformat(value.strip())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_dt.timezone.utc)
    return moment.timestamp()


def _record_from_json(entry: Any) -> KeyRecord:
    """One key entry, strictly checked; ``ValueError`` names the problem (never the hash)."""
    if not isinstance(entry, dict):
        raise ValueError("entry is not an object")
    key_id = entry.get("key_id")
    if not isinstance(key_id, str) or not KEY_ID_PATTERN.fullmatch(key_id):
        raise ValueError("key_id must be 8 characters of [a-z0-9]")
    name = entry.get("name")
    if not isinstance(name, str):
        raise ValueError(f"key {key_id}: name must be a string")
    role = entry.get("role")
    if not is_role(role):
        raise ValueError(f"key {key_id}: role must be viewer, operator or admin")
    key_hash = entry.get("key_hash")
    if not isinstance(key_hash, str) or not _BCRYPT_HASH_PATTERN.fullmatch(key_hash):
        raise ValueError(f"key {key_id}: key_hash is not a bcrypt hash")
    try:
        created_at = parse_timestamp(entry.get("created_at"))  # type: ignore[arg-type]
    except (ValueError, TypeError, OverflowError):
        raise ValueError(f"key {key_id}: created_at is not an ISO timestamp") from None
    raw_expiry = entry.get("expires_at")
    if raw_expiry is None:
        expires_at = None
    else:
        try:
            expires_at = parse_timestamp(raw_expiry)
        except (ValueError, TypeError, OverflowError):
            raise ValueError(f"key {key_id}: expires_at is not an ISO timestamp or null") from None
    is_active = entry.get("is_active")
    if not isinstance(is_active, bool):
        raise ValueError(f"key {key_id}: is_active must be true or false")
    return KeyRecord(key_id, name, role, key_hash, created_at, expires_at, is_active)


def _parse_document(data: bytes) -> dict[str, Any]:
    """The top level of a key file; ``ValueError`` if it is not one."""
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ValueError(f"not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ValueError("top level is not an object")
    if document.get("version") != FILE_VERSION:
        raise ValueError(f'"version" must be "{FILE_VERSION}"')
    if not isinstance(document.get("keys"), list):
        raise ValueError('"keys" must be a list')
    return document


def parse_key_file(data: bytes) -> tuple[dict[str, KeyRecord], list[str]]:
    """Records by key id, and the problems found in individual entries.

    A malformed *file* raises ``ValueError``. A malformed *entry* is left out and
    reported, so that one bad entry disables only itself (it fails closed). A key id
    that appears more than once is ambiguous, so every entry with it is left out.
    """
    return _records_from_document(_parse_document(data))


def _records_from_document(document: dict[str, Any]) -> tuple[dict[str, KeyRecord], list[str]]:
    records: dict[str, KeyRecord] = {}
    duplicates: set[str] = set()
    problems: list[str] = []
    for index, entry in enumerate(document["keys"]):
        try:
            record = _record_from_json(entry)
        except ValueError as exc:
            problems.append(f"keys[{index}]: {exc}")
            continue
        if record.key_id in records or record.key_id in duplicates:
            duplicates.add(record.key_id)
            records.pop(record.key_id, None)
            problems.append(f"keys[{index}]: key_id {record.key_id} appears more than once")
            continue
        records[record.key_id] = record
    return records, problems


# --- the service side ----------------------------------------------------------------

# (st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns) of the file last read, "missing"
# if it did not exist, or "error" if it could not even be stat'ed. ctime is included so
# that fixing the file's permissions (chmod/chown) also triggers a new read.
_Signature = tuple[int, int, int, int, int] | str


def _signature(st: os.stat_result) -> _Signature:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _stat_signature(path: str) -> _Signature:
    try:
        return _signature(os.stat(path))
    except FileNotFoundError:
        return "missing"
    except OSError:
        return "error"


@dataclass
class _Snapshot:
    """What one read of the key file found. Built in a thread, applied on the reactor."""

    signature: _Signature
    records: dict[str, KeyRecord] | None = None  # None: keep the previous good copy
    problems: list[str] = field(default_factory=list)
    error: str | None = None
    loose_mode: int | None = None


def _read_snapshot(path: str) -> _Snapshot:
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            signature = _signature(st)
            if st.st_size > _MAX_FILE_BYTES:
                return _Snapshot(signature, error=f"file is larger than {_MAX_FILE_BYTES} bytes")
            data = f.read(_MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        return _Snapshot("missing", records={})
    except OSError as exc:
        return _Snapshot(_stat_signature(path), error=f"cannot read: {exc.strerror or exc}")
    try:
        records, problems = parse_key_file(data)
    except ValueError as exc:
        return _Snapshot(signature, error=str(exc))
    loose = st.st_mode & 0o777 if st.st_mode & 0o077 else None
    return _Snapshot(signature, records=records, problems=problems, loose_mode=loose)


def _checkpw(key: bytes, key_hash: bytes) -> bool:
    try:
        return bcrypt.checkpw(key, key_hash)
    except ValueError:  # a hash bcrypt does not accept
        return False


class ApiKeyStore:
    """The in-memory copy of the key file, kept fresh, and key verification.

    ``run_in_thread(f, *args)`` must run ``f`` off the reactor thread and return a
    Deferred of its result, e.g. ``functools.partial(deferToThreadPool, reactor, pool)``.
    All file access and every bcrypt check go through it.
    """

    def __init__(
        self,
        path: str,
        run_in_thread: Callable[..., Deferred],
        clock: IReactorTime,
        reload_interval: float = 1.0,
    ) -> None:
        self.path = path
        self._run_in_thread = run_in_thread
        self._clock = clock
        self._reload_interval = reload_interval
        self._records: dict[str, KeyRecord] = {}
        self._signature: _Signature | None = None  # None: never read
        self._loop: LoopingCall | None = None
        self._loop_done: Deferred | None = None
        self._refreshing = False
        self._refresh_waiters: list[Deferred] = []
        self._stopped = False

    # -- lifecycle --

    def start(self) -> Deferred:
        """Load the file, then watch it. The Deferred fires once the first load is done."""
        return ensureDeferred(self._start())

    async def _start(self) -> None:
        self._stopped = False
        await self.refresh()
        if self._loop is None and not self._stopped:  # stop() may run during the load
            self._loop = LoopingCall(self._tick)
            self._loop.clock = self._clock
            self._loop_done = self._loop.start(self._reload_interval, now=False)
            self._loop_done.addErrback(
                lambda f: _log.failure("API key reload loop stopped", failure=f)
            )

    def stop(self) -> None:
        self._stopped = True
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    def _tick(self) -> Deferred:
        # The loop body never fails, so the LoopingCall never stops.
        d = ensureDeferred(self.refresh())
        d.addErrback(lambda f: _log.failure("API key reload failed", failure=f))
        return d

    # -- reloading --

    async def refresh(self) -> None:
        """Re-read the key file if it changed since the last read.

        Every caller gets a check that *started after it called*, so a key written a
        moment ago is seen. Concurrent callers share one pass instead of each
        starting their own. Never raises.
        """
        waiter: Deferred = Deferred()
        self._refresh_waiters.append(waiter)
        if not self._refreshing:
            self._refreshing = True
            ensureDeferred(self._refresh_passes()).addErrback(
                lambda f: _log.failure("API key reload failed", failure=f)
            )
        await waiter

    async def _refresh_passes(self) -> None:
        try:
            while self._refresh_waiters:
                waiters, self._refresh_waiters = self._refresh_waiters, []
                try:
                    await self._refresh_once()
                except Exception:
                    _log.failure(
                        "Checking the API key file {path} failed",
                        path=self.path,
                        level=LogLevel.error,
                    )
                for waiter in waiters:
                    waiter.callback(None)
        finally:
            self._refreshing = False

    async def _refresh_once(self) -> None:
        signature = await self._run_in_thread(_stat_signature, self.path)
        if signature == self._signature:
            return
        snapshot = await self._run_in_thread(_read_snapshot, self.path)
        self._apply(snapshot)

    def _apply(self, snapshot: _Snapshot) -> None:
        self._signature = snapshot.signature
        if snapshot.records is None:
            _log.error(
                "API key file {path} is unusable ({problem}); still using the previous"
                " {count} key(s)",
                path=self.path,
                problem=snapshot.error,
                count=len(self._records),
            )
            return
        for problem in snapshot.problems:
            _log.error("API key file {path}: {problem}; entry ignored", path=self.path, problem=problem)
        if snapshot.loose_mode is not None:
            _log.warn(
                "API key file {path} has mode {mode:o}; it should be 0600",
                path=self.path,
                mode=snapshot.loose_mode,
            )
        if snapshot.signature == "missing":
            if self._records:
                _log.warn("API key file {path} was removed; no API key is valid now", path=self.path)
        else:
            _log.info("Loaded {count} API key(s) from {path}", count=len(snapshot.records), path=self.path)
        self._records = snapshot.records

    # -- queries --

    def record(self, key_id: str) -> KeyRecord | None:
        """The in-memory record for ``key_id`` (no I/O)."""
        return self._records.get(key_id)

    def __len__(self) -> int:
        return len(self._records)

    async def verify(self, key: str) -> Identity:
        """Verify a plain API key (api.md §2.3) or raise ``AuthFailed``."""
        match = KEY_PATTERN.fullmatch(key) if isinstance(key, str) else None
        if match is None:
            raise AuthFailed("api key is malformed")
        key_id = match.group(1)
        await self.refresh()
        record = self._records.get(key_id)
        if record is None:
            raise AuthFailed(f"api key {key_id} is unknown")
        if not record.is_active:
            raise AuthFailed(f"api key {key_id} is revoked")
        if record.expired(self._clock.seconds()):
            raise AuthFailed(f"api key {key_id} has expired")
        ok = await self._run_in_thread(_checkpw, key.encode("ascii"), record.key_hash.encode("ascii"))
        if not ok:
            raise AuthFailed(f"api key {key_id} does not match")
        # The file may have changed while bcrypt ran; the answer must reflect it.
        current = self._records.get(key_id)
        if current is None or current.key_hash != record.key_hash or not current.usable(
            self._clock.seconds()
        ):
            raise AuthFailed(f"api key {key_id} was revoked during verification")
        return Identity(
            user_id=f"api_key_{key_id}",
            role=current.role,
            expires_at=current.expires_at,
            kind=API_KEY,
            key_id=key_id,
        )


# --- management helpers (blocking; for the admin command line) -------------------------


def _read_document(path: str) -> dict[str, Any]:
    """The raw key file document, or an empty one when the file does not exist."""
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        return {"version": FILE_VERSION, "keys": []}
    except OSError as exc:
        raise KeyFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > _MAX_FILE_BYTES:
        raise KeyFileError(f"{path} is larger than {_MAX_FILE_BYTES} bytes")
    try:
        return _parse_document(data)
    except ValueError as exc:
        raise KeyFileError(f"{path} is not a valid key file: {exc}") from None


def _write_document(path: str, document: dict[str, Any]) -> None:
    """Replace the key file atomically, mode 0600, owned like the file it replaces."""
    parent = os.path.dirname(os.path.abspath(path))
    reference = path if os.path.exists(path) else parent
    write_json_atomically(path, document, 0o600, prepare=lambda fd: adopt_owner(fd, reference))


@contextmanager
def _locked(path: str) -> Iterator[None]:
    """Serialise read-modify-write cycles of concurrent admin commands.

    The lock is taken on the key file's directory, so no lock file is left behind.
    Where flock is not supported the update proceeds unlocked.
    """
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, mode=0o750, exist_ok=True)
    try:
        dir_fd = os.open(parent, os.O_RDONLY)
    except OSError:
        yield
        return
    try:
        try:
            fcntl.flock(dir_fd, fcntl.LOCK_EX)
        except OSError as exc:
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                raise
        yield
    finally:
        os.close(dir_fd)


def _utc_epoch(moment: _dt.datetime) -> float:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_dt.timezone.utc)
    return moment.timestamp()


def _new_key_id(taken: set[str]) -> str:
    while True:
        key_id = "".join(secrets.choice(_KEY_ID_ALPHABET) for _ in range(8))
        if key_id not in taken:
            return key_id


def validate_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValueError("name must be a non-empty string")
    if len(name) > _MAX_NAME_LENGTH:
        raise ValueError(f"name must be at most {_MAX_NAME_LENGTH} characters")
    if not name.isprintable():
        raise ValueError("name must not contain control characters")
    return name


def create_key(
    path: str,
    name: str,
    role: str,
    expires_at: _dt.datetime | None,
    cost: int = DEFAULT_COST,
) -> tuple[str, KeyRecord]:
    """Create a key and add it to the file. Returns the plain key, which is not stored.

    ``expires_at`` without a time zone is taken as UTC. ``KeyFileError`` if the
    existing file is not a valid key file (it is never overwritten then).
    """
    validate_name(name)
    if not is_role(role):
        raise ValueError(f"role must be one of viewer, operator, admin; got {role!r}")
    expiry = None if expires_at is None else _utc_epoch(expires_at)
    with _locked(path):
        document = _read_document(path)
        taken = {
            entry.get("key_id") for entry in document["keys"] if isinstance(entry, dict)
        }
        key_id = _new_key_id(taken)  # type: ignore[arg-type]
        key = f"csk_{key_id}_" + "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(32))
        key_hash = bcrypt.hashpw(key.encode("ascii"), bcrypt.gensalt(rounds=cost)).decode("ascii")
        record = KeyRecord(
            key_id=key_id,
            name=name,
            role=role,
            key_hash=key_hash,
            created_at=float(int(time.time())),
            expires_at=None if expiry is None else float(int(expiry)),
            is_active=True,
        )
        document["keys"].append(record.to_json())
        _write_document(path, document)
    return key, record


def load_keys(path: str) -> tuple[list[KeyRecord], list[str]]:
    """The valid records of the file, and the problems of the entries left out."""
    records, problems = _records_from_document(_read_document(path))
    return list(records.values()), problems


def list_keys(path: str) -> list[KeyRecord]:
    """The valid records of the key file (an empty list when it does not exist)."""
    return load_keys(path)[0]


def _update(path: str, key_id: str, change: Callable[[list[Any], int], None]) -> bool:
    if not os.path.exists(path):
        return False
    with _locked(path):
        if not os.path.exists(path):
            return False
        document = _read_document(path)
        entries = document["keys"]
        for index, entry in enumerate(entries):
            if isinstance(entry, dict) and entry.get("key_id") == key_id:
                change(entries, index)
                _write_document(path, document)
                return True
    return False


def revoke_key(path: str, key_id: str) -> bool:
    """Deactivate a key, keeping its record. False if there is no such key id."""

    def deactivate(entries: list[Any], index: int) -> None:
        entries[index]["is_active"] = False

    return _update(path, key_id, deactivate)


def delete_key(path: str, key_id: str) -> bool:
    """Remove a key's record. False if there is no such key id."""

    def remove(entries: list[Any], index: int) -> None:
        # Remove every entry with this id; duplicates are invalid anyway.
        entries[:] = [
            e for e in entries if not (isinstance(e, dict) and e.get("key_id") == key_id)
        ]

    return _update(path, key_id, remove)
