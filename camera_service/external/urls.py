"""External stream URLs: validation, credential masking, identity and proxy path names
(api.md §3.6, §4.31; media.md §7.4).

A URL's *identity* is the URL without its ``user:password@`` part. Two URLs that differ
only in credentials name the same source, so they are one stream: duplicates are found by
identity, and the MediaMTX proxy path name is derived from it (``ext_`` + the first 10 hex
digits of its SHA-256), so the name never depends on, or reveals, a password.

Passwords leave the process only towards MediaMTX (a proxy path's ``source``) and the
0600 state file; every result, error, event and log line carries :func:`mask` output.
"""

from __future__ import annotations

import hashlib
import re
from urllib.parse import SplitResult, urlsplit

__all__ = ["SCHEMES", "UrlProblem", "check_url", "identity", "mask", "proxy_path_name",
           "scrub", "split_target"]

SCHEMES = ("rtsp", "rtsps")
# Whitespace and control characters (C0, DEL, C1) are never part of a usable RTSP URL and
# would split an RTSP request line if they reached one.
_FORBIDDEN = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")
# ``scheme://user:password@`` anywhere in a text (MediaMTX error texts may echo a source).
_CREDENTIALS_IN_TEXT = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@]*):[^\s@/]*@")
_DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322}


class UrlProblem(ValueError):
    """Why a URL is not an acceptable external stream URL."""


def _split(url: str) -> SplitResult:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not 0-65535
    except ValueError as error:
        raise UrlProblem(f"is not a valid URL ({error})") from None
    return parts


def check_url(url: str) -> None:
    """media.md §7.4: ``rtsp://`` or ``rtsps://``, a host, an optional port 1–65535, and a
    path without whitespace or control characters. Raises :class:`UrlProblem`."""
    if _FORBIDDEN.search(url):
        raise UrlProblem("must not contain whitespace or control characters")
    scheme, sep, _ = url.partition("://")
    # The scheme is compared as written: "RTSP://" is legal per RFC 3986 but the contract
    # names the lower-case forms, and MediaMTX matches source prefixes case-sensitively.
    if not sep or scheme not in SCHEMES:
        raise UrlProblem("must start with rtsp:// or rtsps://")
    parts = _split(url)
    if not parts.hostname:
        raise UrlProblem("must name a host")
    if parts.port == 0:
        raise UrlProblem("port must be from 1 to 65535")
    if parts.netloc.endswith(":"):
        raise UrlProblem("has an empty port")


def _userinfo_split(netloc: str) -> tuple[str | None, str]:
    """``(userinfo or None, host[:port])``; the userinfo ends at the LAST ``@``."""
    userinfo, at, hostport = netloc.rpartition("@")
    return (userinfo, hostport) if at else (None, netloc)


def identity(url: str) -> str:
    """The URL without ``user[:password]@`` (the stream's identity)."""
    parts = urlsplit(url)
    userinfo, hostport = _userinfo_split(parts.netloc)
    if userinfo is None:
        return url
    return parts._replace(netloc=hostport).geturl()


def mask(url: str) -> str:
    """The URL with any password replaced by ``***`` (``rtsp://user:***@host/path``)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return scrub(url)
    userinfo, hostport = _userinfo_split(parts.netloc)
    if userinfo is None or ":" not in userinfo:
        return url
    user = userinfo.partition(":")[0]
    return parts._replace(netloc=f"{user}:***@{hostport}").geturl()


def scrub(text: str) -> str:
    """Any ``scheme://user:password@`` inside a free text, with the password masked."""
    return _CREDENTIALS_IN_TEXT.sub(r"\1:***@", text)


def proxy_path_name(url: str) -> str:
    """``ext_`` + the first 10 hex digits of SHA-256 of the URL without credentials."""
    return "ext_" + hashlib.sha256(identity(url).encode("utf-8")).hexdigest()[:10]


def split_target(url: str) -> tuple[str, int, str]:
    """``(host, port, path)`` of a valid URL; the port defaults per scheme (554/322) and an
    empty path is ``/``."""
    parts = urlsplit(url)
    port = parts.port or _DEFAULT_PORTS.get(parts.scheme, 554)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return str(parts.hostname), int(port), path


def request_url(url: str) -> str:
    """The URL as sent in an RTSP request line: without credentials (RTSP authenticates
    with headers, never with userinfo) and without a fragment."""
    parts = urlsplit(identity(url))
    return parts._replace(fragment="").geturl()
