"""End-to-end hotplug: umockdev uevents → real pyudev netlink → UdevEvents → CameraMonitor
→ the real WebSocket API (api.md §4.3-§4.5, §5.2, §5.4; media.md §1.7-§1.8).

Like ``tests/test_udev.py``, this module re-runs itself under ``umockdev-wrapper``:

- run plainly, it collects one outer test that runs this very file in a child process
  ``umockdev-wrapper <python> -m pytest tests/test_hotplug_e2e.py`` and fails with the
  child's output unless every test there passed;
- under the wrapper, it collects the end-to-end tests directly.

The fake ``/dev/videoN`` nodes are ptys, not V4L2 devices, so the V4L2 prober is replaced
by one returning the real ``v4l2-ctl --all --list-formats-ext`` output of an ELP 4K camera
(``tests/fixtures/v4l2/elp-4k-usb-camera.txt``) parsed with ``parse_v4l2_ctl``.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater

from camera_service.discovery.v4l2 import ProbeResult, choose_mode, parse_v4l2_ctl
from tests.umockdev_rerun import rerun_under_umockdev
from camera_service.testing.umockdev import Testbed, in_umockdev_wrapper

UNDER_WRAPPER = in_umockdev_wrapper()
REPO = Path(__file__).resolve().parent.parent
FIXTURE = REPO / "tests" / "fixtures" / "v4l2" / "elp-4k-usb-camera.txt"
CHILD_TIMEOUT = 120.0
LATENCY_BUDGET = 0.050
TOPICS = ["camera_status_update", "camera.connected", "camera.disconnected", "camera.status_change",
          "camera.capability_error"]
ENV = {"CAMERA_SERVICE_VIRTUAL_CAMERAS": "[]", "CAMERA_SERVICE_CAMERA_POLL_INTERVAL": "30"}


# -- the outer test: re-run this file under umockdev-wrapper --------------------------


@pytest.mark.timeout(300)
def test_hotplug_e2e_under_umockdev_wrapper() -> None:
    rerun_under_umockdev(__file__, "hotplug e2e tests", CHILD_TIMEOUT)


# -- helpers ---------------------------------------------------------------------------


def elp() -> ProbeResult:
    return parse_v4l2_ctl(FIXTURE.read_text())


class FixtureProber:
    """Answers every node with the ELP 4K camera's real capabilities."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.result = elp()

    async def probe(self, node: str, timeout: float) -> ProbeResult:
        self.asked.append(node)
        return self.result


