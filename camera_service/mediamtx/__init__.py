"""MediaMTX integration (media.md §2).

:mod:`camera_service.mediamtx.client` is the one module that knows MediaMTX's control-API
URLs and JSON shapes (§2.2): a treq client with a persistent connection pool, at most eight
requests in flight, typed outcomes (:class:`~camera_service.mediamtx.client.MediaMTXError`
and its subclasses) and a version-normalised view of a path's runtime state
(:class:`~camera_service.mediamtx.client.PathState`, §2.1 and §2.8).
"""
