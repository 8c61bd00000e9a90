"""Run a test module again inside ``umockdev-wrapper`` and report its outcome.

umockdev only works when its preload library is in the process from the start, so the
hotplug test modules collect one outer test in a plain run, which re-executes the module
under the wrapper and fails with the child's whole output unless every inner test passed.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def umockdev_present() -> bool:
    if shutil.which("umockdev-wrapper") is None:
        return False
    try:
        import ctypes

        ctypes.CDLL("libumockdev.so.0")
    except OSError:
        return False
    return True


def install_umockdev() -> str:
    """Try to install umockdev the way .ci/bootstrap does; returns why it failed, or ""."""
    if shutil.which("apt-get") is None:
        return "there is no apt-get on this machine"
    if os.geteuid() == 0:
        as_root: list[str] = []
    elif shutil.which("sudo") is not None:
        as_root = ["sudo", "-n"]  # never prompt: a test must not hang on a password
    else:
        return "not root and no sudo"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [*as_root, "apt-get", "install", "-y", "-qq", "--no-install-recommends", "umockdev", "libumockdev0"]
    why = ""
    for attempt in ([install], [[*as_root, "apt-get", "update", "-qq"], install]):
        try:
            for command in attempt:
                result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=240, env=env)
                if result.returncode != 0:
                    why = f"{' '.join(command)} failed: {result.stderr.strip()[-400:]}"
                    break
            else:
                return ""
        except (OSError, subprocess.TimeoutExpired) as error:
            why = f"{error}"
    return why


def _text(data: bytes | str | None) -> str:
    # On a timeout, subprocess hands back the partial output as bytes even with text=True.
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


def rerun_under_umockdev(module_file: str, label: str, child_timeout: float = 170.0) -> None:
    """Run ``module_file`` with pytest under umockdev-wrapper; fail unless all of it passed."""
    if not umockdev_present():
        why = install_umockdev()
        if not umockdev_present():
            pytest.skip(f"umockdev-wrapper / libumockdev.so.0 are missing and could not be installed "
                        f"({why or 'installed, but still not found'}); run .ci/bootstrap, which installs them")
    wrapper = shutil.which("umockdev-wrapper")
    assert wrapper is not None
    this_file = str(Path(module_file).resolve().relative_to(REPO))
    command = [wrapper, sys.executable, "-m", "pytest", this_file, "-q", "-p", "no:cacheprovider"]
    started = time.monotonic()
    try:
        result = subprocess.run(command, check=False, cwd=REPO, capture_output=True, text=True,
                                timeout=child_timeout)
    except subprocess.TimeoutExpired as timeout:
        output = _text(timeout.stdout) + _text(timeout.stderr)
        pytest.fail(f"{label} under umockdev-wrapper did not finish in {child_timeout} s:\n{output}")
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    if result.returncode < 0:
        # umockdev aborts the process when a monitor socket overflows or a device node is
        # created twice (see camera_service.testing.umockdev); say so plainly.
        name = signal.Signals(-result.returncode).name
        pytest.fail(f"{label} process killed by {name} after {elapsed:.1f} s:\n{' '.join(command)}\n{output}")
    summary = output.strip().splitlines()[-1] if output.strip() else ""
    if result.returncode != 0 or not re.search(r"\d+ passed", summary) or re.search(r"failed|error|skipped", summary):
        pytest.fail(f"{label} under umockdev-wrapper: exit {result.returncode} after {elapsed:.1f} s\n"
                    f"{' '.join(command)}\n{output}")
