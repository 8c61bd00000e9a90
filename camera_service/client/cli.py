"""camera-service-cli: call the camera-service API, follow its notifications, download files.

The command line is a thin layer over :mod:`camera_service.client.rpc` and
:mod:`camera_service.client.download`; everything it prints goes through
:class:`Output` (results on stdout, diagnostics and progress on stderr).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shutil
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import IO, Any

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.error import ReactorNotRunning
from twisted.python.failure import Failure

from camera_service.client.download import (
    KINDS,
    Downloader,
    DownloadError,
    HttpError,
    IncompleteDownload,
    auth_headers,
    file_url,
    http_base,
)
from camera_service.client.rpc import (
    DEFAULT_URL,
    CameraServiceClient,
    ClientTimeout,
    ConnectFailed,
    ConnectionLost,
    Notification,
    RpcError,
    connect,
)
from camera_service.events import NOTIFICATION_NAMES, TOPICS

PROG = "camera-service-cli"

EXIT_OK = 0
EXIT_RPC_ERROR = 1  # the server refused: a JSON-RPC error, or an HTTP error status
EXIT_USAGE = 2
EXIT_CONNECTION = 3  # no connection, connection lost, no answer in time, truncated download
EXIT_INTERRUPTED = 130  # Ctrl-C/SIGTERM during a one-shot command (watch exits 0)

DEFAULT_WATCH_TOPICS = ("camera_status_update", "recording_status_update")
ALL_TOPICS = (*NOTIFICATION_NAMES, *TOPICS)

DESCRIPTION = """\
Command-line client of camera-service: call any JSON-RPC method, run common operations,
follow notifications live, and download recordings and snapshots.

It connects to the WebSocket API (--url), authenticates with --token (a JWT) or
--api-key when one is given, runs one command and prints its result as JSON on stdout.
"""

EPILOG = f"""\
compatibility:
  {PROG} METHOD [PARAMS_JSON]     is the same as   {PROG} call METHOD [PARAMS_JSON]

environment:
  CAMERA_SERVICE_URL       default for --url
  CAMERA_SERVICE_TOKEN     default for --token (a JWT; an API key also works)
  CAMERA_SERVICE_API_KEY   default for --api-key

exit status:
  0  success
  1  the server refused the request: the JSON-RPC error object (or the HTTP status of a
     download) is printed as JSON on stderr; also local file errors
  2  usage error (bad arguments or PARAMS_JSON)
  3  connection failure: cannot connect, connection lost, no answer within --timeout,
     or a download that ended early (the partial file is kept for --continue)

examples:
  export CAMERA_SERVICE_TOKEN=$(make -s token ROLE=admin)
  {PROG} cameras
  {PROG} call get_camera_capabilities '{{"device": "camera0"}}'
  {PROG} record camera0 --duration 10
  {PROG} watch --device camera0 --pretty
  {PROG} download recordings camera0_2025-01-15_14-30-00 -o clip.mp4 --continue