class HangingProber:
    """Never answers: the monitor's own timeout must end the probe."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.pending: list[Deferred[Any]] = []

    async def probe(self, node: str, timeout: float) -> ProbeResult:
        self.asked.append(node)
        never: Deferred[Any] = Deferred()
        self.pending.append(never)
        return await never


async def sleep(seconds: float) -> None:
    await deferLater(reactor, seconds, lambda: None)


async def next_notification(client: Any, timeout: float = 2.0) -> dict[str, Any]:
    waiting = client.notifications.get()
    waiting.addTimeout(timeout, reactor)
    return await waiting


async def expect(client: Any, method: str, timeout: float = 2.0) -> dict[str, Any]:
    message = await next_notification(client, timeout)
    assert message["method"] == method, f"expected {method}, got {message}"
    return message["params"]


async def until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout} s: {what}")
        await sleep(0.005)


async def subscribed_client(service: Any) -> Any:
    client = await service.authed_client("viewer")
    result = await client.call("subscribe_events", {"topics": TOPICS})
    assert result["subscribed"] is True
    return client


def cameras(listing: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {camera["device"]: camera for camera in listing["cameras"]}


def assert_no_dev_paths(client: Any) -> None:
    for message in list(client.raw.pending):
        assert "/dev/" not in json.dumps(message), message


def children_of_this_process() -> list[str]:
    pids: list[str] = []
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        try:
            pids += (task / "children").read_text().split()
        except OSError:
            pass
    return pids


def expected_mode(service: Any, probe: ProbeResult) -> Any:
    cfg = service.app.config.camera
    width, height = (int(x) for x in cfg.target_resolution.split("x"))
    return choose_mode(tuple(probe.modes), preference=tuple(cfg.format_preference),
                       target=(width, height), target_fps=float(cfg.target_fps))


# -- the tests (only under the wrapper) ------------------------------------------------

@pytest.mark.timeout(60)
async def test_plug_sibling_unplug_replug_second_camera(services: Any) -> None:
    prober = FixtureProber()
    fixture = prober.result
    bed = Testbed()  # before the service: monitors opened earlier see nothing
    service = None
    try:
        service = await services.start(camera_prober=prober, **ENV)
        monitor = service.root.getServiceNamed("camera-monitor")
        assert monitor.udev_events, "udev netlink events must be in use"
        client = await subscribed_client(service)
        assert (await client.call("get_camera_list"))["cameras"] == []
        mode = expected_mode(service, fixture)
        assert mode is not None

        # 1. plug → camera_status_update + camera.connected, within the latency budget
        started = time.perf_counter()
        syspath_a = bed.add_camera(0, serial="SN-A", card="HD USB CAMERA")
        update = await expect(client, "camera_status_update")
        latency = time.perf_counter() - started
        print(f"\nplug→camera_status_update latency: {latency * 1000:.2f} ms")
        assert set(update) == {"device", "status", "name", "resolution", "fps", "streams"}
        assert update["device"] == "camera0"
        assert update["status"] == "CONNECTED"
        assert update["name"] == fixture.card == "HD USB CAMERA: HD USB CAMERA"
        assert update["resolution"] == f"{mode.width}x{mode.height}"
        assert update["fps"] == round(mode.fps)
        assert set(update["streams"]) == {"rtsp", "hls", "webrtc"}
        assert all("camera0" in url for url in update["streams"].values())
        connected = await expect(client, "camera.connected")
        assert connected["device"] == "camera0" and connected["status"] == "CONNECTED"
        assert connected["card_name"] == fixture.card and connected["driver"] == "uvcvideo"
        assert latency < LATENCY_BUDGET, f"plug→notification took {latency * 1000:.1f} ms"
        assert prober.asked == ["/dev/video0"]

        listing = await client.call("get_camera_list")
        assert listing["total"] == 1 and listing["connected"] == 1
        assert cameras(listing)["camera0"]["status"] == "CONNECTED"
        caps = await client.call("get_camera_capabilities", {"device": "camera0"})
        assert caps["formats"] == fixture.formats()
        assert caps["resolutions"] == fixture.resolutions()
        assert caps["fps_options"] == fixture.fps_options() == caps["frame_rates"]
        assert caps["validation_status"] == "CONFIRMED"

        # 2. the metadata sibling: never listed, never announced, never probed
        syspath_meta = bed.add_metadata_sibling(1, serial="SN-A", card="HD USB CAMERA")
        await sleep(0.3)
        assert client.notifications.pending == []
        assert "/dev/video1" not in prober.asked
        listing = await client.call("get_camera_list")
        assert list(cameras(listing)) == ["camera0"]

        # 3. unplug → DISCONNECTED, still listed, capabilities DISCONNECTED
        bed.unplug(syspath_meta)
        bed.unplug(syspath_a)
        update = await expect(client, "camera_status_update")
        assert update["device"] == "camera0" and update["status"] == "DISCONNECTED"
        disconnected = await expect(client, "camera.disconnected")
        assert disconnected["device"] == "camera0" and disconnected["status"] == "DISCONNECTED"
        change = await expect(client, "camera.status_change")
        assert (change["old_status"], change["new_status"]) == ("CONNECTED", "DISCONNECTED")
        listing = await client.call("get_camera_list")
        assert listing["total"] == 1 and listing["connected"] == 0
        assert cameras(listing)["camera0"]["status"] == "DISCONNECTED"
        caps = await client.call("get_camera_capabilities", {"device": "camera0"})
        assert caps["validation_status"] == "DISCONNECTED"
        await sleep(0.05)
        assert client.notifications.pending == []

        # 4. the same serial at another node number keeps camera0
        syspath_a3 = bed.add_camera(3, serial="SN-A", card="HD USB CAMERA")
        update = await expect(client, "camera_status_update")
        assert update["device"] == "camera0" and update["status"] == "CONNECTED"
        await expect(client, "camera.connected")
        change = await expect(client, "camera.status_change")
        assert change["device"] == "camera0"
        assert (change["old_status"], change["new_status"]) == ("DISCONNECTED", "CONNECTED")
        assert prober.asked[-1] == "/dev/video3"
        listing = await client.call("get_camera_list")
        assert list(cameras(listing)) == ["camera0"]
        assert cameras(listing)["camera0"]["status"] == "CONNECTED"

        # 5. another serial at node 2 → camera2, persisted
        bed.add_camera(2, serial="SN-B", card="HD USB CAMERA")
        update = await expect(client, "camera_status_update")
        assert update["device"] == "camera2" and update["status"] == "CONNECTED"
        await expect(client, "camera.connected")
        listing = await client.call("get_camera_list")
        assert [c["device"] for c in listing["cameras"]] == ["camera0", "camera2"]
        assert listing["connected"] == 2

        def persisted() -> dict[str, str]:
            path = service.state_dir / "camera-ids.json"
            if not path.exists():
                return {}
            text = path.read_text()
            found = {}
            for serial in ("SN-A", "SN-B"):
                match = re.search(r'"(serial:[^"]*' + serial + r'[^"]*)"\s*:\s*\{[^}]*"id"\s*:\s*"(camera\d+)"', text)
                if match:
                    found[serial] = match.group(2)
            return found

        await until(lambda: persisted() == {"SN-A": "camera0", "SN-B": "camera2"}, 3.0,
                    f"camera-ids.json holds both identities: {persisted()}")
        assert_no_dev_paths(client)
        bed.unplug(syspath_a3)
        await expect(client, "camera_status_update")
    finally:
        if service is not None:
            for c in service.clients:
                c.drop()
            if service.root.running:
                await service.root.stopService()
        bed.close()


@pytest.mark.timeout(60)
async def test_rapid_plug_cycles_settle_and_leave_nothing_behind(services: Any, monkeypatch: Any) -> None:
    import camera_service.app as app_module
    from camera_service.procs import ProcessRunner

    runners: list[ProcessRunner] = []

    class RecordingRunner(ProcessRunner):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            runners.append(self)

    monkeypatch.setattr(app_module, "ProcessRunner", RecordingRunner)
    prober = FixtureProber()
    before = set(reactor.getDelayedCalls())
    bed = Testbed()
    service = None
    try:
        service = await services.start(camera_prober=prober, **ENV)
        monitor = service.root.getServiceNamed("camera-monitor")
        client = await subscribed_client(service)

        async def settled() -> dict[str, Any]:
            await until(lambda: not monitor.discovery_active(), 3.0, "discovery idle")
            await sleep(0.05)
            await until(lambda: not monitor.discovery_active(), 3.0, "discovery idle")
            return await client.call("get_camera_list")

        for _ in range(20):
            syspath = bed.add_camera(5, serial="SN-C", card="HD USB CAMERA")
            await sleep(0.002)  # let the reader drain: umockdev aborts on a full socket
            bed.unplug(syspath)
            await sleep(0.002)
        listing = await settled()
        entries = [c for c in listing["cameras"] if c["device"] == "camera5"]
        print(f"\nafter 20 plug/unplug cycles: {len(prober.asked)} probes, entries {entries}")
        assert listing["total"] == len(entries) <= 1, listing
        assert all(c["status"] == "DISCONNECTED" for c in entries), listing
        assert listing["connected"] == 0

        bed.add_camera(5, serial="SN-C", card="HD USB CAMERA")
        listing = await settled()
        assert [(c["device"], c["status"]) for c in listing["cameras"]] == [("camera5", "CONNECTED")]
        assert set(prober.asked) == {"/dev/video5"}
        assert_no_dev_paths(client)

        for c in service.clients:
            c.drop()
        await sleep(0.05)
        await service.root.stopService()
        await sleep(0.05)
        left = [call for call in reactor.getDelayedCalls() if call not in before and call.active()]
        # The test's own WebSocket client (autobahn) may still hold a timer; nothing else may.
        print(f"delayed calls left after stopService (service + test client): {left!r}")
        ours = [call for call in left if "autobahn" not in repr(call.func) + repr(getattr(call.func, "__module__", ""))]
        assert ours == [], f"delayed calls left after stopService: {ours!r}"
        assert runners, "the service built no ProcessRunner"
        assert [runner.running() for runner in runners] == [0] * len(runners)
        assert children_of_this_process() == []
    finally:
        if service is not None:
            for c in service.clients:
                c.drop()
            if service.root.running:
                await service.root.stopService()
        bed.close()


@pytest.mark.timeout(60)
async def test_probe_that_never_returns_times_out_to_error(services: Any) -> None:
    prober = HangingProber()
    bed = Testbed()
    service = None
    try:
        service = await services.start(camera_prober=prober, CAMERA_SERVICE_CAMERA_PROBE_TIMEOUT="0.2", **ENV)
        client = await subscribed_client(service)
        started = time.perf_counter()
        syspath = bed.add_camera(0, serial="SN-T", card="HD USB CAMERA")
        # While the probe hangs, the reactor keeps answering.
        for _ in range(5):
            asked = time.perf_counter()
            assert await client.call("ping") == "pong"
            assert time.perf_counter() - asked < 0.05
        update = await expect(client, "camera_status_update", timeout=5.0)
        elapsed = time.perf_counter() - started
        assert update["device"] == "camera0" and update["status"] == "ERROR"
        assert (update["resolution"], update["fps"]) == ("", 0)
        error = await expect(client, "camera.capability_error")
        assert error["device"] == "camera0" and "timed out" in error["error"]
        assert "/dev/" not in error["error"]
        # probe_timeout (0.2 s) + the monitor's grace (1 s); no settling retries for a timeout
        assert 1.1 <= elapsed < 2.5, elapsed
        assert prober.asked == ["/dev/video0"]
        assert all(d.called for d in prober.pending), "the timed-out probe was not cancelled"
        listing = await client.call("get_camera_list")
        assert cameras(listing)["camera0"]["status"] == "ERROR"
        caps = await client.call("get_camera_capabilities", {"device": "camera0"})
        assert caps["validation_status"] == "NONE" and caps["formats"] == []

        bed.unplug(syspath)
        update = await expect(client, "camera_status_update")
        assert update["status"] == "DISCONNECTED"
        assert_no_dev_paths(client)
    finally:
        if service is not None:
            for c in service.clients:
                c.drop()
            if service.root.running:
                await service.root.stopService()
        bed.close()


# Collect the outer test in the plain process and the real ones under the wrapper only.
if UNDER_WRAPPER:
    del test_hotplug_e2e_under_umockdev_wrapper
else:
    del test_plug_sibling_unplug_replug_second_camera
    del test_rapid_plug_cycles_settle_and_leave_nothing_behind
    del test_probe_that_never_returns_times_out_to_error
