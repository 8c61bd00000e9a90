"""twistd wiring: ``twistd -n camera-service --config PATH``.

All start-up wiring lives here and in ``camera_service.app``. Configuration is
loaded and validated completely before any service exists; a bad configuration
ends the process with one line on stderr and exit status 78 (EX_CONFIG).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from twisted.application.service import IService
from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    jsonFileLogObserver,
    textFileLogObserver,
)
from twisted.python import usage
from twisted.python.logfile import LogFile

DEFAULT_CONFIG = "/etc/camera-service/camera-service.yaml"
_LEVELS = {"debug": LogLevel.debug, "info": LogLevel.info, "warn": LogLevel.warn,
           "error": LogLevel.error, "critical": LogLevel.critical}


class Options(usage.Options):
    optParameters = [
        ["config", "c", DEFAULT_CONFIG, "Path of the YAML configuration file."],
    ]

    def postOptions(self) -> None:
        if not self["config"]:
            raise usage.UsageError("--config needs a path")


def _fail(line: str, status: int) -> None:
    sys.stderr.write(line.rstrip("\n") + "\n")
    sys.stderr.flush()
    raise SystemExit(status)


def build_log_observer(logging_config: Any) -> Any:
    """The observer for ``logging.*``: level filter, text or JSON, stdout or a rotated file."""
    if logging_config.file:
        directory, name = os.path.split(logging_config.file)
        os.makedirs(directory, exist_ok=True)
        stream: Any = LogFile(name, directory, rotateLength=logging_config.max_file_size,
                              maxRotatedFiles=logging_config.backup_count)
    else:
        stream = sys.stdout
    if logging_config.format == "json":
        # One JSON object per line (JSON Lines). Twisted's default record separator
        # (RFC 7464, each record starts with \x1e) breaks jq, log shippers and
        # journald, which stores such lines as binary blobs; eventsFromJSONLogFile
        # reads both forms.
        observer = jsonFileLogObserver(stream, recordSeparator="")
    else:
        observer = textFileLogObserver(stream)
    predicate = LogLevelFilterPredicate(defaultLogLevel=_LEVELS[logging_config.level])
    return FilteringLogObserver(observer, [predicate])


def makeService(options: Options, reactor: Any = None) -> IService:
    from camera_service.auth.secret import SecretError
    from camera_service.config import EX_CONFIG, ConfigError, load_config

    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    try:
        config = load_config(options["config"], os.environ)
    except ConfigError as error:
        _fail(error.line(), EX_CONFIG)
    # Files the service and MediaMTX share must be group-writable (media.md §5.1).
    os.umask(0o002)
    from camera_service.app import build_root

    try:
        root = build_root(config, reactor, os.environ)
    except SecretError as error:
        _fail(f"camera-service: config error: {error}", EX_CONFIG)
        raise
    # twistd asks the Application for an ILogObserver component before falling back
    # to its own; the root hands this one over when twistd parents it (app.py).
    root.log_observer = build_log_observer(config.logging)
    return root
