"""camera-service-cli as a real child process against a real service on loopback sockets.

The service runs on the test's reactor, so children are spawned with
``reactor.spawnProcess`` and read asynchronously: a blocking ``subprocess.run`` here
would freeze the service the child is talking to. The child and the service share
nothing but sockets.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import defer, reactor
from twisted.internet.defer import Deferred, DeferredQueue
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread

from camera_service.auth.apikeys import create_key
from camera_service.client import connect
from camera_service.client.cli import COMMANDS
from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).parent / "camera-service-cli"
VIRTUAL = json.dumps([{"id": "camera100", "name": "Test pattern", "pattern": "testsrc2",
                       "size": "320x240", "rate": 15}])
COMMAND_NAMES = ["call", "ping", "info", "status", "cameras", "snapshot", "record", "stop",
                 "recordings", "snapshots", "watch", "download"]


def child_env(**extra: str) -> dict[str, str]:
    """The test's environment without any CAMERA_SERVICE_* setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMERA_SERVICE_")}
    paths = [str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.update(extra)
    return env


# --- children ------------------------------------------------------------------------


class Child(ProcessProtocol):
    """A running CLI: stdout lines are queued with their arrival time, as they come."""

    def __init__(self) -> None:
        self.lines: DeferredQueue[tuple[float, str]] = DeferredQueue()
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.ended: Deferred[int] = Deferred()
        self.code: int | None = None
        self._partial = b""

    def outReceived(self, data: bytes) -> None:
        self.stdout += data
        self._partial += data
        *complete, self._partial = self._partial.split(b"\n")
        for line in complete:
            self.lines.put((reactor.seconds(), line.decode("utf-8")))

    def errReceived(self, data: bytes) -> None:
        self.stderr += data

    def processEnded(self, reason: Any) -> None:
        # A signal death is reported as its negative number, like subprocess does.
        value = reason.value
        self.code = value.exitCode if value.exitCode is not None else -value.signal
        self.ended.callback(self.code)

    @property
    def running(self) -> bool:
        return self.code is None

    async def next_line(self, timeout: float = 15.0) -> tuple[float, str]:
        waiting = self.lines.get()
        waiting.addTimeout(timeout, reactor)
        return await waiting

    def signal(self, name: str) -> None:
        if self.running:
            self.transport.signalProcess(name)


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    def error(self) -> Any:
        return json.loads(self.stderr.strip().splitlines()[-1])


class Cli:
    """Starts CLI children and kills any left running at the end of the test."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.children: list[Child] = []

    def spawn(self, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
              script: bool = False, child_fds: dict[int, Any] | None = None) -> Child:
        child = Child()
        argv = [str(SCRIPT)] if script else [sys.executable, "-m", "camera_service.client"]
        reactor.spawnProcess(child, argv[0], [*argv, *args], env=env if env is not None else child_env(),
                             path=str(cwd or self.tmp), childFDs=child_fds or {0: "w", 1: "r", 2: "r"})
        child.transport.closeStdin()
        self.children.append(child)
        return child

    async def run(self, *args: str, timeout: float = 60.0, **kwargs: Any) -> Result:
        child = self.spawn(*args, **kwargs)
        ended = child.ended
        ended.addTimeout(timeout, reactor)
        code = await ended
        return Result(code, child.stdout.decode("utf-8"), child.stderr.decode("utf-8"))

    def kill_all(self) -> None:
        for child in self.children:
            if child.running:
                child.transport.signalProcess("KILL")


@pytest.fixture
def cli(tmp_path: Path):
    runner = Cli(tmp_path)
    yield runner
    runner.kill_all()


async def start(services: Any, **env: str) -> Any:
    return await services.start(CAMERA_SERVICE_VIRTUAL_CAMERAS=VIRTUAL, **env)


def url_args(running: Any) -> list[str]:
    return ["--url", running.ws_url]


def store_path(running: Any, kind: str, name: str) -> Path:
    return Path(running.app.stores[kind].root) / "camera100" / name


# --- help ----------------------------------------------------------------------------


def test_help_documents_every_command_and_each_command_has_its_own_help(tmp_path: Path) -> None:
    # No service here, so blocking subprocess calls are fine.
    assert sorted(COMMANDS) == sorted(COMMAND_NAMES)
    env = child_env()
    main_help = subprocess.run([str(SCRIPT), "--help"], env=env, cwd=tmp_path, capture_output=True,
                               text=True, timeout=60, check=False)
    assert main_help.returncode == 0, main_help.stderr
    assert main_help.stdout.startswith("usage: camera-service-cli")
    commands_section = main_help.stdout.split("\ncommands:\n", 1)[1]
    for name in COMMAND_NAMES:
        assert f"\n    {name} " in commands_section, name
    for topic in ("METHOD [PARAMS_JSON]", "CAMERA_SERVICE_TOKEN", "CAMERA_SERVICE_API_KEY",
                  "exit status", "--timeout", "--api-key"):
        assert topic in main_help.stdout, topic

    children = {name: subprocess.Popen([sys.executable, "-m", "camera_service.client", name, "--help"],
                                       env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True)
                for name in COMMAND_NAMES}
    helps = {}
    for name, child in children.items():
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, (name, err)
        assert out.startswith(f"usage: camera-service-cli {name} "), (name, out)
        assert "--url" in out and "--token" in out, name  # global options also after the command
        helps[name] = out
    assert "--continue" in helps["download"] and "--pretty" in helps["watch"]
    assert "--duration" in helps["record"] and "PARAMS_JSON" in helps["call"]


# --- calls and convenience commands ------------------------------------------------


async def test_call_and_convenience_commands_print_results(services: Any, cli: Cli) -> None:
    running = await start(services)
    admin = child_env(CAMERA_SERVICE_TOKEN=running.token("admin"))
    url = url_args(running)

    async def ok(*args: str, env: dict[str, str] = admin, **kwargs: Any) -> Any:
        result = await cli.run(*args, env=env, **kwargs)
        assert result.code == 0, (args, result.stderr)
        return result.json()

    legacy, called, cameras, camera, status, info, pong = await defer.gatherResults([
        defer.ensureDeferred(ok(*url, "get_camera_list", script=True)),  # the old form
        defer.ensureDeferred(ok(*url, "call", "get_camera_capabilities", '{"device": "camera100"}')),
        defer.ensureDeferred(ok("cameras", *url)),  # global options after the command too
        defer.ensureDeferred(ok(*url, "status", "camera100")),
        defer.ensureDeferred(ok(*url, "status")),
        defer.ensureDeferred(ok(*url, "info")),
        defer.ensureDeferred(ok(*url, "ping", env=child_env())),  # needs no credential
    ])
    assert [c["device"] for c in legacy["cameras"]] == ["camera100"]
    assert legacy == cameras
    assert called["device"] == "camera100" and called["validation_status"] in ("CONFIRMED", "NONE")
    assert camera["device"] == "camera100" and camera["status"] == "CONNECTED"
    assert status["status"] in ("HEALTHY", "DEGRADED", "UNHEALTHY") and "components" in status
    assert info["version"] == "1.0.0"
    assert pong == "pong"

    shot = await ok(*url, "snapshot", "camera100", "--filename", "cli-shot")
    assert shot["status"] == "SUCCESS" and shot["filename"] == "cli-shot.jpg"
    assert store_path(running, "snapshots", "cli-shot.jpg").stat().st_size == shot["file_size"]
    snapshots = await ok(*url, "snapshots", "--limit", "10")
    assert [f["filename"] for f in snapshots["files"]] == ["cli-shot.jpg"]
    assert snapshots["limit"] == 10

    # --token on the command line, and `call authenticate` with its own params.
    viewer = running.token("viewer")
    listed = await ok(*url, "--token", viewer, "recordings", env=child_env())
    assert listed["files"] == [] and listed["total"] == 0
    session = await ok(*url, "call", "authenticate", json.dumps({"auth_token": viewer}),
                       env=child_env())
    assert session["authenticated"] is True and session["role"] == "viewer"


async def test_errors_and_exit_codes(services: Any, cli: Cli) -> None:
    running = await start(services)
    url = url_args(running)
    operator = child_env(CAMERA_SERVICE_TOKEN=running.token("operator"))
    viewer = child_env(CAMERA_SERVICE_TOKEN=running.token("viewer"))
    refused = f"ws://127.0.0.1:{free_port()}/ws"

    results = await defer.gatherResults([defer.ensureDeferred(coro) for coro in [
        cli.run(*url, "stop", "camera100", env=operator),
        cli.run(*url, "snapshot", "camera100", env=viewer),
        cli.run(*url, "cameras", env=child_env()),
        cli.run(*url, "--token", "not.a.jwt", "cameras", env=child_env()),
        cli.run(*url, "call", "get_camera_status", "[1]", env=operator),
        cli.run(*url, "get_camera_status", "{not json", env=operator),
        cli.run(*url, "record", env=operator),
        cli.run(*url, "--bogus", "cameras", env=operator),
        cli.run("--url", refused, "cameras", env=operator),
        cli.run("--url", refused, "download", "snapshots", "x.jpg", env=operator),
        cli.run(*url, "download", "snapshots", "missing.jpg", "-o", "out.jpg", env=operator),
        cli.run(*url, "download", "snapshots", "missing.jpg", "-o", "out.jpg", env=child_env()),
    ]])
    (not_recording, denied, unauthenticated, bad_token, array_params, bad_json, missing_device,
     bad_option, no_server, no_http_server, not_found, no_credential) = results

    assert not_recording.code == 1 and not_recording.stdout == ""
    error = not_recording.error()
    assert error["code"] == -32020 and error["data"]["reason"] == "not_recording"
    assert error["message"] and error["data"]["allowed_states"] == ["RECORDING"]
    assert denied.code == 1 and denied.error()["code"] == -32002
    assert denied.error()["data"]["required_role"] == "operator"
    assert unauthenticated.code == 1 and unauthenticated.error()["data"]["reason"] == "auth_required"
    assert bad_token.code == 1 and bad_token.error()["data"]["reason"] == "auth_failed"

    for usage in (array_params, bad_json, missing_device, bad_option):
        assert usage.code == 2, usage
        assert usage.stdout == ""
    assert "JSON object" in array_params.stderr
    assert "not JSON" in bad_json.stderr

    for failed in (no_server, no_http_server):
        assert failed.code == 3, failed
        assert "refused" in failed.stderr.lower() and "Traceback" not in failed.stderr

    assert not_found.code == 1
    assert not_found.error()["status"] == 404 and not_found.error()["error"] == "File not found"
    assert no_credential.code == 1 and no_credential.error()["status"] == 401
    assert not (cli.tmp / "out.jpg").exists()


# --- watch ---------------------------------------------------------------------------


async def _until_subscribed(client: Any, topic: str, count: int) -> None:
    deadline = reactor.seconds() + 20
    while True:
        stats = await client.call("get_subscription_stats")
        if stats["global_stats"]["topic_counts"].get(topic, 0) >= count:
            return
        assert reactor.seconds() < deadline, stats
        await deferLater(reactor, 0.05, lambda: None)


async def test_watch_prints_notifications_live_until_a_signal(services: Any, cli: Cli) -> None:
    running = await start(services)
    url = url_args(running)
    env = child_env(CAMERA_SERVICE_TOKEN=running.token("viewer"))
    as_json = cli.spawn(*url, "watch", "--device", "camera100", env=env)
    pretty = cli.spawn(*url, "watch", "recording_status_update", "--pretty", env=env)

    operator = await connect(running.ws_url, token=running.token("operator"))
    try:
        await operator.subscribe(["recording_status_update"])
        # The children print "watching ..." on stderr; the service's own count is firmer.
        await _until_subscribed(operator, "recording_status_update", 3)
        assert "watching camera_status_update, recording_status_update for camera100" in \
            as_json.stderr.decode()

        started = await operator.call("start_recording", {"device": "camera100", "duration": 2})
        arrived, line = await as_json.next_line()
        message = json.loads(line)
        assert message == {"method": "recording_status_update",
                           "params": {"device": "camera100", "status": "STARTED",
                                      "filename": started["filename"], "duration": 0}}
        # Live: the line is out while the recording still runs and the child still watches.
        assert as_json.running
        first = await operator.next_notification(timeout=10)
        assert first.params["status"] == "STARTED"
        stop = await operator.next_notification(timeout=20)
        stopped_at = reactor.seconds()
        assert stop.params["status"] == "STOPPED"
        assert arrived < stopped_at

        _, line = await as_json.next_line()
        message = json.loads(line)
        assert message["method"] == "recording_status_update"
        assert message["params"]["status"] == "STOPPED"
        assert message["params"]["filename"] == started["filename"]

        _, pretty_started = await pretty.next_line()
        _, pretty_stopped = await pretty.next_line()
        assert f" recording_status_update camera100 STARTED filename={started['filename']} duration=0" \
            in pretty_started
        assert " recording_status_update camera100 STOPPED " in pretty_stopped
    finally:
        await operator.close()

    as_json.signal("TERM")
    pretty.signal("INT")
    codes = await defer.gatherResults([as_json.ended, pretty.ended])
    assert codes == [0, 0], (as_json.stderr, pretty.stderr)
    for child in (as_json, pretty):
        assert b"Traceback" not in child.stderr
        assert child.stdout.endswith(b"\n")
    assert len(as_json.stdout.splitlines()) == 2


async def test_watch_count_all_topics_expiry_and_server_shutdown(services: Any, cli: Cli) -> None:
    running = await start(services)
    url = url_args(running)
    env = child_env(CAMERA_SERVICE_TOKEN=running.token("operator"))
    # The server stops notifying an expired session without a word; watch says so.
    short_lived = running.token("viewer", lifetime=8)  # room for a slow start
    expiring = cli.spawn(*url, "watch", env=child_env(CAMERA_SERVICE_TOKEN=short_lived))
    counted = cli.spawn(*url, "watch", "--all", "--count", "1", env=env)
    left = cli.spawn(*url, "watch", env=env)
    piped = cli.spawn(*url, "watch", "snapshot.taken", env=env)  # its reader goes away
    both = await cli.run(*url, "watch", "--all", "snapshot.taken", env=env)
    assert both.code == 2
    unknown = await cli.run(*url, "watch", "no.such.topic", env=env)
    assert unknown.code == 1 and unknown.error()["data"]["rule"] == "unknown_topic"

    client = await connect(running.ws_url, token=running.token("operator"))
    try:
        await _until_subscribed(client, "snapshot.taken", 2)
        await _until_subscribed(client, "recording_status_update", 2)
        piped.transport.closeStdout()
        await client.call("take_snapshot", {"device": "camera100"})
    finally:
        await client.close()
    assert await counted.ended == 0
    assert json.loads(counted.stdout)["method"] == "snapshot.taken"
    assert await piped.ended == 0  # a closed pipe ends watch quietly, like `| head -1`
    assert b"Traceback" not in piped.stderr and b"BrokenPipe" not in piped.stderr
    expiring.ended.addTimeout(20, reactor)
    assert await expiring.ended == 1
    assert "the credential expired at " in expiring.stderr.decode()

    await running.root.stopService()
    assert await left.ended == 3
    assert "connection closed by the server (code 1001)" in left.stderr.decode()


# --- download ------------------------------------------------------------------------


async def _record(running: Any) -> tuple[str, str]:
    """A finished 2 s recording and a snapshot; their names."""
    client = await connect(running.ws_url, token=running.token("operator"))
    try:
        await client.subscribe(["recording_status_update"])
        shot = await client.call("take_snapshot", {"device": "camera100"})
        started = await client.call("start_recording", {"device": "camera100", "duration": 2})
        while True:
            notification = await client.next_notification(timeout=20)
            if notification.params["status"] == "STOPPED":
                break
    finally:
        await client.close()
    return started["filename"], shot["filename"]


async def test_download_recording_and_snapshot_and_resume(services: Any, cli: Cli,
                                                          tmp_path: Path) -> None:
    key_file = tmp_path / "keys.json"
    api_key, _ = create_key(str(key_file), "cli-test", "viewer", None, cost=4)
    running = await start(services, CAMERA_SERVICE_SECURITY_API_KEYS_FILE=str(key_file))
    stem, snapshot = await _record(running)
    recording = store_path(running, "recordings", stem + ".mp4").read_bytes()
    picture = store_path(running, "snapshots", snapshot).read_bytes()
    assert len(recording) > 10_000
    url = url_args(running)
    env = child_env(CAMERA_SERVICE_TOKEN=running.token("viewer"))

    whole = await cli.run(*url, "download", "recordings", stem, "-o", "whole.mp4", env=env)
    assert whole.code == 0, whole.stderr
    assert (tmp_path / "whole.mp4").read_bytes() == recording
    summary = whole.json()
    assert summary["size"] == summary["received"] == len(recording)
    assert summary["resumed_from"] == 0
    assert "\r" not in whole.stderr and whole.stderr.startswith("camera-service-cli: whole.mp4: ")

    # Without -o: the server's name, in the working directory; with a directory: inside it.
    (tmp_path / "into").mkdir()
    named, into = await defer.gatherResults([defer.ensureDeferred(coro) for coro in [
        cli.run(*url, "download", "snapshots", snapshot, env=env),
        cli.run(*url, "download", "recordings", stem, "-o", "into", env=env),
    ]])
    assert named.code == 0 and into.code == 0, (named.stderr, into.stderr)
    assert (tmp_path / snapshot).read_bytes() == picture
    assert (tmp_path / "into" / f"{stem}.mp4").read_bytes() == recording

    # --continue completes a partial file with a Range request.
    half = len(recording) // 2
    (tmp_path / "partial.mp4").write_bytes(recording[:half])
    resumed = await cli.run(*url, "download", "recordings", stem, "-o", "partial.mp4", "--continue",
                            env=env)
    assert resumed.code == 0, resumed.stderr
    assert (tmp_path / "partial.mp4").read_bytes() == recording
    assert resumed.json()["resumed_from"] == half
    assert resumed.json()["received"] == len(recording) - half
    assert "resumed after" in resumed.stderr

    # A complete file: nothing to fetch. Without --continue: overwritten from scratch.
    again = await cli.run(*url, "download", "recordings", stem, "-o", "partial.mp4", "-c", env=env)
    assert again.code == 0 and again.json()["received"] == 0
    assert "already complete" in again.stderr
    (tmp_path / "garbage.mp4").write_bytes(b"x" * (half + 7))
    fresh = await cli.run(*url, "download", "recordings", stem, "-o", "garbage.mp4", env=env)
    assert fresh.code == 0 and (tmp_path / "garbage.mp4").read_bytes() == recording

    # An API key goes in X-API-Key (api.md §7.2) and also authenticates calls.
    keyed = child_env(CAMERA_SERVICE_API_KEY=api_key)
    by_key, listed = await defer.gatherResults([defer.ensureDeferred(coro) for coro in [
        cli.run(*url, "download", "snapshots", snapshot, "-o", "keyed.jpg", env=keyed),
        cli.run(*url, "recordings", env=keyed),
    ]])
    assert by_key.code == 0, by_key.stderr
    assert (tmp_path / "keyed.jpg").read_bytes() == picture
    assert listed.code == 0 and [f["filename"] for f in listed.json()["files"]] == [stem]


def _read_pty(master: int) -> bytes:
    """Blocking (run in a thread): everything written to the pty until the child closes it."""
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError as error:
            if error.errno == errno.EIO:  # Linux: every slave descriptor is closed
                break
            raise
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


async def test_download_draws_a_progress_bar_only_on_a_terminal(services: Any, cli: Cli,
                                                                 tmp_path: Path) -> None:
    running = await start(services)
    stem, _ = await _record(running)
    master, slave = os.openpty()
    try:
        child = cli.spawn("--url", running.ws_url, "download", "recordings", stem, "-o", "tty.mp4",
                          env=child_env(CAMERA_SERVICE_TOKEN=running.token("viewer"), COLUMNS="100"),
                          child_fds={0: "w", 1: "r", 2: slave})
    finally:
        os.close(slave)
    try:
        shown = await deferToThread(_read_pty, master)
    finally:
        os.close(master)
    assert await child.ended == 0
    text = shown.decode()
    assert "\r" in text and "100.0%" in text and "[####" in text, text
    assert text.rstrip().endswith("s")  # the summary line follows the cleared bar
    assert (tmp_path / "tty.mp4").read_bytes() == \
        store_path(running, "recordings", stem + ".mp4").read_bytes()
