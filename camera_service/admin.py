"""``camera-service-admin``: mint JWTs and manage API keys out of band (api.md §2.2, §2.3).

The service has no key-management API; this tool writes the key file, and the running
service picks up the change within a second.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from camera_service.auth.apikeys import (
    KEY_ID_PATTERN,
    KeyFileError,
    KeyRecord,
    create_key,
    delete_key,
    load_keys,
    revoke_key,
    validate_name,
)
from camera_service.auth.jwt_tokens import mint_jwt
from camera_service.auth.secret import ENV_VAR as JWT_SECRET_ENV
from camera_service.auth.secret import SecretError, resolve_jwt_secret
from camera_service.roles import ROLES
from camera_service.timeutil import rfc3339

PROG = "camera-service-admin"
DEFAULT_CONFIG = "/etc/camera-service/camera-service.yaml"
API_KEYS_PATH_ENV = "CAMERA_SERVICE_API_KEYS_PATH"
EX_OK = 0
EX_FAILURE = 1
EX_USAGE = 2
EX_CONFIG = 78  # same value as camera_service.config.EX_CONFIG and os.EX_CONFIG

_DURATION = re.compile(r"(\d+)([smhdw]?)")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_MAX_DURATION = 100 * 365 * 86400


class _Failure(Exception):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


# --- argument types ----------------------------------------------------------------


def duration(text: str) -> int:
    """``3600``, ``90s``, ``30m``, ``24h``, ``7d`` or ``2w`` as seconds (> 0)."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise argparse.ArgumentTypeError(
            f"invalid duration {text!r}: use seconds or a number with s, m, h, d or w (e.g. 24h, 7d)"
        )
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if not 0 < seconds <= _MAX_DURATION:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: must be from 1 s to 100 years")
    return seconds


def timestamp(text: str) -> _dt.datetime:
    """An ISO 8601 time; without a zone it is taken as UTC."""
    try:
        moment = _dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid time {text!r}: use ISO 8601, e.g. 2026-01-31T00:00:00Z"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_dt.timezone.utc)
    return moment


def key_id(text: str) -> str:
    if not KEY_ID_PATTERN.fullmatch(text):
        raise argparse.ArgumentTypeError(f"invalid key id {text!r}: 8 characters of [a-z0-9]")
    return text


def key_name(text: str) -> str:
    try:
        return validate_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def user_id(text: str) -> str:
    if not text or not text.isprintable():
        raise argparse.ArgumentTypeError("user must be a non-empty printable string")
    return text


