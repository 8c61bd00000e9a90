"""udev discovery plumbing (media.md §1.1-§1.3, §1.7) against real pyudev and real uevents.

The hotplug tests (``TestHotplug``) need umockdev's preload library in the process, so
they only run under ``umockdev-wrapper``:

- Run plainly (``pytest tests/test_udev.py``), this module collects one outer test,
  ``test_hotplug_suite_under_umockdev_wrapper``, which re-runs this very file in a child
  process ``umockdev-wrapper <python> -m pytest tests/test_udev.py -q -p no:cacheprovider``
  and fails with the child's whole output unless every test there passed.
- Run under the wrapper (the child, or ``umockdev-wrapper pytest ...``), it collects
  ``TestHotplug`` directly instead.

"Under the wrapper" means ``LD_PRELOAD`` names ``libumockdev-preload``; that is all the
wrapper sets (``UMOCKDEV_DIR`` only appears once a testbed exists, and only in the C
environment). The tests that need no umockdev run in both processes.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest
import pyudev  # type: ignore[import-untyped]
from twisted.internet import reactor
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IReadDescriptor
from twisted.internet.task import deferLater
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel, globalLogPublisher
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from camera_service.discovery.udev import (
    NODE_RE,
    NodeInfo,
    UdevEvents,
    identity_key,
    identity_keys,
    list_nodes,
    list_nodes_without_udev,
    node_info,
    udev_says_capture,
)
from tests.umockdev_rerun import rerun_under_umockdev
from camera_service.testing.umockdev import Testbed, in_umockdev_wrapper

UNDER_WRAPPER = in_umockdev_wrapper()
REPO = Path(__file__).resolve().parent.parent
SERIAL_KEY_0 = "serial:046d_USB_2.0_Camera_SN0001:00:0"
CHILD_TIMEOUT = 170.0  # below pytest-timeout's 180 s, so the child's output is reported


# -- helpers ---------------------------------------------------------------------------


@dataclass
class Recorder:
    """The on_event / on_overflow pair, remembering the thread each call came in on."""

    events: list[tuple[str, int]] = field(default_factory=list)
    threads: set[int] = field(default_factory=set)
    overflows: int = 0

    def on_event(self, action: str, number: int) -> None:
        self.events.append((action, number))
        self.threads.add(threading.get_ident())

    def on_overflow(self) -> None:
        self.overflows += 1

    async def wait_for(self, count: int, timeout: float) -> float:
        """Let the reactor run until ``count`` events arrived; returns the time taken."""
        started = time.monotonic()
        while len(self.events) < count:
            if time.monotonic() - started > timeout:
                raise AssertionError(f"expected {count} events within {timeout} s, got {self.events}")
            await deferLater(reactor, 0.002, lambda: None)
        return time.monotonic() - started


async def reactor_turn() -> None:
    await deferLater(reactor, 0, lambda: None)


@pytest.fixture
def logged() -> Iterator[list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def problems(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Logged failures and warnings (or worse)."""
    bad = {LogLevel.warn, LogLevel.error, LogLevel.critical}
    return [event for event in events if "log_failure" in event or event.get("log_level") in bad]


def warnings_from_udev(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        event
        for event in events
        if event.get("log_level") == LogLevel.warn
        and str(event.get("log_namespace", "")).startswith("camera_service.discovery.udev")
    ]


# -- the outer test: re-run this file under umockdev-wrapper --------------------------


@pytest.mark.timeout(900)  # room for an apt-get install before the child's own run
def test_hotplug_suite_under_umockdev_wrapper() -> None:
    rerun_under_umockdev(__file__, "hotplug tests", CHILD_TIMEOUT)


# -- tests that need no umockdev (they run in both processes) --------------------------


def node(number: int = 0, index: int | None = 0, **properties: str) -> NodeInfo:
    return NodeInfo(number=number, devnode=f"/dev/video{number}", properties=properties, index=index, name=None)


def test_node_re_takes_only_video_nodes() -> None:
    assert NODE_RE.match("/dev/video0") and NODE_RE.match("/dev/video255")
    for other in ("/dev/video1000", "/dev/v4l-subdev0", "/dev/vbi0", "/dev/video", "/dev/videoX", "video0"):
        assert NODE_RE.match(other) is None, other


def test_node_info_is_immutable_and_hashable() -> None:
    raw = {"ID_PATH": "p"}
    info = NodeInfo(number=1, devnode="/dev/video1", properties=raw, index=0, name="cam")
    raw["ID_PATH"] = "changed"
    assert info.properties["ID_PATH"] == "p"
    with pytest.raises(TypeError):
        info.properties["ID_PATH"] = "x"  # type: ignore[index]
    assert hash(info) == hash(NodeInfo(number=1, devnode="/dev/video1", properties={}, index=0, name="cam"))


