"""Shared fixtures: a real service on loopback sockets, and JWTs to talk to it."""

from __future__ import annotations

import inspect
import os
import secrets
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from camera_service.auth.jwt_tokens import mint_jwt
from tests.wsclient import RpcClient, connect


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: Any, name: str, obj: Any) -> None:
    """Run every ``async def`` test in the reactor (pytest-twisted's ensureDeferred mark)."""
    if inspect.iscoroutinefunction(obj) and collector.funcnamefilter(name):
        pytest_twisted.ensureDeferred(obj)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class RunningService:
    root: Any
    secret: str
    ws_url: str
    health_url: str
    state_dir: Path
    clients: list[RpcClient] = field(default_factory=list)

    @property
    def app(self) -> Any:
        return self.root.app

    def token(self, role: str = "viewer", lifetime: int = 3600, user: str = "tester",
              now: float | None = None) -> str:
        issued = reactor.seconds() if now is None else now
        return mint_jwt(self.secret, user, role, lifetime, issued)

    async def client(self, *, origin: str | None = None, headers: dict[str, str] | None = None,
                     auto_pong: bool = True) -> RpcClient:
        client = await connect(self.ws_url, origin=origin, headers=headers, auto_pong=auto_pong)
        self.clients.append(client)
        return client

    async def authed_client(self, role: str = "viewer", **kwargs: Any) -> RpcClient:
        client = await self.client(**kwargs)
        await client.call("authenticate", {"auth_token": self.token(role)})
        return client


async def _until(condition: Any, deadline_seconds: float) -> None:
    from twisted.internet.task import deferLater

    deadline = reactor.seconds() + deadline_seconds
    while not condition():
        if reactor.seconds() > deadline:
            raise AssertionError("condition not reached in time")
        await deferLater(reactor, 0.01, lambda: None)


class ServiceFactory:
    def __init__(self, tmp_path: Path) -> None:
        self._tmp = tmp_path
        self._running: list[RunningService] = []

    def environ(self, **overrides: str) -> dict[str, str]:
        state = self._tmp / "state"
        env = {
            "CAMERA_SERVICE_SERVER_HOST": "127.0.0.1",
            "CAMERA_SERVICE_SERVER_ENDPOINT": "tcp:0:interface=127.0.0.1",
            "CAMERA_SERVICE_SERVER_STATE_DIR": str(state),
            "CAMERA_SERVICE_MEDIAMTX_ENABLED": "false",
            "CAMERA_SERVICE_MEDIAMTX_RECORDINGS_PATH": str(state / "recordings"),
            "CAMERA_SERVICE_MEDIAMTX_SNAPSHOTS_PATH": str(state / "snapshots"),
            "CAMERA_SERVICE_HTTP_HEALTH_HOST": "127.0.0.1",
            "CAMERA_SERVICE_HTTP_HEALTH_PORT": str(free_port()),
            "CAMERA_SERVICE_SECURITY_API_KEYS_FILE": str(state / "api-keys.json"),
            "CAMERA_SERVICE_SECURITY_JWT_SECRET_KEY": secrets.token_urlsafe(32),
            "CAMERA_SERVICE_VIRTUAL_CAMERAS": "[]",
        }
        env.update(overrides)
        return env

    async def start(self, *, ping_interval: float = 30.0, ping_timeout: float = 60.0,
                    camera_prober: Any = None, **overrides: str) -> RunningService:
        from camera_service.app import build_root
        from camera_service.config import load_config

        environ = self.environ(**overrides)
        config = load_config(None, environ)
        os.makedirs(config.server.state_dir, exist_ok=True)
        root = build_root(config, reactor, environ, ping_interval=ping_interval,
                          ping_timeout=ping_timeout, camera_prober=camera_prober)
        root.startService()
        api_port = await root.api_endpoint.when_listening()
        await root.health_endpoint.when_listening()
        if environ["CAMERA_SERVICE_MEDIAMTX_ENABLED"] == "false":
            # The first camera scan runs in the thread pool; until it has finished the
            # readiness gate answers service_initializing, which most tests do not test.
            await _until(lambda: root.app.readiness.status() == "ready", 10.0)
        running = RunningService(
            root=root,
            secret=environ["CAMERA_SERVICE_SECURITY_JWT_SECRET_KEY"],
            ws_url=f"ws://127.0.0.1:{api_port.getHost().port}{config.server.websocket_path}",
            health_url=f"http://127.0.0.1:{config.http_health.port}",
            state_dir=Path(config.server.state_dir),
        )
        self._running.append(running)
        return running

    def stop_all(self) -> None:
        for running in self._running:
            for client in running.clients:
                client.drop()
            if running.root.running:
                pytest_twisted.blockon(running.root.stopService())
        self._running.clear()


@pytest.fixture
def services(tmp_path: Path):
    factory = ServiceFactory(tmp_path)
    yield factory
    factory.stop_all()


@pytest.fixture
def service(services: ServiceFactory) -> RunningService:
    return pytest_twisted.blockon(defer.ensureDeferred(services.start()))
