"""Snapshot command builders, quality mapping and target size (media.md §4.2, §4.3, §0.4)."""

from __future__ import annotations

import pytest

from camera_service.discovery.v4l2 import Mode
from camera_service.procs import SAFE_ARG, UnsafeArgument
from camera_service.rpc.errors import RpcError
from camera_service.snapshots.commands import (
    device_snapshot_argv,
    is_temp_name,
    lavfi_snapshot_argv,
    mjpeg_q,
    rtsp_snapshot_argv,
    target_size,
    temp_name,
)
from camera_service.snapshots.service import snapshot_file_name

FFMPEG = "/usr/bin/ffmpeg"
TMP = "/var/lib/camera-service/snapshots/camera0/.snapshot-0123456789abcdef.part"
OUTPUT = ["-c:v", "mjpeg", "-q:v", "6", "-f", "image2", "-update", "1", "-y", TMP]
# The last two pass the API's file name rule; they still never reach an argv.
HOSTILE = ["../../etc/passwd", "a b.jpg", "x;rm -rf ~.jpg", "$(id).jpg", "name\n.jpg", "ü.jpg",
           "-y.jpg", "front-door.jpg"]


# -- quality and size (§4.3) ---------------------------------------------------------------

@pytest.mark.parametrize(("quality", "q"), [(100, 2), (90, 5), (85, 6), (75, 9), (50, 17), (1, 31)])
def test_quality_table(quality: int, q: int) -> None:
    assert mjpeg_q(quality) == q


def test_quality_is_monotonic_and_in_range() -> None:
    values = [mjpeg_q(quality) for quality in range(1, 101)]
    assert values == sorted(values, reverse=True)
    assert min(values) == 2 and max(values) == 31


