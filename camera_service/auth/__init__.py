"""Authentication: JWTs, API keys and the JWT secret (api.md §2).

``Authenticator`` is what the RPC layer and the download endpoint use;
``ApiKeyStore`` keeps the key file loaded; ``resolve_jwt_secret`` runs at start-up.
"""

from .apikeys import ApiKeyStore, KeyFileError, KeyRecord
from .authenticator import Authenticator
from .identity import AuthFailed, Identity
from .jwt_tokens import mint_jwt, verify_jwt
from .secret import SecretError, resolve_jwt_secret

__all__ = [
    "ApiKeyStore",
    "AuthFailed",
    "Authenticator",
    "Identity",
    "KeyFileError",
    "KeyRecord",
    "SecretError",
    "mint_jwt",
    "resolve_jwt_secret",
    "verify_jwt",
]