def test_udev_says_capture_reads_only_id_v4l_capabilities() -> None:
    assert udev_says_capture(node(ID_V4L_CAPABILITIES=":capture:")) is True
    assert udev_says_capture(node(ID_V4L_CAPABILITIES=":video_output:capture:")) is True
    assert udev_says_capture(node(ID_V4L_CAPABILITIES=":")) is False
    assert udev_says_capture(node(ID_V4L_CAPABILITIES="")) is False
    assert udev_says_capture(node()) is None  # udev said nothing: QUERYCAP decides


def test_identity_key_forms_from_plain_properties() -> None:
    full = {"ID_SERIAL": "Cam_X_123", "ID_SERIAL_SHORT": "123", "ID_USB_INTERFACE_NUM": "00", "ID_PATH": "pci-1"}
    assert identity_key(node(0, 0, **full)) == "serial:Cam_X_123:00:0"
    assert identity_key(node(0, 0, **full), serial_clash=True) == "path:pci-1:0"
    # An empty or blank ID_SERIAL_SHORT is no serial number.
    assert identity_key(node(0, 2, **{**full, "ID_SERIAL_SHORT": ""})) == "path:pci-1:2"
    assert identity_key(node(0, 2, **{**full, "ID_SERIAL_SHORT": "  "})) == "path:pci-1:2"
    assert identity_key(node(7, 0, ID_PATH="")) == "node:video7"
    assert identity_key(node(7, None, ID_PATH="pci-1")) == "path:pci-1:0"


async def test_start_fails_once_with_one_warning_when_netlink_is_unusable(logged: list[dict[str, Any]]) -> None:
    class NoNetlink:
        """The only part of a pyudev context Monitor.from_netlink touches. libudev returns
        NULL from udev_monitor_new_from_netlink where netlink is not usable (containers,
        no permission), and pyudev turns that into OSError."""

        sources: ClassVar[list[bytes]] = []

        class _libudev:  # pyudev's attribute name
            @staticmethod
            def udev_monitor_new_from_netlink(context: Any, source: bytes) -> None:
                NoNetlink.sources.append(source)

    with pytest.raises(OSError, match="Could not create udev monitor"):
        pyudev.Monitor.from_netlink(NoNetlink())

    fake_reactor = MemoryReactorClock()
    recorder = Recorder()
    events = UdevEvents(fake_reactor, recorder.on_event, recorder.on_overflow, context=NoNetlink())
    assert events.start() is False
    assert events.start() is False  # a retry does not warn again
    assert events.available is False
    assert fake_reactor.getReaders() == []
    assert events.fileno() == -1
    assert NoNetlink.sources == [b"udev"] * 3  # never the "kernel" source
    warnings = warnings_from_udev(logged)
    assert len(warnings) == 1
    assert "periodic scan only" in warnings[0]["log_format"]
    assert not [event for event in logged if "log_failure" in event]
    events.stop()


@dataclass
class FakeDevice:
    action: str
    device_node: str | None
    sys_name: str = ""


class ScriptedMonitor:
    """A monitor whose poll() plays a script: devices, exceptions, None for "empty".

    Only for what a real socket cannot be made to do on demand (ENOBUFS, EBADF).
    """

    def __init__(self, script: list[Any]) -> None:
        self.script = script
        self.started = False
        self.filtered: list[str] = []
        self.buffer_size = 0

    def fileno(self) -> int:
        return 99

    def filter_by(self, subsystem: str) -> None:
        self.filtered.append(subsystem)

    def set_receive_buffer_size(self, size: int) -> None:
        self.buffer_size = size
        raise PermissionError(errno.EPERM, "needs CAP_NET_ADMIN")

    def start(self) -> None:
        self.started = True

    def poll(self, timeout: float | None = None) -> Any:
        assert timeout == 0  # never block the reactor
        item = self.script.pop(0) if self.script else None
        if isinstance(item, BaseException):
            raise item
        return item


