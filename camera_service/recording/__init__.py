"""Recording: per-camera recorders over MediaMTX or a direct FFmpeg process (media.md §3)."""
