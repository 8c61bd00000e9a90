"""Camera path bodies and publisher commands (media.md §0.4, §1.6, §1.10, §2.3, §2.4, §2.6)."""

from __future__ import annotations

import dataclasses
import inspect
import json
import random
from typing import Any

import pytest
import treq
from treq.testing import StubTreq

from camera_service.config import load_config
from camera_service.discovery.v4l2 import INPUT_FORMATS, Mode
from camera_service.mediamtx import paths
from camera_service.mediamtx.paths import (
    LAVFI_PATTERNS,
    PUBLISHER_OUTPUT_URL,
    camera_path_config,
    gop_frames,
    is_managed,
    path_defaults_patch,
    publisher_argv,
    record_path,
    run_on_demand,
    usb_input_args,
    virtual_input_args,
)
from camera_service.procs import MEDIAMTX_VARIABLES, SAFE_ARG, UnsafeArgument
from camera_service.testing.fake_mediamtx import FakeMediaMTX

FFMPEG = "/usr/bin/ffmpeg"

from tests.mediamtx_spec_example import SPEC_BODY, SPEC_COMMAND  # noqa: E402
VIRTUAL_COMMAND = SPEC_COMMAND.replace(
    "-f v4l2 -input_format mjpeg -video_size 1280x720 -framerate 30 -i /dev/video0",
    "-re -f lavfi -i testsrc2=size=1280x720:rate=30")


@pytest.fixture(scope="module")
def config() -> Any:
    return load_config(None, {})


DEFAULT_MODE = Mode("MJPG", 1280, 720, 30.0)


def usb_command(config: Any, node: str = "/dev/video0", mode: Mode = DEFAULT_MODE) -> str:
    argv = publisher_argv(ffmpeg=FFMPEG, encoding=config.encoding,
                          input_args=usb_input_args(node, mode), fps=round(mode.fps))
    return run_on_demand(argv)


def with_encoding(config: Any, **changes: Any) -> Any:
    return dataclasses.replace(config, encoding=dataclasses.replace(config.encoding, **changes))


# --------------------------------------------------------------------------- §2.4 exactly


def test_usb_camera_command_and_body_match_the_spec_example(config: Any) -> None:
    command = usb_command(config)
    assert command == SPEC_COMMAND
    body = camera_path_config(run_on_demand=command, config=config, record=False, playback=False)
    assert body == SPEC_BODY
    assert list(body) == list(SPEC_BODY)  # exactly these fields, nothing inherited
    assert "sourceOnDemand" not in body


def test_virtual_camera_command_matches_the_spec(config: Any) -> None:
    argv = publisher_argv(ffmpeg=FFMPEG, encoding=config.encoding,
                          input_args=virtual_input_args("testsrc2", 1280, 720, 30), fps=30)
    assert run_on_demand(argv) == VIRTUAL_COMMAND
    body = camera_path_config(run_on_demand=run_on_demand(argv), config=config, record=False,
                              playback=False)
    assert body == {**SPEC_BODY, "runOnDemand": VIRTUAL_COMMAND}


def test_virtual_input_uses_every_pattern_and_requires_re() -> None:
    for pattern in sorted(LAVFI_PATTERNS):
        args = virtual_input_args(pattern, 640, 480, 15)
        assert args == ["-re", "-f", "lavfi", "-i", f"{pattern}=size=640x480:rate=15"]
    for bad in [(15, 480, 15), (640, 14, 15), (3842, 480, 15), (640, 2162, 15), (641, 480, 15),
                (640, 480, 0), (640, 480, 61), (640, 480, 30.0), (640, 480, True), ("640", 480, 30)]:
        with pytest.raises(ValueError):
            virtual_input_args("testsrc2", *bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(("fps", "gop_seconds", "expected"), [
    (30, 1.0, 30), (30, 2.0, 60), (25, 1.0, 25), (25, 0.5, 13), (15, 0.5, 8), (10, 0.25, 3),
    (5, 0.25, 1), (1, 0.25, 1), (60, 10.0, 600), (24, 1.5, 36), (30, 0.25, 8)])
def test_gop_is_fps_times_seconds_rounded_at_least_one(config: Any, fps: int, gop_seconds: float,
                                                       expected: int) -> None:
    assert gop_frames(fps, gop_seconds) == expected
    argv = publisher_argv(ffmpeg=FFMPEG, encoding=with_encoding(config, gop_seconds=gop_seconds).encoding,
                          input_args=virtual_input_args("testsrc2", 640, 480, fps), fps=fps)
    assert argv[argv.index("-g") + 1] == str(expected)


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), "1", None, True])
def test_gop_seconds_must_be_a_positive_number(bad: Any) -> None:
    with pytest.raises(ValueError):
        gop_frames(30, bad)