def test_doread_filters_and_reports_overflow(logged: list[dict[str, Any]]) -> None:
    fake_reactor = MemoryReactorClock()
    recorder = Recorder()
    monitor = ScriptedMonitor([
        FakeDevice("add", "/dev/video0"),
        FakeDevice("bind", "/dev/video0"),  # ignored: the scan covers bind/unbind
        FakeDevice("add", "/dev/v4l-subdev0"),  # not a video node
        FakeDevice("add", "/dev/video12"),  # outside the range
        FakeDevice("remove", None, sys_name="video3"),  # no DEVNAME: the sysfs name
        OSError(errno.ENOBUFS, "No buffer space available"),
        FakeDevice("change", "/dev/video1"),  # read on the next doRead
        None,
    ])
    events = UdevEvents(fake_reactor, recorder.on_event, recorder.on_overflow,
                        context=object(), device_range=(0, 9), monitor_factory=lambda context: monitor)
    assert events.start() is True  # the EPERM from the buffer size is not fatal
    assert monitor.started and monitor.filtered == ["video4linux"] and monitor.buffer_size == 4 * 1024 * 1024
    assert fake_reactor.getReaders() == [events]
    verifyObject(IReadDescriptor, events)

    events.doRead()
    assert recorder.events == [("add", 0), ("remove", 3)]
    assert recorder.overflows == 1
    events.doRead()
    assert recorder.events == [("add", 0), ("remove", 3), ("change", 1)]
    assert fake_reactor.getReaders() == [events]  # ENOBUFS does not drop the socket
    assert [e["log_format"] for e in warnings_from_udev(logged)] == [
        "udev events were lost (receive queue overflowed); rescanning"
    ]
    events.stop()
    assert fake_reactor.getReaders() == []


def test_a_failing_handler_does_not_stop_the_drain(logged: list[dict[str, Any]]) -> None:
    fake_reactor = MemoryReactorClock()
    seen: list[tuple[str, int]] = []

    def on_event(action: str, number: int) -> None:
        seen.append((action, number))
        if number == 0:
            raise RuntimeError("consumer bug")

    monitor = ScriptedMonitor([FakeDevice("add", "/dev/video0"), FakeDevice("add", "/dev/video1"), None])
    events = UdevEvents(fake_reactor, on_event, lambda: None, context=object(),
                        monitor_factory=lambda context: monitor)
    events.start()
    events.doRead()  # must not raise into the reactor
    assert seen == [("add", 0), ("add", 1)]
    failures = [event for event in logged if "log_failure" in event]
    assert len(failures) == 1 and failures[0]["log_failure"].check(RuntimeError)
    events.stop()


def test_a_broken_socket_is_dropped_and_recreated_after_the_delay() -> None:
    fake_reactor = MemoryReactorClock()
    recorder = Recorder()
    monitors = [ScriptedMonitor([OSError(errno.EBADF, "Bad file descriptor")]),
                ScriptedMonitor([FakeDevice("add", "/dev/video2"), None])]
    events = UdevEvents(fake_reactor, recorder.on_event, recorder.on_overflow, context=object(),
                        recreate_delay=5.0, monitor_factory=lambda context: monitors.pop(0))
    events.start()
    events.doRead()
    assert fake_reactor.getReaders() == [] and events.available is False
    fake_reactor.advance(4.9)
    assert fake_reactor.getReaders() == []
    fake_reactor.advance(0.1)
    assert fake_reactor.getReaders() == [events] and events.available is True
    events.doRead()
    assert recorder.events == [("add", 2)]
    events.stop()
    assert fake_reactor.getDelayedCalls() == []


def test_list_nodes_without_udev_reads_dev_and_sysfs(tmp_path: Path) -> None:
    dev, sys_class = tmp_path / "dev", tmp_path / "sys" / "class" / "video4linux"
    dev.mkdir()
    for name in ("video0", "video1", "video7", "video12", "video1000", "videoX", "v4l-subdev0", "media0"):
        (dev / name).touch()
    (sys_class / "video0").mkdir(parents=True)
    (sys_class / "video0" / "index").write_text("0\n")
    (sys_class / "video0" / "name").write_text("USB 2.0 Camera\n")
    (sys_class / "video0" / "uevent").write_text("MAJOR=81\nMINOR=0\nDEVNAME=video0\n")
    (sys_class / "video1").mkdir()
    (sys_class / "video1" / "index").write_text("1\n")
    (sys_class / "video3").mkdir()  # in sysfs but no node in /dev: nothing to open

    nodes = list_nodes_without_udev((0, 9), dev_dir=str(dev), sys_dir=str(sys_class))
    assert [n.number for n in nodes] == [0, 1, 7]
    first = nodes[0]
    assert first.devnode == str(dev / "video0")
    assert (first.index, first.name) == (0, "USB 2.0 Camera")
    assert dict(first.properties) == {"MAJOR": "81", "MINOR": "0", "DEVNAME": "video0"}
    assert udev_says_capture(first) is None  # no udev verdict: QUERYCAP decides
    assert identity_key(first) == "node:video0"
    assert (nodes[1].index, nodes[1].name) == (1, None)
    assert (nodes[2].index, nodes[2].name, dict(nodes[2].properties)) == (None, None, {})
    # Inclusive at both ends.
    assert [n.number for n in list_nodes_without_udev((1, 12), str(dev), str(sys_class))] == [1, 7, 12]
    assert list_nodes_without_udev((0, 9), dev_dir=str(tmp_path / "missing")) == []
    with pytest.raises(ValueError):
        list_nodes_without_udev((9, 0), str(dev), str(sys_class))


