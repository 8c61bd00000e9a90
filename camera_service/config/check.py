"""Check a configuration file the way the service would load it.

``python -m camera_service.config.check FILE`` prints ``ok`` and exits 0, or prints the one
error line of media.md §8.3 to stderr and exits 78 (EX_CONFIG). The current environment's
``CAMERA_SERVICE_*`` overrides apply, as they would for the service.
"""

from __future__ import annotations

import os
import sys

from . import EX_CONFIG, ConfigError, load_config

EX_USAGE = 64


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: python -m camera_service.config.check FILE\n")
        return EX_USAGE
    try:
        load_config(args[0], os.environ)
    except ConfigError as exc:
        sys.stderr.write(exc.line() + "\n")
        return EX_CONFIG
    sys.stdout.write("ok\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
