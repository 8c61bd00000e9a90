"""Fake V4L2 cameras with real udev events: a ctypes harness over libumockdev.

Run the test process under ``umockdev-wrapper`` (it preloads ``libumockdev-preload``).
Then :class:`Testbed` builds a private sysfs and ``/dev``, and libudev, and so pyudev,
sees the cameras added here: ``Context.list_devices`` lists them, and a
``pyudev.Monitor.from_netlink`` created *after* the testbed receives their ``add``,
``change`` and ``remove`` events as real netlink-style messages::

    with Testbed() as bed:
        monitor = pyudev.Monitor.from_netlink(pyudev.Context())   # after the testbed
        syspath = bed.add_camera(0)              # emits "add"
        bed.add_metadata_sibling(1)              # index 1, no ":capture:"
        bed.uevent(syspath, "change")
        bed.unplug(syspath)                      # "remove", then gone from sysfs

We drive the C library with ctypes because a virtualenv's Python usually cannot import
Debian's ``gi`` bindings. Needs the Debian packages ``umockdev`` (the wrapper) and
``libumockdev0``.

Things umockdev does that a test must respect (checked with umockdev 0.17.16):

- The wrapper only sets ``LD_PRELOAD``. ``UMOCKDEV_DIR`` is set by creating a testbed,
  and only in the C environment: Python's ``os.environ`` never shows it. Use
  :func:`in_umockdev_wrapper` to ask whether the preload is active.
- A netlink monitor created *before* the testbed is bound to the real netlink socket and
  never sees testbed events. Create monitors after the testbed, and only one testbed may
  exist at a time (``UMOCKDEV_DIR`` is process-wide); closing it unsets ``UMOCKDEV_DIR``.
- Each monitor socket holds at most :data:`MAX_UNREAD_EVENTS` unread events (the kernel's
  ``net.unix.max_dgram_qlen`` + 1). umockdev **aborts the whole process** on the next one
  (``sendmsg failed: Resource temporarily unavailable``). Let the reader drain between
  bursts, and close (drop) monitors nobody reads any more; a closed monitor is skipped.
- ``umockdev_testbed_remove_device`` does not emit ``remove`` (and a uevent for a device
  no longer in sysfs is silently dropped), so :meth:`Testbed.unplug` sends it first.
- Adding a device whose description has an ``N:`` (device node) line a second time, even
  after removing it, aborts the process (the node's pty is still registered). This harness
  therefore creates each ``/dev/videoN`` once per testbed and restores the same node when
  the camera is plugged again.
- The fake ``/dev/videoN`` is a pty, not a V4L2 device: V4L2 ioctls fail on it
  (``ENOTTY``). Inject the capability probe where fake nodes are used.
"""

from __future__ import annotations

import ctypes
import os
import re
from collections.abc import Mapping
from types import TracebackType
from typing import Self

PRELOAD_MARKER = "libumockdev-preload"
LIBRARY = "libumockdev.so.0"
MAX_UNREAD_EVENTS = 11
DEFAULT_ID_PATH = "pci-0000:00:14.0-usb-0:1:1.0"


class UmockdevUnavailable(RuntimeError):
    """The process is not under ``umockdev-wrapper``, or libumockdev is missing."""


class UmockdevError(RuntimeError):
    """umockdev rejected a device description."""


def in_umockdev_wrapper(environ: Mapping[str, str] | None = None) -> bool:
    """Whether umockdev's preload library is active in this process.

    The same test umockdev itself uses (``umockdev_is_preloaded`` in preload_detect.c):
    ``LD_PRELOAD`` names ``libumockdev-preload``. ``UMOCKDEV_DIR`` is no signal: the
    wrapper does not set it, a testbed does, and only in the C environment.
    """
    env = os.environ if environ is None else environ
    return PRELOAD_MARKER in env.get("LD_PRELOAD", "")


