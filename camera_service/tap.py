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
    globalLogPublisher,
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


def _add_file_logging(logging_config: Any) -> None:
    """Optional log file with rotation; stdout/journal logging is twistd's own."""
    if not logging_config.file:
        return
    directory, name = os.path.split(logging_config.file)
    os.makedirs(directory, exist_ok=True)
    log_file = LogFile(name, directory, rotateLength=logging_config.max_file_size,
                       maxRotatedFiles=logging_config.backup_count)
    if logging_config.format == "json":
        observer = jsonFileLogObserver(log_file)
    else:
        observer = textFileLogObserver(log_file)
    predicate = LogLevelFilterPredicate(defaultLogLevel=_LEVELS[logging_config.level])
    globalLogPublisher.addObserver(FilteringLogObserver(observer, [predicate]))


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
    _add_file_logging(config.logging)
    from camera_service.app import build_root

    try:
        return build_root(config, reactor, os.environ)
    except SecretError as error:
        _fail(f"camera-service: config error: {error}", EX_CONFIG)
    raise AssertionError("unreachable")
