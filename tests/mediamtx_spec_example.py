"""media.md §2.4's example camera path (USB camera, default settings), verbatim."""

SPEC_COMMAND = (
    "/usr/bin/ffmpeg -hide_banner -loglevel error -nostdin -f v4l2 -input_format mjpeg "
    "-video_size 1280x720 -framerate 30 -i /dev/video0 -an -c:v libx264 -preset ultrafast "
    "-tune zerolatency -profile:v baseline -pix_fmt yuv420p -bf 0 -g 30 -b:v 2000k "
    "-maxrate 2000k -bufsize 4000k -f rtsp -rtsp_transport tcp "
    "rtsp://127.0.0.1:$RTSP_PORT/$MTX_PATH")

SPEC_BODY = {
    "source": "publisher",
    "runOnDemand": SPEC_COMMAND,
    "runOnDemandRestart": True,
    "runOnDemandStartTimeout": "10s",
    "runOnDemandCloseAfter": "10s",
    "record": False,
    "recordPath": "/var/lib/camera-service/recordings/%path/%path_%Y-%m-%d_%H-%M-%S",
    "recordFormat": "fmp4",
    "recordPartDuration": "1s",
    "recordSegmentDuration": "3600s",
    "recordDeleteAfter": "0s",
}
