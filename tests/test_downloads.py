"""File downloads on the API port (api.md §7.2), against the whole running service.

Every request goes over a real socket with a small raw HTTP/1.1 client, so the request
target reaches the server byte for byte (treq and hyperlink would normalise hostile paths).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater
from twisted.logger import formatEvent, globalLogPublisher
from twisted.web.http import datetimeToString

from camera_service import downloads
from camera_service.auth.apikeys import create_key
from camera_service.downloads import Unsatisfiable, parse_range, redact_uri

MP4_NAME = "camera0_2025-01-15_14-30-00.mp4"
MP4_STEM = "camera0_2025-01-15_14-30-00"
TS_ONLY_STEM = "camera0_2025-01-15_15-00-00"
SNAPSHOT = "camera0_1736951400.jpg"
BIG_TS = "camera0_2025-01-15_16-00-00.ts"
BIG_SIZE = 20 * 1024 * 1024


# --- a raw HTTP client --------------------------------------------------------------


@dataclass
class Response:
    status: int
    headers: dict[str, list[str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[-1] if values else None

    def json(self) -> Any:
        assert self.header("content-type") == "application/json"
        return json.loads(self.body)


class _Collect(Protocol):
    def __init__(self, payload: bytes, abort_after: int | None = None) -> None:
        self.payload = payload
        self.abort_after = abort_after
        self.received = bytearray()
        self.done: Deferred[bytes] = Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self.payload)

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if self.abort_after is not None and len(self.received) >= self.abort_after:
            self.transport.abortConnection()

    def connectionLost(self, reason: Any) -> None:
        self.done.callback(bytes(self.received))


def api_port(service: Any) -> int:
    return service.root.api_endpoint.port.getHost().port


async def send_raw(service: Any, payload: bytes, abort_after: int | None = None) -> bytes:
    protocol = _Collect(payload, abort_after)
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", api_port(service)), protocol)
    return await protocol.done


def parse_response(raw: bytes) -> Response:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers.setdefault(name.strip().lower().decode("latin-1"), []).append(
            value.strip().decode("latin-1"))
    return Response(status, headers, body)


async def fetch(service: Any, target: str | bytes, *, method: str = "GET",
                headers: dict[str, str] | None = None) -> Response:
    if isinstance(target, str):
        target = target.encode("ascii")
    lines = [method.encode("ascii") + b" " + target + b" HTTP/1.1",
             b"Host: 127.0.0.1:%d" % api_port(service), b"Connection: close"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}".encode("latin-1"))
    response = parse_response(await send_raw(service, b"\r\n".join(lines) + b"\r\n\r\n"))
    assert response.header("transfer-encoding") is None
    if method != "HEAD":
        assert response.header("content-length") is not None or response.status == 204
        if response.header("content-length") is not None:
            assert int(response.header("content-length")) == len(response.body)
    return response


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- media on disk ------------------------------------------------------------------


@pytest.fixture(scope="session")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """A real 2 s H.264 MP4 and a real JPEG, made once with ffmpeg."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.skip("ffmpeg is not installed")
    where = tmp_path_factory.mktemp("samples")
    mp4, jpg = where / "out.mp4", where / "out.jpg"
    common = [ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
              "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=15"]
    subprocess.run(common + ["-t", "2", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(mp4)],
                   check=True, timeout=60)
    subprocess.run(common + ["-frames:v", "1", str(jpg)], check=True, timeout=60)
    return {"mp4": mp4.read_bytes(), "jpg": jpg.read_bytes()}


@dataclass
class Media:
    service: Any
    recordings: Path  # <root>/camera0
    snapshots: Path
    mp4: bytes
    ts: bytes
    ts_only: bytes
    jpg: bytes

    def invalidate(self) -> None:
        for store in self.service.app.stores.values():
            store.invalidate()

    def put(self, directory: Path, name: str, data: bytes) -> Path:
        path = directory / name
        path.write_bytes(data)
        self.invalidate()
        return path

    def token(self, role: str = "viewer", **kwargs: Any) -> str:
        return self.service.token(role, **kwargs)


