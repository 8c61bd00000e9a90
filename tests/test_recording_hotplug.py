"""A USB camera unplugged while recording through MediaMTX (media.md §3.8-§3.9), end to end:
umockdev uevents → real pyudev → CameraMonitor → RecordingService, with the MediaMTX
stand-in, a real RTSP stream for the camera's path (rtsp-server-perl) and real segments
written by ``StandInRecorder``.

Like ``tests/test_hotplug_e2e.py``, this module re-runs itself under ``umockdev-wrapper``.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.media_servers import RtspServer, StandInRecorder
from tests.test_mediamtx_e2e import FixtureProber, Rig, event, mediamtx_env, until
from tests.umockdev_rerun import rerun_under_umockdev
from camera_service.testing.umockdev import in_umockdev_wrapper

UNDER_WRAPPER = in_umockdev_wrapper()
CHILD_TIMEOUT = 170.0
TOPICS = ["camera.connected", "camera.disconnected", "mediamtx.path", "recording_status_update",
          "mediamtx.recording_failed"]


@pytest.mark.timeout(300)
def test_recording_hotplug_under_umockdev_wrapper() -> None:
    rerun_under_umockdev(__file__, "recording hotplug tests", CHILD_TIMEOUT)


class RecordingRig(Rig):
    def __init__(self, work: Any) -> None:
        super().__init__()
        self.rtsp = RtspServer(work)
        # The on-demand publisher MediaMTX would run for camera0, on a real RTSP server.
        self.rtsp.publish("camera0", work, "320x240")
        self.recorder = StandInRecorder(self.fake, self.rtsp)

    async def start(self, services: Any, prober: Any, **extra: str) -> Any:
        self.service = await services.start(
            camera_prober=prober,
            **mediamtx_env(self.port, CAMERA_SERVICE_MEDIAMTX_RTSP_PORT=str(self.rtsp.client_port),
                           CAMERA_SERVICE_MEDIAMTX_RTSP_TRANSPORT="udp", **extra))
        app = self.service.app
        await until(lambda: app.readiness.status() == "ready", 10.0, "service ready")
        return self.service

    async def close(self) -> None:
        try:
            await super().close()
        finally:
            self.recorder.stop()
            self.rtsp.stop()


def record_flag(rig: Rig) -> bool:
    conf = rig.fake.path_config("camera0")
    return bool(conf and conf.get("record"))


@pytest.mark.timeout(90)
async def test_unplug_fails_the_recording_and_replug_resumes_into_a_new_file(
        services: Any, tmp_path: Any) -> None:
    rig = RecordingRig(tmp_path)
    try:
        service = await rig.start(services, FixtureProber())
        viewer = await service.authed_client("viewer")
        await viewer.call("subscribe_events", {"topics": TOPICS})
        operator = await service.authed_client("operator")
        syspath = rig.bed.add_camera(0, serial="SN-A", card="HD USB CAMERA")
        await event(viewer, "mediamtx.path", {"device": "camera0", "exists": True})

        first = await operator.call("start_recording", {"device": "camera0"})
        await event(viewer, "recording_status_update", {"status": "STARTED"}, timeout=5)
        assert record_flag(rig)

        rig.bed.unplug(syspath)
        failed = await event(viewer, "recording_status_update", {"status": "FAILED"}, timeout=10)
        assert failed["filename"] == first["filename"]
        reason = await event(viewer, "mediamtx.recording_failed", {"device": "camera0"}, timeout=5)
        assert reason["reason"] == "device_disconnected"
        assert service.app.recorder.state("camera0") == "RESUMING"
        # While the cause lasts, a new start is refused: the intent to record still holds.
        again = await operator.error("start_recording", {"device": "camera0"})
        assert again["data"]["reason"] == "already_recording"

        rig.bed.add_camera(0, serial="SN-A", card="HD USB CAMERA")
        resumed = await event(viewer, "recording_status_update", {"status": "STARTED"}, timeout=25)
        assert resumed["filename"] != first["filename"]
        assert record_flag(rig)

        stopped = await operator.call("stop_recording", {"device": "camera0"})
        assert stopped["filename"] == resumed["filename"]
        assert not record_flag(rig)
        root = service.app.stores["recordings"].root
        for name in (first["filename"], resumed["filename"]):
            assert os.path.getsize(os.path.join(root, "camera0", name + ".mp4")) > 0
        assert rig.fake.violations == []
    finally:
        await rig.close()


@pytest.mark.timeout(60)
async def test_stop_while_resuming_returns_the_interrupted_recording(services: Any, tmp_path: Any) -> None:
    rig = RecordingRig(tmp_path)
    try:
        service = await rig.start(services, FixtureProber())
        viewer = await service.authed_client("viewer")
        await viewer.call("subscribe_events", {"topics": TOPICS})
        operator = await service.authed_client("operator")
        syspath = rig.bed.add_camera(0, serial="SN-A", card="HD USB CAMERA")
        await event(viewer, "mediamtx.path", {"device": "camera0", "exists": True})
        first = await operator.call("start_recording", {"device": "camera0"})
        rig.bed.unplug(syspath)
        await event(viewer, "recording_status_update", {"status": "FAILED"}, timeout=10)

        stopped = await operator.call("stop_recording", {"device": "camera0"})
        assert stopped["status"] == "STOPPED"
        assert stopped["filename"] == first["filename"]
        assert stopped["start_time"] == first["start_time"]
        final = await event(viewer, "recording_status_update", {"status": "STOPPED"}, timeout=5)
        assert final["filename"] == first["filename"]
        assert service.app.recorder.state("camera0") == "IDLE"
        assert not record_flag(rig)
    finally:
        await rig.close()


# Collect the outer test in the plain process and the real ones under the wrapper only.
if UNDER_WRAPPER:
    del test_recording_hotplug_under_umockdev_wrapper
else:
    del test_unplug_fails_the_recording_and_replug_resumes_into_a_new_file
    del test_stop_while_resuming_returns_the_interrupted_recording