"""


class UsageError(Exception):
    """Bad arguments found after parsing (exit status 2)."""


# --- output --------------------------------------------------------------------------


class Output:
    """Every byte the command line writes goes through here.

    Results go to stdout, one JSON document per command (or one JSON line per
    notification for ``watch``), flushed at once so that a pipe sees each line as it
    happens. Diagnostics, error objects and progress go to stderr.
    """

    def __init__(self, stdout: IO[str] | None = None, stderr: IO[str] | None = None) -> None:
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr

    @property
    def stderr_is_tty(self) -> bool:
        try:
            return self.stderr.isatty()
        except (AttributeError, ValueError):
            return False

    def result(self, value: Any) -> None:
        self.line(json.dumps(value, indent=2, ensure_ascii=False))

    def line(self, text: str) -> None:
        """One line on stdout. Raises BrokenPipeError when the reader has gone."""
        try:
            self.stdout.write(text + "\n")
            self.stdout.flush()
        except BrokenPipeError:
            # Point stdout at /dev/null so that the interpreter's final flush does not
            # print a second BrokenPipeError; the caller decides how to stop.
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, self.stdout.fileno())
            except (AttributeError, OSError, ValueError):
                pass
            finally:
                os.close(devnull)
            raise

    def error(self, value: Mapping[str, Any]) -> None:
        """An error object (JSON-RPC or HTTP) as one JSON line on stderr."""
        self._err(json.dumps(value, ensure_ascii=False) + "\n")

    def message(self, text: str) -> None:
        self._err(f"{PROG}: {text}\n")

    def progress(self, text: str) -> None:
        """Raw text for a progress display (carriage returns, no newline)."""
        self._err(text)

    def _err(self, text: str) -> None:
        try:
            self.stderr.write(text)
            self.stderr.flush()
        except (BrokenPipeError, ValueError):
            pass  # nowhere left to report to


def human_size(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"  # not reached


class ProgressBar:
    """A one-line progress bar redrawn in place on a terminal, at most every
    ``interval`` seconds (drawing every 64 KiB chunk would cost more than the copy)."""

    def __init__(self, out: Output, label: str, *, clock: Callable[[], float] = time.monotonic,
                 interval: float = 0.1, columns: int | None = None) -> None:
        self._out = out
        self._label = label
        self._clock = clock
        self._interval = interval
        self._columns = columns or shutil.get_terminal_size((80, 24)).columns
        self._started: float | None = None
        self._base = 0
        self._last_draw = float("-inf")
        self._drawn = 0

    def update(self, done: int, total: int | None) -> None:
        now = self._clock()
        if self._started is None:
            self._started, self._base = now, done  # a resumed part is not "speed"
        if now - self._last_draw < self._interval and done != total:
            return
        self._last_draw = now
        self._draw(self.render(done, total, now))

    def render(self, done: int, total: int | None, now: float) -> str:
        elapsed = max(now - (self._started if self._started is not None else now), 1e-6)
        rate = (done - self._base) / elapsed
        speed = f"{human_size(rate)}/s"
        if not total:
            return f"{self._label} {human_size(done)} {speed}"
        fraction = min(done / total, 1.0)
        eta = ""
        if rate > 0 and done < total:
            seconds = int((total - done) / rate)
            eta = f" ETA {seconds // 60}:{seconds % 60:02d}"
        numbers = f" {fraction * 100:5.1f}% {human_size(done)}/{human_size(total)} {speed}{eta}"
        # A fixed allowance for the numbers keeps the bar from changing length as they do.
        width = max(10, self._columns - len(self._label) - 56)
        filled = int(fraction * width)
        return f"{self._label} [{'#' * filled}{'.' * (width - filled)}]{numbers}"

    def _draw(self, text: str) -> None:
        text = text[: max(self._columns - 1, 1)]
        self._out.progress("\r" + text.ljust(self._drawn))
        self._drawn = len(text)

    def clear(self) -> None:
        if self._drawn:
            self._out.progress("\r" + " " * self._drawn + "\r")
            self._drawn = 0


def format_pretty(notification: Notification, now: _dt.datetime | None = None) -> str:
    """``<time> <method> [<device>] [<status>] key=value ...`` for people reading along."""
    params = dict(notification.params)
    stamp = params.pop("timestamp", None)
    if not isinstance(stamp, str):
        stamp = (now or _dt.datetime.now(_dt.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    parts = [stamp, notification.method]
    for key in ("device", "status"):
        if key in params:
            parts.append(str(params.pop(key)))
    for key, value in params.items():
        text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
        parts.append(f"{key}={text}")
    return " ".join(parts)


# --- the command line ----------------------------------------------------------------


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
    return value


def _int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def _add_global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """The global options, accepted before or after the command name.

    The copy on each command uses SUPPRESS defaults, so an option given before the
    command is not reset by the command's parser.
    """

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    env = os.environ
    group = parser.add_argument_group("connection options")
    group.add_argument("--url", default=default(env.get("CAMERA_SERVICE_URL", DEFAULT_URL)),
                       help="WebSocket URL of the API (default: $CAMERA_SERVICE_URL or "
                            f"{DEFAULT_URL}); downloads use the same host and port over HTTP")
    group.add_argument("--http-url", default=default(None), metavar="URL",
                       help="base URL for downloads when it differs from --url "
                            "(e.g. http://host:8002 behind a proxy)")
    group.add_argument("--token", default=default(env.get("CAMERA_SERVICE_TOKEN") or None),
                       help="JWT to authenticate with (default: $CAMERA_SERVICE_TOKEN)")
    group.add_argument("--api-key", default=default(env.get("CAMERA_SERVICE_API_KEY") or None),
                       help="API key to authenticate with when there is no --token "
                            "(default: $CAMERA_SERVICE_API_KEY)")
    group.add_argument("--timeout", type=_positive_float, default=default(30.0), metavar="SECONDS",
                       help="limit for connecting, for each answer and for a stalled download "
                            "(default: 30)")
    group.add_argument("-v", "--verbose", action="store_true", default=default(False),
                       help="log the client's internals to stderr")


def _list_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--limit", type=_int_at_least(1),
                        help="at most this many files (1-1000, default 50)")
    parser.add_argument("--offset", type=_int_at_least(0), help="skip this many files (default 0)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_global_options(parser, suppress=False)
    common = argparse.ArgumentParser(add_help=False)
    _add_global_options(common, suppress=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    commands.required = True

    def command(name: str, help_text: str, description: str | None = None) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help_text, description=description or help_text,
                                   parents=[common])

    sub = command("call", "call any JSON-RPC method and print its result",
                  "Call any JSON-RPC method (api.md §4) and print its result as JSON. Without a "
                  "credential only ping and authenticate succeed.")
    sub.add_argument("method", metavar="METHOD", help="method name, e.g. get_server_info")
    sub.add_argument("params", metavar="PARAMS_JSON", nargs="?",
                     help='named parameters as a JSON object, e.g. \'{"device": "camera0"}\'')

    command("ping", "check that the service answers (ping)")
    command("info", "server name, version and capabilities (get_server_info)")
    sub = command("status", "service health (get_status, admin), or one camera's status "
                            "(get_camera_status DEVICE)")
    sub.add_argument("device", metavar="DEVICE", nargs="?", help="camera id, e.g. camera0")
    command("cameras", "list the cameras (get_camera_list)")

    sub = command("snapshot", "take a JPEG snapshot (take_snapshot)")
    sub.add_argument("device", metavar="DEVICE", help="camera id")
    sub.add_argument("--filename", help="file name to store it under (.jpg is added if missing)")

    sub = command("record", "start recording (start_recording)")
    sub.add_argument("device", metavar="DEVICE", help="camera id")
    sub.add_argument("--duration", type=_int_at_least(1), metavar="N",
                     help="stop automatically after N seconds (default: until `stop`)")
    sub.add_argument("--format", help="fmp4 (default) or mp4")

    sub = command("stop", "stop recording (stop_recording)")
    sub.add_argument("device", metavar="DEVICE", help="camera id")

    _list_options(command("recordings", "list recordings (list_recordings)"))
    _list_options(command("snapshots", "list snapshots (list_snapshots)"))

    sub = command("watch", "print notifications live until Ctrl-C",
                  "Subscribe to notifications and print each one as it arrives, as one JSON "
                  'line {"method": ..., "params": ...} (or a human format with --pretty), '
                  "until Ctrl-C or SIGTERM (exit status 0), or until the credential expires "
                  "(exit status 1). Without TOPICS: "
                  f"{', '.join(DEFAULT_WATCH_TOPICS)}.")
    sub.add_argument("topics", metavar="TOPICS", nargs="*",
                     help="notification names or event topics (api.md §5), e.g. "
                          "recording.start camera.connected")
    sub.add_argument("--all", action="store_true", help="every notification name and event topic")
    sub.add_argument("--device", help="only notifications about this camera")
    sub.add_argument("--pretty", action="store_true", help="one readable line per notification")
    sub.add_argument("--count", type=_int_at_least(1), metavar="N",
                     help="exit after N notifications")

    sub = command("download", "download a recording or a snapshot over HTTP",
                  "Download a file from /files/recordings or /files/snapshots on the API port, "
                  "streaming it to disk. A progress bar is drawn on stderr when it is a "
                  "terminal; a summary line is printed at the end, and the result as JSON on "
                  "stdout.")
    sub.add_argument("kind", choices=KINDS, help="recordings or snapshots")
    sub.add_argument("name", metavar="NAME",
                     help="file name; for a recording the stem from list_recordings is enough")
    sub.add_argument("-o", "--output", metavar="PATH",
                     help="file or directory to write (default: the server's file name in "
                          "the current directory)")
    sub.add_argument("-c", "--continue", dest="resume", action="store_true",
                     help="resume a partial PATH with an HTTP Range request")
    return parser


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


_VALUE_OPTIONS = frozenset({"--url", "--http-url", "--token", "--api-key", "--timeout"})


def with_legacy_call(argv: list[str], commands: set[str]) -> list[str]:
    """Insert ``call`` before a first positional that is not a command name, so that
    ``camera-service-cli METHOD [PARAMS_JSON]`` keeps working. Method names
    (``get_camera_list``...) never collide with command names."""
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg == "--":
            return argv
        if arg.startswith("-"):
            if arg in _VALUE_OPTIONS:
                index += 1  # skip the option's value
            index += 1
            continue
        if arg in commands:
            return argv
        return [*argv[:index], "call", *argv[index:]]
    return argv


# --- running a command ---------------------------------------------------------------


@dataclass
class Context:
    args: argparse.Namespace
    out: Output
    reactor: Any

    @property
    def credential(self) -> tuple[str | None, str | None]:
        return self.args.token, None if self.args.token else self.args.api_key

    async def connect(self, *, authenticate: bool = True, queue_size: int = 0) -> CameraServiceClient:
        token, api_key = self.credential if authenticate else (None, None)
        return await connect(self.args.url, token=token, api_key=api_key,
                             timeout=self.args.timeout, call_timeout=self.args.timeout,
                             reactor=self.reactor, queue_size=queue_size)

    async def call_and_print(self, method: str, params: Mapping[str, Any] | None = None, *,
                             authenticate: bool = True) -> int:
        client = await self.connect(authenticate=authenticate)
        try:
            result = await client.call(method, params)
        finally:
            await client.close(timeout=2.0)
        self.out.result(result)
        return EXIT_OK


def _params(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as error:
        raise UsageError(f"PARAMS_JSON is not JSON: {error}") from None
    if value is None:
        return None
    if not isinstance(value, dict):
        raise UsageError("PARAMS_JSON must be a JSON object (named parameters)")
    return value


def _drop_none(**params: Any) -> dict[str, Any]:
    return {key: value for key, value in params.items() if value is not None}


async def _cmd_call(ctx: Context) -> int:
    method = ctx.args.method
    # `call authenticate {...}` authenticates with its own params, not --token.
    return await ctx.call_and_print(method, _params(ctx.args.params),
                                    authenticate=method != "authenticate")


async def _cmd_ping(ctx: Context) -> int:
    return await ctx.call_and_print("ping")


async def _cmd_info(ctx: Context) -> int:
    return await ctx.call_and_print("get_server_info")


async def _cmd_status(ctx: Context) -> int:
    if ctx.args.device:
        return await ctx.call_and_print("get_camera_status", {"device": ctx.args.device})
    return await ctx.call_and_print("get_status")


async def _cmd_cameras(ctx: Context) -> int:
    return await ctx.call_and_print("get_camera_list")


async def _cmd_snapshot(ctx: Context) -> int:
    return await ctx.call_and_print("take_snapshot",
                                    _drop_none(device=ctx.args.device, filename=ctx.args.filename))


async def _cmd_record(ctx: Context) -> int:
    return await ctx.call_and_print("start_recording", _drop_none(
        device=ctx.args.device, duration=ctx.args.duration, format=ctx.args.format))


async def _cmd_stop(ctx: Context) -> int:
    return await ctx.call_and_print("stop_recording", {"device": ctx.args.device})


async def _cmd_recordings(ctx: Context) -> int:
    return await ctx.call_and_print("list_recordings",
                                    _drop_none(limit=ctx.args.limit, offset=ctx.args.offset))


async def _cmd_snapshots(ctx: Context) -> int:
    return await ctx.call_and_print("list_snapshots",
                                    _drop_none(limit=ctx.args.limit, offset=ctx.args.offset))


async def _cmd_watch(ctx: Context) -> int:
    args, out, reactor = ctx.args, ctx.out, ctx.reactor
    if args.all and args.topics:
        raise UsageError("give TOPICS or --all, not both")
    topics = list(ALL_TOPICS if args.all else (args.topics or DEFAULT_WATCH_TOPICS))
    filters = {"device": args.device} if args.device else None

    # No queue: every notification is printed by the callback as it arrives.
    client = await ctx.connect(queue_size=0)
    ended_by_us = False  # we closed the connection: --count reached, stdout gone, or a signal
    interrupted = False  # the reactor is shutting down (Ctrl-C / SIGTERM)
    printed = 0

    def show(notification: Notification) -> None:
        nonlocal ended_by_us, printed
        if ended_by_us:
            return
        text = format_pretty(notification) if args.pretty else json.dumps(notification.to_dict())
        try:
            out.line(text)
        except BrokenPipeError:  # e.g. `watch | head -3`: the reader has what it wanted
            ended_by_us = True
            client.close(timeout=2.0)
            return
        printed += 1
        if args.count is not None and printed >= args.count:
            ended_by_us = True
            client.close(timeout=2.0)

    def on_shutdown() -> Deferred[Any]:
        # Ctrl-C / SIGTERM stop the reactor; close the WebSocket properly first.
        nonlocal ended_by_us, interrupted
        ended_by_us = interrupted = True
        return client.close(timeout=2.0)

    expired: list[str] = []

    def credential_expired(when: str) -> None:
        # The server silently stops notifying an expired session (api.md §2.1): say so
        # and stop, rather than watch a connection that will never print again.
        expired.append(when)
        client.close(timeout=2.0)

    client.on_notification(show)
    trigger = reactor.addSystemEventTrigger("before", "shutdown", on_shutdown)
    expiry = _expiry_delay((client.session or {}).get("expires_at"))
    expiry_call = reactor.callLater(expiry[0], credential_expired, expiry[1]) if expiry else None
    try:
        subscribed = await client.subscribe(topics, filters)
        where = f" for {args.device}" if args.device else ""
        out.message(f"watching {', '.join(subscribed.get('topics', topics))}{where}")
        info = await client.when_closed()
    except ConnectionLost:
        if interrupted:
            return EXIT_OK
        raise
    except BaseException:
        await client.close(timeout=2.0)
        raise
    finally:
        if expiry_call is not None and expiry_call.active():
            expiry_call.cancel()
        if not interrupted:  # a trigger that is already firing cannot be removed
            reactor.removeSystemEventTrigger(trigger)
    if expired and not interrupted:
        out.message(f"the credential expired at {expired[0]}; authenticate with a new one")
        return EXIT_RPC_ERROR
    if ended_by_us:
        return EXIT_OK
    reason = f": {info.reason}" if info.reason else ""
    out.message(f"connection closed by the server (code {info.code}){reason}")
    return EXIT_CONNECTION


def _expiry_delay(expires_at: Any) -> tuple[float, str] | None:
    """Seconds until the session's ``expires_at`` (api.md §4.2), and the timestamp."""
    if not isinstance(expires_at, str):
        return None  # an API key without expiry, or not authenticated
    try:
        when = _dt.datetime.fromisoformat(expires_at)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.UTC)
    return max(when.timestamp() - time.time(), 0.0) + 0.5, expires_at


