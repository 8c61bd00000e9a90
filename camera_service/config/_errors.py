"""The one error type of configuration loading, and how offending values are shown."""

from __future__ import annotations

import json
from typing import Any

# sysexits.h EX_CONFIG; the packaged unit lists it in RestartPreventExitStatus= so a bad
# configuration does not make systemd restart the service in a loop (media.md §8.3).
EX_CONFIG = 78

MASK = "***"
_MAX_SHOWN = 120


class ConfigError(Exception):
    """The first problem found in the configuration.

    ``key`` is a dotted key path (possibly with ``[i]`` / ``.sub`` detail), an environment
    variable name or the configuration file's path; ``origin`` is where the value came from:
    the file path, the environment variable name, ``"default"``, or ``""`` when the key
    already says it (file-level problems).
    """

    def __init__(self, key: str, problem: str, value_repr: str = "", origin: str = "") -> None:
        self.key = key
        self.problem = problem
        self.value_repr = value_repr
        self.origin = origin
        super().__init__(self.message())

    def message(self) -> str:
        text = f"{self.key}: {self.problem}"
        if self.value_repr:
            text += f", got {self.value_repr}"
        if self.origin:
            text += f" (from {self.origin})"
        return text

    def line(self) -> str:
        """The single stderr line of media.md §8.3."""
        return f"camera-service: config error: {self.message()}"

    def __str__(self) -> str:
        return self.message()


class _NoValue:
    """Marks a problem that has no value to show (a missing or unknown key)."""

    def __repr__(self) -> str:
        return "NO_VALUE"


NO_VALUE: Any = _NoValue()


class Invalid(Exception):
    """A value broke a rule; the loader adds the key's origin and masks secrets.

    ``where`` extends the key for problems inside lists and mappings (``[2]``, ``.fps``), so
    the message points at the exact item.
    """

    def __init__(self, problem: str, value: Any, where: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.value = value
        self.where = where

    def inside(self, prefix: str) -> "Invalid":
        return Invalid(self.problem, self.value, prefix + self.where)


class RuleViolation(Exception):
    """A cross-key rule failed; ``key`` is the key the message is about."""

    def __init__(self, key: str, problem: str, value: Any) -> None:
        super().__init__(problem)
        self.key = key
        self.problem = problem
        self.value = value


def show_value(value: Any) -> str:
    """YAML-flow-like rendering (``true``, ``null``, ``[9, 0]``, ``"text"``), kept short."""
    if value is NO_VALUE:
        return ""
    if isinstance(value, tuple):
        value = list(value)
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    if len(text) > _MAX_SHOWN:
        text = text[: _MAX_SHOWN - 3] + "..."
    return text
