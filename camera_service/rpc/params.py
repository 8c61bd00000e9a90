"""Declarative parameter validation (api.md §3.6).

Each method declares an ordered tuple of ``Param``. Validation reports the first
failing parameter in that order, treats ``null`` as absent, ignores unknown names,
and never lets a JSON ``true`` pass as an integer.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from camera_service.rpc.errors import invalid_params

CAMERA_ID = re.compile(r"^camera[0-9]+$")
FILE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,255}$")

_TYPE_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "object": "an object",
    "string_array": "an array of strings",
}


class ParamProblem(Exception):
    """Raised by a ``Param.check`` callable: the rule token and a sentence."""

    def __init__(self, rule: str, details: str) -> None:
        super().__init__(details)
        self.rule = rule
        self.details = details


@dataclass(frozen=True)
class Param:
    name: str
    kind: str
    required: bool = False
    default: Any = None
    check: Callable[[Any], None] | None = None
    hint: str = "Check the method's parameter rules"
    suggestion: str = "Check the parameters"
    # Required only when an earlier parameter of the table has this value, e.g.
    # ("policy_type", "age"); checked in table order like every other rule.
    required_when: tuple[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.kind not in _TYPE_NAMES:
            raise ValueError(f"unknown parameter kind {self.kind!r}")


def _coerce(kind: str, value: Any) -> Any:
    """Return the value in its canonical Python type, or raise ParamProblem('type')."""
    if kind == "boolean":
        if isinstance(value, bool):
            return value
    elif kind == "integer":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            return int(value)
    elif kind == "number":
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return value
    elif kind == "string":
        if isinstance(value, str):
            return value
    elif kind == "object":
        if isinstance(value, dict):
            return value
    elif kind == "string_array":
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return list(value)
    raise ParamProblem("type", f"must be {_TYPE_NAMES[kind]}")


def validate(params: Mapping[str, Any], spec: tuple[Param, ...]) -> dict[str, Any]:
    """Validated values by name; absent optional parameters get their default."""
    values: dict[str, Any] = {}
    for param in spec:
        raw = params.get(param.name)
        if raw is None:
            condition = param.required_when
            if condition is not None and values.get(condition[0]) == condition[1]:
                raise invalid_params(param.name, "required",
                                     f"{param.name} is required when {condition[0]} is {condition[1]}",
                                     suggestion=param.suggestion, hint=param.hint)
            if param.required:
                raise invalid_params(param.name, "required", f"{param.name} is required",
                                     suggestion=param.suggestion, hint=param.hint)
            values[param.name] = param.default
            continue
        try:
            value = _coerce(param.kind, raw)
            if param.check is not None:
                param.check(value)
        except ParamProblem as problem:
            raise invalid_params(param.name, problem.rule, f"{param.name} {problem.details}",
                                 suggestion=param.suggestion, hint=param.hint) from None
        values[param.name] = value
    return values


# Reusable checks ---------------------------------------------------------------------

def camera_id(value: str) -> None:
    if not CAMERA_ID.fullmatch(value):
        raise ParamProblem("pattern", "must match ^camera[0-9]+$")


def file_name(value: str) -> None:
    # fullmatch: with match, "$" would also accept a name ending in a newline.
    if not FILE_NAME.fullmatch(value) or ".." in value:
        raise ParamProblem("filename", "must match ^[A-Za-z0-9._-]{1,255}$ and must not contain '..'")


def int_range(low: int | None, high: int | None) -> Callable[[int], None]:
    def check(value: int) -> None:
        if (low is not None and value < low) or (high is not None and value > high):
            if high is None:
                raise ParamProblem("range", f"must be >= {low}")
            raise ParamProblem("range", f"must be from {low} to {high}")
    return check


def one_of(*allowed: str) -> Callable[[str], None]:
    def check(value: str) -> None:
        if value not in allowed:
            raise ParamProblem("enum", f"must be one of {', '.join(allowed)}")
    return check


def non_empty(value: Any) -> None:
    if len(value) == 0:
        raise ParamProblem("non_empty", "must not be empty")


DEVICE = Param("device", "string", required=True, check=camera_id,
               hint="Use a camera id such as camera0",
               suggestion="Use a camera id from get_camera_list")
LIMIT = Param("limit", "integer", default=50, check=int_range(1, 1000))
OFFSET = Param("offset", "integer", default=0, check=int_range(0, None))
FILENAME = Param("filename", "string", required=True, check=file_name,
                 hint="Use a file name from list_recordings or list_snapshots",
                 suggestion="Use a plain file name without path separators")


