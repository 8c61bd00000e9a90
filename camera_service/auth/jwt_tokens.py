"""HS256 JSON Web Tokens (api.md §2.2).

Verification is strict and does every time check itself against an explicit ``now``,
so that tests can drive it with a ``Clock`` and PyJWT never consults the wall clock.
"""

from __future__ import annotations

import math
from typing import Any

import jwt

from camera_service.roles import is_role

from .identity import JWT, AuthFailed, Identity

ALGORITHM = "HS256"

#: How far in the future ``iat`` and ``nbf`` may lie (clock skew between issuer and us).
SKEW_SECONDS = 5.0

_REQUIRED_CLAIMS = ("user_id", "role", "iat", "exp")

# PyJWT checks only the signature; every claim is checked below against ``now``.
_DECODE_OPTIONS: dict[str, Any] = {
    "verify_signature": True,
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "verify_aud": False,
    "verify_iss": False,
    "verify_sub": False,
    "verify_jti": False,
    "require": [],
}

_DECODE_ERRORS = (jwt.PyJWTError, ValueError, TypeError, RecursionError)


def _number(payload: dict[str, Any], claim: str) -> float:
    value = payload[claim]
    # bool is an int subclass; true/false are not timestamps.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AuthFailed(f"jwt claim {claim} is not a number")
    try:
        result = float(value)
    except OverflowError:
        raise AuthFailed(f"jwt claim {claim} is out of range") from None
    if not math.isfinite(result):
        raise AuthFailed(f"jwt claim {claim} is not finite")
    return result


def verify_jwt(token: str, secret: str, now: float) -> Identity:
    """Verify an HS256 token and return its identity, or raise ``AuthFailed``."""
    if not isinstance(token, str) or not token:
        raise AuthFailed("jwt is not a non-empty string")
    if not secret:
        raise AuthFailed("no jwt secret configured")

    # The header is checked before any signature work: only HS256 is acceptable, so
    # "none", RS256 (key-confusion) and the other HMAC sizes never reach a verifier.
    try:
        header = jwt.get_unverified_header(token)
    except _DECODE_ERRORS:
        raise AuthFailed("jwt header cannot be decoded") from None
    alg = header.get("alg")
    if alg != ALGORITHM:
        # alg comes from the client; log only a bounded, printable rendering of it.
        shown = alg if isinstance(alg, str) and alg.isprintable() and len(alg) <= 16 else "?"
        raise AuthFailed(f"jwt alg {shown!r} is not HS256")
    if header.get("b64", True) is not True or "crit" in header:
        raise AuthFailed("jwt uses unsupported header extensions")

    try:
        payload = jwt.decode(
            token, key=secret, algorithms=[ALGORITHM], options=_DECODE_OPTIONS
        )
    except jwt.InvalidSignatureError:
        raise AuthFailed("jwt signature mismatch") from None
    except _DECODE_ERRORS as exc:
        raise AuthFailed(f"jwt cannot be decoded ({type(exc).__name__})") from None
    if not isinstance(payload, dict):
        raise AuthFailed("jwt payload is not an object")

    for claim in _REQUIRED_CLAIMS:
        if claim not in payload:
            raise AuthFailed(f"jwt claim {claim} is missing")

    user_id = payload["user_id"]
    if not isinstance(user_id, str) or not user_id:
        raise AuthFailed("jwt claim user_id is not a non-empty string")
    role = payload["role"]
    if not is_role(role):
        raise AuthFailed("jwt claim role is not viewer, operator or admin")

    exp = _number(payload, "exp")
    iat = _number(payload, "iat")
    if not exp > now:  # no leeway: exp == now is already expired
        raise AuthFailed("jwt has expired")
    if iat > now + SKEW_SECONDS:
        raise AuthFailed("jwt iat is in the future")
    if "nbf" in payload and _number(payload, "nbf") > now + SKEW_SECONDS:
        raise AuthFailed("jwt is not valid yet (nbf)")

    return Identity(user_id=user_id, role=role, expires_at=exp, kind=JWT)


def mint_jwt(secret: str, user_id: str, role: str, lifetime_seconds: int, now: float) -> str:
    """Issue an HS256 token with the four claims the service requires."""
    if not secret:
        raise ValueError("an empty secret cannot sign tokens")
    if not isinstance(user_id, str) or not user_id:
        raise ValueError("user_id must be a non-empty string")
    if not is_role(role):
        raise ValueError(f"role must be one of viewer, operator, admin; got {role!r}")
    if isinstance(lifetime_seconds, bool) or not isinstance(lifetime_seconds, int):
        raise ValueError("lifetime_seconds must be an integer")
    if lifetime_seconds <= 0:
        raise ValueError("lifetime_seconds must be positive")
    issued = int(now)
    payload = {
        "user_id": user_id,
        "role": role,
        "iat": issued,
        "exp": issued + lifetime_seconds,
    }
    return jwt.encode(payload, secret, algorithm=ALGORITHM)