def _populate(service: Any, samples: dict[str, bytes]) -> Media:
    recordings = Path(service.app.stores["recordings"].root) / "camera0"
    snapshots = Path(service.app.stores["snapshots"].root) / "camera0"
    recordings.mkdir(parents=True, exist_ok=True)
    snapshots.mkdir(parents=True, exist_ok=True)
    media = Media(service, recordings, snapshots, samples["mp4"], os.urandom(4096),
                  os.urandom(3000), samples["jpg"])
    media.put(recordings, MP4_NAME, media.mp4)
    media.put(recordings, MP4_STEM + ".ts", media.ts)  # same stem: the .mp4 must win
    media.put(recordings, TS_ONLY_STEM + ".ts", media.ts_only)
    media.put(snapshots, SNAPSHOT, media.jpg)
    return media


@pytest.fixture
def media(services: Any, samples: dict[str, bytes]) -> Media:
    service = pytest_twisted.blockon(ensureDeferred(services.start()))
    return _populate(service, samples)


# --- successful downloads -----------------------------------------------------------


async def test_full_download_by_stem_and_by_full_name(media: Media) -> None:
    mtime = (media.recordings / MP4_NAME).stat().st_mtime
    for name in (MP4_STEM, MP4_NAME):
        response = await fetch(media.service, f"/files/recordings/{name}",
                               headers=bearer(media.token()))
        assert response.status == 200
        assert response.body == media.mp4
        assert response.header("content-type") == "video/mp4"
        assert response.header("content-length") == str(len(media.mp4))
        assert response.header("accept-ranges") == "bytes"
        assert response.header("content-disposition") == f'attachment; filename="{MP4_NAME}"'
        assert response.header("last-modified") == datetimeToString(mtime).decode()
        assert response.header("content-range") is None


async def test_mp4_wins_over_ts_and_ts_by_full_name(media: Media) -> None:
    token = media.token()
    ts = await fetch(media.service, f"/files/recordings/{MP4_STEM}.ts", headers=bearer(token))
    assert (ts.status, ts.body, ts.header("content-type")) == (200, media.ts, "video/mp2t")
    assert ts.header("content-disposition") == f'attachment; filename="{MP4_STEM}.ts"'
    only = await fetch(media.service, f"/files/recordings/{TS_ONLY_STEM}", headers=bearer(token))
    assert (only.status, only.body, only.header("content-type")) == (200, media.ts_only, "video/mp2t")
    assert only.header("content-disposition") == f'attachment; filename="{TS_ONLY_STEM}.ts"'


async def test_snapshot_by_full_name_only(media: Media) -> None:
    token = media.token()
    response = await fetch(media.service, f"/files/snapshots/{SNAPSHOT}", headers=bearer(token))
    assert (response.status, response.body, response.header("content-type")) == (
        200, media.jpg, "image/jpeg")
    assert response.header("content-disposition") == f'attachment; filename="{SNAPSHOT}"'
    stem = await fetch(media.service, "/files/snapshots/camera0_1736951400", headers=bearer(token))
    assert (stem.status, stem.json()) == (404, {"error": "File not found"})
    # A recording is not a snapshot and the other way round.
    assert (await fetch(media.service, f"/files/snapshots/{MP4_NAME}", headers=bearer(token))).status == 404
    assert (await fetch(media.service, f"/files/recordings/{SNAPSHOT}", headers=bearer(token))).status == 404


async def test_png_and_root_level_files(media: Media) -> None:
    root = Path(media.service.app.stores["snapshots"].root)
    media.put(root, "diagram.png", b"\x89PNG\r\n\x1a\n" + os.urandom(100))
    response = await fetch(media.service, "/files/snapshots/diagram.png", headers=bearer(media.token()))
    assert (response.status, response.header("content-type")) == (200, "image/png")
    assert response.body == (root / "diagram.png").read_bytes()


