"""Per-connection state shared by the dispatcher, the handlers and the notifier."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from camera_service.auth.identity import Identity
from camera_service.rpc.ratelimit import FixedWindow


@dataclass
class Session:
    """What the server knows about one WebSocket connection.

    ``send`` writes a message dict to the client; ``host`` is the host part of the
    upgrade request's Host header (brackets kept for IPv6), or the local address.
    """

    send: Callable[[dict[str, Any]], None]
    host: str
    rate: FixedWindow
    auth_failures: FixedWindow
    session_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    identity: Identity | None = None
    # topic or notification name -> filter dict ({} = no filter)
    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Flipped by the connection when it closes, so late results are not sent.
    closed: bool = False

    @property
    def authenticated(self) -> bool:
        return self.identity is not None

    def revert_to_unauthenticated(self) -> None:
        """Expired or failed credentials: drop identity and every subscription (api.md §2.1)."""
        self.identity = None
        self.subscriptions.clear()
