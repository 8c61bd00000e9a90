"""camera-service: a Twisted daemon that publishes USB cameras through MediaMTX.

The public surface is small: ``camera_service.tap`` (twistd wiring), the JSON-RPC
API described in ``docs/``, and the ``camera-service-admin`` command line.
"""

__version__ = "1.0.0"

# The API contract reports this exact product name (api.md §4.23).
SERVICE_NAME = "MediaMTX Camera Service"