async def test_head_has_the_headers_and_no_body(media: Media) -> None:
    response = await fetch(media.service, f"/files/recordings/{MP4_STEM}", method="HEAD",
                           headers=bearer(media.token()))
    assert response.status == 200
    assert response.body == b""
    assert response.header("content-length") == str(len(media.mp4))
    assert response.header("content-type") == "video/mp4"
    assert response.header("accept-ranges") == "bytes"
    assert response.header("content-disposition") == f'attachment; filename="{MP4_NAME}"'
    assert response.header("last-modified") is not None
    ranged = await fetch(media.service, f"/files/recordings/{MP4_STEM}", method="HEAD",
                         headers={**bearer(media.token()), "Range": "bytes=0-9"})
    assert (ranged.status, ranged.body, ranged.header("content-length")) == (206, b"", "10")
    assert ranged.header("content-range") == f"bytes 0-9/{len(media.mp4)}"


async def test_unknown_file_is_404(media: Media) -> None:
    for target in ("/files/recordings/camera0_2099-01-01_00-00-00",
                   "/files/recordings/camera0_2099-01-01_00-00-00.mp4",
                   "/files/snapshots/nothing.jpg",
                   "/files/videos/whatever.mp4",
                   "/files/recordings",
                   "/files/recordings/.",       # passes the name rule; no such file
                   "/files/",
                   "/files"):
        response = await fetch(media.service, target, headers=bearer(media.token()))
        assert (response.status, response.json()) == (404, {"error": "File not found"}), target
    # Paths that are not under a store are "any other path" (api.md §1.1): 404 before
    # authentication, whatever the method.
    for target in ("/files/videos/whatever.mp4", "/files/recordings", "/files/", "/files",
                   "/files/..%2Frecordings/" + MP4_NAME):
        for method in ("GET", "POST", "OPTIONS"):
            response = await fetch(media.service, target, method=method)
            assert (response.status, response.json()) == (404, {"error": "File not found"}), target


# --- ranges -------------------------------------------------------------------------


@pytest.mark.parametrize("spec, first, last", [
    ("bytes=0-99", 0, 99),                  # the first bytes
    ("bytes=1000-1999", 1000, 1999),        # the middle
    ("bytes=-500", -500, -1),               # suffix
    ("bytes=100-", 100, -1),                # open-ended
    ("bytes=-10000000", 0, -1),             # suffix longer than the file: all of it
    ("bytes=10-99999999", 10, -1),          # last beyond the end is clamped
    ("BYTES = 5-5", 5, 5),                  # unit is case-insensitive, OWS around '='
    ("bytes=0-0,", 0, 0),                   # empty list elements are allowed
])
async def test_single_range(media: Media, spec: str, first: int, last: int) -> None:
    size = len(media.mp4)
    first, last = first % size, last % size
    response = await fetch(media.service, f"/files/recordings/{MP4_STEM}",
                           headers={**bearer(media.token()), "Range": spec})
    assert response.status == 206
    assert response.body == media.mp4[first:last + 1]
    assert response.header("content-range") == f"bytes {first}-{last}/{size}"
    assert response.header("content-length") == str(last - first + 1)
    assert response.header("content-type") == "video/mp4"
    assert response.header("accept-ranges") == "bytes"


@pytest.mark.parametrize("spec", ["bytes={size}-", "bytes={size}-{bigger}", "bytes=-0"])
async def test_unsatisfiable_range_is_416(media: Media, spec: str) -> None:
    size = len(media.mp4)
    response = await fetch(media.service, f"/files/recordings/{MP4_STEM}",
                           headers={**bearer(media.token()),
                                    "Range": spec.format(size=size, bigger=size + 10)})
    assert response.status == 416
    assert response.header("content-range") == f"bytes */{size}"
    assert response.body == b""