class _GError(ctypes.Structure):
    _fields_ = [("domain", ctypes.c_uint32), ("code", ctypes.c_int), ("message", ctypes.c_char_p)]


class _Libraries:
    """libumockdev plus the two GLib functions needed to free what it returns."""

    def __init__(self) -> None:
        try:
            umockdev = ctypes.CDLL(LIBRARY)
            glib = ctypes.CDLL("libglib-2.0.so.0")
            gobject = ctypes.CDLL("libgobject-2.0.so.0")
        except OSError as error:
            raise UmockdevUnavailable(
                f"cannot load {LIBRARY} ({error}); install the Debian package libumockdev0"
            ) from error
        # Pointers must be declared c_void_p: ctypes' default int return type would cut a
        # 64-bit GObject pointer to 32 bits.
        void_p, char_p = ctypes.c_void_p, ctypes.c_char_p
        umockdev.umockdev_testbed_new.argtypes = []
        umockdev.umockdev_testbed_new.restype = void_p
        umockdev.umockdev_testbed_get_root_dir.argtypes = [void_p]
        umockdev.umockdev_testbed_get_root_dir.restype = void_p  # owned: g_free it
        umockdev.umockdev_testbed_add_from_string.argtypes = [
            void_p,
            char_p,
            ctypes.POINTER(ctypes.POINTER(_GError)),
        ]
        umockdev.umockdev_testbed_add_from_string.restype = ctypes.c_int
        umockdev.umockdev_testbed_uevent.argtypes = [void_p, char_p, char_p]
        umockdev.umockdev_testbed_uevent.restype = None
        umockdev.umockdev_testbed_remove_device.argtypes = [void_p, char_p]
        umockdev.umockdev_testbed_remove_device.restype = None
        glib.g_free.argtypes = [void_p]
        glib.g_free.restype = None
        glib.g_error_free.argtypes = [ctypes.POINTER(_GError)]
        glib.g_error_free.restype = None
        gobject.g_object_unref.argtypes = [void_p]
        gobject.g_object_unref.restype = None
        self.umockdev = umockdev
        self.glib = glib
        self.gobject = gobject


_libraries: _Libraries | None = None
_active: Testbed | None = None


def _load() -> _Libraries:
    global _libraries
    if _libraries is None:
        _libraries = _Libraries()
    return _libraries


_USB_POSITION_RE = re.compile(r"-usb-[0-9]+:([0-9.]+):([0-9]+)\.[0-9]+$")


def _udev_safe(text: str) -> str:
    # udev's usb_id replaces whitespace and unsafe characters with "_" in ID_MODEL etc.
    return re.sub(r"[^0-9A-Za-z#+\-.:=@_]", "_", text.strip())


def _check_value(what: str, value: str) -> str:
    # A newline would end the line in the description; umockdev unescapes backslashes in
    # A: values. Neither occurs in real udev data, so refuse rather than escape.
    if "\n" in value or "\\" in value:
        raise ValueError(f"{what} must not contain a newline or a backslash: {value!r}")
    return value


