"""udev plumbing for camera discovery (media.md §1.1, §1.2, §1.3 rule 1, §1.7).

Three parts, none of which decides what a camera *is* (the camera monitor does that):

- :class:`NodeInfo` and the pure helpers :func:`udev_says_capture` and
  :func:`identity_key`, which read udev's verdict and the stable identity of a node.
- The enumerations :func:`list_nodes`, :func:`node_info` and
  :func:`list_nodes_without_udev`. They touch sysfs and the udev database, so they are
  **blocking**: callers run them in the ``media`` thread pool (media.md §0.2).
- :class:`UdevEvents`, the netlink reader. It is an ``IReadDescriptor`` driven by the
  reactor itself (style.md §1.11): no pyudev ``MonitorObserver`` thread, and its
  ``doRead`` never blocks.

Device paths (``NodeInfo.devnode``) are internal; they never leave the process (media.md
§0.3, §1.7). Everything else refers to nodes by their number ``N`` of ``/dev/videoN``.
"""

from __future__ import annotations

import errno
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

from twisted.internet.interfaces import IReadDescriptor
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

try:
    import pyudev  # type: ignore[import-untyped]
except ImportError:  # pragma: no cover - media.md §1.1: without pyudev we run scan-only
    pyudev = None

NODE_RE = re.compile(r"^/dev/video([0-9]{1,3})$")
# The same rule for a bare directory entry, used when listing a /dev we were handed.
_NODE_NAME_RE = re.compile(r"^video([0-9]{1,3})$")

# The only actions that carry meaning (media.md §1.1); bind/unbind and the rest are left
# to the reconciliation scan.
ACTIONS = frozenset({"add", "change", "remove"})

# media.md §1.1: a bigger buffer makes ENOBUFS (lost events) rarer during hotplug storms.
RECEIVE_BUFFER_SIZE = 4 * 1024 * 1024

log = Logger()


@dataclass(frozen=True)
class NodeInfo:
    """What udev (or sysfs, in the fallback) says about one ``/dev/videoN`` node."""

    number: int
    devnode: str  # internal only: never leaves the process
    # Excluded from the hash: a mapping is not hashable, and number + devnode identify
    # the node anyway.
    properties: Mapping[str, str] = field(hash=False)
    index: int | None  # sysfs attribute "index": 0 for the capture node of a UVC interface
    name: str | None  # sysfs attribute "name": the driver's card name

    def __post_init__(self) -> None:
        # Frozen all the way down: a NodeInfo crosses from the thread pool to the reactor
        # and may be kept in the registry, so nobody may mutate the properties under us.
        object.__setattr__(self, "properties", MappingProxyType(dict(self.properties)))


def udev_says_capture(info: NodeInfo) -> bool | None:
    """media.md §1.3 rule 1: ``None`` when udev did not say, else whether it is capture.

    udev's ``v4l_id`` builtin fills ``ID_V4L_CAPABILITIES`` from the node's own
    ``device_caps``; a UVC metadata node gets ``:`` (no ``capture``).
    """
    capabilities = info.properties.get("ID_V4L_CAPABILITIES")
    if capabilities is None:
        return None
    return ":capture:" in capabilities


def identity_key(info: NodeInfo, serial_clash: bool = False) -> str:
    """The identity key of a node (media.md §1.7).

    ``serial:<ID_SERIAL>:<ID_USB_INTERFACE_NUM>:<index>`` when the device has a real
    serial number (``ID_SERIAL_SHORT`` non-empty) and no other present node has the same
    serial key (``serial_clash``); otherwise ``path:<ID_PATH>:<index>`` when ``ID_PATH``
    is non-empty; otherwise ``node:video<N>``, which is not stable across replugs.

    A node without an ``index`` attribute counts as index 0, so the key is still
    well-formed.
    """
    props = info.properties
    index = info.index if info.index is not None else 0
    serial_short = props.get("ID_SERIAL_SHORT", "").strip()
    if serial_short and not serial_clash:
        serial = props.get("ID_SERIAL", "") or serial_short
        interface = props.get("ID_USB_INTERFACE_NUM", "")
        return f"serial:{serial}:{interface}:{index}"
    id_path = props.get("ID_PATH", "").strip()
    if id_path:
        return f"path:{id_path}:{index}"
    return f"node:video{info.number}"


