"""The one helper that runs every child process (media.md §0.2, §0.3, §0.4).

Every external program (FFmpeg, ffprobe, v4l2-ctl) goes through :class:`ProcessRunner`:

- the argv is a list handed to ``reactor.spawnProcess``, never a shell, and every
  argument is checked against :data:`SAFE_ARG` first (:func:`check_argv`);
- the environment is exactly ``PATH``, ``LC_ALL=C`` and the service's ``TZ``;
- stdin is closed at once; stdout is collected up to a limit and stderr is kept as a
  rolling 4 KiB tail, both read for the whole life of the child so it never blocks on
  a full pipe;
- every run has a timeout on the injected clock: SIGINT for FFmpeg (so it finalises its
  output) or SIGTERM for other tools, then SIGKILL after 2 s;
- a run only completes on ``processEnded``, so no zombie is ever left behind, and
  :meth:`ProcessRunner.terminate_all` stops whatever is still alive at service stop.
"""

from __future__ import annotations

import os
import re
import shutil
import signal as signal_module
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessExitedAlready, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

log = Logger()

#: media.md §0.4: the only characters a command-line argument may contain.
SAFE_ARG = re.compile(r"^[A-Za-z0-9_./:=+,%-]+$")
#: The only other arguments allowed, and only as whole arguments: MediaMTX expands
#: them itself in ``runOnDemand`` commands.
MEDIAMTX_VARIABLES = frozenset({"$RTSP_PORT", "$MTX_PATH"})

#: stderr is kept as a rolling tail of this many bytes (media.md §0.3).
STDERR_TAIL_BYTES = 4096
#: Default cap on one-shot stdout (media.md §0.3).
DEFAULT_STDOUT_LIMIT = 1 << 20
#: Time between the polite signal and SIGKILL (media.md §0.3, fixed).
KILL_GRACE = 2.0

_DEVICE_PATH = re.compile(r"/dev/video[0-9]+")
_DETAIL_LINE_MAX = 200


class UnsafeArgument(ValueError):
    """An argument failed the §0.4 check. This is a programming error, never client input."""


class ProcessError(Exception):
    """A run could not complete normally (beyond a plain non-zero exit)."""


class OutputLimitExceeded(ProcessError):
    """The child wrote more stdout than the caller allowed; it was killed."""


def check_argv(args: Sequence[str]) -> None:
    """Refuse any argument that could be read as more than one plain word.

    The message names the index only: the argument itself could be anything, and it
    must not end up in a log line or an error detail verbatim.
    """
    if isinstance(args, (str, bytes)):
        # A bare string would be checked character by character and pass.
        raise UnsafeArgument("argv must be a sequence of strings, not a single string")
    for index, arg in enumerate(args):
        if not isinstance(arg, str):
            raise UnsafeArgument(f"argument {index} is not a string")
        if arg in MEDIAMTX_VARIABLES:
            continue
        # fullmatch, not match: "$" in SAFE_ARG also matches before a trailing newline.
        if SAFE_ARG.fullmatch(arg) is None:
            raise UnsafeArgument(f"argument {index} contains characters outside the safe set")


def resolve_tools(tools: Mapping[str, str], which: Callable[[str], str | None] = shutil.which
                  ) -> dict[str, str | None]:
    """Map each tool name to an absolute, executable path, or ``None`` when missing.

    ``tools`` holds the configured values (``tools.ffmpeg`` and so on): an absolute path is
    used as it is if it is executable, anything else is looked up on ``PATH`` once, at
    start-up. Logging a missing tool is the caller's job, since only it knows which
    features depend on which tool.
    """
    resolved: dict[str, str | None] = {}
    for name, configured in tools.items():
        path: str | None
        if os.path.isabs(configured):
            path = configured if os.access(configured, os.X_OK) and os.path.isfile(configured) else None
        else:
            found = which(configured)
            path = os.path.abspath(found) if found else None
        resolved[name] = path
    return resolved


def _default_redact(device_path: str) -> str:
    return "<device>"