def describe_camera(
    number: int,
    *,
    serial: str | None = "SN0001",
    id_path: str = DEFAULT_ID_PATH,
    interface: str = "00",
    index: int = 0,
    capture: bool = True,
    card: str = "USB 2.0 Camera",
    vendor: str = "046d",
    model: str = "0825",
    with_node: bool = True,
) -> tuple[str, str]:
    """``(syspath, description)`` of a UVC video node as udev would present it.

    The properties are the ones udev's ``v4l_id``, ``usb_id`` and ``path_id`` builtins
    set. ``serial=None`` means a camera without a serial number (no ``ID_SERIAL_SHORT``;
    ``ID_SERIAL`` is then vendor_model, as udev does); ``id_path=""`` means no
    ``ID_PATH``. ``with_node`` adds the ``N:`` line that creates ``/dev/video<number>``.
    """
    if number < 0:
        raise ValueError(f"node number must be >= 0, not {number}")
    interface_number = int(interface, 16)
    position = _USB_POSITION_RE.search(id_path)
    port, config = (position.group(1), position.group(2)) if position else ("1", "1")
    devpath = (
        f"/devices/pci0000:00/0000:00:14.0/usb1/1-{port}/1-{port}:{config}.{interface_number}"
        f"/video4linux/video{number}"
    )
    id_model = _udev_safe(card)
    id_serial = f"{vendor}_{id_model}" + (f"_{serial}" if serial else "")
    properties: list[tuple[str, str]] = [
        ("DEVNAME", f"/dev/video{number}"),
        ("SUBSYSTEM", "video4linux"),
        ("MAJOR", "81"),
        ("MINOR", str(number)),
        ("ID_V4L_VERSION", "2"),
        ("ID_V4L_PRODUCT", card),
        # A metadata node's own device_caps have no capture bit; v4l_id then writes ":".
        ("ID_V4L_CAPABILITIES", ":capture:" if capture else ":"),
        ("ID_BUS", "usb"),
        ("ID_VENDOR", vendor),
        ("ID_VENDOR_ID", vendor),
        ("ID_MODEL", id_model),
        ("ID_MODEL_ID", model),
        ("ID_SERIAL", id_serial),
    ]
    links: list[str] = []
    if serial:
        properties.append(("ID_SERIAL_SHORT", serial))
        links.append(f"/dev/v4l/by-id/usb-{id_serial}-video-index{index}")
    properties += [("ID_USB_INTERFACE_NUM", interface), ("ID_USB_DRIVER", "uvcvideo")]
    if id_path:
        properties += [("ID_PATH", id_path), ("ID_PATH_TAG", re.sub(r"[^0-9A-Za-z]", "_", id_path))]
        links.append(f"/dev/v4l/by-path/{id_path}-video-index{index}")
    if links:
        properties.append(("DEVLINKS", " ".join(links)))
    attributes = [("name", card), ("index", str(index)), ("dev", f"81:{number}")]

    lines = [f"P: {devpath}"]
    if with_node:
        lines.append(f"N: video{number}")
    lines += [f"E: {key}={_check_value(key, value)}" for key, value in properties]
    lines += [f"A: {key}={_check_value(key, value)}" for key, value in attributes]
    return "/sys" + devpath, "\n".join(lines) + "\n"