def test_option_order_and_pixel_format(config: Any) -> None:
    for fourcc, ffmpeg_name in INPUT_FORMATS.items():
        argv = publisher_argv(ffmpeg=FFMPEG, encoding=config.encoding,
                              input_args=usb_input_args("/dev/video7", Mode(fourcc, 640, 480, 29.97)),
                              fps=30)
        i = argv.index("-i")
        # input options before -i
        for option in ("-f", "-input_format", "-video_size", "-framerate"):
            assert argv.index(option) < i
        assert argv[argv.index("-input_format") + 1] == ffmpeg_name
        assert argv[argv.index("-framerate") + 1] == "30"
        assert argv[i + 1] == "/dev/video7"
        # output options after the input, before the output URL
        out = argv.index(PUBLISHER_OUTPUT_URL)
        assert out == len(argv) - 1
        for option in ("-an", "-c:v", "-preset", "-tune", "-profile:v", "-pix_fmt", "-bf", "-g",
                       "-b:v", "-maxrate", "-bufsize", "-rtsp_transport"):
            assert i < argv.index(option) < out
        assert argv.count("-pix_fmt") == 1
        assert argv[argv.index("-pix_fmt") + 1] == "yuv420p"
        assert fourcc not in argv  # FFmpeg names only, never a FourCC
        assert not {"yuyv", "mjpg", "yu12", "grey"} & {token.lower() for token in argv}
        assert "-level" not in argv


@pytest.mark.parametrize(("preset", "profile", "bitrate"),
                         [("ultrafast", "baseline", 2000), ("veryfast", "main", 500),
                          ("medium", "high", 50000)])
def test_preset_profile_bitrate_come_from_config(config: Any, preset: str, profile: str,
                                                 bitrate: int) -> None:
    encoding = dataclasses.replace(config.encoding, preset=preset, profile=profile,
                                   bitrate_kbps=bitrate)
    argv = publisher_argv(ffmpeg=FFMPEG, encoding=encoding,
                          input_args=virtual_input_args("smptebars", 640, 480, 30), fps=30)
    assert argv[argv.index("-preset") + 1] == preset
    assert argv[argv.index("-profile:v") + 1] == profile
    assert argv[argv.index("-b:v") + 1] == f"{bitrate}k"
    assert argv[argv.index("-maxrate") + 1] == f"{bitrate}k"
    assert argv[argv.index("-bufsize") + 1] == f"{2 * bitrate}k"
    assert argv[argv.index("-tune") + 1] == "zerolatency"
    assert argv[argv.index("-bf") + 1] == "0"


@pytest.mark.parametrize("changes", [{"preset": "placebo"}, {"profile": "high422"},
                                     {"bitrate_kbps": 0}, {"bitrate_kbps": "2000"},
                                     {"gop_seconds": 0}])