def redact_devices(text: str, redact: Callable[[str], str] = _default_redact) -> str:
    """Replace every ``/dev/video<N>`` in ``text`` (device paths never reach clients)."""
    return _DEVICE_PATH.sub(lambda match: redact(match.group(0)), text)


def _signal_name(number: int) -> str:
    try:
        return signal_module.Signals(number).name
    except ValueError:
        return f"signal {number}"


@dataclass(frozen=True)
class ProcessResult:
    exit_code: int | None  # None when the child was ended by a signal
    signal: int | None  # the signal that ended it, if any
    stdout: bytes
    stderr_tail: bytes  # the last STDERR_TAIL_BYTES bytes of stderr
    timed_out: bool
    duration: float  # seconds on the injected clock, spawn to processEnded
    timeout: float | None = field(default=None)  # the timeout the run had

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    def last_stderr_line(self) -> str:
        text = self.stderr_tail.decode("utf-8", errors="replace")
        for line in reversed(text.splitlines()):
            if line.strip():
                return line.strip()[:_DETAIL_LINE_MAX]
        return ""

    def detail(self, redact: Callable[[str], str] = _default_redact) -> str:
        """A short, client-safe description of how the run ended.

        ``redact`` receives every ``/dev/video<N>`` found and returns its replacement
        (the camera id, in practice).
        """
        if self.timed_out:
            limit = f"{self.timeout:g} s" if self.timeout is not None else "its time limit"
            text = f"timed out after {limit}"
        elif self.signal is not None:
            text = f"killed by {_signal_name(self.signal)}"
        else:
            text = f"exited with status {self.exit_code}"
        line = self.last_stderr_line()
        if line and not self.timed_out:
            text = f"{text}: {line}"
        return redact_devices(text, redact)


class _RunProtocol(ProcessProtocol):
    """Collects one child's output and tells every waiter when it has really ended."""

    def __init__(self, stdout_limit: int) -> None:
        self._stdout = bytearray()
        self._stderr = bytearray()
        self._stdout_limit = stdout_limit
        self.overflowed = False
        self.ended = False
        self.exit_code: int | None = None
        self.signal: int | None = None
        self._waiters: list[Deferred[None]] = []
        self.on_overflow: Callable[[], None] = lambda: None

    # Every waiter gets its own Deferred, so cancelling one (a caller giving up) never
    # fires or breaks another (the runner's own bookkeeping, terminate_all).
    def when_ended(self) -> Deferred[None]:
        if self.ended:
            return defer.succeed(None)
        waiter: Deferred[None] = Deferred()
        self._waiters.append(waiter)
        return waiter

    def connectionMade(self) -> None:
        # stdin is a pipe only so that it can be closed: the child reads EOF at once and
        # can never wait for input.
        cast(Any, self.transport).closeStdin()

    def outReceived(self, data: bytes) -> None:
        if self.overflowed:
            return  # keep draining, stop keeping
        room = self._stdout_limit - len(self._stdout)
        if len(data) > room:
            self._stdout += data[:max(room, 0)]
            self.overflowed = True
            self.on_overflow()
            return
        self._stdout += data

    def errReceived(self, data: bytes) -> None:
        self._stderr += data
        if len(self._stderr) > STDERR_TAIL_BYTES:
            del self._stderr[:-STDERR_TAIL_BYTES]

    def processEnded(self, reason: Failure) -> None:
        value = reason.value
        if isinstance(value, ProcessDone):
            self.exit_code = 0
        elif isinstance(value, ProcessTerminated):
            self.exit_code = value.exitCode
            self.signal = value.signal
        self.ended = True
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(None)

    @property
    def stdout(self) -> bytes:
        return bytes(self._stdout)

    @property
    def stderr_tail(self) -> bytes:
        return bytes(self._stderr)