def identity_keys(nodes: Iterable[NodeInfo]) -> dict[int, str]:
    """Identity keys of nodes present at the same time, cloned serials resolved.

    media.md §1.7: when two present nodes would get the same ``serial:`` key (cameras
    shipped with a cloned serial number), both use their ``path:`` key instead.
    """
    nodes = list(nodes)
    first = {node.number: identity_key(node) for node in nodes}
    counts = Counter(key for key in first.values() if key.startswith("serial:"))
    return {
        node.number: identity_key(node, serial_clash=counts[first[node.number]] > 1)
        for node in nodes
    }


def _check_range(device_range: tuple[int, int]) -> tuple[int, int]:
    low, high = device_range
    if not (isinstance(low, int) and isinstance(high, int)) or low < 0 or low > high:
        raise ValueError(f"device_range must be [min, max] with 0 <= min <= max, not {device_range!r}")
    return low, high


def _in_range(number: int, device_range: tuple[int, int]) -> bool:
    # An inclusive range, never "a list of two numbers" (media.md §9).
    return device_range[0] <= number <= device_range[1]


def _decode(raw: bytes | str | None) -> str | None:
    if raw is None:
        return None
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return text.strip()


def _parse_index(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _node_number(device: Any) -> tuple[int, str] | None:
    """``(N, "/dev/videoN")`` for a pyudev device, ``None`` for anything else.

    The video4linux subsystem also holds v4l-subdevN, vbiN, radioN, swradioN and
    v4l-touchN; none of those can be a camera. ``DEVNAME`` is in every uevent, so this
    works for ``remove`` events too, when the device is already gone from sysfs.
    """
    devnode = device.device_node
    if devnode is None:
        # Only without DEVNAME, which the kernel always sets for character devices;
        # the sysfs name is the same as the node name for video nodes.
        sys_name = device.sys_name
        devnode = f"/dev/{sys_name}" if sys_name else ""
    match = NODE_RE.fullmatch(devnode)
    if match is None:
        return None
    return int(match.group(1)), devnode


def _node_from_device(device: Any) -> NodeInfo | None:
    numbered = _node_number(device)
    if numbered is None:
        return None
    number, devnode = numbered
    properties = {str(key): str(value) for key, value in device.properties.items()}
    attributes = device.attributes
    return NodeInfo(
        number=number,
        devnode=devnode,
        properties=properties,
        index=_parse_index(_decode(attributes.get("index"))),
        name=_decode(attributes.get("name")),
    )


def list_nodes(context: Any, device_range: tuple[int, int]) -> list[NodeInfo]:
    """BLOCKING. Every ``/dev/videoN`` node udev knows of, with N in the inclusive range.

    ``context`` is a ``pyudev.Context``. Errors from the enumeration itself propagate, so
    the scan can count failed runs (media.md §1.2).
    """
    device_range = _check_range(device_range)
    nodes: list[NodeInfo] = []
    for device in context.list_devices(subsystem="video4linux"):
        info = _node_from_device(device)
        if info is not None and _in_range(info.number, device_range):
            nodes.append(info)
    nodes.sort(key=lambda node: node.number)
    return nodes


def node_info(context: Any, number: int) -> NodeInfo | None:
    """BLOCKING. The current state of ``/dev/video<number>``, or ``None`` if it is gone."""
    try:
        device = pyudev.Devices.from_name(context, "video4linux", f"video{number}")
    except pyudev.DeviceNotFoundError:
        return None
    info = _node_from_device(device)
    # from_name looks the device up by its sysfs name; make sure it is the node asked for.
    if info is None or info.number != number:
        return None
    return info


def _read_text(path: str) -> str | None:
    try:
        with open(path, "rb") as handle:
            return _decode(handle.read())
    except OSError:
        return None


def _read_uevent(path: str) -> dict[str, str]:
    text = _read_text(path)
    properties: dict[str, str] = {}
    for line in (text or "").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            properties[key] = value
    return properties


def list_nodes_without_udev(
    device_range: tuple[int, int],
    dev_dir: str = "/dev",
    sys_dir: str = "/sys/class/video4linux",
) -> list[NodeInfo]:
    """BLOCKING. The fallback scan when udev is not usable at all (media.md §1.2).

    Lists ``videoN`` entries of ``dev_dir`` and reads ``sys_dir/videoN/{index,name,uevent}``.
    ``devnode`` is the entry under ``dev_dir``. The properties are the kernel's own
    ``uevent`` keys (``MAJOR``, ``MINOR``, ``DEVNAME``); with no udev there is no
    ``ID_V4L_CAPABILITIES``, so :func:`udev_says_capture` is ``None`` and the capture
    check falls to QUERYCAP, and there is no ``ID_PATH``, so the identity is
    ``node:videoN``.
    """
    device_range = _check_range(device_range)
    try:
        entries = os.listdir(dev_dir)
    except FileNotFoundError:
        return []
    nodes: list[NodeInfo] = []
    for entry in entries:
        match = _NODE_NAME_RE.match(entry)
        if match is None:
            continue
        number = int(match.group(1))
        if not _in_range(number, device_range):
            continue
        node_sys = os.path.join(sys_dir, entry)
        nodes.append(
            NodeInfo(
                number=number,
                devnode=os.path.join(dev_dir, entry),
                properties=_read_uevent(os.path.join(node_sys, "uevent")),
                index=_parse_index(_read_text(os.path.join(node_sys, "index"))),
                name=_read_text(os.path.join(node_sys, "name")),
            )
        )
    nodes.sort(key=lambda node: node.number)
    return nodes


class NetlinkMonitor(Protocol):
    """The part of ``pyudev.Monitor`` that :class:`UdevEvents` uses."""

    def fileno(self) -> int: ...

    def filter_by(self, subsystem: str) -> None: ...

    def set_receive_buffer_size(self, size: int) -> None: ...

    def start(self) -> None: ...

    def poll(self, timeout: float | None = None) -> Any: ...


def netlink_monitor(context: Any) -> NetlinkMonitor:
    """A monitor on udev's netlink group. Always the ``udev`` source, never ``kernel``:
    ``kernel`` events arrive before udev's rules have set permissions and ``ID_*``
    properties (media.md §1.1)."""
    monitor: NetlinkMonitor = pyudev.Monitor.from_netlink(context, source="udev")
    return monitor


@implementer(IReadDescriptor)
class UdevEvents:
    """The udev netlink socket, read by the reactor (media.md §1.1, style.md §1.11).

    ``on_event(action, N)`` is called on the reactor thread for ``add``, ``change`` and
    ``remove`` of ``/dev/videoN`` with N in ``device_range``; everything else is dropped
    here. ``on_overflow()`` is called when the kernel reports lost events (``ENOBUFS``),
    so the caller can run a full reconciliation scan at once.

    ``monitor_factory`` builds the (unstarted) monitor from the context; the default is
    :func:`netlink_monitor`. It is there so tests can hand in a monitor that fails in ways
    a real socket cannot be made to.
    """

    _log = Logger()

    def __init__(
        self,
        reactor: Any,  # IReactorFDSet + IReactorTime
        on_event: Callable[[str, int], None],
        on_overflow: Callable[[], None],
        *,
        context: Any = None,
        device_range: tuple[int, int] = (0, 255),
        recreate_delay: float = 5.0,
        monitor_factory: Callable[[Any], NetlinkMonitor] = netlink_monitor,
    ) -> None:
        self._reactor = reactor
        self._on_event = on_event
        self._on_overflow = on_overflow
        self._context = context
        self._device_range = _check_range(device_range)
        self._recreate_delay = recreate_delay
        self._monitor_factory = monitor_factory
        self._monitor: NetlinkMonitor | None = None
        self._recreate_call: Any = None
        self._stopped = True
        # One warning per outage, not one per attempt: the service keeps working on the
        # scan alone, so repeating it would only fill the log.
        self._warned = False
        self.available = False

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> bool:
        """Open the netlink monitor and register with the reactor.

        Returns ``False`` (after one warning) when netlink or pyudev is not usable; the
        caller then runs on the reconciliation scan alone and reports
        ``udev_events: false`` (media.md §1.1, §6.1).
        """
        self._stopped = False
        if self._monitor is not None:
            return True
        return self._open()

    def stop(self) -> None:
        self._stopped = True
        if self._recreate_call is not None and self._recreate_call.active():
            self._recreate_call.cancel()
        self._recreate_call = None
        self._close()
        self.available = False

    def _open(self) -> bool:
        try:
            if pyudev is None:
                raise ImportError("pyudev is not installed")
            if self._context is None:
                self._context = pyudev.Context()
            monitor = self._monitor_factory(self._context)
            monitor.filter_by("video4linux")
            try:
                monitor.set_receive_buffer_size(RECEIVE_BUFFER_SIZE)
            except Exception as error:  # noqa: BLE001 -- needs CAP_NET_ADMIN; the default still works
                self._log.debug("udev receive buffer left at its default: {error}", error=error)
            monitor.start()
        except Exception as error:  # noqa: BLE001
            # Containers without udev, no netlink permission, no libudev: all the same to
            # us, so one broad catch at this boundary (media.md §1.1 "No netlink").
            self.available = False
            if not self._warned:
                self._warned = True
                self._log.warn(
                    "udev events unavailable ({error}); cameras are found by the periodic scan only",
                    error=error,
                )
            else:
                self._log.debug("udev events still unavailable: {error}", error=error)
            return False
        self._monitor = monitor
        self._warned = False
        self.available = True
        self._reactor.addReader(self)
        return True

    def _close(self) -> None:
        if self._monitor is None:
            return
        # Unregister while fileno() still answers and before the socket can close, so the
        # reactor never polls a descriptor number that may be reused.
        self._reactor.removeReader(self)
        # Dropping the last reference closes the socket: pyudev has no close(), the
        # monitor's udev_monitor_unref does it. (Under umockdev an open socket nobody reads
        # would eventually abort the process.)
        self._monitor = None

    def _recreate(self) -> None:
        self._recreate_call = None
        if self._stopped or self._monitor is not None:
            return
        if self._open():
            self._log.info("udev event socket re-created")
        else:
            self._schedule_recreate()

    def _schedule_recreate(self) -> None:
        if self._stopped or self._recreate_call is not None:
            return
        self._recreate_call = self._reactor.callLater(self._recreate_delay, self._recreate)

    # -- IReadDescriptor ----------------------------------------------------------------

    def fileno(self) -> int:
        monitor = self._monitor
        return monitor.fileno() if monitor is not None else -1

    def logPrefix(self) -> str:
        return "udev"

    def connectionLost(self, reason: Failure) -> None:
        """The reactor lost the descriptor: re-create the monitor after ``recreate_delay``
        on the injected clock (media.md §1.1). Events missed meanwhile are found by the
        scan."""
        self._lost(reason.getErrorMessage() if reason is not None else "unknown reason")

    def _lost(self, why: str) -> None:
        if self._stopped:
            self._close()
            return
        if self._monitor is None and self._recreate_call is not None:
            return  # already lost and already being re-created
        self._log.warn(
            "udev event socket lost ({why}); re-creating it in {delay} s",
            why=why,
            delay=self._recreate_delay,
        )
        self._close()
        self.available = False
        self._schedule_recreate()

    def doRead(self) -> None:
        """Drain every queued event without blocking (``poll(timeout=0)`` until ``None``).

        Never raises: an exception escaping here would make the reactor drop the
        descriptor. Returns ``None`` for the same reason (a returned Failure means
        "disconnect" to the reactor).
        """
        monitor = self._monitor
        if monitor is None:
            return
        while self._monitor is monitor:
            try:
                device = monitor.poll(timeout=0)
            except OSError as error:
                if error.errno == errno.ENOBUFS:
                    # The kernel dropped events for us. The error is reported once and the
                    # socket stays usable; the reactor calls us again for what is queued.
                    self._log.warn("udev events were lost (receive queue overflowed); rescanning")
                    self._call_safely(self._on_overflow)
                    return
                # Anything else means the socket itself is broken: treat it as lost rather
                # than spin on a descriptor that keeps failing.
                self._lost(f"reading failed: {error}")
                return
            except Exception:  # noqa: BLE001
                # A malformed message: it was consumed, so go on with the next one later.
                self._log.failure("reading a udev event failed")
                return
            if device is None:
                return
            self._dispatch(device)

    def _dispatch(self, device: Any) -> None:
        try:
            action = device.action
            if action not in ACTIONS:
                return
            numbered = _node_number(device)
        except Exception:  # noqa: BLE001 -- logged; the next event must still be read
            self._log.failure("could not read a udev event")
            return
        if numbered is None or not _in_range(numbered[0], self._device_range):
            return
        self._call_safely(self._on_event, action, numbered[0])

    def _call_safely(self, callback: Callable[..., None], *args: Any) -> None:
        # One faulty consumer must not stop the remaining events from being delivered.
        try:
            callback(*args)
        except Exception:  # noqa: BLE001 -- logged with its traceback
            self._log.failure("udev event handler {handler!r} failed", handler=callback)