@pytest.mark.parametrize("spec", [
    "bytes=abc", "bytes=5-1", "items=0-1", "bytes=", "bytes", "bytes=1-2-3", "bytes=- 5",
    "bytes=0-1,5-9",                       # several ranges: the whole file (§7.2 allows it)
    "bytes=" + "9" * 5000 + "-",            # too long for int(): ignored, not a 500
])
async def test_ignored_range_header_serves_the_whole_file(media: Media, spec: str) -> None:
    response = await fetch(media.service, f"/files/recordings/{MP4_STEM}",
                           headers={**bearer(media.token()), "Range": spec})
    assert response.status == 200
    assert response.body == media.mp4
    assert response.header("content-range") is None


async def test_if_range(media: Media) -> None:
    mtime = (media.recordings / MP4_NAME).stat().st_mtime
    target = f"/files/recordings/{MP4_STEM}"
    headers = {**bearer(media.token()), "Range": "bytes=0-9"}
    same = await fetch(media.service, target,
                       headers={**headers, "If-Range": datetimeToString(mtime).decode()})
    assert (same.status, same.body) == (206, media.mp4[:10])
    for validator in (datetimeToString(mtime - 3600).decode(), '"some-etag"'):
        other = await fetch(media.service, target, headers={**headers, "If-Range": validator})
        assert (other.status, other.body) == (200, media.mp4)


def test_parse_range_unit() -> None:
    assert parse_range(None, 10) is None
    assert parse_range(b"bytes=0-4", 10) == (0, 4)
    assert parse_range(b"bytes=-3", 10) == (7, 9)
    assert parse_range(b"bytes=-3", 0) is None  # empty file: the (empty) whole file
    with pytest.raises(Unsatisfiable):
        parse_range(b"bytes=0-", 0)
    with pytest.raises(Unsatisfiable):
        parse_range(b"bytes=10-", 10)


async def test_large_file_streams_intact(media: Media) -> None:
    data = os.urandom(BIG_SIZE)
    media.put(media.recordings, BIG_TS, data)
    token = media.token()
    response = await fetch(media.service, f"/files/recordings/{BIG_TS}", headers=bearer(token))
    assert response.status == 200
    assert len(response.body) == BIG_SIZE and response.body == data
    tail = await fetch(media.service, f"/files/recordings/{BIG_TS[:-3]}",
                       headers={**bearer(token), "Range": f"bytes={BIG_SIZE - 3_000_000}-"})
    assert tail.status == 206 and tail.body == data[-3_000_000:]


def _open_fds_to(path: Path) -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == str(path):
                count += 1
        except OSError:
            continue
    return count


async def test_client_going_away_mid_download_closes_the_file(media: Media) -> None:
    path = media.put(media.recordings, BIG_TS, os.urandom(BIG_SIZE))
    request = (f"GET /files/recordings/{BIG_TS} HTTP/1.1\r\nHost: x\r\n"
               f"Authorization: Bearer {media.token()}\r\n\r\n").encode()
    received = await send_raw(media.service, request, abort_after=256 * 1024)
    assert 0 < len(received) < BIG_SIZE
    for _ in range(200):
        if _open_fds_to(path) == 0:
            break
        await deferLater(reactor, 0.01, lambda: None)
    assert _open_fds_to(path) == 0
    # The service is still fine.
    response = await fetch(media.service, f"/files/recordings/{MP4_STEM}", headers=bearer(media.token()))
    assert response.status == 200


async def test_size_is_taken_when_the_file_is_opened(media: Media) -> None:
    """A growing recording is served as it is at request time, not as the (cached) scan saw it."""
    path = media.put(media.recordings, "camera0_2025-01-15_17-00-00.mp4", b"a" * 1000)
    token = media.token()
    first = await fetch(media.service, "/files/recordings/camera0_2025-01-15_17-00-00",
                        headers=bearer(token))
    assert first.body == b"a" * 1000
    with path.open("ab") as f:  # the recorder appends; the listing cache is not invalidated
        f.write(b"b" * 500)
    second = await fetch(media.service, "/files/recordings/camera0_2025-01-15_17-00-00",
                         headers=bearer(token))
    assert second.header("content-length") == "1500"
    assert second.body == b"a" * 1000 + b"b" * 500


