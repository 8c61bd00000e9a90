"""camera-service-admin, run as a real subprocess against a temporary configuration."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import jwt
import pytest
import pytest_twisted
from twisted.internet.defer import maybeDeferred
from twisted.internet.task import Clock

from camera_service.auth import ApiKeyStore, AuthFailed, verify_jwt
from camera_service.auth.apikeys import KEY_PATTERN, list_keys

REPO = Path(__file__).resolve().parents[1]


def _base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMERA_SERVICE_")}
    paths = [str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


@dataclass
class Cli:
    tmp: Path
    config: Path
    state_dir: Path
    key_file: Path

    def write_config(self, extra_security: str = "", extra: str = "") -> None:
        self.config.write_text(
            f"""\
server:
  state_dir: {self.state_dir}
security:
  api_keys:
    file: {self.key_file}
{extra_security}
mediamtx:
  recordings_path: {self.state_dir}/recordings
  snapshots_path: {self.state_dir}/snapshots
{extra}"""
        )

    def run(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        full_env = _base_env()
        full_env.update(env or {})
        return subprocess.run(
            [sys.executable, "-m", "camera_service.admin", "--config", str(self.config), *args],
            cwd=str(self.tmp),
            env=full_env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def ok(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        result = self.run(*args, env=env)
        assert result.returncode == 0, result.stderr
        return result


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    state = tmp_path / "state"
    c = Cli(tmp_path, tmp_path / "camera-service.yaml", state, state / "api-keys.json")
    c.write_config()
    return c


def _sync_thread(f, *args, **kwargs):
    return maybeDeferred(f, *args, **kwargs)


def _wall_clock() -> Clock:
    clock = Clock()
    clock.advance(time.time())
    return clock


def _unverified(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


# --- token -------------------------------------------------------------------------


def test_token_verifies_with_the_generated_secret(cli):
    result = cli.ok("token", "--user", "alice", "--role", "operator", "--lifetime", "1h")
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    token = lines[0]
    secret_path = cli.state_dir / "jwt_secret"
    assert stat.S_IMODE(secret_path.stat().st_mode) == 0o600
    secret = secret_path.read_text().strip()
    assert secret not in result.stdout + result.stderr

    identity = verify_jwt(token, secret, time.time())
    assert (identity.user_id, identity.role, identity.kind) == ("alice", "operator", "jwt")
    claims = _unverified(token)
    assert set(claims) == {"user_id", "role", "iat", "exp"}
    assert claims["exp"] - claims["iat"] == 3600

    # The second run reuses the persisted secret.
    second = cli.ok("token", "--user", "bob", "--role", "viewer").stdout.strip()
    assert (cli.state_dir / "jwt_secret").read_text().strip() == secret
    assert verify_jwt(second, secret, time.time()).role == "viewer"
    assert _unverified(second)["exp"] - _unverified(second)["iat"] == 24 * 3600  # default


@pytest.mark.parametrize("lifetime, seconds", [("3600", 3600), ("7d", 7 * 86400), ("90m", 5400)])
def test_token_lifetime_forms(cli, lifetime, seconds):
    env = {"CAMERA_SERVICE_JWT_SECRET": "env-secret-" + "e" * 40}
    token = cli.ok("token", "--user", "u", "--role", "admin", "--lifetime", lifetime, env=env).stdout.strip()
    claims = _unverified(token)
    assert claims["exp"] - claims["iat"] == seconds


def test_token_environment_secret_wins(cli):
    secret = "env-secret-" + "e" * 40
    cli.write_config(extra_security='  jwt_secret_key: "config-secret-' + "c" * 40 + '"')
    token = cli.ok("token", "--user", "alice", "--role", "admin", env={"CAMERA_SERVICE_JWT_SECRET": secret})
    assert verify_jwt(token.stdout.strip(), secret, time.time()).role == "admin"
    assert not (cli.state_dir / "jwt_secret").exists()


def test_token_configured_secret(cli):
    secret = "config-secret-" + "c" * 40
    cli.write_config(extra_security=f'  jwt_secret_key: "{secret}"')
    token = cli.ok("token", "--user", "alice", "--role", "viewer").stdout.strip()
    assert verify_jwt(token, secret, time.time()).user_id == "alice"
    assert not (cli.state_dir / "jwt_secret").exists()


def test_token_state_dir_from_the_environment(cli, tmp_path):
    other = tmp_path / "other-state"
    token = cli.ok(
        "token", "--user", "alice", "--role", "viewer", env={"CAMERA_SERVICE_SERVER_STATE_DIR": str(other)}
    ).stdout.strip()
    secret = (other / "jwt_secret").read_text().strip()
    assert verify_jwt(token, secret, time.time()).role == "viewer"
    assert not (cli.state_dir / "jwt_secret").exists()


def test_missing_secret_file_is_a_config_error(cli, tmp_path):
    missing = tmp_path / "no-such-secret"
    cli.write_config(extra_security=f"  jwt_secret_file: {missing}")
    result = cli.run("token", "--user", "alice", "--role", "viewer")
    assert result.returncode == 78
    assert str(missing) in result.stderr
    assert result.stdout == ""


def test_invalid_configuration_exits_78(cli):
    cli.write_config(extra="no_such_section:\n  key: 1\n")
    result = cli.run("token", "--user", "alice", "--role", "viewer")
    assert result.returncode == 78
    assert "config error" in result.stderr
    assert result.stdout == ""


# --- usage errors ------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("token", "--user", "alice", "--role", "Admin"),
        ("token", "--user", "alice", "--role", "root"),
        ("token", "--role", "viewer"),
        ("token", "--user", "alice", "--role", "viewer", "--lifetime", "soon"),
        ("token", "--user", "alice", "--role", "viewer", "--lifetime", "0"),
        ("keys", "create", "--name", "x", "--role", "superuser"),
        ("keys", "create", "--role", "viewer"),
        ("keys", "create", "--name", "x", "--role", "viewer", "--expires-in", "1d",
         "--expires-at", "2099-01-01"),
        ("keys", "create", "--name", "x", "--role", "viewer", "--expires-at", "yesterday"),
        ("keys", "create", "--name", "x", "--role", "viewer", "--expires-at", "2000-01-01T00:00:00Z"),
        ("keys", "revoke", "NOT-AN-ID"),
        ("keys",),
        (),
    ],
)
def test_usage_errors_exit_2(cli, args):
    result = cli.run(*args)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert not cli.key_file.exists()


def test_help_documents_every_command(cli):
    top = cli.ok("--help").stdout
    assert "token" in top and "keys" in top
    keys = cli.ok("keys", "--help").stdout
    for action in ("create", "list", "revoke", "delete"):
        assert action in keys
    assert "--expires-in" in cli.ok("keys", "create", "--help").stdout
    assert "--lifetime" in cli.ok("token", "--help").stdout


# --- keys --------------------------------------------------------------------------


def test_keys_create_list_revoke_delete_round_trip(cli):
    created = cli.ok("keys", "create", "--name", "nvr-uploader", "--role", "operator")
    (key,) = created.stdout.splitlines()
    assert KEY_PATTERN.fullmatch(key)
    key_id = key[4:12]
    assert key_id in created.stderr and key not in created.stderr
    assert stat.S_IMODE(cli.key_file.stat().st_mode) == 0o600
    assert key not in cli.key_file.read_text()
    (record,) = list_keys(str(cli.key_file))
    assert record.key_hash.startswith("$2b$12$")

    listed = cli.ok("keys", "list")
    header, row = listed.stdout.splitlines()
    assert header.split() == ["KEY_ID", "NAME", "ROLE", "ACTIVE", "CREATED", "EXPIRES"]
    assert row.split()[:4] == [key_id, "nvr-uploader", "operator", "yes"]
    assert row.split()[5] == "never"
    assert "$2" not in listed.stdout + listed.stderr and key not in listed.stdout

    revoked = cli.ok("keys", "revoke", key_id)
    assert key_id in revoked.stderr
    assert cli.ok("keys", "list").stdout.splitlines()[1].split()[3] == "no"
    assert stat.S_IMODE(cli.key_file.stat().st_mode) == 0o600

    cli.ok("keys", "delete", key_id)
    assert cli.ok("keys", "list").stdout.splitlines() == [cli.ok("keys", "list").stdout.splitlines()[0]]

    for action in ("revoke", "delete"):
        missing = cli.run("keys", action, key_id)
        assert missing.returncode == 1
        assert key_id in missing.stderr


@pytest_twisted.ensureDeferred
async def test_created_key_works_in_the_service_until_revoked(cli):
    created = cli.ok("keys", "create", "--name", "svc", "--role", "viewer", "--expires-in", "30d")
    key = created.stdout.strip()
    store = ApiKeyStore(str(cli.key_file), _sync_thread, _wall_clock())
    identity = await store.verify(key)
    assert identity.role == "viewer" and identity.user_id == f"api_key_{key[4:12]}"
    assert abs(identity.expires_at - (time.time() + 30 * 86400)) < 60

    rows = json.loads(cli.ok("keys", "list", "--json").stdout)
    assert rows[0]["key_id"] == key[4:12] and rows[0]["expires_at"].endswith("Z")
    assert "key_hash" not in rows[0]

    cli.ok("keys", "revoke", key[4:12])
    with pytest.raises(AuthFailed, match="revoked"):
        await store.verify(key)


def test_keys_create_expires_at(cli):
    key = cli.ok(
        "keys", "create", "--name", "svc", "--role", "admin", "--expires-at", "2099-01-31T12:00:00+01:00"
    ).stdout.strip()
    (record,) = list_keys(str(cli.key_file))
    assert record.key_id == key[4:12]
    assert record.expires_at == 4073540400.0  # 2099-01-31T11:00:00Z
    assert "2099-01-31T11:00:00Z" in cli.ok("keys", "list").stdout


def test_key_file_from_environment_and_option(cli, tmp_path):
    env_file = tmp_path / "env" / "keys.json"
    env = {"CAMERA_SERVICE_API_KEYS_PATH": str(env_file)}
    cli.ok("keys", "create", "--name", "via-env", "--role", "viewer", env=env)
    assert [r.name for r in list_keys(str(env_file))] == ["via-env"]
    assert not cli.key_file.exists()

    option_file = tmp_path / "opt" / "keys.json"
    cli.ok("--key-file", str(option_file), "keys", "create", "--name", "global", "--role", "viewer", env=env)
    cli.ok("keys", "create", "--key-file", str(option_file), "--name", "local", "--role", "viewer", env=env)
    assert sorted(r.name for r in list_keys(str(option_file))) == ["global", "local"]
    assert [r.name for r in list_keys(str(env_file))] == ["via-env"]
    assert stat.S_IMODE((tmp_path / "opt").stat().st_mode) & 0o007 == 0


def test_malformed_key_file_is_reported_not_overwritten(cli):
    cli.state_dir.mkdir()
    cli.key_file.write_text("{broken")
    result = cli.run("keys", "create", "--name", "svc", "--role", "viewer")
    assert result.returncode == 1
    assert "not a valid key file" in result.stderr
    assert result.stdout == ""
    assert cli.key_file.read_text() == "{broken"
