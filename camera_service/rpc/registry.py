"""The method registry: one entry per method of the contract.

Every one of the 34 methods exists from the start with its minimum role from
``camera_service.roles``; features register their parameter schema and handler.
A method with no handler yet answers ``not_implemented`` after the usual
authentication and role checks, so the role table is enforceable for all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, TYPE_CHECKING

from camera_service.roles import METHOD_ROLES
from camera_service.rpc.params import Param

if TYPE_CHECKING:
    from camera_service.rpc.dispatcher import CallContext

Handler = Callable[["CallContext", dict[str, Any]], Awaitable[Any]]


@dataclass(frozen=True)
class MethodSpec:
    name: str
    min_role: str | None
    params: tuple[Param, ...] = ()
    handler: Handler | None = None
    summary: str = ""
    # Per-camera operations are serialised on this parameter's value (api.md §8).
    serialise_on: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class MethodRegistry:
    def __init__(self) -> None:
        self._methods: dict[str, MethodSpec] = {
            name: MethodSpec(name, role) for name, role in METHOD_ROLES.items()
        }

    def register(self, name: str, handler: Handler, params: tuple[Param, ...] = (), *,
                 summary: str = "", serialise_on: str | None = None) -> None:
        if name not in self._methods:
            raise KeyError(f"{name} is not a method of the API contract")
        if self._methods[name].handler is not None:
            raise ValueError(f"{name} is already registered")
        self._methods[name] = MethodSpec(name, METHOD_ROLES[name], params, handler,
                                         summary or (handler.__doc__ or "").strip().split("\n")[0],
                                         serialise_on)

    def replace(self, name: str, handler: Handler, params: tuple[Param, ...] = ()) -> MethodSpec:
        """Swap a method's handler, returning the previous spec (fault injection in tests)."""
        previous = self._methods[name]
        self._methods[name] = MethodSpec(name, previous.min_role, params, handler, previous.summary,
                                         previous.serialise_on)
        return previous

    def restore(self, spec: MethodSpec) -> None:
        self._methods[spec.name] = spec

    def get(self, name: str) -> MethodSpec | None:
        return self._methods.get(name)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._methods.values())

    def __len__(self) -> int:
        return len(self._methods)