async def test_file_shrinking_while_sent_cuts_the_connection(media: Media, monkeypatch) -> None:
    """If the file ends before Content-Length bytes were sent, the connection is closed so
    the client sees a short body instead of waiting forever."""
    path = media.put(media.recordings, BIG_TS, os.urandom(BIG_SIZE))
    real_open = downloads.open_stored

    def open_then_truncate(root: str, stored: Any) -> Any:
        opened = real_open(root, stored)
        os.truncate(path, 1_000_000)
        return opened

    monkeypatch.setattr(downloads, "open_stored", open_then_truncate)
    request = (f"GET /files/recordings/{BIG_TS} HTTP/1.1\r\nHost: x\r\n"
               f"Authorization: Bearer {media.token()}\r\n\r\n").encode()
    response = parse_response(await send_raw(media.service, request))  # no Connection: close
    assert response.status == 200
    assert response.header("content-length") == str(BIG_SIZE)
    assert len(response.body) == 1_000_000


# --- authentication -----------------------------------------------------------------


async def test_each_credential_kind(services: Any, samples: dict[str, bytes], tmp_path: Path) -> None:
    key_file = tmp_path / "keys" / "api-keys.json"
    key, _ = create_key(str(key_file), "nvr", "viewer", None, cost=4)
    media = _populate(await services.start(CAMERA_SERVICE_SECURITY_API_KEYS_FILE=str(key_file)),
                      samples)
    target = f"/files/recordings/{MP4_STEM}"
    for role in ("viewer", "operator", "admin"):
        assert (await fetch(media.service, target, headers=bearer(media.token(role)))).status == 200
    lower = await fetch(media.service, target, headers={"authorization": f"bearer {media.token()}"})
    assert lower.status == 200
    by_key = await fetch(media.service, target, headers={"X-API-Key": key})
    assert (by_key.status, by_key.body) == (200, media.mp4)
    by_query = await fetch(media.service, f"{target}?token={media.token()}")
    assert (by_query.status, by_query.body) == (200, media.mp4)
    # The first credential present is the one used.
    first_wins = await fetch(media.service, f"{target}?token=garbage",
                             headers={**bearer(media.token()), "X-API-Key": "csk_nope"})
    assert first_wins.status == 200
    bad_first = await fetch(media.service, f"{target}?token={media.token()}",
                            headers={"X-API-Key": "csk_abcdefgh_" + "x" * 32})
    assert bad_first.status == 401
    assert bad_first.json() == {"error": "Authentication failed or token expired"}
    # Keys go in X-API-Key, JWTs in Bearer / ?token=.
    assert (await fetch(media.service, f"{target}?token={key}")).status == 401
    assert (await fetch(media.service, target, headers=bearer(key))).status == 401
    assert (await fetch(media.service, target, headers={"X-API-Key": media.token()})).status == 401


async def test_api_key_header_ignored_when_keys_are_disabled(services: Any, samples: dict[str, bytes],
                                                              tmp_path: Path) -> None:
    key_file = tmp_path / "api-keys.json"
    key, _ = create_key(str(key_file), "nvr", "viewer", None, cost=4)
    media = _populate(await services.start(CAMERA_SERVICE_SECURITY_API_KEYS_FILE=str(key_file),
                                           CAMERA_SERVICE_SECURITY_API_KEYS_ENABLED="false"), samples)
    target = f"/files/recordings/{MP4_STEM}"
    alone = await fetch(media.service, target, headers={"X-API-Key": key})
    assert (alone.status, alone.json()) == (401, {"error": "Authentication required"})
    with_token = await fetch(media.service, f"{target}?token={media.token()}", headers={"X-API-Key": key})
    assert with_token.status == 200