async def _cmd_download(ctx: Context) -> int:
    args, out = ctx.args, ctx.out
    try:
        base = args.http_url or http_base(args.url)
    except ValueError as error:
        raise UsageError(str(error)) from None
    url = file_url(base, args.kind, args.name)
    token, api_key = ctx.credential
    headers = auth_headers(token, api_key)
    downloader = Downloader(reactor=ctx.reactor, timeout=args.timeout)

    path = args.output
    if path is None or os.path.isdir(path):
        # The server knows the real name (a recording's stem has no extension).
        name = await downloader.remote_name(url, headers)
        path = os.path.join(path or ".", name)

    bar = ProgressBar(out, os.path.basename(path)) if out.stderr_is_tty else None
    try:
        result = await downloader.download(url, path, headers=headers, resume=args.resume,
                                           progress=bar.update if bar else None)
    except IncompleteDownload:
        if bar:
            bar.clear()
        out.message(f"{path} is incomplete; run the same command with --continue to resume")
        raise
    if bar:
        bar.clear()
    if result.received == 0 and result.resumed_from:
        summary = f"{path}: already complete ({human_size(result.size)})"
    else:
        summary = f"{path}: {human_size(result.received)} in {result.seconds:.1f} s"
        if result.resumed_from:
            summary += f", resumed after {human_size(result.resumed_from)}"
    out.message(summary)
    out.result(result.to_dict())
    return EXIT_OK


