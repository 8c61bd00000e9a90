"""Test doubles and harnesses shipped with camera-service for downstream test suites.

- :mod:`camera_service.testing.umockdev`: a ctypes harness over libumockdev that plugs,
  changes and unplugs fake V4L2 cameras and emits real udev netlink events, for tests
  run under ``umockdev-wrapper``.
"""
