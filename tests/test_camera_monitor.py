"""Camera discovery on a deterministic clock (media.md §1, §6.1; api.md §5.2, §5.4).

Everything runs synchronously: a ``Clock`` for time, a synchronous ``run_in_thread``,
and small fakes for the node source (pyudev), the prober, and the udev reader. The
fakes implement the interfaces the real modules provide; the udev/identity/mode
rules are injected as small spec-following stand-ins so these tests do not depend
on the modules other engineers are writing (one test at the end uses the real ones
when they are importable).
"""

from __future__ import annotations

import itertools
import json
import os
import stat
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock

from camera_service.config import load_config
from camera_service.discovery.idmap import IdMap
from camera_service.discovery.monitor import CameraMonitor, Coalescer
from camera_service.discovery.registry import (
    camera_object,
    capabilities_result,
    metrics_entry,
    status_result,
)
from camera_service.events import EventBus
from camera_service.health.model import HealthRegistry, Readiness
from camera_service.rpc.notifier import STREAMS_FOR_RECIPIENT

T0 = 1_736_951_400.0  # 2025-01-15T14:30:00Z


# -- fakes of the interfaces the monitor consumes -------------------------------------------

@dataclass(frozen=True)
class FakeNodeInfo:
    """Shape of camera_service.discovery.udev.NodeInfo."""

    number: int
    devnode: str
    properties: Mapping[str, str]
    index: int | None
    name: str | None


@dataclass(frozen=True)
class FakeMode:
    fourcc: str
    width: int
    height: int
    fps: float


@dataclass(frozen=True)
class FakeProbe:
    """Shape of camera_service.discovery.v4l2.ProbeResult, views per media.md §1.5."""

    driver: str = "uvcvideo"
    card: str = "USB Cam"
    bus_info: str = "usb-0000:00:14.0-1"
    version: str = "6.1.0"
    capabilities: tuple[str, ...] = ("Video Capture", "Metadata Capture", "Streaming")
    device_caps: tuple[str, ...] = ("Video Capture", "Streaming")
    capabilities_bits: int = 0x84A00001
    device_caps_bits: int | None = 0x04200001
    modes: tuple[FakeMode, ...] = (FakeMode("MJPG", 1920, 1080, 30.0), FakeMode("MJPG", 1280, 720, 30.0),
                                   FakeMode("YUYV", 640, 480, 30.0), FakeMode("YUYV", 640, 480, 15.0))
    capture: bool = True

    def is_capture_node(self) -> bool:
        return self.capture

    def formats(self) -> list[str]:
        seen: list[str] = []
        for mode in self.modes:
            name = "MJPEG" if mode.fourcc.strip() == "MJPG" else mode.fourcc.strip()
            if name not in seen:
                seen.append(name)
        return seen

    def resolutions(self) -> list[str]:
        sizes = sorted({(m.width, m.height) for m in self.modes}, key=lambda s: (s[0] * s[1], s[0]),
                       reverse=True)
        return [f"{w}x{h}" for w, h in sizes]

    def fps_options(self) -> list[int]:
        return sorted({int(m.fps + 0.5) for m in self.modes}, reverse=True)

    def metrics_formats(self) -> list[dict[str, Any]]:
        grouped: dict[tuple[str, int, int], list[str]] = {}
        for m in self.modes:
            grouped.setdefault((m.fourcc, m.width, m.height), []).append(f"{m.fps:.3f}")
        return [{"pixel_format": f, "width": w, "height": h, "frame_rates": rates}
                for (f, w, h), rates in grouped.items()]


