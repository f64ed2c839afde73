"""Multi-output ridge regression with the penalty chosen on the validation split (or, without
one, by exact leave-one-out on the training rows).

The penalty is chosen by MSE, not PearsonΔ: PearsonΔ is blind to scale, so it
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


def loo_errors(x: np.ndarray, y: np.ndarray, alphas=ALPHAS) -> np.ndarray:
    """(len(alphas),) leave-one-out MSE of the ridge fit at each penalty (what :func:`fit_ridge`
    minimises when it has no valid rows)."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    u, s, _ = np.linalg.svd(x - x.mean(axis=0), full_matrices=False)
    yc = y - y.mean(axis=0)
    return _loo_errors(u, s, u.T @ yc, yc, alphas)


def _loo_errors(u, s, uty, yc, alphas) -> np.ndarray:
    # a row's leave-one-out residual is its residual / (1 - its leverage), the intercept's 1/n included
    u2, n = u * u, len(u)
    out = []
    for a in alphas:
        f = s * s / (s * s + a)
        leverage = np.minimum(u2 @ f + 1.0 / n, 1.0 - 1e-12)
        out.append((((yc - u @ (f[:, None] * uty)) / (1.0 - leverage)[:, None]) ** 2).mean())
    return np.asarray(out)


def fit_ridge(x: np.ndarray, y: np.ndarray, x_valid: np.ndarray | None = None,
              y_valid: np.ndarray | None = None, alphas=ALPHAS) -> Ridge:
    """Fit on (x, y); with valid rows, pick the alpha of least MSE on them, else the alpha of
    least leave-one-out MSE on the training rows (exact, from the same SVD: each row's residual
    divided by 1 - its leverage)."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    x_mean, y_mean = x.mean(axis=0), y.mean(axis=0)
    u, s, vt = np.linalg.svd(x - x_mean, full_matrices=False)
    uty = u.T @ (y - y_mean)

    def weight(alpha: float) -> np.ndarray:
        return vt.T @ ((s / (s * s + alpha))[:, None] * uty)

    if x_valid is None or len(x_valid) == 0:
        alpha = alphas[int(np.argmin(_loo_errors(u, s, uty, y - y_mean, alphas)))]
    else:
        xv = np.asarray(x_valid, np.float64) - x_mean
        errors = [((xv @ weight(a) + y_mean - y_valid) ** 2).mean() for a in alphas]
        alpha = alphas[int(np.argmin(errors))]
    return Ridge(weight(alpha).astype(np.float32), x_mean.astype(np.float32), y_mean.astype(np.float32), float(alpha))
