"""The real daemon, started as an operator starts it: ``twistd -n camera-service``.

Every test runs ``<venv>/bin/twistd -n --pidfile= camera-service --config conf/camera-service.yaml``
(the shipped file) as a child process, unprivileged in tmp_path through CAMERA_SERVICE_*
overrides, and talks to it over real sockets (api.md §1.4, §7.1; media.md §8.3).
"""

from __future__ import annotations

import json
import re
import secrets
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from camera_service.auth.jwt_tokens import mint_jwt
from tests.processes import (
    EX_CONFIG,
    REPO,
    SHIPPED_CONFIG,
    TWISTD,
    DaemonFactory,
    daemon_env,
    twistd_argv,
)
from tests.wsclient import connect

STARTUP_DEADLINE = 20.0


@pytest.fixture
def daemons(tmp_path: Path):
    factory = DaemonFactory(tmp_path)
    yield factory
    factory.kill_all()


def _assert_clean_log(text: str) -> None:
    assert "Traceback" not in text, text
    assert "Unhandled" not in text, text
    assert not re.search(r"#(error|critical)\]", text), text


# -- 1. the plugin ----------------------------------------------------------------------


def test_twistd_lists_the_plugin(tmp_path: Path) -> None:
    result = subprocess.run([TWISTD, "--help"], env=daemon_env(tmp_path), cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert re.search(r"^\s+camera-service\s+USB camera node", result.stdout, re.M), result.stdout


# -- 2. start-up with the shipped configuration ---------------------------------------


async def test_starts_with_shipped_config(daemons: DaemonFactory, tmp_path: Path) -> None:
    daemon = daemons.spawn()
    await daemon.wait_for("/health/live", 200, STARTUP_DEADLINE)

    # No secret configured: one is generated, 0600, and only its path is logged.
    secret_path = tmp_path / "state" / "jwt_secret"
    assert stat.S_IMODE(secret_path.stat().st_mode) == 0o600
    secret = secret_path.read_text().strip()
    assert len(secret) >= 32
    assert f"Generated a new JWT secret in {secret_path}" in daemon.stdout
    assert secret not in daemon.stdout and secret not in daemon.stderr

    code, headers, body = await daemon.get("/health")
    assert code == 200 and json.loads(body)["status"] == "degraded"  # no MediaMTX here
    assert headers.getRawHeaders("Content-Type") == ["application/json"]
    # The shipped virtual camera is available, so start-up is "partial": ready, degraded
    # (media.md §6.1: MediaMTX being down is never unhealthy).
    await daemon.wait_for("/health/ready", 200, STARTUP_DEADLINE)
    code, headers, metrics = await daemon.get("/metrics")
    assert code == 200 and "camera_service_up 1" in metrics
    assert headers.getRawHeaders("Content-Type")[0].startswith("text/plain")

    # The admin tool, with the same environment, finds the generated secret.
    token, err, status = await daemon.admin("token", "--user", "ops", "--role", "admin")
    assert status == 0, err
    assert "generated" not in err
    client = await connect(daemon.ws_url)
    try:
        auth = await client.call("authenticate", {"auth_token": token.strip()})
        assert auth["authenticated"] is True and auth["role"] == "admin"
        assert await client.call("ping") == "pong"
        info = await client.call("get_server_info")
        assert info["name"] and info["version"] == "1.0.0" and info["max_cameras"] == 10
        # MediaMTX is unreachable, but the shipped virtual camera makes the node usable.
        status = await client.call("get_system_status")
        assert status["status"] == "partial" and status["available_cameras"] == ["camera100"]
        cameras = await client.call("get_camera_list")
        assert [(c["device"], c["status"], c["name"]) for c in cameras["cameras"]] == [
            ("camera100", "CONNECTED", "Test pattern")]
        assert cameras["cameras"][0]["resolution"] == "1280x720" and cameras["cameras"][0]["fps"] == 30
    finally:
        client.drop()
    assert daemon.running, daemon.output()


# -- 3. orderly shutdown on SIGTERM -----------------------------------------------------


async def test_sigterm_notifies_closes_1001_and_exits(daemons: DaemonFactory) -> None:
    secret = secrets.token_urlsafe(32)
    # subscribe_events is behind the readiness gate (api.md §8), so no MediaMTX to wait for.
    daemon = daemons.spawn(daemons.env(CAMERA_SERVICE_JWT_SECRET=secret,
                                       CAMERA_SERVICE_MEDIAMTX_ENABLED="false"))
    await daemon.wait_for("/health/live", 200, STARTUP_DEADLINE)
    await daemon.wait_for("/health/ready", 200, 5.0)
    client = await connect(daemon.ws_url)
    await client.call("authenticate", {"auth_token": mint_jwt(secret, "ops", "viewer", 3600, time.time())})
    await client.call("subscribe_events", {"topics": ["system.shutdown"]})
    seen_at_close: list[list[dict]] = []
    client.closed.addCallback(lambda code: (seen_at_close.append(list(client.notifications.pending)), code)[1])

    signalled = time.monotonic()
    daemon.signal("TERM")
    code = await client.closed
    exit_code, exit_signal = await daemon.ended
    took = daemon.ended_at - signalled

    # The event came before the close frame, then 1001 "server shutdown".
    assert [m["method"] for m in seen_at_close[0]] == ["system.shutdown"]
    assert seen_at_close[0][0]["params"]["reason"]
    assert code == 1001 and client.close_reason == "server shutdown"
    print(f"exit {took:.3f} s after SIGTERM")
    assert took < 2.0, f"exit took {took:.2f} s\n{daemon.output()}"
    # twistd re-raises SIGTERM after its orderly shutdown.
    assert (exit_code, exit_signal) in ((None, signal.SIGTERM), (0, None)), daemon.output()
    assert "Main loop terminated" in daemon.stdout and "Server Shut Down" in daemon.stdout
    _assert_clean_log(daemon.stdout + daemon.stderr)


# -- 4. configuration errors: exit 78, one line ---------------------------------------


def _bad_config(tmp_path: Path) -> str:
    path = tmp_path / "bad.yaml"
    path.write_text("server:\n  host: 127.0.0.1\n  prot: 8002\n")
    return str(path)


CONFIG_ERRORS = {
    "env_range": (
        lambda tmp: ({"CAMERA_SERVICE_MEDIAMTX_API_PORT": "99999"}, SHIPPED_CONFIG),
        r"camera-service: config error: mediamtx\.api_port: must be an integer from 1 to 65535, "
        r"got 99999 \(from CAMERA_SERVICE_MEDIAMTX_API_PORT\)",
    ),
    "unknown_yaml_key": (
        lambda tmp: ({}, _bad_config(tmp)),
        r"camera-service: config error: server\.prot: unknown key; did you mean server\.port\? "
        r"\(from .*bad\.yaml\)",
    ),
    "missing_file": (
        lambda tmp: ({}, str(tmp / "nowhere.yaml")),
        r"camera-service: config error: .*nowhere\.yaml: cannot read the configuration file: "
        r"No such file or directory",
    ),
    "unreadable_path": (
        lambda tmp: ({}, str(tmp)),
        r"camera-service: config error: .*: cannot read the configuration file: Is a directory",
    ),
    "unknown_env_var": (
        lambda tmp: ({"CAMERA_SERVICE_SERVER_PROT": "1"}, SHIPPED_CONFIG),
        r"camera-service: config error: CAMERA_SERVICE_SERVER_PROT: unknown environment variable; "
        r"did you mean CAMERA_SERVICE_SERVER_PORT\?.*",
    ),
}


@pytest.mark.parametrize("case", list(CONFIG_ERRORS))
def test_config_error_exits_78_with_one_line(case: str, tmp_path: Path) -> None:
    make, pattern = CONFIG_ERRORS[case]
    overrides, config = make(tmp_path)
    result = subprocess.run(twistd_argv(config), env=daemon_env(tmp_path, **overrides), cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == EX_CONFIG, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and result.stderr.endswith("\n"), result.stderr
    assert re.fullmatch(pattern, lines[0]), lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    # Nothing started: no secret generated, nothing listening.
    assert not (tmp_path / "state" / "jwt_secret").exists()


# -- 5. MediaMTX disabled: the service becomes ready -----------------------------------


async def test_ready_without_mediamtx(daemons: DaemonFactory) -> None:
    secret = secrets.token_urlsafe(32)
    daemon = daemons.spawn(daemons.env(CAMERA_SERVICE_MEDIAMTX_ENABLED="false",
                                       CAMERA_SERVICE_SECURITY_JWT_SECRET_KEY=secret))
    await daemon.wait_for("/health/live", 200, STARTUP_DEADLINE)
    ready = await daemon.wait_for("/health/ready", 200, 5.0)
    assert ready == {"ready": True, "timestamp": ready["timestamp"], "message": "System is ready"}
    client = await connect(daemon.ws_url)
    try:
        await client.call("authenticate", {"auth_token": mint_jwt(secret, "ops", "viewer", 3600, time.time())})
        status = await client.call("get_system_status")
        assert status["status"] == "ready"
    finally:
        client.drop()
    # Secret from the configuration: nothing generated.
    assert not (daemons.tmp_path / "state" / "jwt_secret").exists()


# -- 6. logging to a file as JSON -------------------------------------------------------


async def test_json_log_file(daemons: DaemonFactory, tmp_path: Path) -> None:
    log_file = tmp_path / "log" / "camera-service.log"
    daemon = daemons.spawn(daemons.env(CAMERA_SERVICE_LOGGING_FILE=str(log_file),
                                       CAMERA_SERVICE_LOGGING_FORMAT="json",
                                       CAMERA_SERVICE_MEDIAMTX_ENABLED="false"))
    await daemon.wait_for("/health/live", 200, STARTUP_DEADLINE)
    exit_code, exit_signal = await daemon.stop()
    assert (exit_code, exit_signal) in ((None, signal.SIGTERM), (0, None)), daemon.output()

    lines = log_file.read_text("utf-8").splitlines()
    assert lines
    events = [json.loads(line) for line in lines]  # JSON lines: one object per line
    assert all(isinstance(event, dict) and "log_level" in event for event in events)
    namespaces = {event.get("log_namespace") for event in events}
    assert "camera_service.app" in namespaces
    assert any(event.get("log_format", "").startswith("camera-service {version} started")
               for event in events)
    assert any("Main loop terminated" in event.get("log_format", "") for event in events)
    # With a file configured, the file replaces stdout (logging.file: "" means stdout).
    assert "started" not in daemon.stdout, daemon.output()