class FakeProbeError(Exception):
    """Shape of camera_service.discovery.probe.ProbeError."""

    def __init__(self, reason: str, retryable: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


HANG = object()


class FakeProber:
    """Outcomes per node: a queue (used first) and a default. HANG never answers."""

    def __init__(self) -> None:
        self.default: dict[str, Any] = {}
        self.queue: dict[str, list[Any]] = {}
        self.calls: list[tuple[str, float]] = []
        self.cancelled: list[str] = []

    def set(self, node: str, outcome: Any) -> None:
        self.default[node] = outcome

    def then(self, node: str, *outcomes: Any) -> None:
        self.queue.setdefault(node, []).extend(outcomes)

    def count(self, node: str) -> int:
        return sum(1 for n, _ in self.calls if n == node)

    def probe(self, node: str, timeout: float) -> defer.Deferred[Any]:
        self.calls.append((node, timeout))
        queued = self.queue.get(node)
        outcome = queued.pop(0) if queued else self.default.get(node, FakeProbeError("no such device"))
        if outcome is HANG:
            return defer.Deferred(lambda _d: self.cancelled.append(node))
        if isinstance(outcome, Exception):
            return defer.fail(outcome)
        return defer.succeed(outcome)


class AsyncProber(FakeProber):
    """The real prober's shape: ``async def probe``."""

    async def probe(self, node: str, timeout: float) -> Any:  # type: ignore[override]
        return await super().probe(node, timeout)


class FakeNodeSource:
    def __init__(self) -> None:
        self.nodes: dict[int, FakeNodeInfo] = {}
        self.fail_lists = 0
        self.list_calls = 0

    def list_nodes(self) -> list[FakeNodeInfo]:
        self.list_calls += 1
        if self.fail_lists > 0:
            self.fail_lists -= 1
            raise OSError("enumeration failed")
        return [self.nodes[n] for n in sorted(self.nodes)]

    def node_info(self, number: int) -> FakeNodeInfo | None:
        return self.nodes.get(number)


class FakeUdev:
    """Shape of camera_service.discovery.udev.UdevEvents; the test fires events."""

    def __init__(self, available: bool = True) -> None:
        self.available = available
        self.on_event: Callable[[str, int], None] | None = None
        self.on_overflow: Callable[[], None] | None = None
        self.started = False
        self.stopped = False

    def factory(self, on_event: Callable[[str, int], None], on_overflow: Callable[[], None]) -> FakeUdev:
        self.on_event, self.on_overflow = on_event, on_overflow
        return self

    def start(self) -> bool:
        self.started = True
        return self.available

    def stop(self) -> None:
        self.stopped = True

    def fire(self, action: str, number: int) -> None:
        assert self.on_event is not None
        self.on_event(action, number)


class ManualThreads:
    """A run_in_thread whose calls wait until the test releases them."""

    def __init__(self) -> None:
        self.pending: list[tuple[defer.Deferred[Any], Callable[..., Any], tuple[Any, ...]]] = []

    def __call__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> defer.Deferred[Any]:
        d: defer.Deferred[Any] = defer.Deferred()
        self.pending.append((d, fn, args))
        return d

    def release(self) -> int:
        """Run every pending call, including calls made by their continuations."""
        done = 0
        while self.pending:
            d, fn, args = self.pending.pop(0)
            try:
                d.callback(fn(*args))
            except Exception as error:  # noqa: BLE001 - surfaced through the Deferred
                d.errback(error)
            done += 1
        return done


def sync_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> defer.Deferred[Any]:
    return defer.maybeDeferred(fn, *args, **kwargs)


# -- spec-following stand-ins for the udev / v4l2 rules ---------------------------------

def says_capture(info: Any) -> bool | None:
    """media.md §1.3 rule 1."""
    caps = info.properties.get("ID_V4L_CAPABILITIES")
    if caps is None:
        return None
    return ":capture:" in caps


def identity_key(info: Any, serial_clash: bool = False) -> str:
    """media.md §1.7."""
    props = info.properties
    if props.get("ID_SERIAL_SHORT") and not serial_clash:
        return f"serial:{props.get('ID_SERIAL', '')}:{props.get('ID_USB_INTERFACE_NUM', '')}:{info.index}"
    if props.get("ID_PATH"):
        return f"path:{props['ID_PATH']}:{info.index}"
    return f"node:video{info.number}"


def choose_mode(modes: Iterable[Any], *, preference: tuple[str, ...], target: tuple[int, int],
                target_fps: float, override: tuple[str, int, int, float] | None = None) -> Any:
    """media.md §1.6."""
    modes = list(modes)
    if override is not None:
        for m in modes:
            if (m.fourcc, m.width, m.height) == override[:3] and abs(m.fps - override[3]) < 0.5:
                return m
    candidates = [m for m in modes if m.fourcc in preference]
    if not candidates:
        return None
    area = target[0] * target[1]
    kept = [m for m in candidates if m.width * m.height <= area and m.fps <= target_fps + 0.5]
    if not kept:
        smallest = min(m.width * m.height for m in candidates)
        kept = [m for m in candidates if m.width * m.height == smallest]
    return max(kept, key=lambda m: (m.width * m.height, min(m.fps, target_fps), -preference.index(m.fourcc)))


# -- node builders -------------------------------------------------------------------------

def usb_node(number: int, *, serial: str = "SN0001", port: str = "pci-0000:00:14.0-usb-0:1:1.0",
             index: int = 0, capture: bool = True, udev: bool = True, product: str = "USB Cam") -> FakeNodeInfo:
    props: dict[str, str] = {}
    if udev:
        props = {
            "DEVNAME": f"/dev/video{number}",
            "SUBSYSTEM": "video4linux",
            "ID_V4L_CAPABILITIES": ":capture:" if capture else ":",
            "ID_SERIAL": f"Vendor_USB_Cam_{serial}" if serial else "Vendor_USB_Cam",
            "ID_SERIAL_SHORT": serial,
            "ID_USB_INTERFACE_NUM": "00",
            "ID_PATH": port,
            "ID_V4L_PRODUCT": product,
            "ID_MODEL": product.replace(" ", "_"),
        }
    return FakeNodeInfo(number, f"/dev/video{number}", props, index, product)


def dev(number: int) -> str:
    return f"/dev/video{number}"


# -- harness --------------------------------------------------------------------------------

@dataclass
class Harness:
    clock: Clock
    bus: EventBus
    health: HealthRegistry
    readiness: Readiness
    nodes: FakeNodeSource
    prober: FakeProber
    udev: FakeUdev
    monitor: CameraMonitor
    state_dir: Path
    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def events(self) -> list[tuple[str, dict[str, Any]]]:
        """Delivered events since the last call, timestamps checked and removed."""
        self.clock.advance(0)
        out = []
        for name, payload in self.received:
            payload = dict(payload)
            if name != "camera_status_update":
                assert isinstance(payload.pop("timestamp"), str)
            out.append((name, payload))
        self.received.clear()
        return out

    def plug(self, info: FakeNodeInfo, *, event: bool = True) -> None:
        self.nodes.nodes[info.number] = info
        if event:
            self.udev.fire("add", info.number)

    def unplug(self, number: int, *, event: bool = True) -> None:
        self.nodes.nodes.pop(number, None)
        if event:
            self.udev.fire("remove", number)

    def camera(self, camera_id: str) -> Any:
        return self.monitor.registry.get(camera_id)

    def stop(self) -> None:
        if self.monitor.running:
            self.monitor.stopService()
        self.clock.advance(0)


def make(tmp_path: Path, *, env: dict[str, str] | None = None, udev_available: bool = True,
         udev_factory: bool = True, ffmpeg: str | None = "/usr/bin/ffmpeg", start: bool = True,
         nodes: Iterable[FakeNodeInfo] = (), prober: FakeProber | None = None,
         run_in_thread: Callable[..., Any] = sync_thread, clock: Clock | None = None,
         source: FakeNodeSource | None = None) -> Harness:
    state = tmp_path / "state"
    environ = {
        "CAMERA_SERVICE_SERVER_STATE_DIR": str(state),
        "CAMERA_SERVICE_VIRTUAL_CAMERAS": "[]",
    }
    environ.update(env or {})
    config = load_config(None, environ)
    if clock is None:
        clock = Clock()
        clock.advance(T0)
    bus = EventBus(clock)
    health = HealthRegistry(clock)
    readiness = Readiness()
    source = source or FakeNodeSource()
    for info in nodes:
        source.nodes[info.number] = info
    prober = prober or FakeProber()
    udev = FakeUdev(udev_available)
    monitor = CameraMonitor(clock, config, bus, health, readiness, run_in_thread, prober, source,
                            udev.factory if udev_factory else None, ffmpeg_path=ffmpeg,
                            says_capture=says_capture, identity_key=identity_key,
                            choose_mode=choose_mode)
    harness = Harness(clock, bus, health, readiness, source, prober, udev, monitor, state)
    bus.add_listener(lambda name, payload: harness.received.append((name, payload)))
    if start:
        monitor.startService()
    return harness


@pytest.fixture
def h(tmp_path: Path) -> Any:
    harnesses: list[Harness] = []

    def build(**kwargs: Any) -> Harness:
        harness = make(tmp_path, **kwargs)
        harnesses.append(harness)
        return harness

    yield build
    for harness in harnesses:
        harness.stop()
        # No timer may outlive the service (buildbot's assert_no_remaining_calls).
        assert harness.clock.getDelayedCalls() == []


# Expected payloads ---------------------------------------------------------------------

def status_update(device: str, status: str, name: str = "USB Cam", resolution: str = "1280x720",
                  fps: int = 30) -> tuple[str, dict[str, Any]]:
    return ("camera_status_update", {"device": device, "status": status, "name": name,
                                     "resolution": resolution, "fps": fps, "streams": STREAMS_FOR_RECIPIENT})


def connected(device: str, name: str = "USB Cam", driver: str = "uvcvideo",
              card: str = "USB Cam") -> tuple[str, dict[str, Any]]:
    return ("camera.connected", {"device": device, "name": name, "status": "CONNECTED",
                                 "driver": driver, "card_name": card})


def detected(device: str, probe: Any = None, name: str = "USB Cam") -> tuple[str, dict[str, Any]]:
    probe = probe or FakeProbe()
    return ("camera.capability_detected", {"device": device, "name": name, "driver": probe.driver,
                                           "card_name": probe.card, "bus_info": probe.bus_info,
                                           "capabilities": list(probe.capabilities)})


def cap_error(device: str, error: str) -> tuple[str, dict[str, Any]]:
    return ("camera.capability_error", {"device": device, "error": error})


def disconnected(device: str) -> tuple[str, dict[str, Any]]:
    return ("camera.disconnected", {"device": device, "status": "DISCONNECTED"})


def status_change(device: str, old: str, new: str, name: str = "USB Cam") -> tuple[str, dict[str, Any]]:
    return ("camera.status_change", {"device": device, "name": name, "old_status": old, "new_status": new})


def connect_events(device: str, probe: Any = None) -> list[tuple[str, dict[str, Any]]]:
    return [status_update(device, "CONNECTED"), connected(device), detected(device, probe)]


def assert_same(actual: list[tuple[str, dict[str, Any]]], expected: list[tuple[str, dict[str, Any]]]) -> None:
    assert [name for name, _ in actual] == [name for name, _ in expected], actual
    for (name, got), (_, want) in zip(actual, expected):
        assert set(got) == set(want), (name, got)
        for key, value in want.items():
            if value is STREAMS_FOR_RECIPIENT:
                assert got[key] is STREAMS_FOR_RECIPIENT
            else:
                assert got[key] == value, (name, key, got)


# -- §1.8: every row of the table ------------------------------------------------------------

def test_new_node_probe_succeeded(h: Any) -> None:
    prober = FakeProber()
    prober.set(dev(0), FakeProbe())
    prober.set(dev(1), FakeProbe(capture=False, device_caps=("Metadata Capture", "Streaming")))
    harness = h(nodes=[usb_node(0), usb_node(1, index=1, capture=False)], prober=prober)
    assert_same(harness.events(), connect_events("camera0"))
    cam = harness.camera("camera0")
    assert (cam.status, cam.name, cam.resolution, cam.fps) == ("CONNECTED", "USB Cam", "1280x720", 30)
    assert harness.monitor.registry.ids() == ["camera0"]
    # The metadata node is classified by udev alone and never probed.
    assert prober.count(dev(1)) == 0


def test_new_node_probe_failed(h: Any) -> None:
    prober = FakeProber()
    prober.set(dev(2), FakeProbeError("permission denied (is the service user in group 'video'?)"))
    harness = h(nodes=[usb_node(2)], prober=prober)
    reason = "permission denied (is the service user in group 'video'?)"
    # No probe result: name from udev, no mode.
    assert_same(harness.events(), [status_update("camera2", "ERROR", resolution="", fps=0),
                                    cap_error("camera2", reason)])
    assert harness.camera("camera2").error == reason


def test_connected_then_removed(h: Any) -> None:
    prober = FakeProber()
    prober.set(dev(0), FakeProbe())
    harness = h(nodes=[usb_node(0)], prober=prober)
    harness.events()
    harness.unplug(0)
    assert_same(harness.events(), [status_update("camera0", "DISCONNECTED"), disconnected("camera0"),
                                   status_change("camera0", "CONNECTED", "DISCONNECTED")])
    cam = harness.camera("camera0")
    assert cam.status == "DISCONNECTED" and cam.node is None
    # Still known, with the last probed values.
    assert capabilities_result(cam)["validation_status"] == "DISCONNECTED"
    assert capabilities_result(cam)["formats"] == ["MJPEG", "YUYV"]


def test_error_then_removed(h: Any) -> None:
    prober = FakeProber()
    prober.set(dev(0), FakeProbeError("probe timed out after 5 s"))
    harness = h(nodes=[usb_node(0)], prober=prober)
    harness.events()
    harness.unplug(0)
    assert_same(harness.events(), [status_update("camera0", "DISCONNECTED", resolution="", fps=0),
                                   disconnected("camera0"),
                                   status_change("camera0", "ERROR", "DISCONNECTED")])


def test_disconnected_seen_again_on_another_node_keeps_id(h: Any) -> None:
    prober = FakeProber()
    prober.set(dev(0), FakeProbe())
    prober.set(dev(3), FakeProbe())
    harness = h(nodes=[usb_node(0)], prober=prober)
    harness.events()
    harness.unplug(0)
    harness.events()
    harness.plug(usb_node(3))  # the kernel numbered it differently this time
    assert_same(harness.events(), connect_events("camera0") + [
        status_change("camera0", "DISCONNECTED", "CONNECTED")])
    assert harness.camera("camera0").node == 3
    assert harness.monitor.registry.ids() == ["camera0"]


def test_disconnected_seen_again_probe_failed(h: Any) -> None:
    prober = FakeProber()
    prober.then(dev(0), FakeProbe(), FakeProbeError("device busy"))
    harness = h(nodes=[usb_node(0)], prober=prober)
    harness.events()
    harness.unplug(0)
    harness.events()
    harness.plug(usb_node(0))
    assert_same(harness.events(), [status_update("camera0", "ERROR", resolution="", fps=0),
                                   cap_error("camera0", "device busy"),
                                   status_change("camera0", "DISCONNECTED", "ERROR")])


def test_error_reprobe_succeeded(h: Any) -> None:
    prober = FakeProber()
    prober.then(dev(0), FakeProbeError("no supported capture format"))
    prober.set(dev(0), FakeProbe())
    harness = h(nodes=[usb_node(0)], prober=prober)
    harness.events()
    harness.clock.advance(30)
    assert_same(harness.events(), connect_events("camera0") + [
        status_change("camera0", "ERROR", "CONNECTED")])


def test_change_reprobe_same_capabilities_publishes_nothing(h: Any) -> None:
    prober = FakeProber()
    prober.set(dev(0), FakeProbe())
    harness = h(nodes=[usb_node(0)], prober=prober)
    harness.events()
    harness.udev.fire("change", 0)
    assert prober.count(dev(0)) == 2
    assert harness.events() == []


def test_change_reprobe_new_capabilities(h: Any) -> None:
    prober = FakeProber()
    changed = FakeProbe(modes=(FakeMode("YUYV", 640, 480, 30.0),))
    prober.then(dev(0), FakeProbe(), changed)
    harness = h(nodes=[usb_node(0)], prober=prober)
    harness.events()
    harness.udev.fire("change", 0)
    assert_same(harness.events(), [detected("camera0", changed)])
    assert harness.camera("camera0").resolution == "640x480"


def test_change_reprobe_failed(h: Any) -> None:
    prober = FakeProber()
    prober.then(dev(0), FakeProbe(), FakeProbeError("device disappeared"))
    harness = h(nodes=[usb_node(0)], prober=prober)
    harness.events()
    harness.udev.fire("change", 0)
    assert_same(harness.events(), [status_update("camera0", "ERROR", resolution="", fps=0),
                                   cap_error("camera0", "device disappeared"),
                                   status_change("camera0", "CONNECTED", "ERROR")])


def test_no_usable_mode_is_error_and_keeps_what_was_probed(h: Any) -> None:
    prober = FakeProber()
    prober.set(dev(0), FakeProbe(modes=(FakeMode("RGB3", 640, 480, 30.0),)))
    harness = h(nodes=[usb_node(0)], prober=prober)
    assert_same(harness.events(), [status_update("camera0", "ERROR", resolution="", fps=0),
                                   cap_error("camera0", "no supported capture format")])
    assert capabilities_result(harness.camera("camera0"))["formats"] == ["RGB3"]


def test_probe_reason_never_carries_a_device_path(h: Any) -> None:
    prober = FakeProber()
    prober.set(dev(4), FakeProbeError("open /dev/video4: permission denied"))
    harness = h(nodes=[usb_node(4)], prober=prober)
    events = harness.events()
    assert cap_error("camera4", "open camera4: permission denied") in events


# -- identity and ids (§1.7) ---------------------------------------------------------------

def seed_map(state_dir: Path, cameras: dict[str, dict[str, str]]) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "camera-ids.json").write_text(json.dumps({"version": 1, "cameras": cameras}))