async def test_missing_and_invalid_credentials_are_401(media: Media) -> None:
    target = f"/files/recordings/{MP4_STEM}"
    expired = media.token(lifetime=60, now=reactor.seconds() - 3600)
    cases = [
        ({}, target, "Authentication required"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, target, "Authentication required"),
        (bearer(expired), target, "Authentication failed or token expired"),
        ({}, f"{target}?token={expired}", "Authentication failed or token expired"),
        (bearer("not.a.jwt"), target, "Authentication failed or token expired"),
        ({"Authorization": "Bearer"}, target, "Authentication failed or token expired"),
        ({}, f"{target}?token=", "Authentication failed or token expired"),
        (bearer(media.token()[:-2] + "xx"), target, "Authentication failed or token expired"),
        # No credentials: the name is not even looked at.
        ({}, "/files/recordings/..%2Fx", "Authentication required"),
    ]
    for headers, path, message in cases:
        for method in ("GET", "HEAD"):
            response = await fetch(media.service, path, method=method, headers=headers)
            assert response.status == 401, (headers, path)
            assert response.header("www-authenticate") == 'Bearer realm="camera-service"'
            if method == "GET":
                assert response.json() == {"error": message}, (headers, path)
            else:
                assert response.body == b""


async def test_query_token_is_never_logged(media: Media) -> None:
    token = media.token()
    events: list[str] = []

    def observer(event: dict[str, Any]) -> None:
        events.append(formatEvent(event) + " " + repr(event))

    globalLogPublisher.addObserver(observer)
    try:
        ok = await fetch(media.service, f"/files/recordings/{MP4_STEM}?a=1&token={token}",
                         headers={"Referer": f"http://player.example/watch?token={token}"})
        encoded = await fetch(media.service, f"/files/recordings/{MP4_STEM}?%74oken={token}")
        refused = await fetch(media.service, f"/files/recordings/nothing.mp4?token={token}x")
        await deferLater(reactor, 0.05, lambda: None)
    finally:
        globalLogPublisher.removeObserver(observer)
    assert ok.status == 200 and encoded.status == 200 and refused.status == 401
    access = [e for e in events if "/files/recordings/" in e]
    assert len(access) >= 3, "the access log lines were not captured"
    assert any("token=REDACTED" in e and "a=1" in e for e in access)
    assert not [e for e in events if token in e or token[-20:] in e]


def test_redact_uri_unit() -> None:
    assert redact_uri(b"/files/x?token=abc") == b"/files/x?token=REDACTED"
    assert redact_uri(b"/f?a=1&token=abc;b=2") == b"/f?a=1&token=REDACTED;b=2"
    assert redact_uri(b"/f?%74oken=abc&TOKEN=def") == b"/f?%74oken=REDACTED&TOKEN=REDACTED"
    assert redact_uri(b"/f?tokens=abc") == b"/f?tokens=abc"
    assert redact_uri(b"/f") == b"/f"


# --- hostile names ------------------------------------------------------------------

HOSTILE = [
    "..%2Fx",
    "..%2fx",
    "%2e%2e%2fetc%2fpasswd",
    "%2E%2E",
    "..",
    "..%5Cx",
    "%5C..%5Cx",
    "a%00b.jpg",
    "a%00",
    "a\\b.jpg",
    "a%20b.jpg",
    "a%2Fb.jpg",
    "camera0%2F" + MP4_NAME,          # a real file behind an encoded separator
    "%2Fetc%2Fpasswd",
    "/etc/passwd",                    # /files/recordings//etc/passwd
    "x" * 300,
    "x" * 252 + ".mp4",               # 256 characters
    "..." + MP4_NAME,
    "a..b.jpg",
    "%C3%A9t%C3%A9.jpg",              # non-ASCII
    "%ff.jpg",                        # not UTF-8 either
    "a;b.jpg",
    "",                               # /files/recordings/ (no name)
    MP4_STEM + "/",                   # trailing slash: an extra (empty) segment
    "camera0/" + MP4_NAME,            # real per-camera path: names are base names only
    "a/b",
    "../recordings/" + MP4_NAME,
]


