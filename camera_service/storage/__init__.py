"""Media storage: the recordings and snapshots stores, space, permissions and retention."""