def test_id_is_node_number_then_lowest_free(tmp_path: Path, h: Any) -> None:
    seed_map(tmp_path / "state", {
        "serial:other:00:0": {"id": "camera0", "name": "Other", "last_seen": "2025-01-01T00:00:00Z"},
        "serial:third:00:0": {"id": "camera3", "name": "Third", "last_seen": "2025-01-01T00:00:00Z"},
    })
    prober = FakeProber()
    for n in (2, 3):
        prober.set(dev(n), FakeProbe())
    harness = h(nodes=[usb_node(2, serial="A", port="p2"), usb_node(3, serial="B", port="p3")],
                prober=prober)
    # camera2 is free; camera3 is held by another key, so the lowest free M (1) is used.
    assert harness.monitor.registry.ids() == ["camera1", "camera2"]
    assert harness.camera("camera2").node == 2
    assert harness.camera("camera1").node == 3


def test_remembered_identity_keeps_its_id_across_restart(tmp_path: Path) -> None:
    prober = FakeProber()
    prober.set(dev(0), FakeProbe())
    prober.set(dev(5), FakeProbe())
    first = make(tmp_path, nodes=[usb_node(0)], prober=prober)
    assert first.monitor.registry.ids() == ["camera0"]
    first.stop()
    path = tmp_path / "state" / "camera-ids.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    document = json.loads(path.read_text())
    assert document == {"version": 1, "cameras": {"serial:Vendor_USB_Cam_SN0001:00:0": {
        "id": "camera0", "name": "USB Cam", "last_seen": "2025-01-15T14:30:00Z"}}}
    # Next boot: the camera is now video5, and a new camera took video0.
    second = make(tmp_path, nodes=[usb_node(0, serial="NEW", port="p9"), usb_node(5)], prober=prober)
    try:
        by_node = {c.node: c.id for c in second.monitor.registry}
        assert by_node == {5: "camera0", 0: "camera1"}
    finally:
        second.stop()


