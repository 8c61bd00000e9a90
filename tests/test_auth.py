"""Authentication: JWTs, API keys, the key file, the JWT secret (api.md §2.2, §2.3)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import os
import stat
import threading
import time

import bcrypt
import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import fail, maybeDeferred
from twisted.internet.task import Clock
from twisted.internet.threads import deferToThreadPool
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python.threadpool import ThreadPool

from camera_service.auth import (
    ApiKeyStore,
    AuthFailed,
    Authenticator,
    Identity,
    KeyFileError,
    SecretError,
    mint_jwt,
    resolve_jwt_secret,
    verify_jwt,
)
from camera_service.auth.apikeys import (
    KEY_PATTERN,
    create_key,
    delete_key,
    list_keys,
    revoke_key,
)
from camera_service.roles import ROLES

SECRET = "test-secret-" + "x" * 40
NOW = 1_736_951_400.0
FAST = 4  # bcrypt cost for tests where speed matters


# --- helpers -----------------------------------------------------------------------


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def make_token(payload: dict, header: dict | None = None, secret: str = SECRET, digest=hashlib.sha256) -> str:
    """A token built by hand, so header and payload can be anything."""
    header = {"alg": "HS256", "typ": "JWT"} if header is None else header
    signing_input = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(payload).encode())
    signature = hmac.new(secret.encode(), signing_input.encode(), digest).digest()
    return signing_input + "." + _b64(signature)


def claims(**overrides) -> dict:
    payload = {"user_id": "ops_console", "role": "operator", "iat": NOW - 60, "exp": NOW + 3600}
    payload.update(overrides)
    return {k: v for k, v in payload.items() if v is not DROP}


DROP = object()


def sync_thread(f, *args, **kwargs):
    """A run_in_thread that runs inline: keeps Clock-driven tests deterministic."""
    return maybeDeferred(f, *args, **kwargs)


@pytest.fixture
def clock() -> Clock:
    c = Clock()
    c.advance(time.time())  # key expiry times are wall-clock epochs
    return c


@pytest.fixture
def key_file(tmp_path) -> str:
    return str(tmp_path / "state" / "api-keys.json")


@pytest.fixture
def store(key_file, clock):
    s = ApiKeyStore(key_file, sync_thread, clock, reload_interval=1.0)
    yield s
    s.stop()


@pytest.fixture
def checkpw_calls(monkeypatch) -> list[threading.Thread]:
    """Counts bcrypt.checkpw calls and records the thread each ran on."""
    calls: list[threading.Thread] = []
    real = bcrypt.checkpw

    def counting(password, hashed):
        calls.append(threading.current_thread())
        return real(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", counting)
    return calls


@pytest.fixture
def log_text():
    """Everything logged during the test, formatted."""
    events: list[str] = []

    def observer(event):
        events.append(formatEvent(event) + repr(event.get("log_failure", "")))

    globalLogPublisher.addObserver(observer)
    yield events
    globalLogPublisher.removeObserver(observer)


def write_raw(path: str, text: str) -> None:
    """Replace the key file the way an editor would (new inode, new mtime)."""
    tmp = path + ".edit"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


# --- JWT ---------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_jwt_valid_for_each_role(role):
    token = mint_jwt(SECRET, "alice", role, 3600, NOW)
    identity = verify_jwt(token, SECRET, NOW)
    assert identity == Identity(user_id="alice", role=role, expires_at=NOW + 3600, kind="jwt")


def test_jwt_example_payload_from_spec():
    token = make_token({"user_id": "ops_console", "role": "operator", "iat": 1736951400, "exp": 1737037800})
    identity = verify_jwt(token, SECRET, 1736951400.0)
    assert (identity.user_id, identity.role, identity.expires_at) == ("ops_console", "operator", 1737037800)


def test_jwt_time_checks_use_now_not_the_wall_clock():
    # Expired by the wall clock for decades, but valid at the given "now".
    token = make_token(claims(iat=1000, exp=2000))
    assert verify_jwt(token, SECRET, 1500.0).expires_at == 2000
    # And a token valid by the wall clock fails at a later "now".
    token = mint_jwt(SECRET, "alice", "viewer", 60, time.time())
    with pytest.raises(AuthFailed):
        verify_jwt(token, SECRET, time.time() + 61)


@pytest.mark.parametrize(
    "header, digest",
    [
        ({"alg": "none", "typ": "JWT"}, None),
        ({"alg": "None", "typ": "JWT"}, None),
        ({"alg": "HS512", "typ": "JWT"}, hashlib.sha512),
        ({"alg": "HS384", "typ": "JWT"}, hashlib.sha384),
        ({"alg": "RS256", "typ": "JWT"}, hashlib.sha256),  # key-confusion shape
        ({"alg": "hs256", "typ": "JWT"}, hashlib.sha256),
        ({"typ": "JWT"}, hashlib.sha256),
        ({"alg": ["HS256"], "typ": "JWT"}, hashlib.sha256),
    ],
)
def test_jwt_wrong_alg_is_rejected(header, digest):
    if digest is None:
        token = make_token(claims(), header=header).rsplit(".", 1)[0] + "."
    else:
        token = make_token(claims(), header=header, digest=digest)
    with pytest.raises(AuthFailed, match="alg"):
        verify_jwt(token, SECRET, NOW)


def test_jwt_bad_signature():
    with pytest.raises(AuthFailed, match="signature"):
        verify_jwt(make_token(claims(), secret="another-secret-" + "y" * 40), SECRET, NOW)


def test_jwt_tampered_payload():
    token = make_token(claims(role="viewer"))
    header, _, signature = token.split(".")
    forged = header + "." + _b64(json.dumps(claims(role="admin")).encode()) + "." + signature
    with pytest.raises(AuthFailed, match="signature"):
        verify_jwt(forged, SECRET, NOW)


@pytest.mark.parametrize("missing", ["user_id", "role", "iat", "exp"])
def test_jwt_missing_claim(missing):
    with pytest.raises(AuthFailed, match=missing):
        verify_jwt(make_token(claims(**{missing: DROP})), SECRET, NOW)


def test_jwt_sub_does_not_stand_in_for_user_id():
    with pytest.raises(AuthFailed, match="user_id"):
        verify_jwt(make_token(claims(user_id=DROP, sub="alice")), SECRET, NOW)


@pytest.mark.parametrize("role", ["Admin", "root", "VIEWER", "", None, 1, ["admin"]])
def test_jwt_bad_role(role):
    with pytest.raises(AuthFailed, match="role"):
        verify_jwt(make_token(claims(role=role)), SECRET, NOW)


@pytest.mark.parametrize(
    "overrides",
    [
        {"user_id": 42},
        {"user_id": ""},
        {"iat": "1736951400"},
        {"exp": "1737037800"},
        {"exp": True},
        {"exp": None},
        {"nbf": "soon"},
    ],
)
def test_jwt_claim_types(overrides):
    with pytest.raises(AuthFailed):
        verify_jwt(make_token(claims(**overrides)), SECRET, NOW)


def test_jwt_expiry_has_no_leeway():
    with pytest.raises(AuthFailed, match="expired"):
        verify_jwt(make_token(claims(exp=NOW)), SECRET, NOW)
    with pytest.raises(AuthFailed, match="expired"):
        verify_jwt(make_token(claims(exp=NOW - 1)), SECRET, NOW)
    assert verify_jwt(make_token(claims(exp=NOW + 0.5)), SECRET, NOW).expires_at == NOW + 0.5


def test_jwt_iat_in_the_future():
    assert verify_jwt(make_token(claims(iat=NOW + 5)), SECRET, NOW)
    with pytest.raises(AuthFailed, match="iat"):
        verify_jwt(make_token(claims(iat=NOW + 5.5)), SECRET, NOW)
    with pytest.raises(AuthFailed, match="iat"):
        verify_jwt(make_token(claims(iat=NOW + 600)), SECRET, NOW)


def test_jwt_nbf():
    assert verify_jwt(make_token(claims(nbf=NOW + 5)), SECRET, NOW)
    assert verify_jwt(make_token(claims(nbf=NOW - 100)), SECRET, NOW)
    with pytest.raises(AuthFailed, match="nbf"):
        verify_jwt(make_token(claims(nbf=NOW + 6)), SECRET, NOW)


def test_jwt_other_claims_are_ignored():
    token = make_token(claims(sub=123, aud="someone-else", iss="x", jti=7))
    assert verify_jwt(token, SECRET, NOW).user_id == "ops_console"


@pytest.mark.parametrize("token", ["", "a.b.c", "..", "not-a-jwt", "eyJhbGciOiJIUzI1NiJ9.e30.", None])
def test_jwt_garbage(token):
    with pytest.raises(AuthFailed):
        verify_jwt(token, SECRET, NOW)


def test_jwt_failure_message_never_contains_the_token():
    token = make_token(claims(exp=NOW - 1))
    with pytest.raises(AuthFailed) as info:
        verify_jwt(token, SECRET, NOW)
    for part in token.split("."):
        assert part not in str(info.value)


def test_mint_jwt_validates():
    with pytest.raises(ValueError):
        mint_jwt(SECRET, "alice", "root", 60, NOW)
    with pytest.raises(ValueError):
        mint_jwt(SECRET, "alice", "viewer", 0, NOW)
    with pytest.raises(ValueError):
        mint_jwt("", "alice", "viewer", 60, NOW)
    encoded_header = mint_jwt(SECRET, "a", "viewer", 60, NOW).split(".")[0]
    header = json.loads(base64.urlsafe_b64decode(encoded_header + "=="))
    assert header["alg"] == "HS256"


# --- Authenticator with JWTs -------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_authenticator_jwt_and_still_valid_follows_the_clock():
    clock = Clock()
    clock.advance(NOW)
    auth = Authenticator(SECRET, None, clock)
    identity = await auth.authenticate(mint_jwt(SECRET, "alice", "admin", 100, NOW))
    assert identity.role == "admin" and identity.expires_at == NOW + 100
    assert auth.still_valid(identity)
    clock.advance(99.5)
    assert auth.still_valid(identity)
    clock.advance(0.5)  # now == exp: expired
    assert not auth.still_valid(identity)
    with pytest.raises(AuthFailed):
        await auth.authenticate(mint_jwt(SECRET, "alice", "admin", 100, NOW))


@pytest_twisted.ensureDeferred
async def test_authenticator_api_keys_disabled():
    auth = Authenticator(SECRET, None, Clock())
    assert not auth.api_keys_enabled
    with pytest.raises(AuthFailed, match="disabled"):
        await auth.authenticate("csk_abcdefgh_" + "A" * 32)


@pytest_twisted.ensureDeferred
async def test_authenticator_routes_by_dot_count(store, clock, key_file):
    key, record = create_key(key_file, "svc", "viewer", None, cost=FAST)
    auth = Authenticator(SECRET, store, clock)
    assert auth.api_keys_enabled
    assert (await auth.authenticate(key)).kind == "api_key"
    # One or three dots: not a JWT, so it is an (invalid) API key.
    for token in ("a.b", "a.b.c.d", key + "."):
        with pytest.raises(AuthFailed, match="malformed"):
            await auth.authenticate(token)
    for token in ("", None, 42):
        with pytest.raises(AuthFailed):
            await auth.authenticate(token)


def test_authenticator_refuses_an_empty_secret():
    with pytest.raises(ValueError):
        Authenticator("", None, Clock())


# --- API keys ----------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_api_key_create_verify_revoke(store, clock, key_file, checkpw_calls):
    await store.start()  # the file does not exist yet: no keys
    assert len(store) == 0
    expires = dt.datetime.fromtimestamp(int(clock.seconds()) + 3600, tz=dt.timezone.utc)
    key, record = create_key(key_file, "nvr-uploader", "operator", expires, cost=FAST)
    assert KEY_PATTERN.fullmatch(key) and key[4:12] == record.key_id

    # Created a moment ago, before any reload tick: verify still sees it.
    auth = Authenticator(SECRET, store, clock)
    identity = await auth.authenticate(key)
    assert identity == Identity(
        user_id=f"api_key_{record.key_id}",
        role="operator",
        expires_at=int(clock.seconds()) + 3600,
        kind="api_key",
        key_id=record.key_id,
    )
    assert len(checkpw_calls) == 1
    assert auth.still_valid(identity)

    assert revoke_key(key_file, record.key_id)
    assert auth.still_valid(identity)  # the in-memory copy has not been reloaded yet
    clock.advance(1.0)  # the reload tick notices the change
    assert store.record(record.key_id).is_active is False
    assert not auth.still_valid(identity)
    with pytest.raises(AuthFailed, match="revoked"):
        await auth.authenticate(key)
    assert len(checkpw_calls) == 1  # no bcrypt for a revoked key


@pytest_twisted.ensureDeferred
async def test_api_key_without_expiry(store, clock, key_file):
    key, record = create_key(key_file, "forever", "admin", None, cost=FAST)
    identity = await store.verify(key)
    assert identity.expires_at is None and identity.role == "admin"
    auth = Authenticator(SECRET, store, clock)
    clock.advance(10 * 365 * 86400)
    assert auth.still_valid(identity)


@pytest_twisted.ensureDeferred
async def test_api_key_delete_ends_the_session(store, clock, key_file):
    await store.start()
    key, record = create_key(key_file, "temp", "viewer", None, cost=FAST)
    auth = Authenticator(SECRET, store, clock)
    identity = await auth.authenticate(key)
    assert delete_key(key_file, record.key_id)
    clock.advance(1.0)
    assert store.record(record.key_id) is None
    assert not auth.still_valid(identity)
    with pytest.raises(AuthFailed, match="unknown"):
        await auth.authenticate(key)


@pytest_twisted.ensureDeferred
async def test_api_key_role_change_ends_the_session(store, clock, key_file):
    await store.start()
    key, record = create_key(key_file, "svc", "admin", None, cost=FAST)
    auth = Authenticator(SECRET, store, clock)
    identity = await auth.authenticate(key)
    with open(key_file) as f:
        document = json.load(f)
    document["keys"][0]["role"] = "viewer"
    write_raw(key_file, json.dumps(document))
    clock.advance(1.0)
    assert not auth.still_valid(identity)
    assert (await auth.authenticate(key)).role == "viewer"


@pytest_twisted.ensureDeferred
async def test_api_key_expired(store, clock, key_file, checkpw_calls):
    past = dt.datetime.fromtimestamp(clock.seconds() - 1, tz=dt.timezone.utc)
    key, _ = create_key(key_file, "old", "viewer", past, cost=FAST)
    with pytest.raises(AuthFailed, match="expired"):
        await store.verify(key)
    assert checkpw_calls == []


@pytest_twisted.ensureDeferred
async def test_api_key_expires_during_a_session(store, clock, key_file):
    soon = dt.datetime.fromtimestamp(int(clock.seconds()) + 60, tz=dt.timezone.utc)
    key, _ = create_key(key_file, "short", "viewer", soon, cost=FAST)
    auth = Authenticator(SECRET, store, clock)
    identity = await auth.authenticate(key)
    assert auth.still_valid(identity)
    clock.advance(soon.timestamp() - clock.seconds())  # exactly at expiry
    assert not auth.still_valid(identity)
    with pytest.raises(AuthFailed, match="expired"):
        await auth.authenticate(key)


@pytest_twisted.ensureDeferred
async def test_api_key_unknown_key_id(store, key_file, checkpw_calls):
    create_key(key_file, "svc", "viewer", None, cost=FAST)
    with pytest.raises(AuthFailed, match="unknown"):
        await store.verify("csk_zzzzzzzz_" + "A" * 32)
    assert checkpw_calls == []


@pytest_twisted.ensureDeferred
async def test_api_key_wrong_secret_runs_exactly_one_checkpw(store, key_file, checkpw_calls):
    key, record = create_key(key_file, "svc", "viewer", None, cost=FAST)
    create_key(key_file, "other", "viewer", None, cost=FAST)
    wrong = key[:-1] + ("A" if key[-1] != "A" else "B")
    with pytest.raises(AuthFailed, match="does not match"):
        await store.verify(wrong)
    assert len(checkpw_calls) == 1
    await store.verify(key)
    assert len(checkpw_calls) == 2


@pytest.mark.parametrize(
    "key",
    [
        "csk_short_" + "A" * 32,
        "csk_ABCDEFGH_" + "A" * 32,  # key_id is lower-case
        "csk_abcdefgh_" + "A" * 31,
        "csk_abcdefgh_" + "A" * 33,
        "csk_abcdefgh_" + "A" * 31 + "-",
        "csk_abcdefgh_" + "A" * 32 + "\n",
        "CSK_abcdefgh_" + "A" * 32,
        "abcdefgh",
        "",
        None,
    ],
)
@pytest_twisted.ensureDeferred
async def test_api_key_malformed(store, key, checkpw_calls):
    with pytest.raises(AuthFailed, match="malformed"):
        await store.verify(key)
    assert checkpw_calls == []


@pytest_twisted.ensureDeferred
async def test_bcrypt_runs_off_the_reactor_thread(key_file, checkpw_calls):
    key, _ = create_key(key_file, "svc", "viewer", None, cost=FAST)
    pool = ThreadPool(minthreads=1, maxthreads=2, name="test-auth")
    pool.start()
    ran_on: list[threading.Thread] = []

    def run_in_thread(f, *args, **kwargs):
        def traced(*a, **kw):
            ran_on.append(threading.current_thread())
            assert threading.current_thread() is not threading.main_thread()
            return f(*a, **kw)

        return deferToThreadPool(reactor, pool, traced, *args, **kwargs)

    try:
        store = ApiKeyStore(key_file, run_in_thread, reactor)
        identity = await store.verify(key)
    finally:
        pool.stop()
    assert identity.role == "viewer"
    assert len(checkpw_calls) == 1
    assert checkpw_calls[0] is not threading.main_thread()
    assert ran_on and all(t is not threading.main_thread() for t in ran_on)


def test_key_file_mode_and_format(key_file):
    key, record = create_key(key_file, "nvr-uploader", "operator", None, cost=FAST)
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(key_file)).st_mode) & 0o007 == 0
    with open(key_file) as f:
        document = json.load(f)
    assert document["version"] == "1.0"
    (entry,) = document["keys"]
    assert set(entry) == {"key_id", "name", "role", "key_hash", "created_at", "expires_at", "is_active"}
    assert entry["key_id"] == record.key_id and entry["expires_at"] is None and entry["is_active"] is True
    assert entry["created_at"].endswith("Z")
    assert key not in json.dumps(document)
    assert bcrypt.checkpw(key.encode(), entry["key_hash"].encode())
    revoke_key(key_file, record.key_id)
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert not [n for n in os.listdir(os.path.dirname(key_file)) if n != "api-keys.json"]


def test_create_key_default_cost_is_12(key_file):
    _, record = create_key(key_file, "svc", "viewer", None)
    assert record.key_hash.startswith("$2b$12$")


def test_management_helpers(key_file):
    assert list_keys(key_file) == []
    assert not revoke_key(key_file, "abcdefgh")
    assert not delete_key(key_file, "abcdefgh")
    _, first = create_key(key_file, "one", "viewer", None, cost=FAST)
    _, second = create_key(key_file, "two", "admin", dt.datetime(2099, 1, 1), cost=FAST)
    listed = {r.key_id: r for r in list_keys(key_file)}
    assert set(listed) == {first.key_id, second.key_id}
    assert listed[second.key_id].expires_at == dt.datetime(2099, 1, 1, tzinfo=dt.timezone.utc).timestamp()
    assert "key_hash" not in repr(listed[first.key_id])
    assert revoke_key(key_file, first.key_id)
    assert {r.key_id: r.is_active for r in list_keys(key_file)} == {first.key_id: False, second.key_id: True}
    assert delete_key(key_file, first.key_id)
    assert [r.key_id for r in list_keys(key_file)] == [second.key_id]
    assert not delete_key(key_file, first.key_id)
    with pytest.raises(ValueError):
        create_key(key_file, "bad", "root", None, cost=FAST)
    with pytest.raises(ValueError):
        create_key(key_file, "", "viewer", None, cost=FAST)


def test_management_refuses_to_overwrite_a_malformed_file(key_file):
    os.makedirs(os.path.dirname(key_file))
    write_raw(key_file, "{not json")
    with pytest.raises(KeyFileError):
        create_key(key_file, "svc", "viewer", None, cost=FAST)
    with pytest.raises(KeyFileError):
        list_keys(key_file)
    with open(key_file) as f:
        assert f.read() == "{not json"


@pytest.mark.parametrize(
    "broken",
    ["{not json", "[]", '{"version": "2.0", "keys": []}', '{"version": "1.0", "keys": {}}', ""],
)
@pytest_twisted.ensureDeferred
async def test_malformed_key_file_keeps_the_last_good_copy(store, clock, key_file, broken, log_text):
    key, record = create_key(key_file, "svc", "operator", None, cost=FAST)
    await store.start()
    auth = Authenticator(SECRET, store, clock)
    identity = await auth.authenticate(key)

    write_raw(key_file, broken)
    clock.advance(1.0)
    assert store.record(record.key_id) is not None
    assert auth.still_valid(identity)
    assert (await auth.authenticate(key)).role == "operator"
    assert any("unusable" in line for line in log_text)

    # The reload loop kept running: a good file is picked up again.
    write_raw(key_file, json.dumps({"version": "1.0", "keys": []}))
    clock.advance(1.0)
    assert store.record(record.key_id) is None
    assert not auth.still_valid(identity)


@pytest_twisted.ensureDeferred
async def test_malformed_key_file_at_start_means_no_keys(store, key_file):
    os.makedirs(os.path.dirname(key_file))
    write_raw(key_file, "{not json")
    await store.start()
    assert len(store) == 0
    with pytest.raises(AuthFailed):
        await store.verify("csk_abcdefgh_" + "A" * 32)


@pytest_twisted.ensureDeferred
async def test_a_bad_entry_disables_only_itself(store, key_file, log_text):
    key, record = create_key(key_file, "good", "viewer", None, cost=FAST)
    other, other_record = create_key(key_file, "bad", "viewer", None, cost=FAST)
    with open(key_file) as f:
        document = json.load(f)
    document["keys"][1]["role"] = "root"
    document["keys"].append({"key_id": "x"})
    write_raw(key_file, json.dumps(document))
    assert (await store.verify(key)).user_id == f"api_key_{record.key_id}"
    with pytest.raises(AuthFailed, match="unknown"):
        await store.verify(other)
    assert any("role" in line for line in log_text)


@pytest_twisted.ensureDeferred
async def test_duplicate_key_ids_are_refused(store, key_file):
    key, record = create_key(key_file, "svc", "viewer", None, cost=FAST)
    with open(key_file) as f:
        document = json.load(f)
    document["keys"].append(dict(document["keys"][0], role="admin"))
    write_raw(key_file, json.dumps(document))
    with pytest.raises(AuthFailed, match="unknown"):
        await store.verify(key)


@pytest_twisted.ensureDeferred
async def test_reload_loop_survives_errors(key_file, clock):
    key, record = create_key(key_file, "svc", "viewer", None, cost=FAST)
    failing = {"on": False}

    def flaky(f, *args, **kwargs):
        if failing["on"]:
            return fail(OSError("thread pool exploded"))
        return maybeDeferred(f, *args, **kwargs)

    store = ApiKeyStore(key_file, flaky, clock)
    await store.start()
    try:
        failing["on"] = True
        clock.advance(1.0)
        clock.advance(1.0)
        failing["on"] = False
        revoke_key(key_file, record.key_id)
        clock.advance(1.0)
        assert store.record(record.key_id).is_active is False
    finally:
        store.stop()
    assert not clock.getDelayedCalls()


@pytest_twisted.ensureDeferred
async def test_removed_key_file_removes_all_keys(store, clock, key_file):
    key, record = create_key(key_file, "svc", "viewer", None, cost=FAST)
    await store.start()
    assert store.record(record.key_id) is not None
    os.unlink(key_file)
    clock.advance(1.0)
    assert store.record(record.key_id) is None


@pytest_twisted.ensureDeferred
async def test_keys_and_hashes_are_never_logged(store, key_file, log_text):
    key, record = create_key(key_file, "svc", "viewer", None, cost=FAST)
    await store.start()
    await store.verify(key)
    with pytest.raises(AuthFailed) as info:
        await store.verify(key[:-1] + ("A" if key[-1] != "A" else "B"))
    write_raw(key_file, "{broken")
    await store.refresh()
    text = "\n".join(log_text) + str(info.value)
    assert key[13:] not in text and key[-12:] not in text
    assert record.key_hash not in text and record.key_hash[7:29] not in text


# --- the JWT secret ----------------------------------------------------------------


def test_secret_precedence(tmp_path):
    state = str(tmp_path / "state")
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-file\n")
    os.makedirs(state)
    (tmp_path / "state" / "jwt_secret").write_text("from-state\n")
    env = {"CAMERA_SERVICE_JWT_SECRET": "from-env"}

    assert resolve_jwt_secret("from-config", str(secret_file), state, env) == (
        "from-env",
        "environment CAMERA_SERVICE_JWT_SECRET",
    )
    assert resolve_jwt_secret("from-config", str(secret_file), state, {}) == (
        "from-file",
        f"file:{secret_file}",
    )
    secret, source = resolve_jwt_secret("from-config", "", state, {})
    assert secret == "from-config" and "from-config" not in source
    assert resolve_jwt_secret("", "", state, {"CAMERA_SERVICE_JWT_SECRET": ""}) == (
        "from-state",
        f"file:{state}/jwt_secret",
    )


def test_secret_file_must_exist_and_be_non_empty(tmp_path):
    missing = str(tmp_path / "nope")
    with pytest.raises(SecretError, match=missing):
        resolve_jwt_secret("from-config", missing, str(tmp_path), {})
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(SecretError, match=str(empty)):
        resolve_jwt_secret("from-config", str(empty), str(tmp_path), {})


def test_secret_generated_once_with_mode_0600(tmp_path):
    state = str(tmp_path / "var" / "state")
    secret, source = resolve_jwt_secret("", "", state, {})
    path = os.path.join(state, "jwt_secret")
    assert source == f"generated:{path}"
    assert len(secret) >= 43 and secret not in source
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(state).st_mode) & 0o007 == 0
    assert os.listdir(state) == ["jwt_secret"]  # no temporary file left behind
    again, source = resolve_jwt_secret("", "", state, {})
    assert again == secret and source == f"file:{path}"
    # A token minted with the generated secret verifies with the reused one.
    assert verify_jwt(mint_jwt(secret, "a", "viewer", 60, NOW), again, NOW).user_id == "a"


def test_secret_generation_is_not_world_readable_even_with_a_loose_umask(tmp_path):
    old = os.umask(0)
    try:
        resolve_jwt_secret("", "", str(tmp_path), {})
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "jwt_secret").st_mode) == 0o600


def test_an_emptied_state_secret_is_an_error(tmp_path):
    (tmp_path / "jwt_secret").write_text("")
    with pytest.raises(SecretError, match="jwt_secret"):
        resolve_jwt_secret("", "", str(tmp_path), {})