@pytest.mark.parametrize("bad", [0, 101, -5, True, 85.0, "85", None])
def test_quality_rejects_out_of_range_and_non_integers(bad: object) -> None:
    with pytest.raises(ValueError):
        mjpeg_q(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(("source", "bounds", "expected"), [
    ((1280, 720), (0, 0), None),                 # no limit
    ((1280, 720), (1920, 1080), None),           # bounds larger: never upscale
    ((1280, 720), (1280, 720), None),            # equal: no filter
    ((1280, 720), (640, 0), (640, 360)),         # width only
    ((1280, 720), (0, 360), (640, 360)),         # height only
    ((1280, 720), (640, 300), (532, 300)),       # height is the tighter bound; 533 -> even
    ((1920, 1080), (1000, 1000), (1000, 562)),   # 562.5 -> 562
    ((640, 480), (101, 0), (100, 74)),           # both sides rounded down to even
    ((641, 481), (640, 0), (640, 480)),          # odd source, reduced
    ((320, 240), (1, 1), (2, 2)),                # never below 2x2
])
def test_target_size(source: tuple[int, int], bounds: tuple[int, int],
                     expected: tuple[int, int] | None) -> None:
    size = target_size(*source, *bounds)
    assert size == expected
    if size is not None:
        assert size[0] % 2 == 0 and size[1] % 2 == 0
        assert size[0] <= source[0] and size[1] <= source[1]


def test_target_size_rejects_bad_values() -> None:
    for args in [(0, 720, 640, 0), (1280, 720, -1, 0), (1280.0, 720, 640, 0), (True, 720, 0, 0)]:
        with pytest.raises(ValueError):
            target_size(*args)  # type: ignore[arg-type]


# -- argv shapes (§4.2) --------------------------------------------------------------------

def test_rtsp_argv_exact_shape() -> None:
    argv = rtsp_snapshot_argv(ffmpeg=FFMPEG, host="127.0.0.1", port=8554, camera_id="camera0",
                              transport="tcp", q=6, scale=None, tmp=TMP)
    assert argv == [FFMPEG, "-hide_banner", "-loglevel", "error", "-nostdin",
                    "-rtsp_transport", "tcp", "-timeout", "5000000", "-analyzeduration", "500000",
                    "-i", "rtsp://127.0.0.1:8554/camera0", "-an", "-frames:v", "1", *OUTPUT]


def test_rtsp_argv_input_options_before_input_and_scale() -> None:
    argv = rtsp_snapshot_argv(ffmpeg=FFMPEG, host="mediamtx.local", port=18554, camera_id="camera12",
                              transport="udp", q=9, scale=(640, 360), tmp=TMP)
    i = argv.index("-i")
    assert argv.index("-rtsp_transport") < i and argv.index("-timeout") < i
    assert argv[argv.index("-rtsp_transport") + 1] == "udp"
    assert argv[i + 1] == "rtsp://mediamtx.local:18554/camera12"
    assert argv[argv.index("-vf") + 1] == "scale=640:360"
    assert argv.index("-vf") > i and argv.index("-q:v") > i
    assert argv[argv.index("-q:v") + 1] == "9"
    assert argv[-1] == TMP


def test_rtsp_argv_ffmpeg4_uses_stimeout() -> None:
    argv = rtsp_snapshot_argv(ffmpeg=FFMPEG, host="127.0.0.1", port=8554, camera_id="camera0",
                              transport="tcp", q=6, scale=None, tmp=TMP, timeout_option="-stimeout")
    assert "-timeout" not in argv and argv.index("-stimeout") < argv.index("-i")


@pytest.mark.parametrize("kwargs", [
    {"transport": "http"}, {"transport": "multicast"}, {"camera_id": "camera0/../x"},
    {"camera_id": "Camera0"}, {"host": "::1"}, {"host": "a b"}, {"host": "-h"}, {"port": 0},
    {"port": True}, {"timeout_option": "-rw_timeout"}, {"q": 1}, {"q": 32}, {"scale": (641, 360)},
])
def test_rtsp_argv_rejects_bad_values(kwargs: dict[str, object]) -> None:
    base: dict[str, object] = {"ffmpeg": FFMPEG, "host": "127.0.0.1", "port": 8554, "camera_id": "camera0",
                               "transport": "tcp", "q": 6, "scale": None, "tmp": TMP}
    base.update(kwargs)
    with pytest.raises(ValueError):  # UnsafeArgument is a ValueError too
        rtsp_snapshot_argv(**base)  # type: ignore[arg-type]


def test_device_argv_exact_shape() -> None:
    argv = device_snapshot_argv(ffmpeg=FFMPEG, device_node="/dev/video2", mode=Mode("YUYV", 1280, 720, 29.97),
                                warmup_frames=5, q=6, scale=None, tmp=TMP)
    assert argv == [FFMPEG, "-hide_banner", "-loglevel", "error", "-nostdin",
                    "-f", "v4l2", "-input_format", "yuyv422", "-video_size", "1280x720",
                    "-framerate", "30", "-i", "/dev/video2",
                    "-an", "-vf", "trim=start_frame=5", "-frames:v", "1", *OUTPUT]


def test_device_argv_scale_joins_the_trim_filter() -> None:
    argv = device_snapshot_argv(ffmpeg=FFMPEG, device_node="/dev/video0", mode=Mode("MJPG", 1920, 1080, 30.0),
                                warmup_frames=0, q=2, scale=(1000, 562), tmp=TMP)
    assert argv[argv.index("-vf") + 1] == "trim=start_frame=0,scale=1000:562"
    assert argv[argv.index("-input_format") + 1] == "mjpeg"   # a FourCC mapped, never -pix_fmt
    assert "-pix_fmt" not in argv


@pytest.mark.parametrize("kwargs", [
    {"device_node": "/dev/video0;x"}, {"device_node": "/dev/sda"}, {"device_node": "/dev/video1234"},
    {"mode": Mode("ABCD", 640, 480, 30.0)}, {"mode": Mode("MJPG", 0, 480, 30.0)},
    {"warmup_frames": -1}, {"warmup_frames": 5.0},
])
def test_device_argv_rejects_bad_values(kwargs: dict[str, object]) -> None:
    base: dict[str, object] = {"ffmpeg": FFMPEG, "device_node": "/dev/video0",
                               "mode": Mode("MJPG", 640, 480, 30.0), "warmup_frames": 5, "q": 6,
                               "scale": None, "tmp": TMP}
    base.update(kwargs)
    with pytest.raises(ValueError):
        device_snapshot_argv(**base)  # type: ignore[arg-type]


def test_lavfi_argv_exact_shape() -> None:
    argv = lavfi_snapshot_argv(ffmpeg=FFMPEG, pattern="testsrc2", width=1280, height=720, rate=30, q=6,
                               scale=(640, 360), tmp=TMP)
    assert argv == [FFMPEG, "-hide_banner", "-loglevel", "error", "-nostdin",
                    "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
                    "-an", "-frames:v", "1", "-vf", "scale=640:360", *OUTPUT]
    assert "-re" not in argv  # one frame as fast as possible


@pytest.mark.parametrize("kwargs", [
    {"pattern": "testsrc2,drawtext=x"}, {"pattern": "movie=/etc/passwd"}, {"width": 15},
    {"width": 641}, {"rate": 61}, {"rate": 0},
])
def test_lavfi_argv_rejects_bad_values(kwargs: dict[str, object]) -> None:
    base: dict[str, object] = {"ffmpeg": FFMPEG, "pattern": "testsrc2", "width": 640, "height": 480,
                               "rate": 15, "q": 6, "scale": None, "tmp": TMP}
    base.update(kwargs)
    with pytest.raises(ValueError):
        lavfi_snapshot_argv(**base)  # type: ignore[arg-type]


def test_every_argument_is_safe() -> None:
    for argv in (
        rtsp_snapshot_argv(ffmpeg=FFMPEG, host="127.0.0.1", port=8554, camera_id="camera0",
                           transport="udp", q=6, scale=(2, 2), tmp=TMP),
        device_snapshot_argv(ffmpeg=FFMPEG, device_node="/dev/video0", mode=Mode("H264", 640, 480, 15.0),
                             warmup_frames=5, q=31, scale=None, tmp=TMP),
        lavfi_snapshot_argv(ffmpeg=FFMPEG, pattern="smptebars", width=16, height=16, rate=1, q=2,
                            scale=None, tmp=TMP),
    ):
        assert all(SAFE_ARG.fullmatch(arg) for arg in argv)


# -- the output is always a generated temporary name (§0.4, §4.4) ---------------------------

def test_temp_names() -> None:
    assert temp_name("0123456789abcdef") == ".snapshot-0123456789abcdef.part"
    assert is_temp_name(".snapshot-0123456789abcdef.part")
    for bad in ("0123456789ABCDEF", "0123", "0123456789abcdef0", "../../../etc/x"):
        with pytest.raises(ValueError):
            temp_name(bad)
    assert not is_temp_name("camera0_1.jpg")


@pytest.mark.parametrize("name", HOSTILE)
def test_client_names_can_never_be_the_output(name: str) -> None:
    # The builders accept only a generated temporary name as the output: a client's name,
    # hostile or harmless, is refused before anything could run.
    for directory in ("/var/lib/camera-service/snapshots/camera0", "/tmp"):
        with pytest.raises(UnsafeArgument):
            lavfi_snapshot_argv(ffmpeg=FFMPEG, pattern="testsrc2", width=640, height=480, rate=15, q=6,
                                scale=None, tmp=f"{directory}/{name}")
        with pytest.raises(UnsafeArgument):
            rtsp_snapshot_argv(ffmpeg=FFMPEG, host="127.0.0.1", port=8554, camera_id="camera0",
                               transport="tcp", q=6, scale=None, tmp=f"{directory}/{name}")


def test_unsafe_snapshot_directory_is_refused() -> None:
    with pytest.raises(UnsafeArgument):
        lavfi_snapshot_argv(ffmpeg=FFMPEG, pattern="testsrc2", width=640, height=480, rate=15, q=6,
                            scale=None, tmp="/srv/my snaps/camera0/.snapshot-0123456789abcdef.part")
    with pytest.raises(UnsafeArgument):
        lavfi_snapshot_argv(ffmpeg="ffmpeg", pattern="testsrc2", width=640, height=480, rate=15, q=6,
                            scale=None, tmp=TMP)


# -- client file names (api.md §4.6) -------------------------------------------------------

@pytest.mark.parametrize(("given", "stored"), [
    ("front-door", "front-door.jpg"), ("a.jpg", "a.jpg"), ("B.JPG", "B.JPG"), ("c.jpeg", "c.jpeg"),
    ("d.JpEg", "d.JpEg"), ("e.png", "e.png.jpg"), ("f.jpg.bak", "f.jpg.bak.jpg"), ("x" * 251, "x" * 251 + ".jpg"),
    ("y" * 251 + ".jpg", "y" * 251 + ".jpg"), ("z" * 255, None),
])
def test_client_name_completion(given: str, stored: str | None) -> None:
    if stored is None:
        # Valid as given, but 259 characters once .jpg is appended: checked again.
        with pytest.raises(RpcError):
            snapshot_file_name(given)
        return
    assert snapshot_file_name(given) == stored


@pytest.mark.parametrize("bad", [*HOSTILE[:-2], "", "..", "a..b", "x" * 256, "x" * 252, "name.", 5, None])
def test_client_name_rejections(bad: object) -> None:
    with pytest.raises(RpcError) as caught:
        snapshot_file_name(bad)
    assert caught.value.code == -32602
    assert caught.value.data["param"] == "filename" and caught.value.data["rule"] == "filename"