def test_bad_encoding_values_are_refused(config: Any, changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        publisher_argv(ffmpeg=FFMPEG, encoding=with_encoding(config, **changes).encoding,
                       input_args=virtual_input_args("testsrc2", 640, 480, 30), fps=30)


def test_ffmpeg_must_be_absolute_and_safe(config: Any) -> None:
    args = virtual_input_args("testsrc2", 640, 480, 30)
    for ffmpeg in ["ffmpeg", "", "/usr/bin/ff mpeg", "/usr/bin/ffmpeg;id", "/x/$(id)"]:
        with pytest.raises(UnsafeArgument):
            publisher_argv(ffmpeg=ffmpeg, encoding=config.encoding, input_args=args, fps=30)


def test_record_path_and_durations(config: Any) -> None:
    assert record_path("/srv/rec", False) == "/srv/rec/%path/%path_%Y-%m-%d_%H-%M-%S"
    assert record_path("/srv/rec/", True) == "/srv/rec/%path/%path_%Y-%m-%d_%H-%M-%S-%f"
    for bad in ["recordings", "./rec", "", "/srv/re c", "/srv/%path", "/srv/rec\n"]:
        with pytest.raises(ValueError):
            record_path(bad, False)
    cfg = dataclasses.replace(
        config,
        recording=dataclasses.replace(config.recording, format="mpegts", part_duration=2.0,
                                      segment_duration=600.0),
        mediamtx=dataclasses.replace(config.mediamtx, run_on_demand_start_timeout=20,
                                     run_on_demand_close_after=5, recordings_path="/data/rec"))
    body = camera_path_config(run_on_demand=usb_command(cfg), config=cfg, record=True, playback=True)
    assert body["record"] is True
    assert body["recordFormat"] == "mpegts"
    assert body["recordPartDuration"] == "2s"
    assert body["recordSegmentDuration"] == "600s"
    assert body["runOnDemandStartTimeout"] == "20s"
    assert body["runOnDemandCloseAfter"] == "5s"
    assert body["recordPath"] == "/data/rec/%path/%path_%Y-%m-%d_%H-%M-%S-%f"
    assert body["recordDeleteAfter"] == "0s"
    assert set(body) == set(SPEC_BODY)


def test_camera_path_config_refuses_an_unsafe_run_on_demand(config: Any) -> None:
    for bad in ["", SPEC_COMMAND + " ; id", SPEC_COMMAND.replace(" ", "  ", 1),
                SPEC_COMMAND + " $(id)", "'quoted' x", SPEC_COMMAND + "\nid"]:
        with pytest.raises(UnsafeArgument):
            camera_path_config(run_on_demand=bad, config=config, record=False, playback=False)


def test_path_defaults_patch(config: Any) -> None:
    assert path_defaults_patch(config, False) == {
        "recordPath": "/var/lib/camera-service/recordings/%path/%path_%Y-%m-%d_%H-%M-%S",
        "recordFormat": "fmp4", "recordDeleteAfter": "0s"}
    assert path_defaults_patch(config, True)["recordPath"].endswith("_%H-%M-%S-%f")


def test_is_managed() -> None:
    for name in ["camera0", "camera100", "camera0123", "ext_0123456789", "ext_abcdefabcd"]:
        assert is_managed(name), name
    bad_names: list[Any] = ["all_others", "all", "camera", "Camera0", "camera0\n", "camera0 ", "cam0",
                 "ext_0123456789a", "ext_ABCDEFABCD", "ext_012345678", "ext_0123456789\n",
                 "~^camera0$", "", None, 0, "camera-1", "camera١"]
    for bad_name in bad_names:
        assert not is_managed(bad_name), bad_name


# --------------------------------------------------------------------------- OpenAPI stand-in


def _send(fake: FakeMediaMTX, method: str, path: str, body: Any) -> tuple[int, Any]:
    stub: Any = StubTreq(fake)
    result: list[Any] = []
    d = stub.request(method, "http://mediamtx.invalid:9997" + path, data=json.dumps(body).encode(),
                     headers={"Content-Type": ["application/json"]})
    d.addCallback(lambda response: treq.content(response).addCallback(
        lambda content: result.append((response.code, content))))
    d.addErrback(result.append)
    stub.flush()
    assert len(result) == 1, result
    code, content = result[0]
    return code, json.loads(content) if content else None


def test_body_is_accepted_by_the_openapi_validating_fake(config: Any) -> None:
    fake = FakeMediaMTX()
    code, _ = _send(fake, "POST", "/v3/config/paths/replace/camera0", SPEC_BODY)
    assert code == 200
    assert fake.violations == []
    assert fake.path_config("camera0") is not None
    virtual = {**SPEC_BODY, "runOnDemand": VIRTUAL_COMMAND}
    code, _ = _send(fake, "POST", "/v3/config/paths/replace/camera100", virtual)
    assert code == 200
    code, _ = _send(fake, "PATCH", "/v3/config/pathdefaults/patch", path_defaults_patch(config, False))
    assert code == 200
    assert fake.violations == []
    assert fake.fake_bugs == []


def test_playback_record_path_needs_percent_f(config: Any) -> None:
    fake = FakeMediaMTX(global_conf={"playback": True})
    with_f = camera_path_config(run_on_demand=SPEC_COMMAND, config=config, record=False, playback=True)
    code, _ = _send(fake, "POST", "/v3/config/paths/replace/camera0", with_f)
    assert code == 200 and fake.violations == []
    code, _ = _send(fake, "PATCH", "/v3/config/pathdefaults/patch", path_defaults_patch(config, True))
    assert code == 200 and fake.violations == []

    without = camera_path_config(run_on_demand=SPEC_COMMAND, config=config, record=False,
                                 playback=False)
    code, answer = _send(fake, "POST", "/v3/config/paths/replace/camera1", without)
    assert code == 400
    assert "%f" in answer["error"]
    assert len(fake.violations) == 1


def test_source_on_demand_would_be_rejected(config: Any) -> None:
    """Why the body never carries sourceOnDemand: the fake (like MediaMTX) refuses it."""
    fake = FakeMediaMTX()
    code, _ = _send(fake, "POST", "/v3/config/paths/replace/camera0",
                    {**SPEC_BODY, "sourceOnDemand": True})
    assert code == 400 and len(fake.violations) == 1


# --------------------------------------------------------------------------- hostile input

HOSTILE = [
    "/dev/video0; rm -rf /", "/dev/video0 -f", "$(id)", "`x`", "/dev/../etc/passwd",
    "/dev/video0\n", "/dev/video0\n-i", "\n", "/dev/vidéo0", "/dev/video٣", "/dev/video0000",
    "/dev/video" + "9" * 400, "/dev/video-1", "/dev/video0 ", " /dev/video0", "/dev/video0\x00",
    "/dev/video0|cat", "/dev/video0&&id", "'/dev/video0'", '"x"', "\\x", "a b", "$RTSP_PORT",
    "$MTX_PATH", PUBLISHER_OUTPUT_URL, "-i", "${IFS}", "/dev/video0>x", "*", "~", "#", "!",
    "/dev/sda", "/dev/video", "video0", "",
    "Kitchen cam", "Living room; rm", "My 📷", "Caméra salon",
]
# Pieces that must never appear in a runOnDemand string when they came from a hostile value.
DANGEROUS = [";", "`", "$(", "|", "&", "\n", "\x00", "..", "'", '"', "\\", ">", "<", "*", "~",
             "#", "!", "{", "}", "\t"]
ALPHABET = (" ;|&`$(){}<>'\"\\\n\t\x00*?~#!./-=:,%+_" + "abcdefghijklmnopqrstuvwxyzAZ09"
            + "éü٣📷\u202e\u00a0")


def _random_string(rng: random.Random) -> str:
    choice = rng.random()
    if choice < 0.3:
        return rng.choice(HOSTILE)
    if choice < 0.5:
        return rng.choice(HOSTILE) + "".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 6)))
    if choice < 0.6:
        return "/dev/video" + str(rng.randint(0, 10**rng.randint(1, 40)))
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 24)))


