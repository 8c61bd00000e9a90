"""Stream URL objects (api.md §3.4): built per recipient from the host it connected to."""

from __future__ import annotations


class StreamUrls:
    def __init__(self, public_host: str, rtsp_port: int, hls_port: int, webrtc_port: int) -> None:
        self._public_host = public_host
        self._rtsp_port = rtsp_port
        self._hls_port = hls_port
        self._webrtc_port = webrtc_port

    def host_for(self, request_host: str) -> str:
        return self._public_host or request_host

    def rtsp(self, camera_id: str, request_host: str) -> str:
        return f"rtsp://{self.host_for(request_host)}:{self._rtsp_port}/{camera_id}"

    def __call__(self, camera_id: str, request_host: str) -> dict[str, str]:
        host = self.host_for(request_host)
        return {
            "rtsp": f"rtsp://{host}:{self._rtsp_port}/{camera_id}",
            "hls": f"http://{host}:{self._hls_port}/{camera_id}/index.m3u8",
            "webrtc": f"http://{host}:{self._webrtc_port}/{camera_id}",
        }


def host_from_header(host_header: str | None, local_address: str) -> str:
    """The host part of a Host header, keeping IPv6 brackets; the local address if absent."""
    if not host_header:
        return f"[{local_address}]" if ":" in local_address else local_address
    value = host_header.strip()
    if value.startswith("["):
        end = value.find("]")
        return value[: end + 1] if end != -1 else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value