class Testbed:
    """A umockdev testbed holding fake cameras. Only works inside ``umockdev-wrapper``.

    Use it as a context manager, or call :meth:`close`; closing deletes the fake sysfs
    and ``/dev``. One testbed at a time per process.
    """

    __test__ = False  # not a pytest test class, despite its name

    def __init__(self) -> None:
        global _active
        if not in_umockdev_wrapper():
            raise UmockdevUnavailable(
                "not running under umockdev-wrapper (LD_PRELOAD has no libumockdev-preload); "
                "run: umockdev-wrapper <command>"
            )
        if _active is not None:
            raise RuntimeError("another Testbed is still open; close it first (UMOCKDEV_DIR is process-wide)")
        self._libs = _load()
        self._tb: int | None = self._libs.umockdev.umockdev_testbed_new()
        if not self._tb:
            raise UmockdevError("umockdev_testbed_new failed")
        raw = self._libs.umockdev.umockdev_testbed_get_root_dir(self._tb)
        self.root_dir: str = os.fsdecode(ctypes.string_at(raw))
        self._libs.glib.g_free(raw)
        self._present: dict[str, str] = {}  # syspath -> "videoN"
        # "videoN" -> what the first N: line made of /dev/videoN (a pty path), so a
        # re-plug can restore it without a second N: line (which would abort).
        self._node_targets: dict[str, str | None] = {}
        _active = self

    @property
    def _handle(self) -> int:
        if self._tb is None:
            raise RuntimeError("this Testbed is closed")
        return self._tb

    def close(self) -> None:
        global _active
        if self._tb is None:
            return
        tb, self._tb = self._tb, None
        self._present.clear()
        if _active is self:
            _active = None
        # The last unref runs umockdev's destructor: it deletes the testbed directory
        # and unsets UMOCKDEV_DIR.
        self._libs.gobject.g_object_unref(tb)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- devices ------------------------------------------------------------------------

    def add_from_string(self, description: str) -> None:
        """Add devices from a raw umockdev description; each emits ``add``.

        Low level: the caveats in the module docstring about ``N:`` lines and re-adding
        apply, and nothing here tracks what was added.
        """
        error = ctypes.POINTER(_GError)()
        ok = self._libs.umockdev.umockdev_testbed_add_from_string(
            self._handle, description.encode(), ctypes.byref(error)
        )
        if not ok:
            message = "unknown error"
            if error:
                message = (error.contents.message or b"").decode(errors="replace")
                self._libs.glib.g_error_free(error)
            raise UmockdevError(f"umockdev refused the device description: {message}")

    def add_camera(
        self,
        number: int,
        *,
        serial: str | None = "SN0001",
        id_path: str = DEFAULT_ID_PATH,
        interface: str = "00",
        index: int = 0,
        capture: bool = True,
        card: str = "USB 2.0 Camera",
        vendor: str = "046d",
        model: str = "0825",
    ) -> str:
        """Plug in ``/dev/video<number>`` (emits ``add``) and return its sysfs path."""
        devname = f"video{number}"
        if devname in self._present.values():
            raise ValueError(f"/dev/{devname} is already plugged in; unplug it first")
        first_time = devname not in self._node_targets
        syspath, description = describe_camera(
            number,
            serial=serial,
            id_path=id_path,
            interface=interface,
            index=index,
            capture=capture,
            card=card,
            vendor=vendor,
            model=model,
            with_node=first_time,
        )
        node = os.path.join(self.root_dir, "dev", devname)
        if not first_time:
            self._restore_node(node, self._node_targets[devname])
        self.add_from_string(description)
        if first_time:
            self._node_targets[devname] = os.readlink(node) if os.path.islink(node) else None
        self._present[syspath] = devname
        return syspath

    def add_metadata_sibling(
        self,
        number: int,
        *,
        serial: str | None = "SN0001",
        id_path: str = DEFAULT_ID_PATH,
        interface: str = "00",
        index: int = 1,
        card: str = "USB 2.0 Camera",
        vendor: str = "046d",
        model: str = "0825",
    ) -> str:
        """The metadata node a UVC camera adds next to its capture node: same USB
        interface and identity, ``index`` 1, ``ID_V4L_CAPABILITIES`` without capture."""
        return self.add_camera(
            number,
            serial=serial,
            id_path=id_path,
            interface=interface,
            index=index,
            capture=False,
            card=card,
            vendor=vendor,
            model=model,
        )

    def uevent(self, syspath: str, action: str) -> None:
        """Emit a uevent (``add``, ``change``, ``remove``, ``bind``...) for a present device.

        umockdev drops it silently if ``syspath`` is not in the testbed's sysfs.
        """
        self._libs.umockdev.umockdev_testbed_uevent(self._handle, syspath.encode(), action.encode())

    def unplug(self, syspath: str) -> None:
        """Emit ``remove``, then delete the device from sysfs and its ``/dev`` node."""
        # Order matters: umockdev builds the event from sysfs, and its remove_device
        # emits nothing.
        self.uevent(syspath, "remove")
        self._libs.umockdev.umockdev_testbed_remove_device(self._handle, syspath.encode())
        self._present.pop(syspath, None)

    def _restore_node(self, node: str, target: str | None) -> None:
        # remove_device deleted /dev/videoN but umockdev still holds its pty; point a new
        # node at the same pty, as the first N: line did.
        if os.path.lexists(node):
            return
        os.makedirs(os.path.dirname(node), exist_ok=True)
        if target is not None:
            os.symlink(target, node)
        else:
            with open(node, "wb"):
                pass