def _random_int(rng: random.Random) -> Any:
    return rng.choice([0, -1, 1, 2, 30, 1280, 720, 10**40, -10**40, 2**63, 3.5, float("nan"),
                       float("inf"), True, False, None, "30", "30; id", rng.randint(-10**6, 10**6)])


def _assert_safe_argv(argv: list[str]) -> None:
    for token in argv:
        if token == PUBLISHER_OUTPUT_URL:
            continue
        assert SAFE_ARG.fullmatch(token), repr(token)
        assert token not in MEDIAMTX_VARIABLES  # only inside the fixed output URL
    assert argv.count(PUBLISHER_OUTPUT_URL) <= 1


def _assert_no_hostile_piece(command: str, hostile: str) -> None:
    # "$" appears only in the fixed output URL, which is the last token.
    assert command.count("$") == 2 and command.endswith(" " + PUBLISHER_OUTPUT_URL)
    assert "  " not in command
    for piece in DANGEROUS:
        if piece in hostile:
            assert piece not in command, (piece, hostile)


def test_property_hostile_inputs_never_reach_a_command_line(config: Any) -> None:
    rng = random.Random(20240515)
    accepted = refused = 0

    def maybe(good: Any, bad: Any) -> Any:
        return good if rng.random() < 0.6 else bad

    for _ in range(4000):
        kind = rng.randrange(5)
        hostile = _random_string(rng)
        try:
            if kind == 0:  # device node
                node = maybe(f"/dev/video{rng.randint(0, 999)}", hostile)
                input_args = usb_input_args(node, Mode("MJPG", 1280, 720, 30.0))
            elif kind == 1:  # FourCC outside the table
                fourcc = maybe(rng.choice(sorted(INPUT_FORMATS)),
                               rng.choice([hostile, "yuyv", "mjpg", "MJPEG", "RGB3", "YUYV ", " MJPG"]))
                input_args = usb_input_args("/dev/video0", Mode(fourcc, 640, 480, 30.0))
            elif kind == 2:  # pattern outside the enum, hostile numbers
                pattern = maybe(rng.choice(sorted(LAVFI_PATTERNS)),
                                rng.choice([hostile, "testsrc2,drawtext", "color=c=red"]))
                input_args = virtual_input_args(pattern, maybe(1280, _random_int(rng)),
                                                maybe(720, _random_int(rng)), maybe(30, _random_int(rng)))
            elif kind == 3:  # hostile numbers in a USB mode
                input_args = usb_input_args("/dev/video0", Mode(
                    "YUYV", maybe(640, _random_int(rng)), maybe(480, _random_int(rng)),
                    maybe(29.97, _random_int(rng))))
            else:  # hostile input_args handed straight to the publisher builder
                input_args = maybe(
                    ["-re", "-f", "lavfi", "-i", "testsrc2=size=640x480:rate=30"],
                    [rng.choice(["-i", "-f", hostile]), hostile, "-i", "/dev/video0"])
            fps = maybe(rng.choice([1, 15, 30, 60]), _random_int(rng))
            argv = publisher_argv(ffmpeg=FFMPEG, encoding=config.encoding, input_args=input_args,
                                  fps=fps)
            command = run_on_demand(argv)
            body = camera_path_config(run_on_demand=command, config=config, record=False,
                                      playback=False)
        except (ValueError, UnsafeArgument):  # UnsafeArgument is a ValueError too
            refused += 1
            continue
        accepted += 1
        _assert_safe_argv(argv)
        _assert_no_hostile_piece(command, hostile)
        assert body["runOnDemand"] == command
        if hostile not in {"-i", "-f"} and len(hostile) > 2:
            assert hostile not in argv[:-1] or SAFE_ARG.fullmatch(hostile)
    assert refused > 1000 and accepted > 500, (accepted, refused)


