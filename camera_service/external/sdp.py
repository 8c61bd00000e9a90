"""What an RTSP DESCRIBE answer reveals about a stream (media.md §7.2 step 4).

Pure functions over the SDP text: the video codec from ``a=rtpmap``, the resolution from
``a=framesize`` / ``a=x-dimensions`` and, when neither is present, from the H.264 sequence
parameter set the SDP carries in ``sprop-parameter-sets`` (most encoders, FFmpeg's RTSP
muxer among them, send no explicit size attribute, so the SPS is the only place the size
is stated), and KLV metadata from an ``m=application`` section.

Nothing here trusts the input: a malformed SDP or SPS yields fewer capabilities, never an
exception.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

__all__ = ["SdpInfo", "h264_sps_resolution", "parse_sdp"]

# RTP static payload types (RFC 3551) that are video codecs.
_STATIC_VIDEO = {26: "jpeg", 31: "h261", 32: "mpv", 34: "h263"}
_RTPMAP = re.compile(r"^a=rtpmap:(\d+)\s+([^/\s]+)(?:/(\d+))?", re.IGNORECASE)
_FRAMESIZE = re.compile(r"^a=framesize:(\d+)\s+(\d+)-(\d+)\s*$", re.IGNORECASE)
_X_DIMENSIONS = re.compile(r"^a=x-dimensions:\s*(\d+)\s*,\s*(\d+)\s*$", re.IGNORECASE)
_FMTP = re.compile(r"^a=fmtp:(\d+)\s+(.*)$", re.IGNORECASE)
# Sanity bounds: anything outside is a parse error, not a real picture size.
_MAX_DIMENSION = 16384


@dataclass
class SdpInfo:
    has_video: bool = False
    codec: str | None = None
    width: int | None = None
    height: int | None = None
    klv: bool = False

    @property
    def resolution(self) -> str | None:
        if self.width and self.height:
            return f"{self.width}x{self.height}"
        return None


def _sections(text: str) -> tuple[list[str], list[list[str]]]:
    """Session-level lines and one list of lines per ``m=`` section."""
    session: list[str] = []
    media: list[list[str]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("m="):
            media.append([line])
        elif media:
            media[-1].append(line)
        else:
            session.append(line)
    return session, media


def _size(value_w: str, value_h: str) -> tuple[int, int] | None:
    width, height = int(value_w), int(value_h)
    if 0 < width <= _MAX_DIMENSION and 0 < height <= _MAX_DIMENSION:
        return width, height
    return None


def parse_sdp(text: str) -> SdpInfo:
    info = SdpInfo()
    session, media = _sections(text)
    video = next((s for s in media if s[0].lower().startswith("m=video")), None)
    for section in media:
        if section[0].lower().startswith("m=application"):
            body = "\n".join(section).lower()
            if "smpte336m" in body or "klv" in body:
                info.klv = True
    if video is None:
        return info
    info.has_video = True
    fields = video[0].split()
    payload_types = [int(f) for f in fields[3:] if f.isdigit()]
    first_pt = payload_types[0] if payload_types else None
    rtpmaps: dict[int, str] = {}
    fmtps: dict[int, str] = {}
    size: tuple[int, int] | None = None
    for line in video:
        if match := _RTPMAP.match(line):
            rtpmaps.setdefault(int(match.group(1)), match.group(2).lower())
        elif match := _FMTP.match(line):
            fmtps.setdefault(int(match.group(1)), match.group(2))
        elif (match := _FRAMESIZE.match(line)) and size is None:
            size = _size(match.group(2), match.group(3))
        elif (match := _X_DIMENSIONS.match(line)) and size is None:
            size = _size(match.group(1), match.group(2))
    if size is None:
        for line in session:
            if match := _X_DIMENSIONS.match(line):
                size = _size(match.group(1), match.group(2))
                break
    if first_pt is not None:
        info.codec = rtpmaps.get(first_pt) or _STATIC_VIDEO.get(first_pt)
    if size is None and info.codec == "h264" and first_pt in fmtps:
        size = _sps_from_fmtp(fmtps[first_pt])
    if size is not None:
        info.width, info.height = size
    return info


def _sps_from_fmtp(fmtp: str) -> tuple[int, int] | None:
    for parameter in fmtp.split(";"):
        key, _, value = parameter.strip().partition("=")
        if key.strip().lower() != "sprop-parameter-sets":
            continue
        for encoded in value.split(","):
            try:
                nal = base64.b64decode(encoded.strip() + "=" * (-len(encoded.strip()) % 4),
                                       validate=True)
            except (binascii.Error, ValueError):
                continue
            if nal and nal[0] & 0x1F == 7:
                return h264_sps_resolution(nal)
    return None


class _Bits:
    """An RBSP bit reader with Exp-Golomb codes (ITU-T H.264 §7.2, §9.1)."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def u(self, count: int) -> int:
        value = 0
        for _ in range(count):
            byte = self._pos >> 3
            if byte >= len(self._data):
                raise ValueError("SPS ends early")
            value = (value << 1) | ((self._data[byte] >> (7 - (self._pos & 7))) & 1)
            self._pos += 1
        return value

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("Exp-Golomb code too long")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        code = self.ue()
        return (code + 1) // 2 if code & 1 else -(code // 2)