def test_virtual_ids_are_reserved(tmp_path: Path) -> None:
    clock = Clock()
    idmap = IdMap(str(tmp_path), 64, sync_thread, clock)
    defer.ensureDeferred(idmap.load())
    idmap.reserve(["camera0"])
    assert idmap.assign("path:a:0", 0, "A") == "camera1"
    # A remembered id that is now a virtual camera's is not reused (rule 1 gives way).
    idmap.reserve(["camera1"])
    assert idmap.choose("path:a:0", 0) == "camera2"
    # Ids held this run by cameras with other identities are not free either.
    assert idmap.choose("path:c:0", 2, taken={"camera2"}) == "camera3"


def test_virtual_id_reserved_in_monitor(tmp_path: Path, h: Any) -> None:
    # A USB camera whose remembered id is now a virtual camera's gets a free id.
    seed_map(tmp_path / "state", {
        "serial:Vendor_USB_Cam_SN0001:00:0": {"id": "camera100", "name": "x", "last_seen": "2025-01-01T00:00:00Z"}})
    prober = FakeProber()
    prober.set(dev(0), FakeProbe())
    harness = h(nodes=[usb_node(0)], prober=prober, env={
        "CAMERA_SERVICE_VIRTUAL_CAMERAS": '[{"id": "camera100", "name": "Test pattern"}]'})
    assert harness.monitor.registry.ids() == ["camera0", "camera100"]
    assert harness.camera("camera100").is_virtual


def test_remember_limit_evicts_least_recently_seen(tmp_path: Path, h: Any) -> None:
    prober = FakeProber()
    for n in range(3):
        prober.set(dev(n), FakeProbe())
    harness = h(env={"CAMERA_SERVICE_CAMERA_REMEMBER_LIMIT": "2"}, prober=prober)
    for n in range(3):
        harness.clock.advance(10)
        harness.plug(usb_node(n, serial=f"S{n}", port=f"p{n}"))
    document = json.loads((tmp_path / "state" / "camera-ids.json").read_text())
    assert [e["id"] for e in document["cameras"].values()] == ["camera1", "camera2"]
    # camera1 is seen again (unplug refreshes last_seen), so camera2 is now the oldest.
    harness.clock.advance(10)
    harness.unplug(1)
    harness.clock.advance(10)
    prober.set(dev(4), FakeProbe())
    harness.plug(usb_node(4, serial="S4", port="p4"))
    document = json.loads((tmp_path / "state" / "camera-ids.json").read_text())
    assert [e["id"] for e in document["cameras"].values()] == ["camera1", "camera4"]


def test_remember_limit_eviction_order_survives_reload(tmp_path: Path) -> None:
    clock = Clock()
    clock.advance(T0)
    idmap = IdMap(str(tmp_path), 2, sync_thread, clock)
    defer.ensureDeferred(idmap.load())
    idmap.assign("k0", 0, "a")
    idmap.assign("k1", 1, "b")  # same second as k0: file order decides
    reloaded = IdMap(str(tmp_path), 2, sync_thread, clock)
    defer.ensureDeferred(reloaded.load())
    reloaded.assign("k2", 2, "c")
    assert list(reloaded.entries()) == ["k1", "k2"]
    assert reloaded.entries()["k2"].id == "camera2"