# --- the parser --------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Administer camera-service credentials: mint JWTs signed with the"
        " service's secret, and create, list, revoke and delete API keys in its key file.",
        epilog="Exit status: 0 success, 1 failure (e.g. unknown key id), 2 usage error,"
        " 78 configuration error.",
    )
    parser.add_argument(
        "--config",
        metavar="PATH",
        default=DEFAULT_CONFIG,
        help=f"service configuration file, read for the JWT secret and the key file path"
        f" (default: {DEFAULT_CONFIG}); CAMERA_SERVICE_* environment overrides apply",
    )
    key_file_help = (
        f"API key file to use instead of the configured one (default: ${API_KEYS_PATH_ENV},"
        " else security.api_keys.file from the configuration)"
    )
    parser.add_argument("--key-file", metavar="PATH", help=key_file_help)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    token = commands.add_parser(
        "token",
        help="print a JWT for a user and role",
        description="Mint an HS256 JWT with the service's secret (security.jwt_secret_key,"
        f" security.jwt_secret_file, ${JWT_SECRET_ENV}, or <state_dir>/jwt_secret) and print"
        " only the token on stdout.",
    )
    token.add_argument("--user", required=True, type=user_id, help="the user_id claim")
    token.add_argument("--role", required=True, choices=ROLES, help="the role claim")
    token.add_argument(
        "--lifetime",
        type=duration,
        default=duration("24h"),
        metavar="DURATION",
        help="validity: seconds, or a number with s/m/h/d/w, e.g. 3600, 24h, 7d (default: 24h)",
    )
    token.set_defaults(handler=_cmd_token)

    keys = commands.add_parser(
        "keys",
        help="manage API keys",
        description="Manage the API key file (mode 0600). The running service reloads"
        " it automatically; a revoked or deleted key ends its sessions at their next call.",
    )
    # Also accepted after "keys ..." for convenience; SUPPRESS keeps a global value.
    key_file_option = argparse.ArgumentParser(add_help=False)
    key_file_option.add_argument(
        "--key-file", metavar="PATH", default=argparse.SUPPRESS, help=key_file_help
    )
    actions = keys.add_subparsers(dest="action", metavar="ACTION", required=True)

    create = actions.add_parser(
        "create",
        parents=[key_file_option],
        help="create a key and print it once",
        description="Create an API key. The key is printed once on stdout and cannot be"
        " shown again: only its bcrypt hash is stored. Details go to stderr.",
    )
    create.add_argument("--name", required=True, type=key_name, help="what the key is for")
    create.add_argument("--role", required=True, choices=ROLES, help="the key's role")
    expiry = create.add_mutually_exclusive_group()
    expiry.add_argument(
        "--expires-in", type=duration, metavar="DURATION", help="expire after e.g. 30d, 12h"
    )
    expiry.add_argument(
        "--expires-at", type=timestamp, metavar="TIME", help="expire at an ISO 8601 time (UTC if no zone)"
    )
    create.set_defaults(handler=_cmd_create)

    listing = actions.add_parser(
        "list",
        parents=[key_file_option],
        help="list keys (never shows keys or hashes)",
        description="List the keys: key_id, name, role, active, created, expires.",
    )
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(handler=_cmd_list)

    revoke = actions.add_parser(
        "revoke",
        parents=[key_file_option],
        help="deactivate a key, keeping its record",
        description="Set is_active to false. Exit status 1 if there is no such key id.",
    )
    revoke.add_argument("key_id", metavar="KEY_ID", type=key_id, help="the key's 8-character id")
    revoke.set_defaults(handler=_cmd_revoke)

    delete = actions.add_parser(
        "delete",
        parents=[key_file_option],
        help="remove a key's record",
        description="Remove the key from the file. Exit status 1 if there is no such key id.",
    )
    delete.add_argument("key_id", metavar="KEY_ID", type=key_id, help="the key's 8-character id")
    delete.set_defaults(handler=_cmd_delete)
    return parser


# --- configuration -----------------------------------------------------------------


def _load_config(args: argparse.Namespace, environ: Mapping[str, str]) -> Any:
    # Imported here so that the pure helpers above work without the loader.
    from camera_service.config import ConfigError, load_config

    try:
        return load_config(args.config, environ)
    except ConfigError as exc:
        line = exc.line() if callable(getattr(exc, "line", None)) else f"config error: {exc}"
        raise _Failure(str(line), EX_CONFIG) from None


def _key_file(args: argparse.Namespace, environ: Mapping[str, str]) -> str:
    if args.key_file:
        return str(args.key_file)
    if environ.get(API_KEYS_PATH_ENV):
        return environ[API_KEYS_PATH_ENV]
    return str(_load_config(args, environ).security.api_keys.file)


def _jwt_secret(args: argparse.Namespace, environ: Mapping[str, str]) -> tuple[str, str]:
    try:
        if environ.get(JWT_SECRET_ENV):
            return resolve_jwt_secret("", "", "", environ)
        config = _load_config(args, environ)
        return resolve_jwt_secret(
            config.security.jwt_secret_key,
            config.security.jwt_secret_file,
            config.server.state_dir,
            environ,
        )
    except SecretError as exc:
        raise _Failure(f"{PROG}: config error: {exc}", EX_CONFIG) from None


# --- commands ----------------------------------------------------------------------


