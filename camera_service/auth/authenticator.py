"""One entry point for every credential the service accepts (api.md §2.1-§2.3).

Used by the JSON-RPC ``authenticate`` method and by the download endpoint (§7.2).
"""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime

from .apikeys import ApiKeyStore
from .identity import API_KEY, JWT, AuthFailed, Identity
from .jwt_tokens import verify_jwt


class Authenticator:
    """Verifies JWTs and API keys, and re-checks established sessions cheaply.

    ``key_store`` is ``None`` when the API key feature is disabled; API keys are then
    refused like any other invalid token.
    """

    def __init__(
        self, jwt_secret: str, key_store: ApiKeyStore | None, clock: IReactorTime
    ) -> None:
        if not jwt_secret:
            raise ValueError("the JWT secret must not be empty")
        self._secret = jwt_secret
        self._key_store = key_store
        self._clock = clock

    @property
    def api_keys_enabled(self) -> bool:
        return self._key_store is not None

    async def authenticate(self, token: str) -> Identity:
        """Verify ``token`` and return who it is, or raise ``AuthFailed``.

        A token with exactly two ``.`` is a JWT; anything else is an API key.
        """
        if not isinstance(token, str) or not token:
            raise AuthFailed("no token")
        if token.count(".") == 2:
            # HMAC only: cheap enough for the reactor thread.
            return verify_jwt(token, self._secret, self._clock.seconds())
        if self._key_store is None:
            raise AuthFailed("api keys are disabled")
        return await self._key_store.verify(token)

    def still_valid(self, identity: Identity) -> bool:
        """Whether a session established with ``identity`` may still act (§2.1 expiry).

        No bcrypt and no I/O: a JWT is valid until its ``exp``; an API key while its
        record is still in the store's in-memory copy of the key file, active, not
        expired, and still has the role the session was granted.
        """
        now = self._clock.seconds()
        if identity.expires_at is not None and not now < identity.expires_at:
            return False
        if identity.kind == JWT:
            return identity.expires_at is not None
        if identity.kind == API_KEY:
            if self._key_store is None or identity.key_id is None:
                return False
            record = self._key_store.record(identity.key_id)
            return record is not None and record.usable(now) and record.role == identity.role
        return False
