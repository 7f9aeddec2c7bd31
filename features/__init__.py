"""Point-in-time behavioural features, pure functions over polars frames (no I/O)."""