def _cmd_token(args: argparse.Namespace, environ: Mapping[str, str], out: TextIO, err: TextIO) -> int:
    secret, source = _jwt_secret(args, environ)
    now = time.time()
    token = mint_jwt(secret, args.user, args.role, args.lifetime, now)
    if source.startswith("generated:"):
        err.write(f"note: no JWT secret existed; generated one in {source.split(':', 1)[1]}\n")
    err.write(
        f"token for {args.user} (role {args.role}) expires"
        f" {rfc3339(int(now) + args.lifetime)}\n"
    )
    out.write(token + "\n")
    return EX_OK


def _cmd_create(args: argparse.Namespace, environ: Mapping[str, str], out: TextIO, err: TextIO) -> int:
    expires_at: _dt.datetime | None = args.expires_at
    if args.expires_in is not None:
        expires_at = _dt.datetime.now(_dt.timezone.utc) + _dt.timedelta(seconds=args.expires_in)
    if expires_at is not None and expires_at.timestamp() <= time.time():
        raise _Failure(f"{PROG}: error: --expires-at must be in the future", EX_USAGE)
    path = _key_file(args, environ)
    key, record = create_key(path, args.name, args.role, expires_at)
    expiry = "never" if record.expires_at is None else rfc3339(record.expires_at)
    err.write(
        f"created API key {record.key_id} (name {record.name!r}, role {record.role},"
        f" expires {expiry}) in {path}\n"
        "store the key now: it is shown only once\n"
    )
    out.write(key + "\n")
    return EX_OK


def _list_row(record: KeyRecord, now: float) -> dict[str, Any]:
    return {
        "key_id": record.key_id,
        "name": record.name,
        "role": record.role,
        "active": record.is_active,
        "expired": record.expired(now),
        "created_at": rfc3339(record.created_at),
        "expires_at": None if record.expires_at is None else rfc3339(record.expires_at),
    }


def _cmd_list(args: argparse.Namespace, environ: Mapping[str, str], out: TextIO, err: TextIO) -> int:
    path = _key_file(args, environ)
    records, problems = load_keys(path)
    for problem in problems:
        err.write(f"warning: {path}: {problem} (the service ignores this entry)\n")
    now = time.time()
    rows = [_list_row(r, now) for r in sorted(records, key=lambda r: (r.created_at, r.key_id))]
    if args.json:
        out.write(json.dumps(rows, indent=2) + "\n")
        return EX_OK
    header = ("KEY_ID", "NAME", "ROLE", "ACTIVE", "CREATED", "EXPIRES")
    table = [header]
    for row in rows:
        expires = row["expires_at"] or "never"
        if row["expired"]:
            expires += " (expired)"
        table.append(
            (
                row["key_id"],
                row["name"].encode("unicode_escape").decode("ascii"),
                row["role"],
                "yes" if row["active"] else "no",
                row["created_at"],
                expires,
            )
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for line in table:
        out.write("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() + "\n")
    if not rows:
        err.write(f"no API keys in {path}\n")
    return EX_OK


def _cmd_revoke(args: argparse.Namespace, environ: Mapping[str, str], out: TextIO, err: TextIO) -> int:
    path = _key_file(args, environ)
    if not revoke_key(path, args.key_id):
        raise _Failure(f"{PROG}: no API key with id {args.key_id} in {path}", EX_FAILURE)
    err.write(f"revoked API key {args.key_id}\n")
    return EX_OK


def _cmd_delete(args: argparse.Namespace, environ: Mapping[str, str], out: TextIO, err: TextIO) -> int:
    path = _key_file(args, environ)
    if not delete_key(path, args.key_id):
        raise _Failure(f"{PROG}: no API key with id {args.key_id} in {path}", EX_FAILURE)
    err.write(f"deleted API key {args.key_id}\n")
    return EX_OK


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run the command line; returns the exit status (argparse exits 2 on usage errors)."""
    environ = os.environ if environ is None else environ
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args, environ, sys.stdout, sys.stderr))
    except _Failure as failure:
        sys.stderr.write(f"{failure}\n")
        return failure.status
    except KeyFileError as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return EX_FAILURE
    except OSError as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return EX_FAILURE


if __name__ == "__main__":
    sys.exit(main())
