"""Closed-form theory of SPEC section 3 (uniform attention, linear activation, no LN)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def inner_products(c0: float, depth: ArrayLike, a1: float, a2: float) -> np.ndarray:
    """E C(X^l) = (1+a2^2)^l (1+a1^2)^l C(X^0), with C(X) = sum_{k,k'} <X_k, X_k'> = n^2 |xbar|^2."""
    depth = np.asarray(depth, dtype=float)
    return (1 + a2**2) ** depth * (1 + a1**2) ** depth * c0


def sq_norm(n: int, x_sq: float, c0: float, depth: ArrayLike, a1: float, a2: float) -> np.ndarray:
    """E |X^l|_F^2 = n (1+a2^2)^l a1^2 sum_{k<l} (1+a1^2)^k |xbar|^2 + (1+a2^2)^l |X|^2.

    ``x_sq`` = |X^0|_F^2, ``c0`` = C(X^0) = n^2 |xbar^0|^2.
    """
    depth = np.asarray(depth, dtype=float)
    xbar_sq = c0 / n**2
    q = (1 + a1**2) ** depth
    geometric = depth if a1 == 0 else (q - 1) / a1**2  # sum_{k<l} (1+a1^2)^k
    return n * (1 + a2**2) ** depth * a1**2 * geometric * xbar_sq + (1 + a2**2) ** depth * x_sq


def correlation(n: int, x_sq: float, c0: float, depth: ArrayLike, a1: float) -> np.ndarray:
    """rho^l = n q C / ((n-1)[(q-1) C + n |X|^2]) - 1/(n-1), q = (1+a1^2)^l (a2 cancels)."""
    q = (1 + a1**2) ** np.asarray(depth, dtype=float)
    return n * q * c0 / ((n - 1) * ((q - 1) * c0 + n * x_sq)) - 1 / (n - 1)


def correlation_uncorrelated_input(n: int, depth: ArrayLike, a1: float) -> np.ndarray:
    """rho^l = (q-1)/(q-1+n) for uncorrelated, equal-norm input tokens."""
    q = (1 + a1**2) ** np.asarray(depth, dtype=float)
    return (q - 1) / (q - 1 + n)


def grad_v_sq(n: ArrayLike, d: ArrayLike, s: ArrayLike, rho: ArrayLike) -> np.ndarray:
    """E |dS/dWv|_F^2 = s^2 d^2 (1 + rho (n-1)) for equicorrelated Gaussian tokens, d_k = d_v = d."""
    n, d, s, rho = (np.asarray(v, dtype=float) for v in (n, d, s, rho))
    return s**2 * d**2 * (1 + rho * (n - 1))


def grad_q_sq(n: ArrayLike, d: ArrayLike, s: ArrayLike, rho: ArrayLike) -> np.ndarray:
    """E |dS/dWq|_F^2 = s^6 (n-1)/n (1-rho)^2 d (n+d) for equicorrelated Gaussian tokens, d_k = d_v = d."""
    n, d, s, rho = (np.asarray(v, dtype=float) for v in (n, d, s, rho))
    return s**6 * (n - 1) / n * (1 - rho) ** 2 * d * (n + d)
