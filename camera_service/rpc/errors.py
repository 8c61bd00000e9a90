"""JSON-RPC error objects from the error catalog (api.md §6).

Every error the API sends is built here, so codes, messages, reason tokens and the
per-code ``data`` fields stay exactly as the contract says.
"""

from __future__ import annotations

from typing import Any

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
AUTH = -32001
PERMISSION_DENIED = -32002
NOT_FOUND = -32010
INVALID_STATE = -32020
UNSUPPORTED = -32030
RATE_LIMITED = -32040
DEPENDENCY_FAILED = -32050

_NOT_FOUND_MESSAGES = {
    "camera": ("Camera not found", "camera_not_found"),
    "recording": ("Recording not found", "file_not_found"),
    "snapshot": ("Snapshot not found", "file_not_found"),
    "stream": ("Stream not found", "stream_not_found"),
    "external_stream": ("External stream not found", "external_stream_not_found"),
}


class RpcError(Exception):
    """An error answer. ``data`` always carries reason, details and suggestion."""

    def __init__(self, code: int, message: str, reason: str, details: str, suggestion: str,
                 **extra: Any) -> None:
        super().__init__(f"{code} {reason}: {details}")
        self.code = code
        self.message = message
        self.data: dict[str, Any] = {"reason": reason, "details": details, "suggestion": suggestion}
        self.data.update(extra)

    @property
    def reason(self) -> str:
        return str(self.data["reason"])

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "data": self.data}


def parse_error() -> RpcError:
    return RpcError(PARSE_ERROR, "Parse error", "parse_error", "Invalid JSON",
                    "Send one JSON object per text frame")


def invalid_request(details: str, hint: str = "Send a JSON-RPC 2.0 request object") -> RpcError:
    return RpcError(INVALID_REQUEST, "Invalid Request", "invalid_request", details,
                    "Send a single JSON-RPC 2.0 request object", hint=hint)


def invalid_version() -> RpcError:
    return RpcError(INVALID_REQUEST, "Invalid Request", "invalid_version",
                    "jsonrpc must be the string '2.0'", "Set jsonrpc to '2.0'",
                    hint='Add "jsonrpc": "2.0" to the request')


def method_not_found(method: str) -> RpcError:
    return RpcError(METHOD_NOT_FOUND, "Method not found", "method_not_found", method,
                    "Verify method name", hint="See the API reference for the method list")


def invalid_params(param: str, rule: str, details: str, *, suggestion: str = "Check the parameters",
                   hint: str = "Check the method's parameter rules") -> RpcError:
    return RpcError(INVALID_PARAMS, "Invalid parameters", "invalid_params", details, suggestion,
                    param=param, rule=rule, hint=hint)


def internal_error(request_id: str, details: str = "Internal server error",
                   suggestion: str = "Retry later; report the request_id if it persists") -> RpcError:
    return RpcError(INTERNAL_ERROR, "Internal server error", "internal_error", details, suggestion,
                    request_id=request_id)


def auth_required(details: str = "Authentication required",
                  suggestion: str = "Call authenticate first") -> RpcError:
    return RpcError(AUTH, "Authentication required", "auth_required", details, suggestion)


def auth_failed() -> RpcError:
    return RpcError(AUTH, "Authentication failed or token expired", "auth_failed",
                    "Invalid or expired token", "Provide valid token")


def token_expired() -> RpcError:
    return RpcError(AUTH, "Authentication failed or token expired", "token_expired",
                    "Session token expired", "Obtain a new token and call authenticate again")


def permission_denied(method: str, required_role: str, have_role: str) -> RpcError:
    return RpcError(PERMISSION_DENIED, "Permission denied", "permission_denied",
                    f"insufficient permissions for method {method}", "Use an account with permission",
                    required_role=required_role, have_role=have_role)


def not_found(resource: str, resource_id: str) -> RpcError:
    message, reason = _NOT_FOUND_MESSAGES[resource]
    return RpcError(NOT_FOUND, message, reason, f"{message}: {resource_id}",
                    "Check the identifier", resource=resource, id=resource_id)


def invalid_state(reason: str, state: str, allowed_states: list[str], details: str,
                  suggestion: str, **extra: Any) -> RpcError:
    return RpcError(INVALID_STATE, "Invalid state", reason, details, suggestion, state=state,
                    allowed_states=allowed_states, **extra)


def unsupported(reason: str, feature: str, details: str, suggestion: str) -> RpcError:
    return RpcError(UNSUPPORTED, "Unsupported", reason, details, suggestion, feature=feature)


def not_implemented(method: str) -> RpcError:
    """A method of the contract that this release does not provide yet.

    It is deliberately not -32601: the method exists in the contract (so the role
    table applies to it), it is just not available in this build.
    """
    return unsupported("feature_disabled", method, f"Method {method} is not available in this release",
                       "Upgrade camera-service to a release that provides this method")


def rate_limited(retry_after_ms: int) -> RpcError:
    return RpcError(RATE_LIMITED, "Rate limited", "rate_limit", "rate limit exceeded",
                    "Reduce request rate or wait", retry_after_ms=retry_after_ms)


def dependency_failed(dependency: str, detail: str, details: str = "Dependency failed",
                      suggestion: str = "Retry later") -> RpcError:
    return RpcError(DEPENDENCY_FAILED, "Dependency failed", "dependency_failed", details, suggestion,
                    dependency=dependency, detail=detail)


def service_initializing() -> RpcError:
    return RpcError(DEPENDENCY_FAILED, "Dependency failed", "service_initializing",
                    "Service is still initializing, please retry", "Wait for service to complete startup",
                    dependency="service", detail="startup not complete")