# -- hotplug against umockdev (only under the wrapper) --------------------------------


@pytest.fixture
def bed() -> Iterator[Testbed]:
    with Testbed() as testbed:
        yield testbed


@pytest.fixture
def context(bed: Testbed) -> Any:
    return pyudev.Context()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def udev(bed: Testbed, context: Any, recorder: Recorder) -> Iterator[UdevEvents]:
    # Created after the testbed: a monitor opened before it would be bound to the real
    # netlink socket and never see the testbed's events.
    events = UdevEvents(reactor, recorder.on_event, recorder.on_overflow, context=context, device_range=(0, 9))
    assert events.start() is True
    yield events
    events.stop()


class TestHotplug:
    """Real pyudev, real netlink-style uevents from umockdev, the real reactor."""

    async def test_add_arrives_through_the_reactor(
        self, bed: Testbed, context: Any, udev: UdevEvents, recorder: Recorder
    ) -> None:
        assert udev in reactor.getReaders() and udev.available
        verifyObject(IReadDescriptor, udev)

        bed.add_camera(0)
        took = await recorder.wait_for(1, timeout=1.0)
        assert recorder.events == [("add", 0)] and took < 1.0
        # Delivered by the reactor's own doRead, on the reactor thread (no observer thread).
        assert recorder.threads == {threading.get_ident()}

        info = node_info(context, 0)
        assert info is not None
        assert (info.number, info.devnode, info.index, info.name) == (0, "/dev/video0", 0, "USB 2.0 Camera")
        assert info.properties["ID_SERIAL_SHORT"] == "SN0001"
        assert info.properties["ID_V4L_PRODUCT"] == "USB 2.0 Camera"
        assert info.properties["ID_PATH"] == "pci-0000:00:14.0-usb-0:1:1.0"
        assert udev_says_capture(info) is True
        assert identity_key(info) == SERIAL_KEY_0
        assert os.path.exists("/dev/video0")

        bed.add_metadata_sibling(1)
        await recorder.wait_for(2, timeout=1.0)
        assert recorder.events[1] == ("add", 1)
        sibling = node_info(context, 1)
        assert sibling is not None and sibling.index == 1
        assert udev_says_capture(sibling) is False
        assert identity_key(sibling) == "serial:046d_USB_2.0_Camera_SN0001:00:1"
        assert [n.number for n in list_nodes(context, (0, 9))] == [0, 1]

    async def test_unplug_delivers_remove_and_the_node_is_gone(
        self, bed: Testbed, context: Any, udev: UdevEvents, recorder: Recorder
    ) -> None:
        syspath = bed.add_camera(2)
        bed.add_camera(3)
        await recorder.wait_for(2, timeout=1.0)
        bed.unplug(syspath)
        await recorder.wait_for(3, timeout=1.0)
        assert recorder.events == [("add", 2), ("add", 3), ("remove", 2)]
        assert node_info(context, 2) is None
        assert [n.number for n in list_nodes(context, (0, 9))] == [3]
        assert not os.path.exists("/dev/video2")

    async def test_change_is_delivered_and_bind_ignored(
        self, bed: Testbed, udev: UdevEvents, recorder: Recorder
    ) -> None:
        syspath = bed.add_camera(4)
        bed.uevent(syspath, "bind")
        bed.uevent(syspath, "unbind")
        bed.uevent(syspath, "change")
        await recorder.wait_for(2, timeout=1.0)
        await reactor_turn()
        assert recorder.events == [("add", 4), ("change", 4)]

    async def test_nodes_outside_the_range_give_no_events_and_are_not_listed(
        self, bed: Testbed, context: Any, recorder: Recorder
    ) -> None:
        events = UdevEvents(reactor, recorder.on_event, recorder.on_overflow, context=context, device_range=(2, 5))
        assert events.start()
        try:
            for number in (6, 1, 5, 2):
                bed.add_camera(number, serial=f"SN{number}")
            # Events arrive in order, so 6 and 1 would have come before 5 and 2.
            await recorder.wait_for(2, timeout=1.0)
            await reactor_turn()
            assert recorder.events == [("add", 5), ("add", 2)]
        finally:
            events.stop()
        assert [n.number for n in list_nodes(context, (2, 5))] == [2, 5]
        assert [n.number for n in list_nodes(context, (0, 9))] == [1, 2, 5, 6]

    def test_identity_keys_from_real_udev_properties(self, bed: Testbed, context: Any) -> None:
        bed.add_camera(0, serial="SN0001", id_path="pci-0000:00:14.0-usb-0:1:1.0")
        bed.add_camera(2, serial="SN0001", id_path="pci-0000:00:14.0-usb-0:2:1.0")  # cloned serial
        bed.add_camera(4, serial=None, id_path="pci-0000:00:14.0-usb-0:3:1.0")
        bed.add_camera(6, serial=None, id_path="")
        nodes = {n.number: n for n in list_nodes(context, (0, 9))}
        assert identity_key(nodes[0]) == SERIAL_KEY_0
        assert identity_key(nodes[0], serial_clash=True) == "path:pci-0000:00:14.0-usb-0:1:1.0:0"
        assert identity_key(nodes[4]) == "path:pci-0000:00:14.0-usb-0:3:1.0:0"
        assert "ID_SERIAL_SHORT" not in nodes[4].properties
        assert identity_key(nodes[6]) == "node:video6"
        assert identity_keys(nodes.values()) == {
            0: "path:pci-0000:00:14.0-usb-0:1:1.0:0",
            2: "path:pci-0000:00:14.0-usb-0:2:1.0:0",
            4: "path:pci-0000:00:14.0-usb-0:3:1.0:0",
            6: "node:video6",
        }
        assert identity_keys([nodes[0], nodes[4]])[0] == SERIAL_KEY_0  # no clash, serial form

    async def test_twenty_rapid_plug_cycles_lose_nothing(
        self, bed: Testbed, udev: UdevEvents, recorder: Recorder, logged: list[dict[str, Any]]
    ) -> None:
        started = time.monotonic()
        for _ in range(20):
            bed.unplug(bed.add_camera(0))
            # One reactor turn between cycles: umockdev aborts the process when more than
            # 11 events sit unread on a socket, so the reader must get a chance to drain.
            await reactor_turn()
        await recorder.wait_for(40, timeout=5.0)
        await reactor_turn()
        assert recorder.events == [("add", 0), ("remove", 0)] * 20
        assert time.monotonic() - started < 5.0
        assert udev in reactor.getReaders() and udev.available
        assert recorder.overflows == 0
        assert problems(logged) == []

    async def test_stop_unregisters_and_closes_the_socket(
        self, bed: Testbed, udev: UdevEvents, recorder: Recorder
    ) -> None:
        syspath = bed.add_camera(0)
        await recorder.wait_for(1, timeout=1.0)
        udev.stop()
        assert udev not in reactor.getReaders() and udev.fileno() == -1 and not udev.available
        # More events than an unread umockdev socket holds: if stop() had left the socket
        # open, umockdev would abort this process here.
        for _ in range(15):
            bed.uevent(syspath, "change")
        await reactor_turn()
        assert recorder.events == [("add", 0)]
        # And it can be started again.
        assert udev.start() is True
        bed.uevent(syspath, "change")
        await recorder.wait_for(2, timeout=1.0)
        assert recorder.events == [("add", 0), ("change", 0)]

    def test_lost_descriptor_is_recreated_on_the_injected_clock(
        self, bed: Testbed, context: Any, recorder: Recorder, logged: list[dict[str, Any]]
    ) -> None:
        clock = MemoryReactorClock()
        events = UdevEvents(clock, recorder.on_event, recorder.on_overflow, context=context, recreate_delay=5.0)
        assert events.start()
        first_fd = events.fileno()
        events.connectionLost(Failure(ConnectionLost("gone")))
        assert clock.getReaders() == [] and events.available is False
        assert [e["log_format"] for e in warnings_from_udev(logged)] == [
            "udev event socket lost ({why}); re-creating it in {delay} s"
        ]
        clock.advance(4.99)
        assert clock.getReaders() == []
        clock.advance(0.01)
        assert clock.getReaders() == [events] and events.available is True
        assert events.fileno() >= 0 and first_fd >= 0
        # The new socket is live: a real uevent is read by doRead (the memory reactor does
        # not poll, so call it as the reactor would).
        bed.add_camera(1)
        events.doRead()
        assert recorder.events == [("add", 1)]
        events.stop()
        assert clock.getDelayedCalls() == []


# Exactly one of the two ways to run the hotplug tests is collected in a given process.
if UNDER_WRAPPER:
    del test_hotplug_suite_under_umockdev_wrapper
else:
    del TestHotplug
