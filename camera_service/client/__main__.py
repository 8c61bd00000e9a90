"""``python -m camera_service.client``: the same as the ``camera-service-cli`` script."""

import sys

from camera_service.client.cli import main

sys.exit(main())
