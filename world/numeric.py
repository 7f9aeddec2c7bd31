"""Small numeric helpers the world's rooms share: the logistic function and stable ranks."""

from __future__ import annotations

import numpy as np


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function, elementwise."""
    return 1.0 / (1.0 + np.exp(-x))


def rank01(x: np.ndarray) -> np.ndarray:
    """Ranks scaled into (0, 1), ties broken by position (stable)."""
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = (np.arange(len(x)) + 0.5) / len(x)
    return ranks
