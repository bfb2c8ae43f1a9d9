"""Random train/test splits of a dataset (the paper's 80/20 splits, repeated)."""
from __future__ import annotations

import numpy as np

__all__ = ["random_splits"]


def random_splits(n: int, n_splits: int = 10, train_fraction: float = 0.8,
                  seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n_splits`` random train/test index splits of ``range(n)`` (both parts non-empty, sorted)."""
    if n < 2:
        raise ValueError(f"need at least 2 images to split, got {n}")
    rng = np.random.default_rng(seed)
    n_train = int(round(train_fraction * n))
    n_train = min(max(n_train, 1), n - 1)
    out = []
    for _ in range(n_splits):
        perm = rng.permutation(n)
        out.append((np.sort(perm[:n_train]), np.sort(perm[n_train:])))
    return out
