"""Network layers as they come in: edge lists keyed by gene id, before the universe is known."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class EdgeList(NamedTuple):
    """Edges between genes named by id; ``src``/``dst`` index into ``genes``."""

    genes: np.ndarray  # (k,) str, unique gene ids
    src: np.ndarray  # (m,) int64
    dst: np.ndarray  # (m,) int64
    weight: np.ndarray  # (m,) float32, > 0