def test_hostile_exact_cases_are_refused(config: Any) -> None:
    for node in HOSTILE:
        with pytest.raises(ValueError):
            usb_input_args(node, Mode("MJPG", 1280, 720, 30.0))
    for fourcc in ["yuyv", "mjpg", "MJPEG", "RGB3", "", "MJPG;id", "MJPG\n"]:
        with pytest.raises(ValueError):
            usb_input_args("/dev/video0", Mode(fourcc, 640, 480, 30.0))
    for pattern in ["testsrc2;id", "testsrc2,drawtext=text=x", "color", "TESTSRC2", "testsrc2\n"]:
        with pytest.raises(ValueError):
            virtual_input_args(pattern, 640, 480, 30)
    for argv in (["/usr/bin/ffmpeg", "a b"], ["/usr/bin/ffmpeg", "$RTSP_PORT/x"], "ffmpeg -i x",
                 [], ["/usr/bin/ffmpeg", "x\n"], ["/usr/bin/ffmpeg", "é"]):
        with pytest.raises(UnsafeArgument):
            run_on_demand(argv)  # type: ignore[arg-type]
    # The fixed output URL is not allowed to masquerade as an input.
    with pytest.raises(UnsafeArgument):
        publisher_argv(ffmpeg=FFMPEG, encoding=config.encoding,
                       input_args=["-i", PUBLISHER_OUTPUT_URL], fps=30)
    with pytest.raises(UnsafeArgument):
        publisher_argv(ffmpeg=FFMPEG, encoding=config.encoding, input_args=["-i", "$MTX_PATH"],
                       fps=30)
    # Even all-SAFE input_args must have one of the two §2.4 input shapes.
    for input_args in (["-i", "/dev/../etc/passwd"], ["-f", "v4l2", "-i", "/dev/video0"],
                       ["-re", "-f", "lavfi", "-i", "testsrc2=size=640x480:rate=30", "-y"],
                       ["-f", "lavfi", "-i", "testsrc2=size=640x480:rate=30"],
                       ["-re", "-f", "lavfi", "-i", "movie=/etc/passwd"],
                       usb_input_args("/dev/video0", Mode("MJPG", 640, 480, 30.0))[::-1]):
        with pytest.raises(ValueError):
            publisher_argv(ffmpeg=FFMPEG, encoding=config.encoding, input_args=input_args, fps=30)


