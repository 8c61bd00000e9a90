"""The v4l2-ctl parser, the API views and the streaming-mode choice (media.md §1.3, §1.5, §1.6).

The fixtures in tests/fixtures/v4l2 are real output of real cameras, copied verbatim from
public repositories (each ``*.source`` says where from and which camera):

- elp-4k-usb-camera.txt: ELP 4K UVC webcam, MJPG + YUYV (``--info --list-formats-ext``);
- arducam-1080p-uvc-*-node.txt: Arducam 1080p UVC camera, one MJPG + YUYV node and one
  H.264 node;
- emeet-s800-*.txt: EMEET SmartCam S800, its capture node (MJPG + YUYV + H.264) and its
  metadata node (Device Caps: Metadata Capture);
- cubeternet-1e4e-7016-permission-denied.stderr.txt: a camera v4l2-ctl could not open
  (used in test_probe.py).

Where a line pattern has no real sample here (stepwise/continuous ranges, the older
``Pixel Format:`` layout, non-capture buffer types), the tests build the text from the
printf formats of v4l2-ctl itself and say so.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from camera_service.discovery.v4l2 import (
    DEFAULT_FORMAT_PREFERENCE,
    INPUT_FORMATS,
    Mode,
    ProbeResult,
    api_pixel_format,
    capability_names,
    choose_mode,
    match_override,
    parse_v4l2_ctl,
    rates_in_range,
    round_half_up,
    sizes_in_range,
)

FIXTURES = Path(__file__).parent / "fixtures" / "v4l2"

# The fixtures must stay byte-for-byte what their sources published.
FIXTURE_SHA256 = {
    "arducam-1080p-uvc-h264-node.txt": "b9fd49e29b2c0f27420e6633eef7a7ad60db2415439c9013ae41d9a67cdc9bf5",
    "arducam-1080p-uvc-mjpg-node.txt": "70ce79be206e3e49656b83607bc0c5c02aa966a256bfa12972a3ce5bc670dfc7",
    "cubeternet-1e4e-7016-permission-denied.stderr.txt":
        "86406f26703836e60244ac456f91ac1200b2cc6648f3d0c11b39ac65a71dd3c6",
    "elp-4k-usb-camera.txt": "1e6efc0600c7b94eeca65ff835205e06920d71767a95685f35352a58bca5fd49",
    "emeet-s800-capture-node.all.txt": "1fd53490b02d5a26c1c3940beadebea0bfc12aa5948481c8e3f0e41b8d63bfbb",
    "emeet-s800-capture-node.list-formats-ext.txt":
        "1c0aa80056971581c061de669314bc69fef2233c0418e16a86f8575a30647d51",
    "emeet-s800-metadata-node.all.txt": "f1449fa76c806802baf45d496aa0ccb6cde321c1387666c5ec39cfe9f856dccc",
    "emeet-s800-metadata-node.list-formats-ext.txt":
        "5e981ea5e6628f08efc3a2ee695226b7a46c9154516b449610cfe3bd64bce952",
    "local-v4l2-ctl-1.22.1-no-device.stderr.txt":
        "582a92b82cdf6fc39966aa35038139a08cf4f722c00539f89de6bbb50e68d3f0",
}

UVC_CAPS = ("Video Capture", "Metadata Capture", "Streaming", "Extended Pix Format",
            "Device Capabilities")
UVC_CAPTURE_DEVICE_CAPS = ("Video Capture", "Streaming", "Extended Pix Format")


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def parse(name: str) -> ProbeResult:
    return parse_v4l2_ctl(fixture(name))


def default_mode(result: ProbeResult, target_fps: float = 30) -> Mode | None:
    return choose_mode(result.modes, preference=DEFAULT_FORMAT_PREFERENCE, target=(1280, 720),
                       target_fps=target_fps)


def test_fixtures_are_unchanged_and_sourced() -> None:
    for name, digest in FIXTURE_SHA256.items():
        assert hashlib.sha256((FIXTURES / name).read_bytes()).hexdigest() == digest, name
        assert (FIXTURES / (name.removesuffix(".txt") + ".source")).exists(), name
    assert {p.name for p in FIXTURES.glob("*.txt")} == set(FIXTURE_SHA256)


# -- 1. UVC webcam with MJPEG + YUYV: ELP 4K ----------------------------------------


def test_elp_4k_identity_and_capabilities() -> None:
    result = parse("elp-4k-usb-camera.txt")
    assert result.driver == "uvcvideo"
    assert result.card == "HD USB CAMERA: HD USB CAMERA"
    assert result.bus_info == "usb-xhci-hcd.0-1"
    assert result.version == "6.1.73"  # the first "Driver version", not the media one
    assert result.capabilities_bits == 0x84A00001
    assert result.device_caps_bits == 0x04200001
    assert result.capabilities == UVC_CAPS
    assert result.device_caps == UVC_CAPTURE_DEVICE_CAPS
    assert result.is_capture_node()


def test_elp_4k_views() -> None:
    result = parse("elp-4k-usb-camera.txt")
    assert result.formats() == ["MJPEG", "YUYV"]
    assert result.resolutions() == [
        "3840x2160", "2592x1944", "2048x1536", "1920x1080", "1600x1200", "1280x960", "1280x720",
        "1024x768", "800x600", "640x480", "320x240"]
    assert result.fps_options() == [30, 25, 20, 15, 10, 5, 3, 1]
    # 11 MJPG sizes x 6 rates, and YUYV's own per-size rate lists.
    assert len(result.modes) == 66 + 26
    assert result.modes[0] == Mode("MJPG", 3840, 2160, 30.0)
    assert Mode("YUYV", 3840, 2160, 1.0) in result.modes
    assert Mode("YUYV", 1280, 720, 10.0) in result.modes
    assert Mode("YUYV", 1280, 720, 30.0) not in result.modes


def test_elp_4k_streaming_mode() -> None:
    result = parse("elp-4k-usb-camera.txt")
    assert default_mode(result) == Mode("MJPG", 1280, 720, 30.0)
    # Raw only: YUYV at 720p manages 10 fps, which still beats any smaller size by area.
    assert choose_mode(result.modes, preference=["YUYV"], target=(1280, 720), target_fps=30) == \
        Mode("YUYV", 1280, 720, 10.0)


def test_elp_4k_metrics_formats() -> None:
    formats = parse("elp-4k-usb-camera.txt").metrics_formats()
    assert formats[0] == {"pixel_format": "MJPEG", "width": 3840, "height": 2160,
                          "frame_rates": ["30.000", "25.000", "20.000", "15.000", "10.000", "5.000"]}
    assert {"pixel_format": "YUYV", "width": 800, "height": 600,
            "frame_rates": ["20.000", "15.000", "10.000", "5.000"]} in formats
    assert len(formats) == 22


# -- the same maker's other camera: duplicates in the driver's lists ----------------


def test_arducam_mjpg_node_deduplicates_repeated_sizes_and_rates() -> None:
    result = parse("arducam-1080p-uvc-mjpg-node.txt")
    assert result.card == "USB 2.0 Camera: USB Camera"
    assert result.is_capture_node()
    # The driver lists MJPG 1920x1080 twice, each with 30 fps twice, and YUYV 640x480 twice.
    assert result.modes == (
        Mode("MJPG", 1920, 1080, 30.0), Mode("MJPG", 1280, 720, 30.0), Mode("MJPG", 640, 480, 30.0),
        Mode("MJPG", 320, 240, 30.0), Mode("YUYV", 640, 480, 30.0), Mode("YUYV", 320, 240, 30.0))
    assert result.formats() == ["MJPEG", "YUYV"]
    assert result.resolutions() == ["1920x1080", "1280x720", "640x480", "320x240"]
    assert result.fps_options() == [30]
    assert result.metrics_formats()[0] == {"pixel_format": "MJPEG", "width": 1920, "height": 1080,
                                           "frame_rates": ["30.000"]}
    assert default_mode(result) == Mode("MJPG", 1280, 720, 30.0)


# -- 2. a camera with H.264 ---------------------------------------------------------


def test_arducam_h264_node() -> None:
    result = parse("arducam-1080p-uvc-h264-node.txt")
    assert result.driver == "uvcvideo"
    assert result.card == "USB 2.0 Camera: USB Camera"
    assert result.version == "6.1.73"
    assert result.is_capture_node()
    assert result.formats() == ["H264"]
    assert result.resolutions() == ["1920x1080", "1280x720", "640x480", "640x360"]
    assert result.fps_options() == [30]
    assert default_mode(result) == Mode("H264", 1280, 720, 30.0)
    assert INPUT_FORMATS[default_mode(result).fourcc] == "h264"  # type: ignore[union-attr]


def test_emeet_capture_node_mjpg_yuyv_h264() -> None:
    result = parse("emeet-s800-capture-node.list-formats-ext.txt")
    assert result.formats() == ["MJPEG", "YUYV", "H264"]
    assert result.resolutions() == ["3840x2160", "2560x1440", "1920x1080", "1280x960", "1280x720",
                                    "1024x576", "640x480", "640x360"]
    assert result.fps_options() == [60, 30, 24]
    assert len(result.modes) == 22 + 18 + 22
    # No --info part in this output: nothing says it is a capture node.
    assert result.card == "" and not result.is_capture_node()
    assert default_mode(result) == Mode("MJPG", 1280, 720, 30.0)
    assert default_mode(result, target_fps=60) == Mode("MJPG", 1280, 720, 60.0)
    # H.264 only when asked for first; the same size and rate.
    assert choose_mode(result.modes, preference=["H264", "MJPG"], target=(1920, 1080),
                       target_fps=30) == Mode("H264", 1920, 1080, 30.0)


def test_emeet_capture_node_all_and_formats_together() -> None:
    # What one "--info --list-formats-ext" run would print for this node: the info part of
    # the real --all capture, then the real --list-formats-ext capture.
    result = parse_v4l2_ctl(fixture("emeet-s800-capture-node.all.txt")
                            + fixture("emeet-s800-capture-node.list-formats-ext.txt"))
    assert result.card == "EMEET SmartCam S800: EMEET Smar"
    assert result.bus_info == "usb-0000:00:14.0-5"
    assert result.version == "6.8.12"
    assert result.is_capture_node()
    assert result.formats() == ["MJPEG", "YUYV", "H264"]
    assert len(result.modes) == 62


def test_current_format_of_all_output_is_not_a_mode() -> None:
    # --all prints "Pixel Format : 'MJPG'" under "Format Video Capture:" and
    # "Capabilities : timeperframe" under "Streaming Parameters": neither is enumeration.
    result = parse("emeet-s800-capture-node.all.txt")
    assert result.modes == ()
    assert result.capabilities_bits == 0x84A00001
    assert result.capabilities == UVC_CAPS
    assert result.is_capture_node()


# -- 3. a camera exposing a metadata node -------------------------------------------


def test_metadata_node_is_not_a_capture_node() -> None:
    result = parse("emeet-s800-metadata-node.all.txt")
    assert result.card == "EMEET SmartCam S800: EMEET Smar"
    # The whole device can capture video...
    assert result.capabilities_bits == 0x84A00001 and "Video Capture" in result.capabilities
    # ...but this node only carries metadata (§1.3: device_caps decides, §9).
    assert result.device_caps_bits == 0x04A00000
    assert result.device_caps == ("Metadata Capture", "Streaming", "Extended Pix Format")
    assert not result.is_capture_node()
    # "Sample Format : 'UVCH'" is the metadata format, never a mode.
    assert result.modes == () and result.formats() == []


def test_metadata_node_lists_no_formats() -> None:
    result = parse("emeet-s800-metadata-node.list-formats-ext.txt")
    assert result.modes == ()
    assert result.resolutions() == [] and result.fps_options() == []
    assert default_mode(result) is None  # "no supported capture format"


def test_formats_under_a_non_capture_type_are_ignored() -> None:
    # Built from v4l2-ctl's printf formats ("\tType: %s\n\n", "\t[%d]: '%s' (%s)"): the
    # types --list-formats-meta and --list-formats-out-ext print.
    text = ("ioctl: VIDIOC_ENUM_FMT\n\tType: Metadata Capture\n\n"
            "\t[0]: 'UVCH' (UVC Payload Header Metadata)\n"
            "ioctl: VIDIOC_ENUM_FMT\n\tType: Video Output\n\n"
            "\t[0]: 'YUYV' (YUYV 4:2:2)\n\t\tSize: Discrete 640x480\n"
            "\t\t\tInterval: Discrete 0.033s (30.000 fps)\n"
            "ioctl: VIDIOC_ENUM_FMT\n\tType: Video Capture Multiplanar\n\n"
            "\t[0]: 'NV12' (Y/UV 4:2:0)\n\t\tSize: Discrete 1280x720\n"
            "\t\t\tInterval: Discrete 0.033s (30.000 fps)\n")
    assert parse_v4l2_ctl(text).modes == (Mode("NV12", 1280, 720, 30.0),)


# -- the older --list-formats-ext layout and ranges ---------------------------------


def test_older_layout_with_pixel_format_lines() -> None:
    # v4l-utils before 1.14 printed "Index/Type/Pixel Format/Name" per format
    # (printf("\tPixel Format: '%s'") ...), with a stepwise interval that names its fps.
    text = ("ioctl: VIDIOC_ENUM_FMT\n\tIndex       : 0\n\tType        : Video Capture\n"
            "\tPixel Format: 'MJPG' (compressed)\n\tName        : Motion-JPEG\n"
            "\t\tSize: Discrete 1280x720\n"
            "\t\t\tInterval: Stepwise 0.033s - 0.033s with step 0.000s (30.000-30.000 fps)\n\n"
            "\tIndex       : 1\n\tType        : Video Capture\n\tPixel Format: 'YUYV'\n"
            "\tName        : YUYV 4:2:2\n\t\tSize: Discrete 640x480\n"
            "\t\t\tInterval: Discrete 0.033s (30.000 fps)\n"
            "\t\t\tInterval: Discrete 0.133s (7.500 fps)\n\n")
    result = parse_v4l2_ctl(text)
    assert result.modes == (Mode("MJPG", 1280, 720, 30.0), Mode("YUYV", 640, 480, 30.0),
                            Mode("YUYV", 640, 480, 7.5))
    assert result.fps_options() == [30, 8]  # 7.5 rounds half up


def test_stepwise_and_continuous_sizes_become_standard_sizes() -> None:
    assert sizes_in_range(32, 32, 2592, 1944, 2, 2) == [
        (320, 240), (640, 480), (800, 600), (1024, 768), (1280, 720), (1280, 960), (1920, 1080),
        (2560, 1440)]
    # The step counts from the minimum: 16 + 16k never reaches 1080 in height.
    assert (1920, 1080) not in sizes_in_range(16, 16, 1920, 1080, 16, 16)
    assert (1280, 720) in sizes_in_range(16, 16, 1920, 1080, 16, 16)
    assert sizes_in_range(640, 480, 640, 480) == [(640, 480)]
    text = ("ioctl: VIDIOC_ENUM_FMT\n\tType: Video Capture\n\n\t[0]: 'YUYV' (YUYV 4:2:2)\n"
            "\t\tSize: Stepwise 320x240 - 1280x720 with step 16/8\n"
            "\t\t\tInterval: Continuous 0.033s - 1.000s (1.000-30.000 fps)\n"
            "\t[1]: 'GREY' (8-bit Greyscale)\n\t\tSize: Continuous 640x480 - 640x480\n"
            "\t\t\tInterval: Stepwise 0.040s - 1.000s with step 0.040s (1.000-25.000 fps)\n")
    result = parse_v4l2_ctl(text)
    assert result.resolutions() == ["1280x720", "800x600", "640x480", "320x240"]
    assert [m for m in result.modes if m.fourcc == "GREY"] == [
        Mode("GREY", 640, 480, float(rate)) for rate in (25, 24, 20, 15, 10, 5)]
    assert result.fps_options() == [30, 25, 24, 20, 15, 10, 5]


def test_stepwise_sizes_without_intervals_give_no_mode() -> None:
    # v4l2-ctl enumerates intervals for discrete sizes only, so a stepwise size is
    # printed bare (as on the Raspberry Pi camera); no fps means no mode.
    text = ("ioctl: VIDIOC_ENUM_FMT\n\tType: Video Capture\n\n\t[0]: 'YU12' (Planar YUV 4:2:0)\n"
            "\t\tSize: Stepwise 32x32 - 2592x1944 with step 2/2\n")
    assert parse_v4l2_ctl(text).modes == ()


def test_rates_in_range() -> None:
    assert rates_in_range(1.0, 30.0) == [30.0, 25.0, 24.0, 20.0, 15.0, 10.0, 5.0]
    assert rates_in_range(29.97, 30.0) == [30.0]
    assert rates_in_range(59.999, 60.0) == [60.0]  # within rounding of the printed rate
    assert rates_in_range(31.0, 45.0) == []


def test_older_interval_without_fps_uses_the_seconds() -> None:
    text = ("ioctl: VIDIOC_ENUM_FMT\n\tType: Video Capture\n\n\t[0]: 'MJPG' (Motion-JPEG)\n"
            "\t\tSize: Discrete 640x480\n\t\t\tInterval: Stepwise 0.050s - 0.100s with step 0.010s\n")
    assert [m.fps for m in parse_v4l2_ctl(text).modes] == [20.0, 15.0, 10.0]


def test_garbage_and_empty_output() -> None:
    for text in ("", "not v4l2-ctl output\nat all\n", "Cannot open device /dev/video0, exiting.\n"):
        result = parse_v4l2_ctl(text)
        assert result.modes == () and result.driver == "" and not result.is_capture_node()


# -- §1.3 rule 2 on capability bits ---------------------------------------------------


def bits_result(caps: int, device_caps: int | None) -> ProbeResult:
    return ProbeResult("d", "c", "b", "1.0.0", capability_names(caps),
                       capability_names(device_caps or 0), caps, device_caps, ())


@pytest.mark.parametrize("caps, device_caps, expected", [
    (0x84A00001, 0x04200001, True),   # UVC capture node
    (0x84A00001, 0x04A00000, False),  # UVC metadata node: capabilities alone is never enough
    (0x84201000, 0x04201000, True),   # capture multi-planar (e.g. a CSI receiver)
    (0x84208000, 0x04208000, False),  # memory-to-memory codec node
    (0x84204000, 0x04204000, False),  # m2m multi-planar (Raspberry Pi ISP/codec)
    (0x85200002, 0x05200002, False),  # output only (loopback)
    (0x04200001, None, True),         # old driver without device_caps: capabilities is the node
    (0x84200001, None, False),        # claims device_caps but none reported: unknown
    (0, None, False),
])
def test_is_capture_node(caps: int, device_caps: int | None, expected: bool) -> None:
    assert bits_result(caps, device_caps).is_capture_node() is expected


def test_capability_names_match_v4l2_ctl() -> None:
    assert capability_names(0x84A00001) == UVC_CAPS
    assert capability_names(0x04A00000) == ("Metadata Capture", "Streaming", "Extended Pix Format")
    assert capability_names(0x85200002) == ("Video Output", "Read/Write", "Streaming",
                                            "Extended Pix Format", "Device Capabilities")


# -- API views on a hand-made mode list ---------------------------------------------


def test_views_follow_the_api_examples() -> None:
    # api.md §4.5: formats ["YUYV","MJPEG"], resolutions largest first, fps highest first.
    modes = tuple(Mode(f, w, h, r) for f, (w, h), r in [
        ("YUYV", (1920, 1080), 5.0), ("YUYV", (640, 480), 30.0), ("YUYV", (640, 480), 15.0),
        ("MJPG", (1920, 1080), 30.0), ("MJPG", (1280, 720), 20.0), ("MJPG", (1280, 720), 10.0)])
    result = ProbeResult("uvcvideo", "c", "b", "6.8.0", (), (), 0, None, modes)
    assert result.formats() == ["YUYV", "MJPEG"]
    assert result.resolutions() == ["1920x1080", "1280x720", "640x480"]
    assert result.fps_options() == [30, 20, 15, 10, 5]
    assert result.metrics_formats()[1] == {"pixel_format": "YUYV", "width": 640, "height": 480,
                                           "frame_rates": ["30.000", "15.000"]}
    assert result.metrics_capabilities()["driver_name"] == "uvcvideo"


def test_equal_areas_put_the_wider_first() -> None:
    modes = (Mode("YUYV", 480, 640, 30.0), Mode("YUYV", 640, 480, 30.0))
    assert ProbeResult("", "", "", "", (), (), 0, None, modes).resolutions() == ["640x480", "480x640"]


def test_round_half_up() -> None:
    assert [round_half_up(x) for x in (7.5, 24.5, 29.97, 0.4, 14.999, 60.0)] == [8, 25, 30, 0, 15, 60]
    assert api_pixel_format("MJPG") == "MJPEG" and api_pixel_format("NV12") == "NV12"


# -- streaming mode (§1.6) ----------------------------------------------------------


def test_spec_worked_example() -> None:
    # media.md §1.6: MJPG 1920x1080@30 and 1280x720@30, YUYV 1280x720@10 and 640x480@30;
    # with the defaults it streams MJPG 1280x720@30.
    modes = [Mode("MJPG", 1920, 1080, 30.0), Mode("MJPG", 1280, 720, 30.0),
             Mode("YUYV", 1280, 720, 10.0), Mode("YUYV", 640, 480, 30.0)]
    assert choose_mode(modes, preference=DEFAULT_FORMAT_PREFERENCE, target=(1280, 720),
                       target_fps=30) == Mode("MJPG", 1280, 720, 30.0)


def test_fps_above_target_is_dropped_when_anything_else_fits() -> None:
    modes = [Mode("MJPG", 1280, 720, 60.0), Mode("MJPG", 640, 480, 30.0)]
    assert choose_mode(modes, preference=["MJPG"], target=(1280, 720), target_fps=30) == \
        Mode("MJPG", 640, 480, 30.0)
    # 30.5 is still "30": 30.4 fps passes the + 0.5 tolerance.
    assert choose_mode([Mode("MJPG", 1280, 720, 30.4)], preference=["MJPG"], target=(1280, 720),
                       target_fps=30) == Mode("MJPG", 1280, 720, 30.4)


def test_nothing_fits_keeps_the_smallest_area() -> None:
    modes = [Mode("MJPG", 3840, 2160, 30.0), Mode("MJPG", 1920, 1080, 60.0),
             Mode("MJPG", 1920, 1080, 30.0)]
    # Both 1080p modes give min(fps, 30) == 30: the tie the §1.6 key leaves open goes to the
    # rate nearer the target, not to the one listed first.
    assert choose_mode(modes, preference=["MJPG"], target=(1280, 720), target_fps=30) == \
        Mode("MJPG", 1920, 1080, 30.0)
    assert choose_mode(modes[:2], preference=["MJPG"], target=(1280, 720), target_fps=30) == \
        Mode("MJPG", 1920, 1080, 60.0)


def test_preference_breaks_ties() -> None:
    modes = [Mode("YUYV", 1280, 720, 30.0), Mode("MJPG", 1280, 720, 30.0)]
    assert choose_mode(modes, preference=DEFAULT_FORMAT_PREFERENCE, target=(1280, 720),
                       target_fps=30).fourcc == "MJPG"  # type: ignore[union-attr]
    assert choose_mode(modes, preference=["YUYV", "MJPG"], target=(1280, 720),
                       target_fps=30).fourcc == "YUYV"  # type: ignore[union-attr]


def test_unusable_and_unpreferred_formats_are_never_chosen() -> None:
    modes = [Mode("RGB3", 1280, 720, 30.0), Mode("Y16", 1280, 720, 30.0)]
    assert choose_mode(modes, preference=["RGB3", "Y16"], target=(1280, 720), target_fps=30) is None
    assert choose_mode([Mode("H264", 640, 480, 30.0)], preference=["MJPG"], target=(1280, 720),
                       target_fps=30) is None


def test_override_that_matches_wins() -> None:
    result = parse("elp-4k-usb-camera.txt")
    chosen = choose_mode(result.modes, preference=DEFAULT_FORMAT_PREFERENCE, target=(1280, 720),
                         target_fps=30, override=("YUYV", 1920, 1080, 3))
    assert chosen == Mode("YUYV", 1920, 1080, 3.0)
    # The API's "MJPEG" name is accepted for the MJPG FourCC.
    assert match_override(result.modes, ("MJPEG", 3840, 2160, 25.0)) == Mode("MJPG", 3840, 2160, 25.0)


def test_override_that_does_not_match_is_ignored() -> None:
    result = parse("elp-4k-usb-camera.txt")
    assert match_override(result.modes, ("YUYV", 3840, 2160, 30)) is None
    assert choose_mode(result.modes, preference=DEFAULT_FORMAT_PREFERENCE, target=(1280, 720),
                       target_fps=30, override=("YUYV", 3840, 2160, 30)) == Mode("MJPG", 1280, 720, 30.0)
