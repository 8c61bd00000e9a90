"""Who a connection or request is, once a credential has been verified (api.md §2.1)."""

from __future__ import annotations

from dataclasses import dataclass

JWT = "jwt"
API_KEY = "api_key"


@dataclass(frozen=True)
class Identity:
    """The result of a successful verification.

    ``user_id`` is the JWT ``user_id`` claim, or ``api_key_<key_id>`` for an API key.
    ``expires_at`` is in epoch seconds; it is ``None`` only for an API key without expiry.
    """

    user_id: str
    role: str
    expires_at: float | None
    kind: str  # JWT | API_KEY
    key_id: str | None = None


class AuthFailed(Exception):
    """A credential failed verification.

    The message says why, for the log only; it never contains the credential. Clients
    always get the generic ``auth_failed`` error of api.md §2.4.
    """
