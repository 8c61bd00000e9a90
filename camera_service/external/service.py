"""The external stream registry, discovery scans and proxy paths (media.md §7; api.md §4.30–4.34).

``ExternalStreamsService`` owns:

- the registry of known external streams, by identity (the URL without credentials):
  streams found by scans (in memory only) and streams added by hand (also persisted);
- the scans: one at a time, callers during a scan wait for its result, a recent result is
  reused unless ``force_rescan``; probes run in-process (``RtspProber``) with bounded
  concurrency and timeouts on the injected clock, so the reactor keeps serving;
- the periodic scan (a ``LoopingCall`` every ``scan_interval`` seconds, rescheduled by
  ``set_discovery_interval``, 0 = only on request) and the optional start-up scan;
- ``<state_dir>/external-streams.json`` (mode 0600: URLs may carry passwords), written
  atomically in the media thread pool after every add/remove;
- the MediaMTX proxy path of every added stream: offered to provisioning through
  ``MediaMTXService.external_paths`` (so a MediaMTX restart re-creates them) and written or
  deleted at once by add/remove while MediaMTX is UP.

Every URL that leaves this module towards a client or a log is masked (``urls.mask``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from camera_service.external.probe import RtspProber
from camera_service.external.scan import (
    CANDIDATE,
    GENERIC,
    SKYDIO,
    SKYDIO_TYPE,
    Target,
    plan,
    run_scan,
)
from camera_service.external.urls import (
    UrlProblem,
    check_url,
    identity,
    mask,
    proxy_path_name,
    scrub,
)
from camera_service.fileutil import write_json_atomically
from camera_service.mediamtx.paths import record_path
from camera_service.rpc.errors import RpcError, invalid_state, not_found, unsupported
from camera_service.timeutil import parse_rfc3339, rfc3339

__all__ = ["DISCOVERED", "ERROR", "FILE_MODE", "FILE_NAME", "SKYDIO_TYPE", "ExternalStreamsService",
           "ScanRecord", "StreamEntry", "feature_disabled"]

FILE_NAME = "external-streams.json"
FILE_MODE = 0o600
FORMAT_VERSION = 1
DISCOVERED = "DISCOVERED"
ERROR = "ERROR"
# LoopingCall intervals beyond this are "practically never"; larger values would overflow
# the timer arithmetic, while the API still reports the value the client set.
_MAX_TIMER_SECONDS = 10.0 ** 9

RunInThread = Callable[..., "defer.Deferred[Any]"]


def feature_disabled() -> RpcError:
    """-32030 of api.md §4.30 when ``external_discovery.enabled`` is false."""
    return unsupported("feature_disabled", "external_discovery",
                       "External stream discovery is disabled in configuration",
                       "Enable external discovery in configuration")


@dataclass
class StreamEntry:
    """One known external stream. ``url`` may carry credentials: never send it out as is."""

    url: str
    type: str
    name: str
    discovered_at: float
    last_seen: float
    capabilities: dict[str, Any] = field(default_factory=dict)
    #: the scanner that last found it (None for a stream only ever added by hand)
    scanner: str | None = None
    #: False once a scan probed it to the end and did not find it
    online: bool = True
    added: bool = False

    @property
    def key(self) -> str:
        return identity(self.url)

    @property
    def status(self) -> str:
        # A stream added by hand is listed as DISCOVERED (api.md §4.31), whatever scans say.
        return DISCOVERED if self.added or self.online else ERROR


@dataclass(frozen=True)
class ScanRecord:
    """What one scan found; kept for reuse within the scan interval (media.md §7.3)."""

    skydio: bool
    generic: bool
    found: tuple[str, ...]
    not_found: frozenset[str]
    errors: tuple[str, ...]
    started: float
    finished: float


class ExternalStreamsService(Service):
    """See the module docstring."""

    name = "external_streams"
    _log = Logger()

    def __init__(self, *, config: Any, reactor: Any, mediamtx: Any, run_in_thread: RunInThread,
                 prober: Any = None) -> None:
        self._config = config
        self._cfg = config.external_discovery
        self._reactor = reactor
        self._mediamtx = mediamtx
        self._run_in_thread = run_in_thread
        self.enabled = bool(self._cfg.enabled)
        #: seconds between periodic scans; 0 = only on request (api.md §4.34)
        self.interval: float = float(self._cfg.scan_interval)
        self._prober = prober or RtspProber(reactor, connect_timeout=self._cfg.connect_timeout,
                                            probe_timeout=self._cfg.probe_timeout)
        self.path = os.path.join(config.server.state_dir, FILE_NAME)
        self._streams: dict[str, StreamEntry] = {}
        # Serialises add/remove with their file write and proxy-path request, so the file,
        # the registry and MediaMTX change in the order the calls were made.
        self._lock = defer.DeferredLock()
        self._loop: LoopingCall | None = None
        self._scanning: defer.Deferred[ScanRecord] | None = None
        self._scan_waiters: list[defer.Deferred[ScanRecord]] = []
        self._last_scan: ScanRecord | None = None
        self.scans = 0
        if self.enabled:
            # Read now, while the service is being built (before the reactor runs under
            # twistd): the first MediaMTX provisioning deletes every ext_ path it is not
            # offered, so the added streams must be known before it can run.
            self._load()
        if mediamtx is not None:
            mediamtx.external_paths = self.proxy_paths

    # ------------------------------------------------------------------ lifecycle

    def startService(self) -> None:
        super().startService()
        if not self.enabled:
            return
        self._restart_loop()
        if self._cfg.startup_scan:
            self._background_scan("start-up")

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        self._stop_loop()
        if self._scanning is not None:
            self._scanning.cancel()  # aborts every outstanding probe connection
        # A pending add/remove finishes its file write before the service counts as stopped.
        return self._lock.run(lambda: None)

    # ------------------------------------------------------------------ API support

    def require_enabled(self) -> None:
        if not self.enabled:
            raise feature_disabled()

    def streams(self) -> list[StreamEntry]:
        """Every known stream, in the order they became known (empty when disabled)."""
        return list(self._streams.values()) if self.enabled else []

    def describe(self, entry: StreamEntry, *, status: str | None = None,
                 proxy_url: Callable[[str], str] | None = None) -> dict[str, Any]:
        """The ExternalStream object of api.md §4.30, password masked."""
        capabilities = dict(entry.capabilities)
        if entry.added and self._proxies_enabled():
            name = proxy_path_name(entry.url)
            capabilities["proxy_path"] = name
            if proxy_url is not None:
                capabilities["proxy_url"] = proxy_url(name)
        return {
            "url": mask(entry.url),
            "type": entry.type,
            "name": entry.name,
            "status": status or entry.status,
            "discovered_at": rfc3339(entry.discovered_at),
            "last_seen": rfc3339(entry.last_seen),
            "capabilities": capabilities,
        }

    async def discover(self, *, skydio: bool, generic: bool, force: bool) -> ScanRecord:
        """A scan's result: the running scan's, a recent one's, or a new scan's (§7.3)."""
        self.require_enabled()
        # A scanner the configuration switched off never runs, whatever the call asks.
        skydio = skydio and bool(self._cfg.skydio.enabled)
        generic = generic and bool(self._cfg.generic.enabled)
        if self._scanning is not None:
            return await self._join_scan()
        last = self._last_scan
        if (not force and last is not None and self.interval > 0
                and (last.skydio, last.generic) == (skydio, generic)
                and self._reactor.seconds() - last.finished < self.interval):
            return last
        return await self._start_scan(skydio, generic)

    def scan_streams(self, record: ScanRecord, include_offline: bool) -> list[tuple[StreamEntry, str]]:
        """(entry, status) for a scan's result; with ``include_offline``, also the streams
        that scan probed without finding them although they had been seen before."""
        listed = [(self._streams[k], DISCOVERED) for k in record.found if k in self._streams]
        if include_offline:
            found = set(record.found)
            for key, entry in self._streams.items():
                if key in record.not_found and key not in found and not entry.added:
                    listed.append((entry, ERROR))
        return listed

    async def add(self, url: str, name: str, stream_type: str) -> StreamEntry:
        """Register a stream by hand, persist it and give it a proxy path (§7.4)."""
        self.require_enabled()
        check_url(url)  # validated as a parameter already; a second line of defence
        await self._lock.acquire()
        try:
            key = identity(url)
            previous = self._streams.get(key)
            if previous is not None and previous.added:
                raise invalid_state("already_exists", "ADDED", [],
                                    f"External stream {mask(url)} is already registered",
                                    "Remove the stream first or use another URL")
            now = self._reactor.seconds()
            entry = StreamEntry(url=url, type=stream_type, name=name, discovered_at=now,
                                last_seen=now, added=True,
                                capabilities=dict(previous.capabilities) if previous else {},
                                scanner=previous.scanner if previous else None)
            self._streams[key] = entry
            try:
                await self._persist()
            except BaseException:
                # The answer will be an error: the registry must not keep what the file lacks.
                if previous is None:
                    self._streams.pop(key, None)
                else:
                    self._streams[key] = previous
                raise
            await self._write_proxy(entry)
            self._log.info("external stream {url} added as {name!r}", url=mask(url), name=name)
            return entry
        finally:
            self._lock.release()

    async def remove(self, given: str) -> StreamEntry:
        """Forget a stream (added or discovered); an added one also leaves the file and
        loses its proxy path (§7.4). ``given`` may be the URL as added or its masked form."""
        self.require_enabled()
        await self._lock.acquire()
        try:
            entry = self._match(given)
            if entry is None:
                raise not_found("external_stream", mask(given))
            key = entry.key
            del self._streams[key]
            if entry.added:
                try:
                    await self._persist()
                except BaseException:
                    self._streams[key] = entry
                    raise
                await self._delete_proxy(entry)
            self._log.info("external stream {url} removed", url=mask(entry.url))
            return entry
        finally:
            self._lock.release()

    def set_interval(self, seconds: int) -> None:
        """Reschedule the periodic scan now; 0 stops it. Lasts until restart (§7.5)."""
        self.require_enabled()
        self.interval = float(seconds)
        self._restart_loop()

    # ------------------------------------------------------------------ proxy paths

    def _proxies_enabled(self) -> bool:
        return self.enabled and bool(getattr(self._mediamtx, "enabled", False))

    def _proxy_body(self, entry: StreamEntry) -> dict[str, Any]:
        """The path body of media.md §7.4. ``source`` keeps the credentials: MediaMTX needs
        them to read the stream, and this body goes nowhere else."""
        mm = self._config.mediamtx
        playback = bool(getattr(self._mediamtx, "playback", False))
        return {
            "source": entry.url,
            "sourceOnDemand": True,
            "sourceOnDemandStartTimeout": f"{int(mm.run_on_demand_start_timeout)}s",
            "sourceOnDemandCloseAfter": f"{int(mm.run_on_demand_close_after)}s",
            "rtspTransport": str(self._cfg.rtsp_transport),
            "record": False,
            "recordPath": record_path(mm.recordings_path, playback),
            "recordDeleteAfter": "0s",
        }

    def proxy_paths(self) -> Mapping[str, dict[str, Any]]:
        """``MediaMTXService.external_paths``: name → body of every added stream's proxy."""
        if not self._proxies_enabled():
            return {}
        wanted: dict[str, dict[str, Any]] = {}
        for entry in self._streams.values():
            if not entry.added:
                continue
            try:
                wanted[proxy_path_name(entry.url)] = self._proxy_body(entry)
            except ValueError as error:
                self._log.error("no proxy path for {url}: {error}", url=mask(entry.url),
                                error=str(error))
        return wanted

    async def _write_proxy(self, entry: StreamEntry) -> None:
        """Write the proxy path now if MediaMTX is UP. A failure does not undo the add: the
        stream is registered and the next provisioning writes the path."""
        if not self._proxies_enabled() or getattr(self._mediamtx, "state", None) != "up":
            return
        name = proxy_path_name(entry.url)
        try:
            await self._mediamtx.write_external_path(name, self._proxy_body(entry))
        except RpcError as error:
            self._log.warn("proxy path {name} for {url} not written now: {detail}", name=name,
                           url=mask(entry.url), detail=scrub(str(error.data.get("detail"))))
        except Exception:  # noqa: BLE001 - never fail an add that is already persisted
            self._log.failure("proxy path {name} not written", name=name)

    async def _delete_proxy(self, entry: StreamEntry) -> None:
        if not self._proxies_enabled():
            return
        name = proxy_path_name(entry.url)
        try:
            await self._mediamtx.delete_external_path(name)
        except RpcError as error:
            # Not wanted any more, so the next provisioning deletes it as stale.
            self._log.warn("proxy path {name} not deleted now: {detail}", name=name,
                           detail=scrub(str(error.data.get("detail"))))
        except Exception:  # noqa: BLE001
            self._log.failure("proxy path {name} not deleted", name=name)

    # ------------------------------------------------------------------ registry helpers

    def _match(self, given: str) -> StreamEntry | None:
        """The URL as registered, its masked form, or the URL without credentials."""
        for entry in self._streams.values():
            if given in (entry.url, mask(entry.url), entry.key):
                return entry
        return None

    def _apply(self, found: list[tuple[Target, Any]], not_found: set[str], now: float) -> None:
        for target, result in found:
            capabilities = target.capabilities(result)
            entry = self._streams.get(target.key)
            if entry is None:
                self._streams[target.key] = StreamEntry(
                    url=target.url, type=target.type, name=target.name, discovered_at=now,
                    last_seen=now, capabilities=capabilities, scanner=target.scanner)
                continue
            entry.last_seen = now
            entry.online = True
            entry.scanner = target.scanner
            entry.capabilities = {**entry.capabilities, **capabilities} if entry.added else capabilities
        for key in not_found:
            entry = self._streams.get(key)
            if entry is not None:
                entry.online = False

    # ------------------------------------------------------------------ scans

    def _join_scan(self) -> defer.Deferred[ScanRecord]:
        # Each waiter gets its own Deferred, so one caller's cancellation touches no other.
        waiter: defer.Deferred[ScanRecord] = defer.Deferred()
        self._scan_waiters.append(waiter)
        return waiter

    def _start_scan(self, skydio: bool, generic: bool) -> defer.Deferred[ScanRecord]:
        waiter = self._join_scan()
        scanning = defer.ensureDeferred(self._scan(skydio, generic))
        self._scanning = scanning

        def finished(result: Any) -> None:
            self._scanning = None
            waiters, self._scan_waiters = self._scan_waiters, []
            for each in waiters:
                if isinstance(result, Failure):
                    each.errback(result)
                else:
                    each.callback(result)

        scanning.addBoth(finished)
        return waiter

    async def _scan(self, skydio: bool, generic: bool) -> ScanRecord:
        clock = self._reactor
        started = clock.seconds()
        targets = plan(self._cfg, skydio=skydio, generic=generic)
        outcome = await run_scan(targets, self._prober.probe, clock=clock,
                                 max_concurrent=int(self._cfg.max_concurrent_probes),
                                 scan_timeout=float(self._cfg.scan_timeout))
        finished = clock.seconds()
        self._apply(outcome.found, outcome.not_found, finished)
        self.scans += 1
        scanners = [CANDIDATE] + ([SKYDIO] if skydio else []) + ([GENERIC] if generic else [])
        self._log.info("external stream scan ({scanners}): {probes} probes, {found} found, "
                       "{seconds:.1f} s", scanners="+".join(scanners), probes=len(targets),
                       found=len(outcome.found), seconds=finished - started)
        for error in outcome.errors:
            self._log.warn("external stream scan: {error}", error=error)
        record = ScanRecord(skydio=skydio, generic=generic,
                            found=tuple(t.key for t, _ in outcome.found),
                            not_found=frozenset(outcome.not_found),
                            errors=tuple(outcome.errors), started=started, finished=finished)
        self._last_scan = record
        return record

    def _background_scan(self, why: str) -> defer.Deferred[None]:
        """A scan with the configured scanners (periodic or start-up). Never fails, so a
        LoopingCall running it never stops."""
        async def run() -> None:
            if self._scanning is not None:
                await self._join_scan()
                return
            await self._start_scan(bool(self._cfg.skydio.enabled), bool(self._cfg.generic.enabled))

        def failed(failure: Failure) -> None:
            if not failure.check(defer.CancelledError):
                self._log.failure("{why} external stream scan failed", failure=failure, why=why)

        return defer.ensureDeferred(run()).addErrback(failed)

    def _stop_loop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    def _restart_loop(self) -> None:
        self._stop_loop()
        if not self.enabled or not self.running or self.interval <= 0:
            return
        loop = LoopingCall(self._background_scan, "periodic")
        loop.clock = self._reactor
        self._loop = loop
        # now=False: the start-up scan is a separate switch (startup_scan).
        loop.start(min(self.interval, _MAX_TIMER_SECONDS), now=False).addErrback(
            lambda failure: self._log.failure("periodic external scan loop ended", failure=failure))

    # ------------------------------------------------------------------ persistence

    def _document(self) -> dict[str, Any]:
        return {"version": FORMAT_VERSION, "streams": [
            {"url": e.url, "name": e.name, "type": e.type, "added_at": rfc3339(e.discovered_at)}
            for e in self._streams.values() if e.added]}

    async def _persist(self) -> None:
        # The document is built here on the reactor thread; only the write runs in the pool.
        await self._run_in_thread(write_json_atomically, self.path, self._document(), FILE_MODE)

    def _load(self) -> None:
        try:
            with open(self.path, encoding="utf-8") as handle:
                raw = json.load(handle)
        except FileNotFoundError:
            return
        except (OSError, ValueError) as error:
            self._set_aside(f"unreadable ({type(error).__name__})")
            return
        items = raw.get("streams") if isinstance(raw, dict) else None
        if not isinstance(items, list):
            self._set_aside("not an external streams document")
            return
        now = self._reactor.seconds()
        for item in items:
            entry = _entry_from_json(item, now)
            if entry is None:
                self._log.warn("skipping an invalid entry of {path}", path=self.path)
                continue
            self._streams.setdefault(entry.key, entry)
        try:
            if os.stat(self.path).st_mode & 0o077:
                os.chmod(self.path, FILE_MODE)  # may hold passwords: owner only
        except OSError:
            pass
        self._log.info("{count} added external stream(s) loaded", count=len(self._streams))

    def _set_aside(self, why: str) -> None:
        """Keep a broken file for the operator instead of overwriting it at the next add."""
        aside = f"{self.path}.broken"
        try:
            os.replace(self.path, aside)
        except OSError:
            aside = "(could not move it)"
        self._log.error("{path} is {why}; starting without added external streams, the file "
                        "was moved to {aside}", path=self.path, why=why, aside=aside)


def _entry_from_json(item: Any, now: float) -> StreamEntry | None:
    if not isinstance(item, dict):
        return None
    url, name, kind = item.get("url"), item.get("name"), item.get("type")
    if not (isinstance(url, str) and isinstance(name, str) and isinstance(kind, str)):
        return None
    if not 0 < len(name) <= 255 or not 0 < len(kind) <= 64:
        return None
    try:
        check_url(url)
    except UrlProblem:
        return None
    try:
        added_at = parse_rfc3339(str(item.get("added_at")))
    except ValueError:
        added_at = now
    return StreamEntry(url=url, type=kind, name=name, discovered_at=added_at,
                       last_seen=added_at, added=True)