def test_corrupt_map_is_moved_aside(tmp_path: Path) -> None:
    (tmp_path / "camera-ids.json").write_text("{not json")
    idmap = IdMap(str(tmp_path), 64, sync_thread, Clock())
    defer.ensureDeferred(idmap.load())
    assert len(idmap) == 0
    assert (tmp_path / "camera-ids.json.corrupt").exists()


def test_serial_clones_use_port_paths(h: Any) -> None:
    prober = FakeProber()
    prober.set(dev(0), FakeProbe())
    prober.set(dev(2), FakeProbe())
    harness = h(nodes=[usb_node(0, serial="CLONE", port="port-a"), usb_node(2, serial="CLONE", port="port-b")],
                prober=prober)
    cams = {c.id: c.identity for c in harness.monitor.registry}
    assert cams == {"camera0": "path:port-a:0", "camera2": "path:port-b:0"}


def test_serial_clone_plugged_later_rekeys_the_first(h: Any) -> None:
    prober = FakeProber()
    prober.set(dev(0), FakeProbe())
    prober.set(dev(2), FakeProbe())
    harness = h(nodes=[usb_node(0, serial="CLONE", port="port-a")], prober=prober)
    assert harness.camera("camera0").identity.startswith("serial:")
    harness.plug(usb_node(2, serial="CLONE", port="port-b"))
    assert harness.camera("camera0").identity == "path:port-a:0"
    assert harness.camera("camera2").identity == "path:port-b:0"
    assert harness.monitor.idmap.get("path:port-a:0").id == "camera0"


def test_other_device_on_same_node_number(h: Any) -> None:
    # Between two scans (scan-only mode) one camera left and another took its number.
    prober = FakeProber()
    prober.set(dev(0), FakeProbe())
    harness = h(nodes=[usb_node(0, serial="A", port="pa")], prober=prober, udev_available=False)
    harness.events()
    harness.nodes.nodes[0] = usb_node(0, serial="B", port="pb")
    harness.clock.advance(5)  # the scan sees another identity at a known node number
    events = harness.events()
    assert [n for n, _ in events] == ["camera_status_update", "camera.disconnected", "camera.status_change",
                                      "camera_status_update", "camera.connected", "camera.capability_detected"]
    assert harness.camera("camera0").status == "DISCONNECTED"
    assert harness.camera("camera1").status == "CONNECTED"


# -- coalescing, settling, retries, cancellation (§1.4, §1.5) ---------------------------------

def test_burst_add_remove_add_during_lookup_announces_once(tmp_path: Path, h: Any) -> None:
    threads = ManualThreads()
    prober = FakeProber()
    prober.set(dev(0), FakeProbe())
    harness = h(run_in_thread=threads, prober=prober)
    threads.release()  # id map load + first scan (no nodes)
    harness.events()
    harness.plug(usb_node(0))
    harness.unplug(0)
    harness.plug(usb_node(0))
    harness.unplug(0)
    harness.plug(usb_node(0))
    threads.release()
    assert_same(harness.events(), connect_events("camera0"))
    assert prober.count(dev(0)) == 1


def test_burst_during_probe_ends_in_final_state(h: Any) -> None:
    prober = FakeProber()
    prober.then(dev(0), HANG)
    prober.set(dev(0), FakeProbe())
    harness = h(prober=prober)
    harness.events()
    harness.plug(usb_node(0))      # probe hangs
    harness.unplug(0)              # cancels it
    harness.plug(usb_node(0))      # probed again, succeeds
    assert prober.cancelled == [dev(0)]
    assert_same(harness.events(), connect_events("camera0"))
    harness.unplug(0)
    harness.plug(usb_node(0))
    harness.unplug(0)
    events = harness.events()
    statuses = [p["status"] for n, p in events if n == "camera_status_update"]
    assert statuses == ["DISCONNECTED", "CONNECTED", "DISCONNECTED"]
    assert harness.camera("camera0").status == "DISCONNECTED"


def test_settling_retries_then_connected(h: Any) -> None:
    prober = FakeProber()
    busy = FakeProbeError("device busy", retryable=True)
    prober.then(dev(0), busy, busy, busy)
    prober.set(dev(0), FakeProbe())
    harness = h(nodes=[usb_node(0)], prober=prober)
    assert prober.count(dev(0)) == 1
    harness.clock.advance(0.25)
    assert prober.count(dev(0)) == 2
    harness.clock.advance(0.5)
    assert prober.count(dev(0)) == 3
    assert harness.events() == []  # not visible until the first probe has finished
    assert harness.monitor.registry.ids() == []
    harness.clock.advance(1.0)
    assert prober.count(dev(0)) == 4
    assert_same(harness.events(), connect_events("camera0"))


def test_settling_exhausted_then_error(h: Any) -> None:
    prober = FakeProber()
    prober.set(dev(0), FakeProbeError("permission denied (is the service user in group 'video'?)",
                                      retryable=True))
    harness = h(nodes=[usb_node(0)], prober=prober)
    harness.clock.advance(0.25)
    harness.clock.advance(0.5)
    assert harness.events() == []
    harness.clock.advance(1.0)
    assert prober.count(dev(0)) == 4
    assert [n for n, _ in harness.events()] == ["camera_status_update", "camera.capability_error"]
    assert harness.camera("camera0").status == "ERROR"


def test_settling_stops_when_node_is_gone(h: Any) -> None:
    prober = FakeProber()
    prober.set(dev(0), FakeProbeError("no such file", retryable=True))
    harness = h(nodes=[usb_node(0)], prober=prober, udev_available=False)
    harness.unplug(0, event=False)
    harness.clock.advance(0.25)
    assert prober.count(dev(0)) == 1
    assert harness.events() == []
    assert harness.monitor.registry.ids() == []


def test_remove_during_settling_delay_cancels_it(h: Any) -> None:
    prober = FakeProber()
    prober.set(dev(0), FakeProbeError("device busy", retryable=True))
    harness = h(prober=prober)
    harness.plug(usb_node(0))
    assert len(harness.clock.getDelayedCalls()) == 2  # the scan loop and the 0.25 s delay
    harness.unplug(0)
    assert len(harness.clock.getDelayedCalls()) == 1
    harness.clock.advance(2)
    assert prober.count(dev(0)) == 1
    assert harness.events() == [] and harness.monitor._tracks == {}