@pytest.mark.parametrize("kind", ["recordings", "snapshots"])
async def test_hostile_names_are_400(media: Media, kind: str) -> None:
    token = media.token()
    for name in HOSTILE:
        target = f"/files/{kind}/{name}"
        response = await fetch(media.service, target.encode("latin-1"), headers=bearer(token))
        assert response.status == 400, target
        assert response.json() == {"error": "Invalid filename"}, target


# --- methods, CORS, errors ----------------------------------------------------------


async def test_other_methods_are_405(media: Media) -> None:
    for method in ("POST", "PUT", "DELETE", "PATCH", "TRACE"):
        response = await fetch(media.service, f"/files/recordings/{MP4_STEM}", method=method,
                               headers=bearer(media.token()))
        assert response.status == 405, method
        assert response.json() == {"error": "Method not allowed"}
        assert response.header("allow") == "GET, HEAD, OPTIONS"
    # The file is untouched.
    assert (media.recordings / MP4_NAME).read_bytes() == media.mp4


async def test_cors(services: Any, samples: dict[str, bytes]) -> None:
    media = _populate(await services.start(
        CAMERA_SERVICE_SECURITY_CORS_ORIGINS='["http://ui.example:3000"]'), samples)
    target = f"/files/recordings/{MP4_STEM}"
    preflight = await fetch(media.service, target, method="OPTIONS",
                            headers={"Origin": "http://ui.example:3000",
                                     "Access-Control-Request-Method": "GET",
                                     "Access-Control-Request-Headers": "authorization, range"})
    assert preflight.status == 204 and preflight.body == b""
    assert preflight.header("access-control-allow-methods") == "GET, HEAD, OPTIONS"
    assert preflight.header("access-control-allow-headers") == "Authorization, X-API-Key, Range"
    assert preflight.header("access-control-allow-origin") == "http://ui.example:3000"
    assert preflight.header("content-length") is None  # RFC 9110: never on a 204

    allowed = await fetch(media.service, target, headers={**bearer(media.token()), "Range": "bytes=0-1",
                                                          "Origin": "http://ui.example:3000"})
    assert allowed.status == 206
    assert allowed.header("access-control-allow-origin") == "http://ui.example:3000"
    assert allowed.header("access-control-expose-headers") == (
        "Content-Length, Content-Range, Content-Disposition, Accept-Ranges")
    denied_401 = await fetch(media.service, target, headers={"Origin": "http://ui.example:3000"})
    assert denied_401.status == 401
    assert denied_401.header("access-control-allow-origin") == "http://ui.example:3000"

    other = await fetch(media.service, target, headers={**bearer(media.token()),
                                                        "Origin": "http://evil.example"})
    assert other.status == 200
    assert other.header("access-control-allow-origin") is None
    assert other.header("access-control-expose-headers") is None
    other_preflight = await fetch(media.service, target, method="OPTIONS",
                                  headers={"Origin": "http://evil.example"})
    assert other_preflight.status == 204
    assert other_preflight.header("access-control-allow-origin") is None


async def test_cors_wildcard_echoes_the_origin(services: Any, samples: dict[str, bytes]) -> None:
    media = _populate(await services.start(CAMERA_SERVICE_SECURITY_CORS_ORIGINS='["*"]'), samples)
    response = await fetch(media.service, f"/files/snapshots/{SNAPSHOT}",
                           headers={**bearer(media.token()), "Origin": "https://anything.example"})
    assert response.status == 200
    assert response.header("access-control-allow-origin") == "https://anything.example"


def _can_read_mode_000_files() -> bool:
    """True for root with CAP_DAC_OVERRIDE (the usual case in containers and CI)."""
    import tempfile

    with tempfile.NamedTemporaryFile() as probe:
        os.chmod(probe.name, 0)
        try:
            open(probe.name, "rb").close()
        except PermissionError:
            return False
        return True


@pytest.mark.skipif(_can_read_mode_000_files(),
                    reason="this process bypasses file permissions (root with CAP_DAC_OVERRIDE), "
                           "so chmod 000 cannot make a file unreadable; the simulated EACCES "
                           "test below covers the mapping")