def test_names_and_client_strings_cannot_reach_the_argv(config: Any) -> None:
    # The builders have no parameter through which a name or client string could travel.
    allowed = {
        "publisher_argv": {"ffmpeg", "encoding", "input_args", "fps"},
        "usb_input_args": {"device_node", "mode"},
        "virtual_input_args": {"pattern", "width", "height", "rate"},
        "run_on_demand": {"argv"},
        "record_path": {"recordings_root", "playback"},
        "camera_path_config": {"run_on_demand", "config", "record", "playback"},
        "path_defaults_patch": {"config", "playback"},
    }
    for name, parameters in allowed.items():
        assert set(inspect.signature(getattr(paths, name)).parameters) == parameters, name
    # A virtual camera whose configured name is hostile: only pattern/size/rate are used.
    rng = random.Random(7)
    for _ in range(500):
        name = _random_string(rng) + " Test pattern"
        camera_config: dict[str, Any] = {"id": "camera100", "name": name, "pattern": rng.choice(sorted(LAVFI_PATTERNS)),
                         "size": "1280x720", "rate": 30}
        argv = publisher_argv(ffmpeg=FFMPEG, encoding=config.encoding, fps=camera_config["rate"],
                              input_args=virtual_input_args(camera_config["pattern"], 1280, 720,
                                                            camera_config["rate"]))
        command = run_on_demand(argv)
        assert name not in command
        assert all(name not in token for token in argv)
        assert "camera100" not in command  # the path name comes from $MTX_PATH, not the argv
        _assert_safe_argv(argv)