def _unescape(nal: bytes) -> bytes:
    """Drop emulation-prevention bytes (``00 00 03`` → ``00 00``)."""
    out = bytearray()
    zeros = 0
    for byte in nal:
        if zeros >= 2 and byte == 3:
            zeros = 0
            continue
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


_HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})


def _skip_scaling_list(bits: _Bits, size: int) -> None:
    last, next_scale = 8, 8
    for _ in range(size):
        if next_scale != 0:
            next_scale = (last + bits.se() + 256) % 256
        last = next_scale if next_scale != 0 else last


def h264_sps_resolution(nal: bytes) -> tuple[int, int] | None:
    """Width and height (after cropping) from an H.264 SPS NAL unit, or None."""
    try:
        rbsp = _unescape(nal)
        if len(rbsp) < 5 or rbsp[0] & 0x1F != 7:
            return None
        profile_idc = rbsp[1]
        bits = _Bits(rbsp[4:])
        bits.ue()  # seq_parameter_set_id
        chroma_format_idc = 1
        separate_colour_plane = 0
        if profile_idc in _HIGH_PROFILES:
            chroma_format_idc = bits.ue()
            if chroma_format_idc == 3:
                separate_colour_plane = bits.u(1)
            bits.ue()  # bit_depth_luma_minus8
            bits.ue()  # bit_depth_chroma_minus8
            bits.u(1)  # qpprime_y_zero_transform_bypass_flag
            if bits.u(1):  # seq_scaling_matrix_present_flag
                for index in range(8 if chroma_format_idc != 3 else 12):
                    if bits.u(1):
                        _skip_scaling_list(bits, 16 if index < 6 else 64)
        bits.ue()  # log2_max_frame_num_minus4
        poc_type = bits.ue()
        if poc_type == 0:
            bits.ue()
        elif poc_type == 1:
            bits.u(1)
            bits.se()
            bits.se()
            for _ in range(bits.ue()):
                bits.se()
        bits.ue()  # max_num_ref_frames
        bits.u(1)  # gaps_in_frame_num_value_allowed_flag
        width_mbs = bits.ue() + 1
        height_units = bits.ue() + 1
        frame_mbs_only = bits.u(1)
        if not frame_mbs_only:
            bits.u(1)  # mb_adaptive_frame_field_flag
        bits.u(1)  # direct_8x8_inference_flag
        width = width_mbs * 16
        height = (2 - frame_mbs_only) * height_units * 16
        if bits.u(1):  # frame_cropping_flag
            left, right, top, bottom = bits.ue(), bits.ue(), bits.ue(), bits.ue()
            chroma_array_type = 0 if separate_colour_plane else chroma_format_idc
            if chroma_array_type == 0:
                unit_x, unit_y = 1, 2 - frame_mbs_only
            else:
                sub_width = 2 if chroma_format_idc in (1, 2) else 1
                sub_height = 2 if chroma_format_idc == 1 else 1
                unit_x, unit_y = sub_width, sub_height * (2 - frame_mbs_only)
            width -= (left + right) * unit_x
            height -= (top + bottom) * unit_y
    except ValueError:
        return None
    if 0 < width <= _MAX_DIMENSION and 0 < height <= _MAX_DIMENSION:
        return width, height
    return None
