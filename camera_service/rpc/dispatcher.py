"""The request pipeline of api.md §8, independent of the WebSocket transport.

``Dispatcher.process`` takes one received frame and runs the nine steps in order:
parse, envelope, rate limit, method lookup, authentication, role, readiness gate,
parameters, handler. The first failing step produces the answer; a client
notification (no id) is processed the same way but never answered.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from camera_service.auth.identity import AuthFailed
from camera_service.roles import READINESS_EXEMPT, role_allows
from camera_service.rpc import errors
from camera_service.rpc.errors import RpcError
from camera_service.rpc.params import validate
from camera_service.rpc.registry import MethodRegistry, MethodSpec
from camera_service.rpc.session import Session

_MISSING = object()
_INVALID_ID = object()
# Label for metrics when no method name could be read from the message.
_NO_METHOD = "<invalid>"


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; Python's parser would accept them.
    raise ValueError(f"{name} is not valid JSON")


# Built once: json.loads() with any keyword builds a new decoder on every call.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


@dataclass
class CallContext:
    """What a handler sees: the calling session and the server-wide context."""

    session: Session
    method: str
    app: Any
    _after_response: list[Callable[[], None]] = field(default_factory=list)

    def after_response(self, action: Callable[[], None]) -> None:
        """Run ``action`` once the response has been written (e.g. publish events)."""
        self._after_response.append(action)


class Dispatcher:
    _log = Logger()

    def __init__(self, registry: MethodRegistry, app: Any) -> None:
        self.registry = registry
        self._app = app

    # -- entry point ---------------------------------------------------------------

    def process(self, session: Session, payload: bytes, is_binary: bool) -> Deferred[None] | None:
        """Handle one frame. Returns None when it was answered synchronously.

        Most requests (ping, status reads, every error) never wait on anything, so the
        coroutine is stepped once by hand; only one that really awaits something is
        handed to Twisted, which then resumes it where it stopped.
        """
        coroutine = self._process(session, payload, is_binary, time.perf_counter())
        try:
            coroutine.send(None)
        except StopIteration:
            return None
        except BaseException:
            self._log.failure("request processing failed")
            return None
        return Deferred.fromCoroutine(coroutine)

    async def _process(self, session: Session, payload: bytes, is_binary: bool, started: float) -> None:
        request_id: Any = None
        method_name = _NO_METHOD
        is_notification = False
        context: CallContext | None = None
        try:
            message = self._parse(payload, is_binary)
            request_id, method_name, params = self._envelope(message)
            is_notification = request_id is None
            self._rate_limit(session)
            spec = self.registry.get(method_name)
            if spec is None:
                raise errors.method_not_found(method_name)
            self._authorise(session, spec)
            context = CallContext(session, method_name, self._app)
            result = await self._call(context, spec, params)
        except _EnvelopeError as error:
            # Not a valid request, so never a notification: always answered.
            self._finish(session, error.request_id, False, method_name, started, error=error)
            return
        except RpcError as error:
            self._finish(session, request_id, is_notification, method_name, started, error=error)
            return
        except Exception:
            correlation = uuid.uuid4().hex[:16]
            self._log.failure("unhandled error in {method} (request_id={request_id})",
                              method=method_name, request_id=correlation)
            self._finish(session, request_id, is_notification, method_name, started,
                         error=errors.internal_error(correlation))
            return
        self._finish(session, request_id, is_notification, method_name, started, result=result)
        for action in context._after_response:
            try:
                action()
            except Exception:
                self._log.failure("post-response action of {method} failed", method=method_name)

    # -- steps ---------------------------------------------------------------------

    @staticmethod
    def _parse(payload: bytes, is_binary: bool) -> Any:
        if is_binary:
            raise errors.invalid_request("Binary frames are not supported",
                                         hint="Send JSON-RPC messages as text frames")
        try:
            return _DECODER.decode(payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise errors.parse_error() from None

    @staticmethod
    def _envelope(message: Any) -> tuple[Any, str, dict[str, Any]]:
        if isinstance(message, list):
            raise _EnvelopeError(errors.invalid_request("Batch requests are not supported",
                                         hint="Send one request object per frame"))
        if not isinstance(message, dict):
            raise _EnvelopeError(errors.invalid_request("Request must be a JSON object"))
        raw_id = message.get("id", _MISSING)
        if raw_id is _MISSING or raw_id is None:
            request_id = None
        elif isinstance(raw_id, str) or (isinstance(raw_id, (int, float)) and not isinstance(raw_id, bool)):
            request_id = raw_id
        else:
            raise _EnvelopeError(errors.invalid_request("id must be a string, a number or null"))
        if message.get("jsonrpc") != "2.0":
            raise _EnvelopeError(errors.invalid_version(), request_id)
        method = message.get("method")
        if not isinstance(method, str):
            raise _EnvelopeError(errors.invalid_request("method must be a string"), request_id)
        params = message.get("params")
        if params is None:
            params = {}
        elif not isinstance(params, dict):
            raise _EnvelopeError(errors.invalid_request("params must be an object",
                                                        hint="Use named parameters"), request_id)
        return request_id, method, params

    def _rate_limit(self, session: Session) -> None:
        retry_after = session.rate.hit()
        if retry_after is not None:
            raise errors.rate_limited(retry_after)

    def _authorise(self, session: Session, spec: MethodSpec) -> None:
        if spec.min_role is None:
            return
        identity = session.identity
        if identity is None:
            raise errors.auth_required()
        if not self._app.authenticator.still_valid(identity):
            session.revert_to_unauthenticated()
            raise errors.token_expired()
        if not role_allows(identity.role, spec.min_role):
            raise errors.permission_denied(spec.name, spec.min_role, identity.role)

    async def _call(self, context: CallContext, spec: MethodSpec, params: dict[str, Any]) -> Any:
        if spec.name not in READINESS_EXEMPT and self._app.readiness.status() == "starting":
            raise errors.service_initializing()
        if spec.name == "authenticate":
            return await self._authenticate(context, params)
        values = validate(params, spec.params)
        if spec.handler is None:
            raise errors.not_implemented(spec.name)
        return await spec.handler(context, values)

    async def _authenticate(self, context: CallContext, params: dict[str, Any]) -> dict[str, Any]:
        session = context.session
        token = params.get("auth_token")
        if not isinstance(token, str) or not token:
            raise errors.auth_required("auth_token parameter is required",
                                       "Provide a JWT or API key in auth_token")
        retry_after = session.auth_failures.exhausted()
        if retry_after is not None:
            # Too many failures on this connection: refuse without spending a bcrypt check.
            raise errors.rate_limited(retry_after)
        try:
            identity = await self._app.authenticator.authenticate(token)
        except AuthFailed as failure:
            session.auth_failures.hit()
            session.revert_to_unauthenticated()
            self._log.info("authentication failed on session {session_id}: {why}",
                           session_id=session.session_id, why=str(failure))
            raise errors.auth_failed() from None
        session.identity = identity
        return self._app.describe_authentication(session)

    # -- answers -------------------------------------------------------------------

    def _finish(self, session: Session, request_id: Any, is_notification: bool, method: str,
                started: float, *, result: Any = None, error: RpcError | None = None) -> None:
        self._record(method, started, error.code if error else None)
        if is_notification or session.closed:
            return
        if error is not None:
            session.send({"jsonrpc": "2.0", "error": error.to_json(), "id": request_id})
        else:
            session.send({"jsonrpc": "2.0", "result": result, "id": request_id})

    def _record(self, method: str, started: float, code: int | None) -> None:
        label = method if self.registry.get(method) is not None else _NO_METHOD
        self._app.metrics.record(label, (time.perf_counter() - started) * 1000.0, code)


class _EnvelopeError(RpcError):
    """An envelope error that knows which id (if any) may be echoed."""

    def __init__(self, error: RpcError, request_id: Any = None) -> None:
        Exception.__init__(self, str(error))
        self.code = error.code
        self.message = error.message
        self.data = error.data
        self.request_id = request_id
