"""Camera discovery: V4L2 capability probing, parsing and streaming-mode selection."""
