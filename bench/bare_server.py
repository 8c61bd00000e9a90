"""Bare reference server for the benchmark: Autobahn on Twisted, nothing else.

It serves a WebSocket on ``ws://<host>:<port>/ws`` through the same structure the
service uses (one twisted.web ``Site`` with an Autobahn ``WebSocketResource`` as the
``/ws`` child), with the protocol options a production server would use (no
permessage-deflate, 1 MiB message limit, 30 s keep-alive ping / 60 s timeout).

Each text frame is parsed as JSON and answered:

* ``ping``          -> ``{"jsonrpc":"2.0","result":"pong","id":<id>}``
* ``authenticate``  -> ``{"jsonrpc":"2.0","result":{"authenticated":true},"id":<id>}``
  (the token is not checked: it only makes the generator's connection set-up identical)
* anything else     -> a bare ``-32601`` error.

This is the "framework floor" the service is compared against: the service's
numbers are reported as a ratio to this server, measured in the same run.

Testing aid only (never used for the reference numbers): ``--server-info`` also
answers ``get_server_info`` with a static object, and ``--health-port`` serves
``GET /health/live`` so that ``bench/run.py --stand-in-service`` can exercise the
whole orchestration with a second bare server in place of the real service.

Usage: ``python bench/bare_server.py --port 9100 [--host 127.0.0.1]``
"""

from __future__ import annotations

import argparse
import json
import resource
import signal
import sys

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet import reactor
from twisted.web.resource import Resource
from twisted.web.server import Site

MAX_MESSAGE = 1024 * 1024

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_loads = json.loads

SERVER_INFO = {
    "name": "bare reference server",
    "version": "0.0.0",
    "capabilities": [],
}


def raise_nofile_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return the new (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)


class BareProtocol(WebSocketServerProtocol):
    answer_server_info = False

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if isBinary:
            return
        try:
            msg = _loads(payload)
            method = msg.get("method")
            rid = msg.get("id")
        except Exception:
            self.sendMessage(
                b'{"jsonrpc":"2.0","error":{"code":-32700,"message":"Parse error"},"id":null}'
            )
            return
        if rid is None:
            return  # notification: no response
        if method == "ping":
            out = {"jsonrpc": "2.0", "result": "pong", "id": rid}
        elif method == "authenticate":
            out = {"jsonrpc": "2.0", "result": {"authenticated": True}, "id": rid}
        elif method == "get_server_info" and self.answer_server_info:
            out = {"jsonrpc": "2.0", "result": SERVER_INFO, "id": rid}
        else:
            out = {
                "jsonrpc": "2.0",
                "error": {"code": -32601, "message": "Method not found"},
                "id": rid,
            }
        self.sendMessage(_dumps(out).encode("utf-8"))


class _Live(Resource):
    isLeaf = True

    def render_GET(self, request):  # noqa: N802 (twisted naming)
        request.setHeader(b"content-type", b"application/json")
        return b'{"alive":true,"message":"System is alive"}'


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", default="ws", help="WebSocket path segment (default: ws)")
    ap.add_argument("--server-info", action="store_true",
                    help="testing aid: also answer get_server_info")
    ap.add_argument("--health-port", type=int, default=0,
                    help="testing aid: serve GET /health/live on this port")
    args = ap.parse_args(argv)

    soft, hard = raise_nofile_limit()

    factory = WebSocketServerFactory(f"ws://{args.host}:{args.port}")
    factory.protocol = BareProtocol
    BareProtocol.answer_server_info = args.server_info
    factory.setProtocolOptions(
        maxMessagePayloadSize=MAX_MESSAGE,
        maxFramePayloadSize=MAX_MESSAGE,
        autoPingInterval=30,
        autoPingTimeout=60,
        # perMessageCompressionAccept deliberately not set: no permessage-deflate.
    )

    root = Resource()
    root.putChild(args.path.encode(), WebSocketResource(factory))
    site = Site(root)
    site.noisy = False
    factory.noisy = False
    reactor.listenTCP(args.port, site, interface=args.host)

    if args.health_port:
        hroot = Resource()
        health = Resource()
        hroot.putChild(b"health", health)
        health.putChild(b"live", _Live())
        hsite = Site(hroot)
        hsite.noisy = False
        reactor.listenTCP(args.health_port, hsite, interface=args.host)

    def _stop(signum, _frame):
        reactor.callFromThread(reactor.stop)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    sys.stdout.write(
        f"bare_server listening ws://{args.host}:{args.port}/{args.path} "
        f"(RLIMIT_NOFILE soft={soft} hard={hard})\n"
    )
    sys.stdout.flush()
    reactor.run(installSignalHandlers=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