COMMANDS: dict[str, Callable[[Context], Awaitable[int]]] = {
    "call": _cmd_call,
    "ping": _cmd_ping,
    "info": _cmd_info,
    "status": _cmd_status,
    "cameras": _cmd_cameras,
    "snapshot": _cmd_snapshot,
    "record": _cmd_record,
    "stop": _cmd_stop,
    "recordings": _cmd_recordings,
    "snapshots": _cmd_snapshots,
    "watch": _cmd_watch,
    "download": _cmd_download,
}


async def run_command(reactor: Any, args: argparse.Namespace, out: Output) -> int:
    """Run the parsed command; map every expected failure to its exit status."""
    ctx = Context(args, out, reactor)
    try:
        return await COMMANDS[args.command](ctx)
    except UsageError as error:
        out.message(str(error))
        return EXIT_USAGE
    except RpcError as error:
        out.error(error.to_dict())
        return EXIT_RPC_ERROR
    except HttpError as error:
        out.error(error.to_dict())
        return EXIT_RPC_ERROR
    except BrokenPipeError:  # stdout's reader has gone; nothing left to tell it
        return EXIT_OK
    except (ConnectFailed, ConnectionLost, ClientTimeout, IncompleteDownload) as error:
        out.message(str(error))
        return EXIT_CONNECTION
    except (DownloadError, OSError) as error:
        out.message(str(error))
        return EXIT_RPC_ERROR


def _stop(reactor: Any) -> None:
    try:
        reactor.stop()
    except ReactorNotRunning:
        pass  # already stopping (Ctrl-C)


def main(argv: list[str] | None = None) -> int:
    """The console script. Returns the exit status."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    out = Output()
    parser = build_parser()
    args = parser.parse_args(with_legacy_call(arguments, set(_subcommands(parser))))
    if args.verbose:
        from twisted.logger import globalLogBeginner, textFileLogObserver

        observer: Any = textFileLogObserver(sys.stderr)
        globalLogBeginner.beginLoggingTo([observer])

    from twisted.internet import reactor as global_reactor

    reactor: Any = global_reactor

    outcome: list[int] = []

    def start() -> None:
        def crashed(failure: Failure) -> None:
            out.message(f"internal error:\n{failure.getTraceback()}")
            outcome.append(70)  # EX_SOFTWARE

        running = ensureDeferred(run_command(reactor, args, out))
        running.addCallbacks(outcome.append, crashed)
        running.addBoth(lambda _: _stop(reactor))

    reactor.callWhenRunning(start)
    reactor.run()
    return outcome[0] if outcome else EXIT_INTERRUPTED
