"""Recording through MediaMTX (media.md §3.4–3.9) with the stand-in and real media.

The service talks to the OpenAPI-validating MediaMTX stand-in; the camera's stream is a
real H.264 stream on rtsp-server-perl (the service's keep-alive reader pulls it), and
``StandInRecorder`` writes real segments while the stand-in has ``record: true``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.internet.task import deferLater

from camera_service.testing.fake_mediamtx import FakeMediaMTX, FakeMediaMTXServer
from tests.media_servers import RtspServer, StandInRecorder
from tests.test_recording_direct import ffprobe, next_notification

VIRTUAL = json.dumps([{"id": "camera100", "name": "Pattern", "pattern": "testsrc2",
                       "size": "320x240", "rate": 15},
                      {"id": "camera101", "name": "Bars", "pattern": "smptebars",
                       "size": "320x240", "rate": 15}])


class World:
    def __init__(self, work: Any) -> None:
        self.work = work
        self.rtsp: RtspServer | None = None
        self.fake = FakeMediaMTX()
        self.server = FakeMediaMTXServer(self.fake)
        self.recorder: StandInRecorder | None = None
        self.running: Any = None

    async def start(self, services: Any, **env: str) -> None:
        self.rtsp = RtspServer(self.work)
        self.rtsp.publish("camera100", self.work, "320x240")
        self.recorder = StandInRecorder(self.fake, self.rtsp)
        self.server.start(reactor, port=0)
        self.running = await services.start(
            CAMERA_SERVICE_VIRTUAL_CAMERAS=VIRTUAL,
            CAMERA_SERVICE_MEDIAMTX_ENABLED="true",
            CAMERA_SERVICE_MEDIAMTX_HOST="127.0.0.1",
            CAMERA_SERVICE_MEDIAMTX_API_PORT=str(self.server.port_number),
            CAMERA_SERVICE_MEDIAMTX_RTSP_PORT=str(self.rtsp.client_port),
            CAMERA_SERVICE_MEDIAMTX_RTSP_TRANSPORT="udp",
            CAMERA_SERVICE_MEDIAMTX_HEALTH_CHECK_INTERVAL="0.5",
            CAMERA_SERVICE_MEDIAMTX_REQUEST_TIMEOUT="2",
            **env)
        mediamtx = self.running.root.getServiceNamed("mediamtx")
        deadline = reactor.seconds() + 10
        while not (mediamtx.state == "up" and mediamtx.first_provisioning_done
                   and self.running.app.readiness.status() == "ready"):
            assert reactor.seconds() < deadline, "MediaMTX stand-in never provisioned"
            await deferLater(reactor, 0.05, lambda: None)

    async def stop(self) -> None:
        if self.recorder is not None:
            self.recorder.stop()
        if self.rtsp is not None:
            self.rtsp.stop()
        await self.server.stop()
        assert self.fake.violations == []
        assert self.fake.fake_bugs == []

    def record_flag(self, name: str) -> bool:
        conf = self.fake.path_config(name)
        return bool(conf and conf.get("record"))


@pytest.fixture
def world(services: Any, tmp_path: Any):
    created = World(tmp_path)
    yield created
    services.stop_all()
    pytest_twisted.blockon(defer.ensureDeferred(created.stop()))


async def test_record_flag_is_set_on_that_camera_only_and_cleared_on_stop(world: World, services: Any) -> None:
    await world.start(services)
    client = await world.running.authed_client("operator")
    await client.call("subscribe_events", {"topics": ["recording_status_update",
                                                      "mediamtx.recording_started",
                                                      "mediamtx.recording_stopped"]})
    started = await client.call("start_recording", {"device": "camera100"})
    assert started["status"] == "RECORDING"
    assert world.record_flag("camera100") is True
    assert world.record_flag("camera101") is False
    assert set(world.fake.recording_paths()) == {"camera100"}
    patches = world.fake.requests_to("PATCH", "/v3/config/paths/patch/")
    assert patches and {r.path.rsplit("/", 1)[1] for r in patches} == {"camera100"}
    # The keep-alive reader holds the stream while recording (media.md §3.5).
    assert world.running.app.recorder._own_readers("camera100") == 1

    await deferLater(reactor, 2.5, lambda: None)
    stopped = await client.call("stop_recording", {"device": "camera100"})
    assert world.record_flag("camera100") is False
    assert stopped["filename"] == started["filename"]
    path = os.path.join(world.running.app.stores["recordings"].root, "camera100",
                        started["filename"] + ".mp4")
    assert stopped["file_size"] == os.path.getsize(path) > 0
    assert float(ffprobe(path)["format"]["duration"]) >= 1.0
    seen = []
    for _ in range(4):
        waiting = client.notifications.get()
        waiting.addTimeout(5, reactor)
        seen.append((await waiting)["method"])
    assert sorted(seen) == ["mediamtx.recording_started", "mediamtx.recording_stopped",
                            "recording_status_update", "recording_status_update"]


async def test_mediamtx_restart_during_recording_resumes_into_a_new_file(world: World, services: Any) -> None:
    await world.start(services)
    client = await world.running.authed_client("operator")
    await client.call("subscribe_events", {"topics": ["recording_status_update",
                                                      "mediamtx.recording_failed"]})
    first = await client.call("start_recording", {"device": "camera100"})
    assert (await next_notification(client, "recording_status_update"))["status"] == "STARTED"
    await deferLater(reactor, 1.2, lambda: None)

    world.fake.restart()  # every API-made path and its record flag are gone
    failed = await next_notification(client, "recording_status_update", timeout=10)
    assert failed["status"] == "FAILED" and failed["filename"] == first["filename"]
    resumed = await next_notification(client, "recording_status_update", timeout=25)
    assert resumed["status"] == "STARTED"
    assert resumed["filename"] != first["filename"]
    assert world.record_flag("camera100") is True

    stopped = await client.call("stop_recording", {"device": "camera100"})
    assert stopped["filename"] == resumed["filename"]
    assert world.record_flag("camera100") is False
    for name in (first["filename"], resumed["filename"]):
        path = os.path.join(world.running.app.stores["recordings"].root, "camera100", name + ".mp4")
        assert os.path.getsize(path) > 0


async def test_mediamtx_restart_without_auto_resume_ends_the_recording(world: World, services: Any) -> None:
    await world.start(services, CAMERA_SERVICE_RECORDING_AUTO_RESUME="false")
    client = await world.running.authed_client("operator")
    await client.call("subscribe_events", {"topics": ["recording_status_update",
                                                      "mediamtx.recording_failed"]})
    await client.call("start_recording", {"device": "camera100"})
    await next_notification(client, "recording_status_update")
    world.fake.restart()
    failure = await next_notification(client, "mediamtx.recording_failed", timeout=10)
    assert failure["reason"] == "mediamtx_error"
    await deferLater(reactor, 1.5, lambda: None)
    assert world.running.app.recorder.state("camera100") == "IDLE"
    assert world.record_flag("camera100") is False
    idle = await client.error("stop_recording", {"device": "camera100"})
    assert idle["data"]["reason"] == "not_recording"


async def test_recordings_mediamtx_writes_elsewhere_show_in_storage_health(services: Any) -> None:
    """media.md §5.2: MediaMTX lists segments of a camera the service finds no file of."""
    fake = FakeMediaMTX()
    fake.add_recording("camera100", "2026-01-01T10:00:00Z")
    server = FakeMediaMTXServer(fake)
    server.start(reactor, port=0)
    running = None
    try:
        running = await services.start(
            CAMERA_SERVICE_VIRTUAL_CAMERAS=VIRTUAL, CAMERA_SERVICE_MEDIAMTX_ENABLED="true",
            CAMERA_SERVICE_MEDIAMTX_HOST="127.0.0.1",
            CAMERA_SERVICE_MEDIAMTX_API_PORT=str(server.port_number))
        health = running.app.health
        deadline = reactor.seconds() + 10
        while not any("camera100" in p for p in health.get("storage").details.get("problems", [])):
            assert reactor.seconds() < deadline, health.get("storage")
            await deferLater(reactor, 0.05, lambda: None)
        problem = health.get("storage").details["problems"][0]
        assert "recordPath" in problem and running.app.stores["recordings"].root in problem
        assert health.get("storage").status == "degraded"
    finally:
        if running is not None:
            await running.root.stopService()
        await server.stop()


async def test_a_start_that_never_produces_a_file_fails_and_clears_the_flag(world: World, services: Any) -> None:
    # camera101 has no stream behind its path: nothing is ever recorded.
    await world.start(services, CAMERA_SERVICE_RECORDING_START_TIMEOUT="3",
                      CAMERA_SERVICE_MEDIAMTX_RUN_ON_DEMAND_START_TIMEOUT="1")
    client = await world.running.authed_client("operator")
    started = reactor.seconds()
    error = await client.error("start_recording", {"device": "camera101"})
    assert 3.0 <= reactor.seconds() - started < 7.0
    assert error["code"] == -32050 and error["data"]["dependency"] == "mediamtx"
    assert "did not start within 3 s" in error["data"]["detail"]
    assert world.record_flag("camera101") is False
    assert world.running.app.recorder.state("camera101") == "IDLE"
    assert world.running.app.recorder._own_readers("camera101") == 0
    idle = await client.error("stop_recording", {"device": "camera101"})
    assert idle["data"]["reason"] == "not_recording"


async def test_undeletable_recording_is_deleted_through_mediamtx(services: Any, tmp_path: Any) -> None:
    """media.md §5.6: unlink fails with EPERM (a real one: the file is immutable, which
    stops even root), so the service asks MediaMTX to delete the segment by its start."""
    import datetime as dt
    import shutil
    import subprocess

    if shutil.which("chattr") is None:
        pytest.fail("chattr (e2fsprogs) is needed to make a file the service cannot delete")
    fake = FakeMediaMTX()
    server = FakeMediaMTXServer(fake)
    server.start(reactor, port=0)
    running = None
    path = None
    try:
        running = await services.start(
            CAMERA_SERVICE_VIRTUAL_CAMERAS=VIRTUAL, CAMERA_SERVICE_MEDIAMTX_ENABLED="true",
            CAMERA_SERVICE_MEDIAMTX_HOST="127.0.0.1",
            CAMERA_SERVICE_MEDIAMTX_API_PORT=str(server.port_number))
        mediamtx = running.root.getServiceNamed("mediamtx")
        deadline = reactor.seconds() + 10
        while not (mediamtx.state == "up" and mediamtx.first_provisioning_done):
            assert reactor.seconds() < deadline, "MediaMTX stand-in never provisioned"
            await deferLater(reactor, 0.05, lambda: None)
        local = dt.datetime(2026, 1, 2, 3, 4, 5)
        stem = f"camera100_{local:%Y-%m-%d_%H-%M-%S}"
        start = dt.datetime.fromtimestamp(local.timestamp(), tz=dt.timezone.utc).isoformat()
        fake.add_recording("camera100", start)
        directory = os.path.join(running.app.stores["recordings"].root, "camera100")
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, stem + ".mp4")
        with open(path, "wb") as handle:
            handle.write(b"\0" * 1000)
        probe = subprocess.run(["chattr", "+i", path], capture_output=True)
        if probe.returncode != 0:
            pytest.fail(f"chattr +i failed here: {probe.stderr!r}")
        running.app.stores["recordings"].invalidate()
        admin = await running.authed_client("admin")
        deleted = await admin.call("delete_recording", {"filename": stem})
        assert deleted == {"filename": stem, "deleted": True,
                           "message": "Recording file deleted successfully"}
        requests = fake.requests_to("DELETE", "/v3/recordings/deletesegment")
        assert len(requests) == 1
        from urllib.parse import parse_qs, urlsplit

        assert parse_qs(urlsplit(requests[0].path).query) == {"path": ["camera100"], "start": [start]}
        # Not known to MediaMTX either: the permission error, with the fix in health.
        other = os.path.join(directory, "camera100_2026-01-02_03-04-06.mp4")
        with open(other, "wb") as handle:
            handle.write(b"\0")
        subprocess.run(["chattr", "+i", other], check=True)
        try:
            running.app.stores["recordings"].invalidate()
            error = await admin.error("delete_recording", {"filename": "camera100_2026-01-02_03-04-06"})
            assert error["code"] == -32603
            assert error["data"]["details"] == "Recording could not be deleted (permission denied)"
        finally:
            subprocess.run(["chattr", "-i", other], check=False)
    finally:
        if path is not None:
            subprocess.run(["chattr", "-i", path], check=False)
        if running is not None:
            await running.root.stopService()
        await server.stop()
