"""The real daemon as a child process: ``twistd -n --pidfile= camera-service --config ...``.

Helpers for tests/test_process.py. Children are spawned with ``reactor.spawnProcess``
so async tests never block the reactor; every child is killed at fixture teardown.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any, Mapping

import pytest_twisted
import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.internet.utils import getProcessOutputAndValue

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TWISTD = str(BIN / "twistd")
ADMIN = str(BIN / "camera-service-admin")
SHIPPED_CONFIG = str(REPO / "conf" / "camera-service.yaml")
EX_CONFIG = 78


def free_port() -> int:
    """A loopback port nobody listens on (also used as a deliberately closed port)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def daemon_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    """The operator's environment, made unprivileged and local to ``tmp_path``.

    Inherited ``CAMERA_SERVICE_*`` variables are dropped (an unknown one is a config
    error). PYTHONPATH is left alone on purpose: the daemon must find its plugin the
    way an operator's install does (.ci/bootstrap installs in compat editable mode).
    """
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMERA_SERVICE_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update({
        "CAMERA_SERVICE_SERVER_HOST": "127.0.0.1",
        "CAMERA_SERVICE_SERVER_PORT": str(free_port()),
        "CAMERA_SERVICE_HTTP_HEALTH_HOST": "127.0.0.1",
        "CAMERA_SERVICE_HTTP_HEALTH_PORT": str(free_port()),
        "CAMERA_SERVICE_SERVER_STATE_DIR": str(state),
        "CAMERA_SERVICE_MEDIAMTX_RECORDINGS_PATH": str(state / "recordings"),
        "CAMERA_SERVICE_MEDIAMTX_SNAPSHOTS_PATH": str(state / "snapshots"),
        "CAMERA_SERVICE_SECURITY_API_KEYS_FILE": str(state / "api-keys.json"),
        # No MediaMTX here: a free loopback port that stays closed.
        "CAMERA_SERVICE_MEDIAMTX_API_PORT": str(free_port()),
    })
    env.update(overrides)
    return env


def twistd_argv(config: str = SHIPPED_CONFIG) -> list[str]:
    return [TWISTD, "-n", "--pidfile=", "camera-service", "--config", config]


class _Collector(ProcessProtocol):
    def __init__(self) -> None:
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.ended: Deferred[Any] = Deferred()
        self.ended_at: float | None = None
        self.exit_code: int | None = None
        self.exit_signal: int | None = None

    def outReceived(self, data: bytes) -> None:
        self.stdout.extend(data)

    def errReceived(self, data: bytes) -> None:
        self.stderr.extend(data)

    def processEnded(self, reason: Any) -> None:
        self.ended_at = time.monotonic()
        value = reason.value
        if isinstance(value, (ProcessDone, ProcessTerminated)):
            self.exit_code = value.exitCode
            self.exit_signal = value.signal
        self.ended.callback((self.exit_code, self.exit_signal))


class Daemon:
    """One spawned ``twistd camera-service`` and what it printed."""

    def __init__(self, env: Mapping[str, str], argv: list[str]) -> None:
        self.env = dict(env)
        self.argv = argv
        self._proto = _Collector()
        self.process = reactor.spawnProcess(self._proto, argv[0], argv, env=self.env, path=str(REPO))
        self.api_port = int(self.env["CAMERA_SERVICE_SERVER_PORT"])
        self.health_port = int(self.env["CAMERA_SERVICE_HTTP_HEALTH_PORT"])

    # -- what it said -----------------------------------------------------------------

    @property
    def stdout(self) -> str:
        return self._proto.stdout.decode("utf-8", "replace")

    @property
    def stderr(self) -> str:
        return self._proto.stderr.decode("utf-8", "replace")

    def output(self) -> str:
        return f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"

    @property
    def running(self) -> bool:
        return not self._proto.ended.called

    @property
    def ended(self) -> Deferred[Any]:
        """Fires with ``(exit_code, signal)``; a new Deferred each time, safe to await twice."""
        waiter: Deferred[Any] = Deferred()
        if self._proto.ended.called:
            waiter.callback((self._proto.exit_code, self._proto.exit_signal))
        else:
            self._proto.ended.addBoth(lambda result: (waiter.callback(result), result)[1])
        return waiter

    @property
    def ended_at(self) -> float | None:
        return self._proto.ended_at

    # -- talking to it ----------------------------------------------------------------

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.api_port}/ws"

    def health_url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.health_port}{path}"

    async def get(self, path: str) -> tuple[int, Any, str]:
        """``(status, headers, body text)`` of a GET on the health listener."""
        response = await treq.get(self.health_url(path), timeout=5, persistent=False)
        body = await response.text("utf-8")
        return response.code, response.headers, body

    async def get_json(self, path: str) -> tuple[int, dict[str, Any]]:
        code, _, body = await self.get(path)
        return code, json.loads(body)

    async def wait_for(self, path: str, status: int, deadline: float) -> dict[str, Any]:
        """Poll ``path`` until it answers ``status``; fail with the child's output."""
        limit = time.monotonic() + deadline
        last: Any = None
        while True:
            if not self.running:
                raise AssertionError(f"daemon exited early: {self._proto.exit_code}/"
                                     f"{self._proto.exit_signal}\n{self.output()}")
            try:
                code, body = await self.get_json(path)
                if code == status:
                    return body
                last = (code, body)
            except Exception as error:  # not listening yet
                last = error
            if time.monotonic() > limit:
                raise AssertionError(f"{path} did not answer {status} within {deadline} s "
                                     f"(last: {last!r})\n{self.output()}")
            await deferLater(reactor, 0.1, lambda: None)

    async def admin(self, *args: str) -> tuple[str, str, int]:
        """``camera-service-admin --config <same config> ARGS`` with the daemon's environment."""
        config = self.argv[self.argv.index("--config") + 1]
        out, err, code = await getProcessOutputAndValue(
            ADMIN, ["--config", config, *args], env=self.env, path=str(REPO))
        return out.decode(), err.decode(), code

    # -- stopping ---------------------------------------------------------------------

    def signal(self, name: str) -> None:
        if self.running:
            self.process.signalProcess(name)

    async def stop(self, timeout: float = 10.0) -> tuple[int | None, int | None]:
        """SIGTERM, then SIGKILL after ``timeout``."""
        self.signal("TERM")
        killer = reactor.callLater(timeout, self.signal, "KILL")
        try:
            return await self.ended
        finally:
            if killer.active():
                killer.cancel()


class DaemonFactory:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self._children: list[Daemon] = []

    def env(self, **overrides: str) -> dict[str, str]:
        return daemon_env(self.tmp_path, **overrides)

    def spawn(self, env: Mapping[str, str] | None = None, config: str = SHIPPED_CONFIG) -> Daemon:
        daemon = Daemon(self.env() if env is None else env, twistd_argv(config))
        self._children.append(daemon)
        return daemon

    def kill_all(self) -> None:
        for daemon in self._children:
            if daemon.running:
                daemon.signal("KILL")
                try:
                    pytest_twisted.blockon(daemon.ended)
                except Exception:
                    pid = getattr(daemon.process, "pid", None)
                    if pid:
                        os.kill(pid, signal.SIGKILL)
        self._children.clear()