class _Child:
    """One live child: its transport, its protocol and its kill timers."""

    def __init__(self, reactor: Any, name: str, transport: Any, protocol: _RunProtocol,
                 is_ffmpeg: bool) -> None:
        self._reactor = reactor
        self.name = name
        self.transport = transport
        self.protocol = protocol
        self.is_ffmpeg = is_ffmpeg
        self._kill_call: Any = None

    @property
    def pid(self) -> int | None:
        return getattr(self.transport, "pid", None)

    def signal(self, name: str) -> None:
        if self.protocol.ended:
            return
        try:
            self.transport.signalProcess(name)
        except ProcessExitedAlready:
            pass  # processEnded is on its way

    def terminate(self, grace: float) -> None:
        """The polite signal now, SIGKILL after ``grace`` if the child is still alive."""
        if self.protocol.ended:
            return
        # FFmpeg finalises its output (the MP4 index, a whole JPEG) on SIGINT only.
        self.signal("INT" if self.is_ffmpeg else "TERM")
        if self._kill_call is None:
            self._kill_call = self._reactor.callLater(grace, self.kill)

    def kill(self) -> None:
        self._kill_call = None
        if not self.protocol.ended:
            log.warn("{name} (pid {pid}) did not stop in time; sending SIGKILL",
                     name=self.name, pid=self.pid)
            self.signal("KILL")

    def cancel_timers(self) -> None:
        if self._kill_call is not None and self._kill_call.active():
            self._kill_call.cancel()
        self._kill_call = None


class ProcessRunner:
    """Runs child processes on the injected reactor, following every rule of §0.3."""

    def __init__(self, reactor: Any, *, env_path: str | None = None, tz: str | None = None,
                 kill_grace: float = KILL_GRACE) -> None:
        self._reactor = reactor
        env = {"PATH": env_path if env_path is not None else os.environ.get("PATH", os.defpath),
               # Untranslated messages: the error mapping below reads them.
               "LC_ALL": "C"}
        if tz:
            env["TZ"] = tz
        self._env = env
        self._kill_grace = kill_grace
        self._children: set[_Child] = set()

    @property
    def environment(self) -> dict[str, str]:
        return dict(self._env)

    def running(self) -> int:
        """How many children are alive (spawned and not yet reaped)."""
        return len(self._children)

    async def run(self, executable: str, args: Sequence[str], *, timeout: float,
                  stdout_limit: int = DEFAULT_STDOUT_LIMIT, is_ffmpeg: bool = False
                  ) -> ProcessResult:
        """Run ``executable args...`` to completion and return how it ended.

        A non-zero exit is a normal result, not an exception: callers map it to their own
        errors. Raises :class:`UnsafeArgument` before spawning anything when an argument
        fails the §0.4 check, and :class:`OutputLimitExceeded` (after the child has been
        killed and reaped) when stdout went over ``stdout_limit``. Cancelling the returned
        Deferred kills the child; the cancellation completes once it has been reaped.
        """
        started = self._reactor.seconds()
        child = self._spawn(executable, args, stdout_limit, is_ffmpeg)
        name, protocol = child.name, child.protocol
        timed_out = False

        def on_overflow() -> None:
            # A run that floods stdout is broken; no output to save, so no grace.
            log.warn("{name} (pid {pid}) wrote more than {limit} bytes of output; killing it",
                     name=name, pid=child.pid, limit=stdout_limit)
            child.signal("KILL")

        protocol.on_overflow = on_overflow

        def on_timeout() -> None:
            nonlocal timed_out
            if protocol.ended:
                return
            timed_out = True
            log.warn("{name} (pid {pid}) timed out after {timeout} s; stopping it",
                     name=name, pid=child.pid, timeout=timeout)
            child.terminate(self._kill_grace)

        timeout_call = self._reactor.callLater(timeout, on_timeout)
        try:
            await protocol.when_ended()
        except defer.CancelledError:
            # The caller gave up (for example, the node was removed mid-probe). The child
            # must still be stopped and reaped before we let go of it.
            child.terminate(self._kill_grace)
            await protocol.when_ended()
            raise
        finally:
            if timeout_call.active():
                timeout_call.cancel()
        duration = self._reactor.seconds() - started
        if protocol.overflowed:
            raise OutputLimitExceeded(f"{name} wrote more than {stdout_limit} bytes of output and was killed")
        return ProcessResult(exit_code=protocol.exit_code, signal=protocol.signal,
                             stdout=protocol.stdout, stderr_tail=protocol.stderr_tail,
                             timed_out=timed_out, duration=duration, timeout=timeout)

    def spawn(self, executable: str, args: Sequence[str], *, is_ffmpeg: bool = False,
              stdout_limit: int = DEFAULT_STDOUT_LIMIT) -> LongRunningProcess:
        """Start a long-running child (a recorder, a keep-alive reader) and return its handle.

        The same argument checks as :meth:`run` apply. There is no timeout: the owner
        stops it with :meth:`LongRunningProcess.stop`, and :meth:`terminate_all` covers it
        at shutdown.
        """
        started = self._reactor.seconds()
        child = self._spawn(executable, args, stdout_limit, is_ffmpeg)
        child.protocol.on_overflow = lambda: child.signal("KILL")
        return LongRunningProcess(child, started, self._reactor)

    def _spawn(self, executable: str, args: Sequence[str], stdout_limit: int,
               is_ffmpeg: bool) -> _Child:
        """Check the argv (§0.4), spawn the child and track it until it is reaped."""
        if not os.path.isabs(executable):
            raise UnsafeArgument("the executable must be an absolute path (tools are resolved at start-up)")
        argv = [executable, *args]
        try:
            check_argv(argv)
        except UnsafeArgument as exc:
            log.error("Refusing to run {tool}: {why}", tool=os.path.basename(executable), why=str(exc))
            raise
        protocol = _RunProtocol(stdout_limit)
        transport = self._reactor.spawnProcess(
            protocol, executable, argv, env=dict(self._env),
            childFDs={0: "w", 1: "r", 2: "r"})
        child = _Child(self._reactor, os.path.basename(executable), transport, protocol, is_ffmpeg)
        self._children.add(child)

        def reaped(_: None) -> None:
            # Bookkeeping follows the process, not the caller: even if every waiter gave
            # up, the child leaves running() only once it has really been reaped.
            child.cancel_timers()
            self._children.discard(child)

        protocol.when_ended().addCallback(reaped)
        return child

    async def terminate_all(self, grace: float = KILL_GRACE) -> None:
        """Stop every live child (SIGINT/SIGTERM, SIGKILL after ``grace``) and wait for all."""
        children = list(self._children)
        if not children:
            return
        log.info("Stopping {count} child process(es)", count=len(children))
        waits = [child.protocol.when_ended() for child in children]
        for child in children:
            child.terminate(grace)
        await defer.gatherResults(waits, consumeErrors=True)


