"""Command lines of the recording side (media.md §3.5, §3.10), built only from validated values.

Nothing here comes from a client: camera ids are checked against ``camera<N>``, the
camera's input comes from the same builders as the MediaMTX publisher, and paths come
from the configuration. Every argv still goes through ``check_argv`` (media.md §0.4).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from typing import Any

from camera_service.mediamtx.paths import PRESETS, PROFILES, gop_frames
from camera_service.procs import check_argv

_CAMERA_ID = re.compile(r"camera[0-9]+")
_HOST = re.compile(r"[A-Za-z0-9.:-]{1,253}")

EXTENSIONS = {"fmp4": "mp4", "mpegts": "ts"}
FRAGMENTED_MP4 = "movflags=+frag_keyframe+empty_moov+default_base_moof"


def _camera_id(camera_id: str) -> str:
    if not isinstance(camera_id, str) or _CAMERA_ID.fullmatch(camera_id) is None:
        raise ValueError("not a camera id")
    return camera_id


def _seconds(value: Any) -> str:
    """A positive duration as FFmpeg reads it: whole numbers without a fraction."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value <= 0:
        raise ValueError("duration must be a positive number")
    return str(int(value)) if float(value).is_integer() else f"{float(value):.3f}"


def rtsp_url(host: str, port: int, camera_id: str) -> str:
    if not isinstance(host, str) or _HOST.fullmatch(host) is None:
        raise ValueError("mediamtx.host has unexpected characters")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError("invalid RTSP port")
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"rtsp://{host}:{port}/{_camera_id(camera_id)}"


def keepalive_reader_args(*, host: str, port: int, camera_id: str, transport: str) -> list[str]:
    """The §3.5 reader: reads the camera's path without decoding, so MediaMTX records."""
    if transport not in ("tcp", "udp"):
        raise ValueError("rtsp transport must be tcp or udp")
    args = ["-hide_banner", "-loglevel", "error", "-nostdin",
            # Input options: before -i, or FFmpeg applies them to the output.
            "-rtsp_transport", transport, "-timeout", "5000000",
            "-i", rtsp_url(host, port, camera_id),
            "-map", "0", "-c", "copy", "-f", "null", "-"]
    check_argv(args)
    return args


def segment_pattern(recordings_root: str, camera_id: str, container: str) -> str:
    """``<root>/<id>/<id>_%Y-%m-%d_%H-%M-%S.<ext>``: MediaMTX's naming, via -strftime."""
    if not os.path.isabs(recordings_root):
        raise ValueError("recordings root must be absolute")
    camera_id = _camera_id(camera_id)
    return os.path.join(recordings_root, camera_id,
                        f"{camera_id}_%Y-%m-%d_%H-%M-%S.{EXTENSIONS[container]}")


def direct_recorder_args(*, encoding: Any, input_args: Sequence[str], fps: int,
                         container: str, segment_duration: float, output_pattern: str,
                         remaining: float | None, frame_tap: str | None = None,
                         tap_quality: int = 6) -> list[str]:
    """The §3.10 direct recorder, optionally with the frame tap as a second output."""
    preset = getattr(encoding, "preset", None)
    profile = getattr(encoding, "profile", None)
    if preset not in PRESETS or profile not in PROFILES:
        raise ValueError("encoding preset/profile not allowed")
    bitrate = int(encoding.bitrate_kbps)
    if not 1 <= bitrate <= 1_000_000:
        raise ValueError("encoding.bitrate_kbps out of range")
    if container not in EXTENSIONS:
        raise ValueError("recording.format must be fmp4 or mpegts")
    gop = gop_frames(fps, encoding.gop_seconds)
    limit = ["-t", _seconds(remaining)] if remaining is not None else []
    args = ["-hide_banner", "-loglevel", "error", "-nostdin", "-y", *input_args,
            "-map", "0:v", "-an", "-c:v", "libx264", "-preset", preset, "-tune", "zerolatency",
            "-profile:v", profile, "-pix_fmt", "yuv420p", "-bf", "0", "-g", str(gop),
            "-b:v", f"{bitrate}k", "-maxrate", f"{bitrate}k", "-bufsize", f"{2 * bitrate}k",
            # -t is an output option: it must stand before the output it limits.
            *limit,
            "-f", "segment", "-segment_time", _seconds(segment_duration),
            "-reset_timestamps", "1", "-strftime", "1"]
    if container == "fmp4":
        # Fragmented, so a killed recorder still leaves a playable file.
        args += ["-segment_format", "mp4", "-segment_format_options", FRAGMENTED_MP4]
    else:
        args += ["-segment_format", "mpegts"]
    args.append(output_pattern)
    if frame_tap is not None:
        if not os.path.isabs(frame_tap):
            raise ValueError("frame tap path must be absolute")
        args += ["-map", "0:v", "-vf", "fps=1", "-c:v", "mjpeg", "-q:v", str(int(tap_quality)),
                 *limit, "-f", "image2", "-update", "1", "-y", frame_tap]
    check_argv(args)
    return args
