"""A minimal command-line client: connect, authenticate, call one method, print the answer.

    camera-service-cli [--url ws://localhost:8002/ws] [--token T] METHOD [PARAMS_JSON]

The token comes from ``--token`` or the ``CAMERA_SERVICE_TOKEN`` environment variable
(a JWT or an API key); without one, only ``ping`` and ``authenticate`` can succeed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol, connectWS
from twisted.internet import defer, task

EXIT_RPC_ERROR = 1
EXIT_CONNECTION = 3


class _OneShot(WebSocketClientProtocol):
    def onOpen(self) -> None:
        self.factory.steps = list(self.factory.requests)
        self._next()

    def _next(self) -> None:
        if not self.factory.steps:
            self.sendClose(1000)
            return
        request = self.factory.steps.pop(0)
        self.sendMessage(json.dumps(request).encode("utf-8"))

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        message = json.loads(payload)
        if "id" not in message:
            return  # a notification, not our answer
        if "error" in message:
            self.factory.outcome = message
            self.sendClose(1000)
            return
        self.factory.outcome = message
        self._next()

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if not self.factory.done.called:
            self.factory.done.callback((code, reason))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="camera-service-cli", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=os.environ.get("CAMERA_SERVICE_URL", "ws://localhost:8002/ws"),
                        help="WebSocket URL of the API (default: %(default)s)")
    parser.add_argument("--token", default=os.environ.get("CAMERA_SERVICE_TOKEN", ""),
                        help="JWT or API key (default: $CAMERA_SERVICE_TOKEN)")
    parser.add_argument("method", help="JSON-RPC method name, e.g. get_server_info")
    parser.add_argument("params", nargs="?", default=None, help="named parameters as a JSON object")
    return parser


async def _run(reactor: Any, args: argparse.Namespace) -> int:
    try:
        params = json.loads(args.params) if args.params else None
    except ValueError as error:
        sys.stderr.write(f"camera-service-cli: params are not JSON: {error}\n")
        return 2
    requests: list[dict[str, Any]] = []
    if args.token and args.method != "authenticate":
        requests.append({"jsonrpc": "2.0", "method": "authenticate",
                         "params": {"auth_token": args.token}, "id": "auth"})
    call: dict[str, Any] = {"jsonrpc": "2.0", "method": args.method, "id": 1}
    if params is not None:
        call["params"] = params
    requests.append(call)
    factory = WebSocketClientFactory(args.url)
    factory.protocol = _OneShot
    factory.requests = requests
    factory.outcome = None
    factory.done = defer.Deferred()
    connector = connectWS(factory)
    factory.clientConnectionFailed = lambda _, reason: factory.done.called or factory.done.errback(reason)
    try:
        await factory.done
    except Exception as error:
        sys.stderr.write(f"camera-service-cli: cannot connect to {args.url}: {error}\n")
        return EXIT_CONNECTION
    finally:
        connector.disconnect()
    if factory.outcome is None:
        sys.stderr.write("camera-service-cli: connection closed without an answer\n")
        return EXIT_CONNECTION
    sys.stdout.write(json.dumps(factory.outcome.get("result", factory.outcome.get("error")), indent=2) + "\n")
    return EXIT_RPC_ERROR if "error" in factory.outcome else 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    outcome: list[int] = []

    async def runner(reactor: Any) -> None:
        outcome.append(await _run(reactor, args))

    try:
        task.react(lambda reactor: defer.ensureDeferred(runner(reactor)))
    except SystemExit as exit_:
        if exit_.code not in (0, None):
            return int(exit_.code)
    return outcome[0] if outcome else EXIT_CONNECTION


if __name__ == "__main__":
    sys.exit(main())