def test_error_retry_schedule(h: Any) -> None:
    prober = FakeProber()
    prober.set(dev(0), FakeProbeError("device broken"))
    harness = h(nodes=[usb_node(0)], prober=prober)
    harness.events()
    times = []
    for _ in range(int(1500 / 5)):
        before = prober.count(dev(0))
        harness.clock.advance(5)
        if prober.count(dev(0)) != before:
            times.append(harness.clock.seconds() - T0)
    assert times == [30, 90, 210, 510, 810, 1110, 1410]
    # ERROR -> ERROR is no transition: nothing is published.
    assert harness.events() == []


def test_error_retry_immediately_on_udev_event(h: Any) -> None:
    prober = FakeProber()
    prober.then(dev(0), FakeProbeError("device broken"))
    prober.set(dev(0), FakeProbe())
    harness = h(nodes=[usb_node(0)], prober=prober)
    harness.events()
    harness.clock.advance(1)
    harness.udev.fire("change", 0)
    assert harness.camera("camera0").status == "CONNECTED"
    assert [n for n, _ in harness.events()] == ["camera_status_update", "camera.connected",
                                               "camera.capability_detected", "camera.status_change"]


def test_hanging_probe_cancelled_by_remove(h: Any) -> None:
    prober = FakeProber()
    prober.set(dev(0), HANG)
    harness = h(prober=prober)
    harness.plug(usb_node(0))
    assert harness.monitor.discovery_active()
    harness.unplug(0)
    assert prober.cancelled == [dev(0)]
    assert not harness.monitor.discovery_active()
    assert harness.events() == []
    assert harness.monitor.registry.ids() == []
    assert harness.monitor._tracks == {}


def test_hanging_probe_times_out(h: Any) -> None:
    prober = FakeProber()
    prober.set(dev(0), HANG)
    harness = h(prober=prober)
    harness.plug(usb_node(0))
    harness.clock.advance(5.0 + 1.0)
    assert_same(harness.events(), [status_update("camera0", "ERROR", resolution="", fps=0),
                                   cap_error("camera0", "probe timed out after 5 s")])


def test_async_prober(h: Any) -> None:
    prober = AsyncProber()
    prober.set(dev(0), FakeProbe())
    harness = h(nodes=[usb_node(0)], prober=prober)
    assert_same(harness.events(), connect_events("camera0"))


# -- classification (§1.3) -------------------------------------------------------------------

def test_metadata_node_never_appears(h: Any) -> None:
    prober = FakeProber()
    prober.set(dev(0), FakeProbe())
    # Without udev properties, QUERYCAP's device_caps decide.
    prober.set(dev(1), FakeProbe(capture=False))
    # Without udev properties and with a failing QUERYCAP, it is not a camera (rule 4).
    prober.set(dev(2), FakeProbeError("inappropriate ioctl"))
    harness = h(nodes=[usb_node(0), usb_node(1, udev=False), usb_node(2, udev=False)], prober=prober)
    harness.clock.advance(60)
    assert harness.monitor.registry.ids() == ["camera0"]
    assert all(p.get("device") == "camera0" for _, p in harness.events())
    # Remembered as not-a-camera: never probed again by later scans.
    assert prober.count(dev(1)) == 1 and prober.count(dev(2)) == 1


def test_nodes_outside_device_range_are_ignored(h: Any) -> None:
    prober = FakeProber()
    prober.set(dev(12), FakeProbe())
    harness = h(prober=prober, env={"CAMERA_SERVICE_CAMERA_DEVICE_RANGE": "[0, 9]"})
    harness.plug(usb_node(12))
    harness.clock.advance(10)
    assert prober.calls == []
    assert harness.monitor.registry.ids() == []


# -- max_cameras (§1.7) ----------------------------------------------------------------------

def test_max_cameras_counts_virtual_and_frees_slots(h: Any) -> None:
    prober = FakeProber()
    for n in (0, 1):
        prober.set(dev(n), FakeProbe())
    harness = h(env={"CAMERA_SERVICE_CAMERA_MAX_CAMERAS": "2",
                     "CAMERA_SERVICE_VIRTUAL_CAMERAS": '[{"id": "camera100", "name": "Test pattern"}]'},
                nodes=[usb_node(0, serial="A", port="pa"), usb_node(1, serial="B", port="pb")],
                prober=prober)
    assert harness.monitor.registry.ids() == ["camera0", "camera100"]
    assert prober.count(dev(1)) == 0
    cameras = harness.health.get("cameras")
    assert cameras.status == "degraded" and cameras.details["ignored_nodes"] == 1
    assert "camera limit" in cameras.message
    harness.clock.advance(30)  # later scans do not log or probe it again
    assert prober.count(dev(1)) == 0
    harness.unplug(0)
    assert harness.camera("camera1").status == "CONNECTED"
    assert harness.health.get("cameras").details["ignored_nodes"] == 0


# -- modes, sources, loop robustness ---------------------------------------------------------

def test_scan_only_mode_still_finds_nodes(h: Any) -> None:
    prober = FakeProber()
    prober.set(dev(0), FakeProbe())
    harness = h(udev_available=False, prober=prober)
    assert harness.monitor.udev_events is False
    harness.nodes.nodes[0] = usb_node(0)
    harness.clock.advance(5)
    assert harness.camera("camera0").status == "CONNECTED"
    harness.nodes.nodes.pop(0)
    harness.clock.advance(5)
    assert harness.camera("camera0").status == "DISCONNECTED"
    cameras = harness.health.get("cameras")
    assert cameras.status == "degraded" and cameras.details["udev_events"] is False
    assert "scan-only" in cameras.message


def test_no_udev_factory_is_scan_only(h: Any) -> None:
    prober = FakeProber()
    prober.set(dev(0), FakeProbe())
    harness = h(udev_factory=False, nodes=[usb_node(0)], prober=prober)
    assert harness.camera("camera0").status == "CONNECTED"
    assert harness.health.get("cameras").details["udev_events"] is False


def test_overflow_runs_a_full_scan(h: Any) -> None:
    prober = FakeProber()
    prober.set(dev(0), FakeProbe())
    harness = h(prober=prober)
    harness.nodes.nodes[0] = usb_node(0)  # the add event was lost
    assert harness.udev.on_overflow is not None
    harness.udev.on_overflow()
    assert harness.camera("camera0").status == "CONNECTED"


def test_reconciliation_loop_survives_failures(h: Any) -> None:
    source = FakeNodeSource()
    source.fail_lists = 3
    prober = FakeProber()
    prober.set(dev(0), FakeProbe())
    harness = h(source=source, prober=prober)
    assert harness.monitor.component_state() == "STARTING"
    harness.clock.advance(5)
    assert harness.health.get("cameras").status != "unhealthy"
    harness.clock.advance(5)
    cameras = harness.health.get("cameras")
    assert cameras.status == "unhealthy" and cameras.details["consecutive_scan_failures"] == 3
    assert harness.monitor.component_state() == "ERROR"
    # Readiness is not held hostage by a broken enumeration.
    assert "camera_scan" not in harness.readiness.pending
    source.nodes[0] = usb_node(0)
    harness.clock.advance(5)
    assert harness.monitor.component_state() == "RUNNING"
    assert harness.health.get("cameras").status == "healthy"
    assert harness.camera("camera0").status == "CONNECTED"
    assert harness.monitor._loop.running


