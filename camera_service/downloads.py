"""File downloads on the API listener: ``/files/recordings/{name}``, ``/files/snapshots/{name}``
(api.md §7.2).

One leaf resource mounted at ``/files``. Per request, in this order:

1. CORS headers when the ``Origin`` is allowed. A path that is not under
   ``/files/recordings/`` or ``/files/snapshots/`` is "any other path" of api.md §1.1: 404,
   before anything else. ``OPTIONS`` answers the preflight (204) without authentication;
   any method other than GET/HEAD/OPTIONS gets 405.
2. Credentials, the first one present of ``Authorization: Bearer``, ``X-API-Key`` (only
   when API keys are enabled) and ``?token=``, verified by the shared
   :class:`~camera_service.auth.Authenticator` on every request (401 otherwise).
3. The name: exactly one raw path segment after the store kind, percent-decoded, must
   pass :func:`~camera_service.storage.files.valid_file_name` (400 otherwise). It is only
   ever compared with names found by the store's scan (:meth:`FileStore.lookup`); the file
   is opened from the scan's result with ``openat`` and ``O_NOFOLLOW``, so no client text
   reaches a path and a symlink swapped in after the scan is not followed.
4. The body is streamed from the open descriptor by :class:`_FileSender`, a push producer
   that reads 64 KiB at a time in the ``media`` thread pool (media.md §0.2) and stops
   while the transport's buffer is full, so a file is never held in memory. The size is
   taken from ``fstat`` when the file is opened: a recording still being written is served
   as it was at that moment, with a fixed ``Content-Length``.

Query-string tokens must never reach the logs (§7.2): :func:`redacting_log_formatter` is
the API Site's access-log formatter, and this module logs request paths only, never URIs.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from typing import Any, Callable, Mapping
from urllib.parse import unquote_to_bytes

from twisted.internet.defer import Deferred, ensureDeferred, maybeDeferred
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import datetimeToString, stringToDatetime
from twisted.web.iweb import IAccessLogFormatter
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer, provider

from camera_service.auth import AuthFailed, Authenticator, Identity
from camera_service.roles import VIEWER, role_allows
from camera_service.storage.files import FileStore, StoredFile, content_type, valid_file_name

log = Logger(namespace="camera_service.downloads")

CHUNK_SIZE = 64 * 1024

_ALLOWED_METHODS = b"GET, HEAD, OPTIONS"
_ALLOW_HEADERS = b"Authorization, X-API-Key, Range"
_EXPOSE_HEADERS = b"Content-Length, Content-Range, Content-Disposition, Accept-Ranges"
_WWW_AUTHENTICATE = b'Bearer realm="camera-service"'

AUTH_REQUIRED = "Authentication required"
AUTH_FAILED = "Authentication failed or token expired"
INVALID_NAME = "Invalid filename"
NOT_FOUND = "File not found"
FORBIDDEN = "Permission denied"
NOT_ALLOWED = "Method not allowed"
INTERNAL = "Internal server error"

REDACTED = b"REDACTED"


# --- the query string ----------------------------------------------------------------


def _query_items(query: bytes) -> list[tuple[bytes, bytes]]:
    """(raw name, raw value) pairs, split exactly as twisted.web's ``parse_qs`` does
    (on ``&`` and ``;``), so the token we read and the token we redact are the same."""
    items = []
    for piece in re.split(rb"[&;]", query):
        name, eq, value = piece.partition(b"=")
        if eq:
            items.append((name, value))
    return items


def _form_unquote(raw: bytes) -> bytes:
    return unquote_to_bytes(raw.replace(b"+", b" "))


def query_token(uri: bytes) -> bytes | None:
    """The decoded value of the first ``token`` parameter in ``uri``, or None."""
    _, sep, query = uri.partition(b"?")
    if not sep:
        return None
    for name, value in _query_items(query.partition(b"#")[0]):
        if _form_unquote(name) == b"token":
            return _form_unquote(value)
    return None


def redact_uri(uri: bytes) -> bytes:
    """``uri`` with the value of every ``token`` parameter replaced by ``REDACTED``.

    Names are compared after percent-decoding and case-insensitively, so ``%74oken=`` or
    ``TOKEN=`` are redacted too: redacting too much is harmless, too little is not.
    """
    path, sep, query = uri.partition(b"?")
    if not sep:
        return uri
    out = []
    for piece in re.split(rb"([&;])", query):
        name, eq, _ = piece.partition(b"=")
        if eq and _form_unquote(name).strip().lower() == b"token":
            piece = name + b"=" + REDACTED
        out.append(piece)
    return path + b"?" + b"".join(out)


def _log_escape(value: Any) -> str:
    """Printable ASCII as is, everything else (and ``"``, ``\\``) as ``\\xNN``: a log
    line can neither be split nor forged by what a client sends."""
    if value is None:
        return "-"
    if isinstance(value, str):
        value = value.encode("utf-8", "backslashreplace")
    return "".join(chr(b) if 0x20 <= b < 0x7F and b not in (0x22, 0x5C) else f"\\x{b:02x}"
                   for b in value)


@provider(IAccessLogFormatter)
def redacting_log_formatter(timestamp: str, request: Any) -> str:
    """twisted.web's combined access-log format, with query-string tokens redacted in the
    request URI and in the Referer (api.md §7.2: tokens are never logged)."""
    address = request.getClientAddress()
    ip = getattr(address, "host", None) or "-"
    referrer = request.getHeader(b"referer")
    return '"%s" - - %s "%s %s %s" %d %s "%s" "%s"' % (
        _log_escape(ip),
        timestamp,
        _log_escape(request.method),
        _log_escape(redact_uri(request.uri)),
        _log_escape(request.clientproto),
        request.code,
        request.sentLength or "-",
        _log_escape(redact_uri(referrer) if referrer is not None else None),
        _log_escape(request.getHeader(b"user-agent")),
    )


# --- ranges --------------------------------------------------------------------------


class Unsatisfiable(Exception):
    """The Range header asks for nothing that exists (416)."""


_INT_RANGE = re.compile(rb"([0-9]+)-([0-9]*)")
_SUFFIX_RANGE = re.compile(rb"-([0-9]+)")


def parse_range(value: bytes | None, size: int) -> tuple[int, int] | None:
    """The inclusive byte range a ``Range`` header selects, per RFC 9110 §14.

    ``None`` means "send the whole file": no header, a unit other than ``bytes``, a
    malformed or invalid header (which RFC 9110 says to ignore), or several ranges (which
    §7.2 lets us answer with the whole file). Raises :class:`Unsatisfiable` for 416.
    """
    if value is None:
        return None
    unit, eq, ranges = value.partition(b"=")
    if not eq or unit.strip(b" \t").lower() != b"bytes":
        return None
    specs = [spec.strip(b" \t") for spec in ranges.split(b",")]
    specs = [spec for spec in specs if spec]
    if len(specs) != 1:
        return None
    spec = specs[0]
    try:
        if (match := _INT_RANGE.fullmatch(spec)) is not None:
            first = int(match[1])
            last = int(match[2]) if match[2] else None
            if last is not None and last < first:
                return None  # invalid, so ignored
            if first >= size:
                raise Unsatisfiable()
            return first, size - 1 if last is None else min(last, size - 1)
        if (match := _SUFFIX_RANGE.fullmatch(spec)) is not None:
            suffix = int(match[1])
            if suffix == 0:
                raise Unsatisfiable()
            if size == 0:
                return None  # nothing to cut a suffix from: the (empty) whole file
            return max(0, size - suffix), size - 1
    except ValueError:  # an integer too long for int()
        return None
    return None


def _if_range_matches(value: bytes | None, mtime: float) -> bool:
    """``If-Range`` (RFC 9110 §13.1.5): honour the Range only if the validator still holds.

    We send no ETag, so only an HTTP date equal to our Last-Modified can match.
    """
    if value is None:
        return True
    try:
        return stringToDatetime(value) == int(mtime)
    except (ValueError, IndexError, KeyError):
        return False


# --- opening a stored file -----------------------------------------------------------


class _NotRegular(Exception):
    """The entry is no longer a regular file (replaced since the scan)."""


def open_stored(root: str, stored: StoredFile) -> tuple[int, os.stat_result]:
    """Blocking: open ``stored`` read-only and ``fstat`` it.

    Only names from the scan are used: the store's root (from the configuration), the
    per-camera directory and the file name. Neither the directory nor the file may be a
    symlink (``O_NOFOLLOW``), matching the scan, which never follows them. ``O_NONBLOCK``
    keeps a FIFO swapped in after the scan from blocking the open.
    """
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW
    dir_flags = os.O_RDONLY | os.O_CLOEXEC | os.O_DIRECTORY
    root_fd = os.open(root, dir_flags)
    try:
        dir_fd = root_fd
        if stored.directory:
            dir_fd = os.open(stored.directory, dir_flags | os.O_NOFOLLOW, dir_fd=root_fd)
        try:
            fd = os.open(stored.name, flags | os.O_NONBLOCK, dir_fd=dir_fd)
        finally:
            if dir_fd != root_fd:
                os.close(dir_fd)
    finally:
        os.close(root_fd)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _NotRegular()
    except BaseException:
        os.close(fd)
        raise
    return fd, info


# --- streaming -----------------------------------------------------------------------


@implementer(IPushProducer)
class _FileSender:
    """Writes ``length`` bytes of ``fd`` from ``offset`` to ``request``, then finishes it.

    A push producer: one read of at most :data:`CHUNK_SIZE` is in flight at a time, in
    the thread pool behind ``run_in_thread``; the next read starts only after the chunk was
    written and only while the transport has not paused us. The descriptor is closed once
    no read is in flight. If the file turns out shorter than promised (truncated while we
    send) or a read fails, the connection is closed, so the client sees a short body
    rather than a response that never ends.
    """

    def __init__(self, request: Request, fd: int, offset: int, length: int,
                 run_in_thread: Callable[..., Deferred[Any]]) -> None:
        self._request: Request | None = request
        self._fd: int | None = fd
        self._offset = offset
        self._remaining = length
        self._run = run_in_thread
        self._paused = False
        self._reading = False
        self.done: Deferred[None] = Deferred()

    def start(self) -> None:
        assert self._request is not None
        self._request.registerProducer(self, True)
        self._pump()

    # IPushProducer

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self._pump()

    def stopProducing(self) -> None:
        """The connection is gone: stop, and close the file once no read is in flight."""
        self._request = None
        self._close()

    # internals

    def _pump(self) -> None:
        if self._request is None or self._paused or self._reading or self._fd is None:
            return
        self._reading = True
        self._run(os.pread, self._fd, min(CHUNK_SIZE, self._remaining), self._offset) \
            .addCallbacks(self._got, self._read_failed)

    def _got(self, data: bytes) -> None:
        self._reading = False
        request = self._request
        if request is None:
            self._close()
            return
        if not data:
            self._abort(f"file ended {self._remaining} bytes early")
            return
        self._offset += len(data)
        self._remaining -= len(data)
        request.write(data)  # may pause us (or stop us, if the write failed)
        if self._request is None:
            return
        if self._remaining <= 0:
            self._request = None
            request.unregisterProducer()
            request.finish()
            self._close()
        else:
            self._pump()

    def _read_failed(self, failure: Failure) -> None:
        self._reading = False
        self._abort(f"read failed: {failure.getErrorMessage()}")

    def _abort(self, why: str) -> None:
        request, self._request = self._request, None
        self._close()
        if request is not None:
            log.warn("download {path} cut short: {why}", path=_path(request), why=why)
            request.unregisterProducer()
            request.loseConnection()

    def _close(self) -> None:
        # Never close under a read running in a thread: the number could be reused.
        if self._fd is not None and not self._reading:
            fd, self._fd = self._fd, None
            os.close(fd)
            self._fire()

    def _fire(self) -> None:
        if self._fd is None and not self.done.called:
            self.done.callback(None)


# --- the resource --------------------------------------------------------------------


def _path(request: Request) -> str:
    """The request path for log lines: never the query string, which may hold a token."""
    return request.path.decode("latin-1")


class _Refusal(Exception):
    """A JSON error response (api.md §7.2 statuses table)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class DownloadResource(Resource):
    """``/files``: GET/HEAD/OPTIONS of one recording or snapshot (api.md §7.2)."""

    isLeaf = True

    def __init__(self, stores: Mapping[str, FileStore], authenticator: Authenticator,
                 cors_origins: tuple[str, ...] | list[str], clock: Any,
                 run_in_thread: Callable[..., Deferred[Any]] | None = None) -> None:
        """``stores`` maps a kind (``recordings``, ``snapshots``) to its store and is read
        on every request. ``run_in_thread`` runs the open and each chunk read; the
        ``media`` pool in the service. Without it (tests of this module alone) they run
        inline on the reactor thread, as twisted.web.static.File does."""
        super().__init__()
        self._stores = stores
        self._auth = authenticator
        self._any_origin = "*" in cors_origins
        self._origins = frozenset(cors_origins)
        self._clock = clock
        self._run = run_in_thread or _inline

    def render(self, request: Request) -> bytes | int:  # type: ignore[override]
        self._cors(request)
        store = self._store(request)
        if store is None:
            self._json(request, 404, NOT_FOUND)
            return NOT_DONE_YET
        method = request.method
        if method == b"OPTIONS":
            request.setResponseCode(204)
            request.setHeader(b"Access-Control-Allow-Methods", _ALLOWED_METHODS)
            request.setHeader(b"Access-Control-Allow-Headers", _ALLOW_HEADERS)
            request.setHeader(b"Allow", _ALLOWED_METHODS)
            request.defaultContentType = None
            request.finish()
            return NOT_DONE_YET
        if method not in (b"GET", b"HEAD"):
            request.setHeader(b"Allow", _ALLOWED_METHODS)
            self._json(request, 405, NOT_ALLOWED)
            return NOT_DONE_YET
        lost: list[Failure] = []
        request.notifyFinish().addErrback(lost.append)
        ensureDeferred(self._serve(request, store, lost)).addErrback(self._failed, request, lost)
        return NOT_DONE_YET

    # -- steps ---------------------------------------------------------------------

    async def _serve(self, request: Request, store: FileStore, lost: list[Failure]) -> None:
        started = self._clock.seconds()
        try:
            await self._authenticate(request)
            name = self._name(request)
            stored = await self._lookup(store, name)
            if lost:
                return
            fd, info = await self._open(store, stored)
        except _Refusal as refusal:
            if not lost:
                self._refuse(request, refusal)
            return
        if lost:
            os.close(fd)
            return
        try:
            sender = self._respond(request, stored, fd, info)
        except BaseException:
            os.close(fd)
            raise
        if sender is not None:
            await sender.done
            log.debug("download {path} finished in {seconds:.3f} s", path=_path(request),
                      seconds=self._clock.seconds() - started)

    async def _authenticate(self, request: Request) -> Identity:
        credential = self._credential(request)
        if credential is None:
            raise _Refusal(401, AUTH_REQUIRED)
        kind, raw = credential
        try:
            try:
                token = raw.decode("ascii")
            except UnicodeDecodeError:
                raise AuthFailed("credential is not ASCII") from None
            # Bearer and ?token= carry JWTs, X-API-Key carries API keys (§7.2). Keeping them
            # apart keeps long-lived API keys out of URLs.
            is_jwt = token.count(".") == 2
            if is_jwt != (kind != "api_key"):
                raise AuthFailed(f"wrong kind of credential in {kind}")
            identity = await self._auth.authenticate(token)
        except AuthFailed as failed:
            log.debug("download {path}: {kind} credential refused: {why}", path=_path(request),
                      kind=kind, why=str(failed))
            raise _Refusal(401, AUTH_FAILED) from None
        if not role_allows(identity.role, VIEWER):
            raise _Refusal(401, AUTH_FAILED)
        return identity

    def _credential(self, request: Request) -> tuple[str, bytes] | None:
        """The first credential present, in the order of §7.2."""
        authorization = request.getHeader(b"authorization")
        if authorization is not None:
            scheme, _, rest = authorization.strip().partition(b" ")
            if scheme.lower() == b"bearer":
                return "bearer", rest.strip()
        if self._auth.api_keys_enabled:
            key = request.getHeader(b"x-api-key")
            if key is not None:
                return "api_key", key.strip()
        token = query_token(request.uri)
        if token is not None:
            return "query", token
        return None

    @staticmethod
    def _segments(request: Request) -> list[bytes]:
        """The raw (undecoded) path segments below ``/files``.

        ``request.postpath`` is decoded per segment, so ``%2F`` would already look like a
        separator there; the raw path is split instead and only the name is decoded.
        """
        return request.path.split(b"/")[1 + len(request.prepath or ()):]

    def _store(self, request: Request) -> FileStore | None:
        """The store a path is under; None for any path that is not
        ``/files/recordings/...`` or ``/files/snapshots/...`` (api.md §1.1: 404)."""
        raw = self._segments(request)
        if len(raw) < 2:
            return None
        return self._stores.get(raw[0].decode("latin-1"))

    def _name(self, request: Request) -> str:
        """The validated file name: exactly one segment after the kind."""
        raw = self._segments(request)
        if len(raw) != 2:
            raise _Refusal(400, INVALID_NAME)
        try:
            name = unquote_to_bytes(raw[1]).decode("ascii")
        except UnicodeDecodeError:
            raise _Refusal(400, INVALID_NAME) from None
        if not valid_file_name(name):
            raise _Refusal(400, INVALID_NAME)
        return name

    @staticmethod
    async def _lookup(store: FileStore, name: str) -> StoredFile:
        try:
            stored = await store.lookup(name)
        except FileNotFoundError:  # the root itself is missing: nothing to serve
            stored = None
        if stored is None:
            raise _Refusal(404, NOT_FOUND)
        return stored

    async def _open(self, store: FileStore, stored: StoredFile) -> tuple[int, os.stat_result]:
        try:
            return await self._run(open_stored, store.root, stored)
        except (FileNotFoundError, NotADirectoryError, _NotRegular):
            raise _Refusal(404, NOT_FOUND) from None  # deleted or replaced since the scan
        except OSError as error:
            if error.errno == errno.ELOOP:  # a symlink now: the scan would not list it
                raise _Refusal(404, NOT_FOUND) from None
            if error.errno in (errno.EACCES, errno.EPERM):
                raise _Refusal(403, FORBIDDEN) from None
            raise

    def _respond(self, request: Request, stored: StoredFile, fd: int,
                 info: os.stat_result) -> _FileSender | None:
        """Headers, status and body for an opened file. Returns the sender, if any."""
        size = info.st_size
        request.setHeader(b"Accept-Ranges", b"bytes")
        request.setHeader(b"Last-Modified", datetimeToString(info.st_mtime))
        request.setHeader(b"Content-Type", content_type(stored.name).encode("ascii"))
        request.setHeader(b"Content-Disposition",
                          b'attachment; filename="%s"' % stored.name.encode("ascii"))
        try:
            selected = None
            if _if_range_matches(request.getHeader(b"if-range"), info.st_mtime):
                selected = parse_range(request.getHeader(b"range"), size)
        except Unsatisfiable:
            os.close(fd)
            request.setResponseCode(416)
            request.setHeader(b"Content-Range", b"bytes */%d" % size)
            request.setHeader(b"Content-Length", b"0")
            request.responseHeaders.removeHeader(b"Content-Type")
            request.defaultContentType = None
            request.finish()
            return None
        if selected is None:
            first, length = 0, size
            request.setResponseCode(200)
        else:
            first, last = selected
            length = last - first + 1
            request.setResponseCode(206)
            request.setHeader(b"Content-Range", b"bytes %d-%d/%d" % (first, last, size))
        request.setHeader(b"Content-Length", b"%d" % length)
        if request.method == b"HEAD" or length == 0:
            os.close(fd)
            request.finish()
            return None
        sender = _FileSender(request, fd, first, length, self._run)
        sender.start()
        return sender

    # -- answers -------------------------------------------------------------------

    def _cors(self, request: Request) -> None:
        request.setHeader(b"Vary", b"Origin")
        origin = request.getHeader(b"origin")
        if origin is None:
            return
        if self._any_origin or origin.decode("latin-1") in self._origins:
            request.setHeader(b"Access-Control-Allow-Origin", origin)
            request.setHeader(b"Access-Control-Expose-Headers", _EXPOSE_HEADERS)

    def _refuse(self, request: Request, refusal: _Refusal) -> None:
        if refusal.code == 401:
            request.setHeader(b"WWW-Authenticate", _WWW_AUTHENTICATE)
        self._json(request, refusal.code, refusal.message)

    @staticmethod
    def _json(request: Request, code: int, message: str) -> None:
        body = json.dumps({"error": message}, separators=(",", ":")).encode("utf-8")
        request.setResponseCode(code)
        request.setHeader(b"Content-Type", b"application/json")
        request.setHeader(b"Content-Length", b"%d" % len(body))
        request.write(body)  # dropped by twisted.web for HEAD
        request.finish()

    def _failed(self, failure: Failure, request: Request, lost: list[Failure]) -> None:
        log.failure("download {path} failed", failure=failure, path=_path(request))
        if lost or request.finished:
            return
        try:
            if request.startedWriting:  # too late for a status: cut the response short
                if request.producer is not None:
                    request.unregisterProducer()
                request.loseConnection()
                return
            for header in (b"Content-Range", b"Content-Disposition", b"Last-Modified",
                           b"Accept-Ranges"):
                request.responseHeaders.removeHeader(header)
            self._json(request, 500, INTERNAL)
        except Exception:
            log.failure("download {path}: could not send the error", path=_path(request))
            request.loseConnection()


def _inline(f: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred[Any]:
    return maybeDeferred(f, *args, **kwargs)
