"""Multi-output ridge regression with the penalty chosen on the validation split.

The penalty is chosen by validation MSE, not PearsonΔ: PearsonΔ is blind to scale, so it
cannot tell a useful shrinkage towards the training mean from an overfit of the same
direction. One SVD of the training design gives the whole regularisation path, so trying a dozen
penalties costs one fit. Centering (of inputs and targets) uses training rows only: the
intercept is the training-mean signature, and nothing of valid or test leaks into the fit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ALPHAS = tuple(float(10.0 ** k) for k in np.arange(-3, 6.5, 0.5))


@dataclass
class Ridge:
    weight: np.ndarray  # (p, L)
    x_mean: np.ndarray  # (p,)
    y_mean: np.ndarray  # (L,) the training-mean signature
    alpha: float

    def predict(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.x_mean) @ self.weight + self.y_mean).astype(np.float32)


def fit_ridge(x: np.ndarray, y: np.ndarray, x_valid: np.ndarray | None = None,
              y_valid: np.ndarray | None = None, alphas=ALPHAS) -> Ridge:
    """Fit on (x, y); with valid rows, pick the alpha of least MSE on them, else the middle one."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    x_mean, y_mean = x.mean(axis=0), y.mean(axis=0)
    u, s, vt = np.linalg.svd(x - x_mean, full_matrices=False)
    uty = u.T @ (y - y_mean)

    def weight(alpha: float) -> np.ndarray:
        return vt.T @ ((s / (s * s + alpha))[:, None] * uty)

    if x_valid is None or len(x_valid) == 0:
        alpha = alphas[len(alphas) // 2]
    else:
        xv = np.asarray(x_valid, np.float64) - x_mean
        errors = [((xv @ weight(a) + y_mean - y_valid) ** 2).mean() for a in alphas]
        alpha = alphas[int(np.argmin(errors))]
    return Ridge(weight(alpha).astype(np.float32), x_mean.astype(np.float32), y_mean.astype(np.float32), float(alpha))
