"""What a discovery scan probes, and running those probes within bounds (media.md §7.1–7.3).

:func:`plan` turns the validated ``external_discovery`` configuration into an ordered list
of :class:`Target` s: the configured ``candidates`` always, then the Skydio and/or generic
scanners' known IPs followed by the hosts of their network ranges. Nothing outside the
configuration is ever probed.

:func:`run_scan` probes them with at most ``max_concurrent_probes`` connections at once
(a ``DeferredSemaphore``) and the whole scan bounded by ``scan_timeout`` on the injected
clock; on expiry every outstanding probe is cancelled and the outcome says how many did not
run. Targets are grouped by host and port: once a connection to a host:port cannot be made,
its remaining paths are not probed (§7.2 step 1).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from camera_service.external.probe import ProbeResult
from camera_service.external.urls import identity, split_target

__all__ = ["CANDIDATE", "GENERIC", "GENERIC_TYPE", "SKYDIO", "SKYDIO_TYPE", "ScanOutcome",
           "Target", "plan", "run_scan"]

CANDIDATE = "candidate"
SKYDIO = "skydio"
GENERIC = "generic"
SKYDIO_TYPE = "skydio_stanag4609"
GENERIC_TYPE = "generic_rtsp"
# Fixed capabilities of every Skydio stream (media.md §7.3).
_SKYDIO_CAPABILITIES = {"format": "stanag4609", "source": "skydio_uav", "metadata": "klv_mpegts"}

_log = Logger(namespace="camera_service.external.scan")


@dataclass(frozen=True)
class Target:
    url: str
    scanner: str
    type: str
    name: str
    host: str
    port: int
    path: str
    stream_type: str
    static: tuple[tuple[str, Any], ...] = ()

    @property
    def key(self) -> str:
        return identity(self.url)

    def capabilities(self, result: ProbeResult) -> dict[str, Any]:
        """``{protocol, stream_type, port, stream_path, codec, …}`` as far as known (§7.3)."""
        caps: dict[str, Any] = {"protocol": "rtsp", "stream_type": self.stream_type,
                                "port": self.port, "stream_path": self.path}
        caps.update(self.static)
        sdp = result.sdp
        if sdp is not None:
            if sdp.codec:
                caps["codec"] = sdp.codec
            if sdp.resolution:
                caps["resolution"] = sdp.resolution
            if sdp.klv and "metadata" not in caps:
                caps["metadata"] = "klv"
        if result.auth_required:
            caps["auth_required"] = True
        return caps


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _hosts(known_ips: Iterable[str], ranges: Iterable[str]) -> list[str]:
    """Known IPs first, then each range's hosts (network and broadcast excluded below /31 by
    ``ip_network.hosts``), each host once."""
    seen: set[str] = set()
    hosts: list[str] = []
    for ip in known_ips:
        text = str(ipaddress.ip_address(ip))
        if text not in seen:
            seen.add(text)
            hosts.append(text)
    for cidr in ranges:
        for address in ipaddress.ip_network(cidr, strict=False).hosts():
            text = str(address)
            if text not in seen:
                seen.add(text)
                hosts.append(text)
    return hosts


def _candidate(url: str) -> Target:
    host, port, path = split_target(url)
    return Target(url=url, scanner=CANDIDATE, type=GENERIC_TYPE,
                  name=f"Generic_{host}_{port}{path}", host=host, port=port, path=path,
                  stream_type="generic")


def plan(config: Any, *, skydio: bool, generic: bool) -> list[Target]:
    """The ordered probe list for one scan. ``config`` is ``config.external_discovery``."""
    targets: list[Target] = [_candidate(url) for url in config.candidates]
    if skydio:
        sky = config.skydio
        for host in _hosts(sky.known_ips, sky.network_ranges):
            for label, port, path in (("EO", sky.eo_port, sky.eo_path),
                                      ("IR", sky.ir_port, sky.ir_path)):
                targets.append(Target(
                    url=f"rtsp://{_url_host(host)}:{port}{path}", scanner=SKYDIO,
                    type=SKYDIO_TYPE, name=f"Skydio_{label}_{host}_{label.lower()}_{path}",
                    host=host, port=int(port), path=path, stream_type=label.lower(),
                    static=tuple(_SKYDIO_CAPABILITIES.items())))
    if generic:
        gen = config.generic
        for host in _hosts(gen.known_ips, gen.network_ranges):
            for port in gen.ports:
                for path in gen.paths:
                    targets.append(Target(
                        url=f"rtsp://{_url_host(host)}:{port}{path}", scanner=GENERIC,
                        type=GENERIC_TYPE, name=f"Generic_{host}_{port}{path}", host=host,
                        port=int(port), path=path, stream_type="generic"))
    # A URL named twice (a candidate that a scanner also produces) is probed once.
    unique: dict[str, Target] = {}
    for target in targets:
        unique.setdefault(target.key, target)
    return list(unique.values())


@dataclass
class ScanOutcome:
    found: list[tuple[Target, ProbeResult]] = field(default_factory=list)
    #: identities probed to the end and not found (a timed-out scan leaves some unprobed)
    not_found: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    not_run: int = 0


async def run_scan(targets: list[Target], probe: Callable[[str], defer.Deferred[ProbeResult]],
                   *, clock: IReactorTime, max_concurrent: int, scan_timeout: float) -> ScanOutcome:
    """Probe ``targets`` within the bounds; see the module docstring."""
    outcome = ScanOutcome()
    groups: dict[tuple[str, int], list[Target]] = {}
    for target in targets:
        groups.setdefault((target.host, target.port), []).append(target)
    finished: set[str] = set()
    semaphore = defer.DeferredSemaphore(max(1, int(max_concurrent)))

    async def probe_group(group: list[Target]) -> None:
        for index, target in enumerate(group):
            result = await probe(target.url)
            finished.add(target.key)
            if result.found:
                outcome.found.append((target, result))
            else:
                outcome.not_found.add(target.key)
            if result.connect_failed:
                # Refused or silent host:port: its other paths are "not found" unprobed.
                for rest in group[index + 1:]:
                    finished.add(rest.key)
                    outcome.not_found.add(rest.key)
                return

    def job(group: list[Target]) -> defer.Deferred[None]:
        return defer.ensureDeferred(probe_group(group))

    jobs = [semaphore.run(job, group) for group in groups.values()]
    everything = defer.DeferredList(jobs, consumeErrors=True)
    timed_out = False

    def expire() -> None:
        nonlocal timed_out
        timed_out = True
        for running in jobs:
            running.cancel()

    timer = clock.callLater(scan_timeout, expire)
    try:
        results = await everything
    except defer.CancelledError:
        # The scan itself was cancelled (service stop): stop every probe too.
        for running in jobs:
            running.cancel()
        raise
    finally:
        if timer.active():
            timer.cancel()
    for ok, value in results:
        if not ok and isinstance(value, Failure) and not value.check(defer.CancelledError):
            _log.failure("external stream probe failed unexpectedly", failure=value)
    outcome.not_run = sum(1 for t in targets if t.key not in finished)
    if timed_out:
        outcome.errors.append(f"scan timed out after {scan_timeout:g} s; "
                              f"{outcome.not_run} probes not run")
    return outcome
