"""ProcessRunner with real child processes on the real reactor (media.md §0.3, §0.4).

Children that need shell features (ignoring SIGTERM, reading stdin, flooding a pipe) are
small Python scripts written to ``tmp_path`` and run as ``<venv python> <script>``, so
their argv stays inside the §0.4 safe set and goes through the same checks as production
commands.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import string
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import defer, reactor
from twisted.internet.task import deferLater

from camera_service.procs import (
    MEDIAMTX_VARIABLES,
    SAFE_ARG,
    STDERR_TAIL_BYTES,
    OutputLimitExceeded,
    ProcessResult,
    ProcessRunner,
    UnsafeArgument,
    check_argv,
    redact_devices,
    resolve_tools,
)

# The global reactor, typed loosely: its interface stubs trip mypy on .seconds().
clock: Any = reactor
PYTHON = sys.executable
FFMPEG = shutil.which("ffmpeg")


def script(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(body))
    check_argv([str(path)])  # the test itself must not need an unsafe path
    return str(path)


async def wait_until(predicate, timeout: float = 5.0) -> None:
    waited = 0.0
    while not predicate():
        if waited >= timeout:
            raise AssertionError("condition not reached in time")
        await deferLater(reactor, 0.02, lambda: None)
        waited += 0.02


def pid_alive(pid: int) -> bool:
    """True while /proc/<pid> exists: a zombie (exited, never reaped) still has one."""
    return os.path.exists(f"/proc/{pid}")


# -- running and collecting ---------------------------------------------------------


async def test_collects_stdout_and_exit_status() -> None:
    runner = ProcessRunner(reactor)
    result = await runner.run("/bin/echo", ["hello", "world"], timeout=5)
    assert result.stdout == b"hello world\n"
    assert result.exit_code == 0 and result.signal is None
    assert not result.timed_out and result.ok
    assert result.duration >= 0
    assert runner.running() == 0


async def test_non_zero_exit_is_a_result_with_a_detail(tmp_path: Path) -> None:
    child = script(tmp_path, "fail", """
        import sys
        sys.stderr.write("first line\\nFailed to open /dev/video3: Permission denied\\n")
        sys.exit(3)
    """)
    result = await ProcessRunner(reactor).run(PYTHON, [child], timeout=5)
    assert result.exit_code == 3 and not result.ok
    assert result.detail() == "exited with status 3: Failed to open <device>: Permission denied"
    assert result.detail(lambda path: "camera3") == \
        "exited with status 3: Failed to open camera3: Permission denied"


async def test_stderr_is_a_rolling_4k_tail(tmp_path: Path) -> None:
    child = script(tmp_path, "noisy", """
        import sys
        for i in range(20000):
            sys.stderr.write(f"noise line {i:06d}\\n")
        sys.stderr.write("LAST-LINE\\n")
        sys.stdout.write("done\\n")
    """)
    result = await ProcessRunner(reactor).run(PYTHON, [child], timeout=20)
    assert result.exit_code == 0
    assert result.stdout == b"done\n"  # stdout was read all along, alongside ~360 KB of stderr
    assert len(result.stderr_tail) == STDERR_TAIL_BYTES
    assert result.stderr_tail.endswith(b"noise line 019999\nLAST-LINE\n")
    assert result.last_stderr_line() == "LAST-LINE"


async def test_stdout_over_the_limit_kills_the_run(tmp_path: Path) -> None:
    child = script(tmp_path, "flood", """
        import os, sys
        print(os.getpid(), flush=True)
        block = b"x" * 65536
        while True:
            sys.stdout.buffer.write(block)
    """)
    runner = ProcessRunner(reactor)
    with pytest.raises(OutputLimitExceeded, match="more than 100000 bytes"):
        await runner.run(PYTHON, [child], timeout=20, stdout_limit=100_000)
    assert runner.running() == 0


async def test_default_stdout_limit_is_one_mebibyte() -> None:
    runner = ProcessRunner(reactor)
    with pytest.raises(OutputLimitExceeded, match=str(1 << 20)):
        await runner.run("/usr/bin/yes", [], timeout=20)  # writes "y\n" forever
    assert runner.running() == 0


# -- environment and stdin ----------------------------------------------------------


async def test_environment_is_exactly_path_lc_all_and_tz() -> None:
    os.environ["CAMERA_SERVICE_LEAK_CHECK"] = "must-not-leak"
    try:
        runner = ProcessRunner(reactor, env_path="/usr/bin:/bin", tz="Europe/Berlin")
        result = await runner.run("/usr/bin/env", [], timeout=5)
    finally:
        del os.environ["CAMERA_SERVICE_LEAK_CHECK"]
    env = dict(line.split("=", 1) for line in result.stdout.decode().splitlines())
    assert env == {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "TZ": "Europe/Berlin"}


async def test_environment_without_tz_and_with_the_service_path() -> None:
    result = await ProcessRunner(reactor).run("/usr/bin/env", [], timeout=5)
    env = dict(line.split("=", 1) for line in result.stdout.decode().splitlines())
    assert env == {"PATH": os.environ.get("PATH", os.defpath), "LC_ALL": "C"}


async def test_stdin_is_closed(tmp_path: Path) -> None:
    child = script(tmp_path, "reader", """
        import sys
        data = sys.stdin.read()  # blocks forever unless stdin is at EOF
        print(repr(data))
    """)
    result = await ProcessRunner(reactor).run(PYTHON, [child], timeout=5)
    assert not result.timed_out
    assert result.stdout == b"''\n"


# -- timeouts and signals -----------------------------------------------------------


async def test_timeout_sends_sigterm_first() -> None:
    runner = ProcessRunner(reactor)
    result = await runner.run("/bin/sleep", ["30"], timeout=0.5)
    assert result.timed_out
    assert result.signal == signal.SIGTERM and result.exit_code is None
    assert 0.4 < result.duration < 2.0  # sleep obeys SIGTERM: no SIGKILL needed
    assert result.detail() == "timed out after 0.5 s"
    assert runner.running() == 0


async def test_timeout_escalates_to_sigkill_after_two_seconds(tmp_path: Path) -> None:
    child = script(tmp_path, "stubborn", """
        import os, signal, sys, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print(os.getpid(), flush=True)
        time.sleep(30)
    """)
    runner = ProcessRunner(reactor)
    result = await runner.run(PYTHON, [child], timeout=0.5)
    assert result.timed_out
    assert result.signal == signal.SIGKILL
    # 0.5 s timeout + the fixed 2 s grace between SIGTERM and SIGKILL.
    assert 2.4 < result.duration < 4.5
    pid = int(result.stdout.split()[0])
    assert not pid_alive(pid), "the killed child was not reaped"
    assert runner.running() == 0


@pytest.mark.skipif(FFMPEG is None, reason="ffmpeg is not installed")
async def test_ffmpeg_gets_sigint_and_exits_cleanly() -> None:
    assert FFMPEG is not None
    runner = ProcessRunner(reactor)
    # Warm-up: on a cold page cache FFmpeg can spend over a second loading its libraries,
    # and a SIGINT that arrives before it has installed its handler kills it outright
    # (signal 2, no output), which is not what this test is about.
    await runner.run(FFMPEG, ["-hide_banner", "-version"], timeout=30)
    result = await runner.run(
        FFMPEG, ["-nostdin", "-hide_banner", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=10",
                 "-f", "null", "-"],
        timeout=1.0, is_ffmpeg=True)
    assert result.timed_out
    # SIGINT makes FFmpeg finish its output and exit by itself (255 = "received signal 2"),
    # long before the 2 s SIGKILL deadline.
    assert result.signal is None, result.detail()
    assert result.exit_code in (0, 255)
    assert result.duration < 2.9
    assert b"signal 2" in result.stderr_tail or result.exit_code == 0
    assert runner.running() == 0


# -- bookkeeping: no zombies, terminate_all, cancellation ---------------------------


async def test_no_zombies_after_many_runs(tmp_path: Path) -> None:
    child = script(tmp_path, "pid", "import os; print(os.getpid())\n")
    runner = ProcessRunner(reactor)
    results = await defer.gatherResults(
        [defer.ensureDeferred(runner.run(PYTHON, [child], timeout=10)) for _ in range(8)])
    assert runner.running() == 0
    for result in results:
        assert result.exit_code == 0
        assert not pid_alive(int(result.stdout)), "a finished child was left as a zombie"


async def test_terminate_all_stops_every_child(tmp_path: Path) -> None:
    stubborn = script(tmp_path, "stubborn", """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ready", flush=True)
        time.sleep(30)
    """)
    runner = ProcessRunner(reactor)
    polite = defer.ensureDeferred(runner.run("/bin/sleep", ["30"], timeout=60))
    rude = defer.ensureDeferred(runner.run(PYTHON, [stubborn], timeout=60))
    await wait_until(lambda: runner.running() == 2)
    await deferLater(reactor, 0.3, lambda: None)  # let the script install its handler
    started = clock.seconds()
    await runner.terminate_all(grace=0.5)
    assert clock.seconds() - started < 2.0
    assert runner.running() == 0
    polite_result, rude_result = await polite, await rude
    assert polite_result.signal == signal.SIGTERM and not polite_result.timed_out
    assert rude_result.signal == signal.SIGKILL


async def test_terminate_all_with_nothing_running_returns_at_once() -> None:
    await ProcessRunner(reactor).terminate_all()


async def test_cancelling_a_run_kills_and_reaps_the_child() -> None:
    runner = ProcessRunner(reactor)
    running = defer.ensureDeferred(runner.run("/bin/sleep", ["30"], timeout=60))
    await wait_until(lambda: runner.running() == 1)
    running.cancel()
    with pytest.raises(defer.CancelledError):
        await running
    assert runner.running() == 0


async def test_a_caller_that_gives_up_twice_still_leaves_no_child_behind() -> None:
    runner = ProcessRunner(reactor)
    running = defer.ensureDeferred(runner.run("/bin/sleep", ["30"], timeout=60))
    await wait_until(lambda: runner.running() == 1)
    running.cancel()
    running.cancel()  # impatient: stops waiting for the reaping too
    with pytest.raises(defer.CancelledError):
        await running
    await wait_until(lambda: runner.running() == 0)


# -- argument checks ----------------------------------------------------------------


async def test_unsafe_argument_is_refused_before_spawning() -> None:
    runner = ProcessRunner(reactor)
    with pytest.raises(UnsafeArgument, match="argument 2"):
        await runner.run("/bin/echo", ["ok", "not ok"], timeout=5)
    with pytest.raises(UnsafeArgument, match="absolute path"):
        await runner.run("echo", ["hi"], timeout=5)
    assert runner.running() == 0


@pytest.mark.parametrize("bad", [
    "a;b", "a b", "$(x)", "`x`", "line\nbreak", "trailing\n", "'quoted'", '"quoted"',
    "a&&b", "a|b", "a>b", "<b", "*", "~", "a\\b", "tab\there", "", "\x00", "é",
    "$RTSP_PORT/x", "x$MTX_PATH", "$OTHER", "$rtsp_port", " $RTSP_PORT",
])
def test_check_argv_rejects(bad: str) -> None:
    with pytest.raises(UnsafeArgument, match="argument 1"):
        check_argv(["/usr/bin/ffmpeg", bad])


def test_check_argv_rejection_message_never_contains_the_argument() -> None:
    with pytest.raises(UnsafeArgument) as info:
        check_argv(["secret-password with space"])
    assert "secret" not in str(info.value)


@pytest.mark.parametrize("good", [
    "-nostdin", "/dev/video0", "testsrc2=size=1280x720:rate=30", "rtsp://127.0.0.1:8554/camera0",
    "-b:v", "2000k", "%Y-%m-%d_%H-%M-%S", "a,b+c", "$RTSP_PORT", "$MTX_PATH", "-",
])
def test_check_argv_accepts(good: str) -> None:
    check_argv(["/usr/bin/ffmpeg", good])


def test_check_argv_refuses_a_bare_string_and_non_strings() -> None:
    with pytest.raises(UnsafeArgument):
        check_argv("/bin/echo")  # type: ignore[arg-type]
    with pytest.raises(UnsafeArgument, match="argument 1 is not a string"):
        check_argv(["/bin/echo", 5])  # type: ignore[list-item]


def test_nothing_unsafe_passes_check_argv() -> None:
    """Property: over many generated strings, whatever check_argv accepts is plain.

    The alphabet mixes the safe characters with every shell metacharacter, whitespace,
    control and non-ASCII characters, and the strings are seeded with the MediaMTX
    variables so near-misses get generated too.
    """
    rng = random.Random(20240613)
    safe = set(string.ascii_letters + string.digits + "_./:=+,%-")
    hostile = list(";&|<>()$`'\"\\ \t\n\r\x00\x0b\x0c*?[]{}~!#^@") + ["é", "\u202e", "\u00a0", "ｘ"]
    alphabet = sorted(safe) + hostile * 3
    pieces = ["$RTSP_PORT", "$MTX_PATH", "$(", "${", "&&", "||", "/dev/video0", "-i", "'", "\\n"]
    accepted = rejected = 0
    for _ in range(20000):
        parts = [rng.choice(alphabet) if rng.random() < 0.85 else rng.choice(pieces)
                 for _ in range(rng.randint(0, 12))]
        candidate = "".join(parts)
        try:
            check_argv([candidate])
        except UnsafeArgument:
            rejected += 1
            assert not (candidate in MEDIAMTX_VARIABLES or (candidate and set(candidate) <= safe))
            continue
        accepted += 1
        assert candidate in MEDIAMTX_VARIABLES or (candidate and set(candidate) <= safe), candidate
        assert SAFE_ARG.fullmatch(candidate) or candidate in MEDIAMTX_VARIABLES
    assert accepted > 100 and rejected > 10000  # both branches were really exercised


# -- small helpers ------------------------------------------------------------------


def test_detail_forms() -> None:
    killed = ProcessResult(exit_code=None, signal=9, stdout=b"", stderr_tail=b"", timed_out=False,
                           duration=1.0)
    assert killed.detail() == "killed by SIGKILL"
    tail = ProcessResult(exit_code=1, signal=None, stdout=b"",
                         stderr_tail=b"x\n/dev/video12 and /dev/video3 failed\n\n", timed_out=False,
                         duration=0.1)
    assert tail.detail(lambda path: {"/dev/video12": "camera12", "/dev/video3": "camera3"}[path]) == \
        "exited with status 1: camera12 and camera3 failed"
    assert redact_devices("open /dev/video7 failed") == "open <device> failed"


def test_resolve_tools(tmp_path: Path) -> None:
    tool = tmp_path / "v4l2-ctl"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    not_executable = tmp_path / "ffprobe"
    not_executable.write_text("")
    found = {"ffmpeg": "/usr/bin/ffmpeg"}
    resolved = resolve_tools(
        {"ffmpeg": "ffmpeg", "v4l2_ctl": str(tool), "ffprobe": str(not_executable), "gone": "gone"},
        which=found.get)
    assert resolved == {"ffmpeg": "/usr/bin/ffmpeg", "v4l2_ctl": str(tool), "ffprobe": None,
                        "gone": None}