def test_twenty_rapid_cycles_leave_a_consistent_registry(h: Any) -> None:
    prober = FakeProber()
    harness = h(prober=prober)
    harness.events()
    for cycle in range(20):
        prober.then(dev(0), HANG if cycle % 3 == 0 else FakeProbe())
        harness.plug(usb_node(0))
        if cycle % 4 == 1:
            harness.clock.advance(0.1)
        harness.unplug(0)
    events = harness.events()
    statuses = [p["status"] for n, p in events if n == "camera_status_update"]
    # Strict alternation, never two of the same in a row, ending unplugged.
    assert statuses and all(a != b for a, b in itertools.pairwise(statuses))
    assert statuses[0] == "CONNECTED" and statuses[-1] == "DISCONNECTED"
    assert harness.monitor.registry.ids() == ["camera0"]
    assert harness.camera("camera0").status == "DISCONNECTED"
    assert harness.monitor._tracks == {}
    # An ERROR camera with a pending retry and a hanging probe on another node.
    prober.set(dev(1), FakeProbeError("broken"))
    harness.plug(usb_node(1, serial="X", port="px"))
    prober.set(dev(2), HANG)
    harness.plug(usb_node(2, serial="Y", port="py"))
    assert harness.clock.getDelayedCalls() != []
    harness.monitor.stopService()
    harness.clock.advance(0)
    assert harness.clock.getDelayedCalls() == []
    assert harness.health.get("cameras").status == "unhealthy"
    assert harness.monitor.component_state() == "STOPPED"
    assert harness.udev.stopped


# -- readiness and health (§1.2, §6.1; api §4.21-4.22) ---------------------------------------

def test_readiness_and_component_state(h: Any) -> None:
    threads = ManualThreads()
    prober = FakeProber()
    prober.set(dev(0), FakeProbe())
    harness = h(run_in_thread=threads, prober=prober, nodes=[usb_node(0)], start=False)
    assert "camera_scan" in harness.readiness.pending
    assert harness.monitor.component_state() == "STOPPED"
    harness.readiness.mark_started()
    harness.monitor.startService()
    assert harness.monitor.component_state() == "STARTING"
    assert harness.readiness.status() == "starting"
    threads.release()
    assert harness.monitor.component_state() == "RUNNING"
    assert harness.readiness.status() == "ready"
    assert harness.readiness.available_cameras() == ["camera0"]
    assert harness.readiness.discovery_active() is False


def test_health_transitions(h: Any) -> None:
    prober = FakeProber()
    prober.set(dev(0), FakeProbeError("device broken"))
    harness = h(prober=prober)
    cameras = harness.health.get("cameras")
    assert (cameras.status, cameras.message) == ("healthy", "No cameras detected")
    assert set(cameras.details) >= {"connected_cameras", "total_cameras", "error_cameras", "stalled_cameras",
                                    "udev_events", "last_scan"}
    assert cameras.details["last_scan"] == "2025-01-15T14:30:00Z"
    assert cameras.details["udev_events"] is True
    harness.plug(usb_node(0))
    cameras = harness.health.get("cameras")
    assert cameras.status == "degraded"
    assert cameras.details["error_cameras"] == {"camera0": "device broken"}
    prober.set(dev(0), FakeProbe())
    harness.udev.fire("change", 0)
    cameras = harness.health.get("cameras")
    assert (cameras.status, cameras.message) == ("healthy", "Camera monitoring active")
    assert (cameras.details["connected_cameras"], cameras.details["total_cameras"]) == (1, 1)
    harness.monitor.stalled_cameras = lambda: ["camera0"]
    harness.monitor.refresh_health()
    assert harness.health.get("cameras").status == "degraded"


# -- virtual cameras (§1.10) ----------------------------------------------------------------

VIRTUAL = '[{"id": "camera100", "name": "Test pattern", "size": "640x480", "rate": 15}]'


def test_virtual_camera_connected(h: Any) -> None:
    harness = h(env={"CAMERA_SERVICE_VIRTUAL_CAMERAS": VIRTUAL})
    cam = harness.camera("camera100")
    assert (cam.status, cam.name, cam.resolution, cam.fps) == ("CONNECTED", "Test pattern", "640x480", 15)
    probe = cam.probe
    assert_same(harness.events(), [
        status_update("camera100", "CONNECTED", name="Test pattern", resolution="640x480", fps=15),
        connected("camera100", name="Test pattern", driver="lavfi", card="Test pattern"),
        detected("camera100", probe, name="Test pattern")])
    assert probe.bus_info == "virtual"
    assert capabilities_result(cam) == {"device": "camera100", "formats": ["YU12"], "resolutions": ["640x480"],
                                        "fps_options": [15], "frame_rates": [15],
                                        "validation_status": "CONFIRMED"}
    entry = metrics_entry(cam)
    assert entry["capabilities"]["driver_name"] == "lavfi"
    assert entry["capabilities"]["bus_info"] == "virtual"
    assert entry["formats"] == [{"pixel_format": "YU12", "width": 640, "height": 480,
                                 "frame_rates": ["15.000"]}]
    assert entry["device_num"] == 100
    # Virtual cameras need no scan to be available.
    assert harness.readiness.available_cameras() == ["camera100"]


def test_virtual_camera_without_ffmpeg(h: Any) -> None:
    harness = h(env={"CAMERA_SERVICE_VIRTUAL_CAMERAS": VIRTUAL}, ffmpeg=None)
    cam = harness.camera("camera100")
    assert (cam.status, cam.error) == ("ERROR", "ffmpeg not found")
    assert_same(harness.events(), [
        status_update("camera100", "ERROR", name="Test pattern", resolution="640x480", fps=15),
        cap_error("camera100", "ffmpeg not found")])
    assert harness.health.get("cameras").details["error_cameras"] == {"camera100": "ffmpeg not found"}


# -- the chain's hooks (§1.9) ----------------------------------------------------------------

