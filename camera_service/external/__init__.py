"""External RTSP streams: discovery scans, the registry of known streams and their MediaMTX
proxy paths (media.md §7; api.md §4.30–4.34).

- :mod:`camera_service.external.urls` URL rules, credential masking, proxy path names;
- :mod:`camera_service.external.sdp` what a DESCRIBE answer says (codec, size, KLV);
- :mod:`camera_service.external.probe` the in-process RTSP probe;
- :mod:`camera_service.external.scan` what is probed and how (bounds, timeouts);
- :mod:`camera_service.external.service` the ``ExternalStreamsService``.

Kept import-light on purpose: ``mediamtx.service`` imports ``urls`` from here.
"""
