"""Timestamp and duration formatting shared by the API and health endpoints."""

from __future__ import annotations

import datetime as _dt


def rfc3339(epoch_seconds: float) -> str:
    """UTC, whole seconds, ``Z`` suffix (api.md §3.2)."""
    moment = _dt.datetime.fromtimestamp(int(epoch_seconds), tz=_dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> float:
    """Parse an RFC 3339 timestamp (``Z`` or offset, optional fraction) to epoch seconds.

    Raises ValueError for anything else, including naive timestamps.
    """
    if not isinstance(text, str) or "T" not in text.upper():
        raise ValueError("not an RFC 3339 timestamp")
    normalised = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
    moment = _dt.datetime.fromisoformat(normalised)
    if moment.tzinfo is None:
        raise ValueError("timestamp has no time zone")
    return moment.timestamp()


def uptime_string(seconds: float) -> str:
    """``<h>h<m>m<s>s`` with leading zero units dropped: 45s, 1m30s, 2h0m5s."""
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"
