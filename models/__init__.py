"""Models and decisions: train, calibrate, evaluate, score, reasons, limits (pure, no I/O)."""