def test_hooks_run_and_never_break_the_chain(h: Any) -> None:
    prober = FakeProber()
    prober.set(dev(0), FakeProbe())
    harness = h(prober=prober, start=False, env={"CAMERA_SERVICE_VIRTUAL_CAMERAS": VIRTUAL})
    seen: list[tuple[str, str, str]] = []

    def broken(camera: Any) -> None:
        raise RuntimeError("boom")

    def failing(camera: Any) -> defer.Deferred[None]:
        seen.append(("connected", camera.id, camera.status))
        return defer.fail(RuntimeError("path failed"))

    harness.monitor.on_camera_connected.extend([broken, failing])
    harness.monitor.on_camera_disconnected.append(lambda c: seen.append(("disconnected", c.id, c.status)))
    harness.monitor.startService()
    harness.plug(usb_node(0))
    harness.unplug(0)
    assert seen == [("connected", "camera100", "CONNECTED"), ("connected", "camera0", "CONNECTED"),
                    ("disconnected", "camera0", "DISCONNECTED")]
    assert harness.camera("camera0").status == "DISCONNECTED"


# -- views: never a device path --------------------------------------------------------------

def test_no_device_path_in_any_view_or_event(h: Any) -> None:
    prober = FakeProber()
    prober.set(dev(0), FakeProbe())
    prober.set(dev(3), FakeProbeError("cannot open /dev/video3"))
    harness = h(prober=prober, nodes=[usb_node(0), usb_node(3, serial="Z", port="pz")],
                env={"CAMERA_SERVICE_VIRTUAL_CAMERAS": VIRTUAL})
    harness.unplug(0)
    streams = {"rtsp": "x", "hls": "y", "webrtc": "z"}
    views: list[Any] = [harness.monitor.registry.list_result(lambda cid: streams),
                        harness.monitor.camera_metrics(), harness.health.get("cameras").details,
                        harness.health.get("cameras").message]
    for cam in harness.monitor.registry:
        views += [camera_object(cam, streams), status_result(cam, streams, None), capabilities_result(cam)]
    views += [(n, {k: v for k, v in p.items() if k != "streams"}) for n, p in harness.events()]
    text = json.dumps(views)
    assert "/dev/" not in text and "video0" not in text and "video3" not in text


def test_metrics_view_shape(h: Any) -> None:
    prober = FakeProber()
    prober.set(dev(0), FakeProbe())
    harness = h(prober=prober, nodes=[usb_node(0)])
    metrics = harness.monitor.camera_metrics()
    assert metrics == {"connected_cameras": 1, "cameras": {"camera0": {
        "path": "camera0", "name": "USB Cam", "status": "CONNECTED", "device_num": 0,
        "last_seen": "2025-01-15T14:30:00Z",
        "capabilities": {"driver_name": "uvcvideo", "card_name": "USB Cam", "bus_info": "usb-0000:00:14.0-1",
                         "version": "6.1.0", "capabilities": ["Video Capture", "Metadata Capture", "Streaming"],
                         "device_caps": ["Video Capture", "Streaming"]},
        "formats": FakeProbe().metrics_formats()}}}


def test_override_selects_mode(h: Any) -> None:
    prober = FakeProber()
    prober.set(dev(0), FakeProbe())
    harness = h(prober=prober, nodes=[usb_node(0)], env={
        "CAMERA_SERVICE_CAMERA_OVERRIDES": '{"camera0": {"format": "YUYV", "resolution": "640x480", "fps": 15}}'})
    cam = harness.camera("camera0")
    assert (cam.mode.fourcc, cam.resolution, cam.fps) == ("YUYV", "640x480", 15)


# -- the coalescer on its own ------------------------------------------------------------------

def test_coalescer_runs_once_more_for_a_burst() -> None:
    gates: list[defer.Deferred[None]] = []
    runs = []

    async def work() -> None:
        runs.append(len(runs))
        gate: defer.Deferred[None] = defer.Deferred()
        gates.append(gate)
        await gate

    coalescer = Coalescer(work, "test")
    first = coalescer()
    waiters = [coalescer() for _ in range(5)]
    assert len(runs) == 1
    gates[0].callback(None)
    assert first.called and not any(w.called for w in waiters)
    assert len(runs) == 2
    gates[1].callback(None)
    assert all(w.called for w in waiters)
    assert len(runs) == 2 and not coalescer.running


# -- with the real rules, when the other modules are present ----------------------------------

def test_defaults_use_the_real_udev_and_v4l2_rules(tmp_path: Path) -> None:
    udev = pytest.importorskip("camera_service.discovery.udev")
    v4l2 = pytest.importorskip("camera_service.discovery.v4l2")
    config = load_config(None, {"CAMERA_SERVICE_SERVER_STATE_DIR": str(tmp_path / "state"),
                                "CAMERA_SERVICE_VIRTUAL_CAMERAS": "[]"})
    clock = Clock()
    clock.advance(T0)
    source = FakeNodeSource()
    info = udev.NodeInfo(number=0, devnode="/dev/video0", properties=usb_node(0).properties, index=0,
                         name="USB Cam")
    source.nodes[0] = info
    modes = (v4l2.Mode("MJPG", 1920, 1080, 30.0), v4l2.Mode("MJPG", 1280, 720, 30.0))
    result = v4l2.ProbeResult(driver="uvcvideo", card="USB Cam", bus_info="usb-1", version="6.1.0",
                              capabilities=("Video Capture", "Streaming"), device_caps=("Video Capture", "Streaming"),
                              capabilities_bits=0x84200001, device_caps_bits=0x04200001, modes=modes)
    probe_module = pytest.importorskip("camera_service.discovery.probe")
    prober = FakeProber()
    # The real ProbeError drives settling the same way.
    prober.then("/dev/video0", probe_module.ProbeError("device busy", retryable=True))
    prober.set("/dev/video0", result)
    monitor = CameraMonitor(clock, config, EventBus(clock), HealthRegistry(clock), Readiness(), sync_thread,
                            prober, source, None, ffmpeg_path="/usr/bin/ffmpeg")
    monitor.startService()
    try:
        assert monitor.registry.get("camera0") is None
        clock.advance(0.25)
        cam = monitor.registry.get("camera0")
        assert cam is not None and (cam.status, cam.resolution, cam.fps) == ("CONNECTED", "1280x720", 30)
        assert cam.identity == udev.identity_key(info)
    finally:
        monitor.stopService()
        clock.advance(0)
    assert clock.getDelayedCalls() == []


def test_stale_remove_during_error_retry_keeps_retrying(h: Any) -> None:
    # A remove that arrives while an ERROR camera is re-probed, for a node that is in
    # fact still there, must not lose the camera's retry schedule.
    prober = FakeProber()
    prober.set(dev(0), FakeProbeError("device broken"))
    harness = h(nodes=[usb_node(0)], prober=prober)
    prober.then(dev(0), HANG)
    harness.clock.advance(30)  # retry starts and hangs
    harness.udev.fire("remove", 0)  # node still present
    assert prober.cancelled == [dev(0)]
    assert harness.camera("camera0").status == "ERROR"
    before = prober.count(dev(0))
    harness.clock.advance(300)
    assert prober.count(dev(0)) > before