async def test_unreadable_file_is_403(media: Media) -> None:
    path = media.recordings / MP4_NAME
    path.chmod(0)
    try:
        response = await fetch(media.service, f"/files/recordings/{MP4_STEM}",
                               headers=bearer(media.token()))
    finally:
        path.chmod(0o644)
    assert (response.status, response.json()) == (403, {"error": "Permission denied"})


@pytest.mark.parametrize("error, status, body", [
    (errno.EACCES, 403, "Permission denied"),
    (errno.EPERM, 403, "Permission denied"),
    (errno.ENOENT, 404, "File not found"),   # deleted between the scan and the open
    (errno.ELOOP, 404, "File not found"),    # replaced by a symlink since the scan
    (errno.EIO, 500, "Internal server error"),
])
async def test_open_errors_are_mapped(media: Media, monkeypatch, error: int, status: int,
                                      body: str) -> None:
    """Simulated failures of the open itself (the real EACCES case needs a non-root user)."""
    def failing_open(root: str, stored: Any) -> Any:
        raise OSError(error, os.strerror(error), stored.name)

    monkeypatch.setattr(downloads, "open_stored", failing_open)
    response = await fetch(media.service, f"/files/recordings/{MP4_STEM}",
                           headers=bearer(media.token()))
    assert (response.status, response.json()) == (status, {"error": body})
    assert response.header("content-disposition") is None


async def test_symlink_in_store_is_not_followed(media: Media, tmp_path: Path) -> None:
    secret = tmp_path / "secret.mp4"
    secret.write_bytes(b"secret")
    os.symlink(secret, media.recordings / "camera0_2025-01-15_18-00-00.mp4")
    media.invalidate()
    response = await fetch(media.service, "/files/recordings/camera0_2025-01-15_18-00-00",
                           headers=bearer(media.token()))
    assert response.status == 404


async def test_other_paths_on_the_api_port_are_still_404(media: Media) -> None:
    raw = await send_raw(media.service, b"GET /filesx/recordings/x HTTP/1.1\r\nHost: x\r\n"
                                        b"Connection: close\r\n\r\n")
    assert parse_response(raw).status == 404


class _Stalled(Protocol):
    """Sends a request and then never reads the answer."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload

    def connectionMade(self) -> None:
        self.transport.write(self.payload)
        self.transport.pauseProducing()


async def test_a_client_that_does_not_read_does_not_make_the_server_read_the_file(
        media: Media, monkeypatch) -> None:
    """Backpressure: reads stop while the socket is full instead of buffering the file."""
    path = media.put(media.recordings, BIG_TS, os.urandom(BIG_SIZE))
    read = [0]
    real_pread = os.pread

    def counting_pread(fd: int, n: int, offset: int) -> bytes:
        data = real_pread(fd, n, offset)
        read[0] += len(data)
        return data

    monkeypatch.setattr(downloads.os, "pread", counting_pread)
    request = (f"GET /files/recordings/{BIG_TS} HTTP/1.1\r\nHost: x\r\n"
               f"Authorization: Bearer {media.token()}\r\n\r\n").encode()
    stalled = _Stalled(request)
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", api_port(media.service)), stalled)
    # Wait until reading has stopped (no progress for 0.3 s), for at most 5 s.
    previous, stable_since = -1, reactor.seconds()
    deadline = stable_since + 5
    while reactor.seconds() - stable_since < 0.3:
        assert reactor.seconds() < deadline, "the server kept reading while the client was not"
        if read[0] != previous:
            previous, stable_since = read[0], reactor.seconds()
        await deferLater(reactor, 0.02, lambda: None)
    assert read[0] > 0
    assert read[0] < BIG_SIZE // 2, f"read {read[0]} bytes for a client that reads nothing"
    stalled.transport.abortConnection()
    for _ in range(200):
        if _open_fds_to(path) == 0:
            break
        await deferLater(reactor, 0.01, lambda: None)
    assert _open_fds_to(path) == 0
