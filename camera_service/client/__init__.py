"""Python client library and command line for camera-service.

The library (asynchronous, on Twisted)::

    from camera_service.client import connect, RpcError

    client = await connect("ws://localhost:8002/ws", token=jwt)
    try:
        cameras = await client.call("get_camera_list")
    except RpcError as error:
        print(error.code, error.reason)
    await client.subscribe(["recording_status_update"])
    notification = await client.next_notification(timeout=30)
    await client.close()

Downloads (:func:`download_file`) stream a recording or snapshot to disk with Range
resume and a progress callback. The ``camera-service-cli`` console script
(:func:`main`) is built on both.
"""

from camera_service.client.cli import main
from camera_service.client.download import (
    Downloader,
    DownloadError,
    DownloadResult,
    HttpError,
    IncompleteDownload,
    auth_headers,
    download_file,
    file_url,
    http_base,
)
from camera_service.client.rpc import (
    DEFAULT_URL,
    CameraServiceClient,
    ClientError,
    ClientTimeout,
    CloseInfo,
    ConnectFailed,
    ConnectionLost,
    Notification,
    RpcError,
    connect,
)

__all__ = [
    "DEFAULT_URL",
    "CameraServiceClient",
    "ClientError",
    "ClientTimeout",
    "CloseInfo",
    "ConnectFailed",
    "ConnectionLost",
    "DownloadError",
    "DownloadResult",
    "Downloader",
    "HttpError",
    "IncompleteDownload",
    "Notification",
    "RpcError",
    "auth_headers",
    "connect",
    "download_file",
    "file_url",
    "http_base",
    "main",
]