class LongRunningProcess:
    """Handle on a child started by :meth:`ProcessRunner.spawn`."""

    def __init__(self, child: _Child, started_at: float, clock: Any) -> None:
        self._child = child
        self._clock = clock
        self.started_at = started_at

    @property
    def pid(self) -> int | None:
        return self._child.pid

    @property
    def running(self) -> bool:
        return not self._child.protocol.ended

    @property
    def stderr_tail(self) -> bytes:
        return self._child.protocol.stderr_tail

    def ended(self) -> Deferred[ProcessResult]:
        """Fires with how the child ended (never errbacks); cancelling only stops waiting."""
        protocol = self._child.protocol

        def result(_: None) -> ProcessResult:
            return ProcessResult(exit_code=protocol.exit_code, signal=protocol.signal,
                                 stdout=protocol.stdout, stderr_tail=protocol.stderr_tail,
                                 timed_out=False,
                                 duration=self._clock.seconds() - self.started_at)

        return protocol.when_ended().addCallback(result)

    def signal(self, name: str) -> None:
        self._child.signal(name)

    def stop(self, grace: float) -> Deferred[ProcessResult]:
        """The polite signal (SIGINT for FFmpeg), SIGKILL after ``grace``; fires once reaped."""
        self._child.terminate(grace)
        return self.ended()
