# There is deliberately no __init__.py in twisted/plugins: Twisted merges this
# directory with its own plugin package (twisted/docs/core/howto/tap.rst).
from twisted.application.service import ServiceMaker

cameraService = ServiceMaker(
    "camera-service",
    "camera_service.tap",
    "USB camera node: discovery, MediaMTX publishing, recording, JSON-RPC API",
    "camera-service",
)
