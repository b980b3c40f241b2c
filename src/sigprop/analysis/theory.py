"""Closed-form theory of docs/init-time.md (uniform attention, linear activation, no LN)."""

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


# ---- the L -> infinity limits of the closed forms above (Lemmas 3.2, 3.3 and Theorem 3.4 of the paper; Fig S2) ----
# With a1^2 = a1_tilde / L and a2^2 = a2_tilde / L, (1 + a^2/L)^L -> e^a, and a1^2 sum_{k<L} (1+a1^2)^k =
# (1+a1^2)^L - 1 -> e^a1_tilde - 1: substituting into sq_norm and correlation gives the limits below
# (docs/supplementary.md derives them and the 1/L rate of approach).


def sq_norm_limit(n: int, x_sq: float, c0: float, a1_tilde: float, a2_tilde: float) -> float:
    """lim_L E|X^L|_F^2 = n e^a2 (e^a1 - 1) |xbar|^2 + e^a2 |X|^2 under a_i^2 = a_i_tilde / L."""
    xbar_sq = c0 / n**2
    return float(n * np.exp(a2_tilde) * np.expm1(a1_tilde) * xbar_sq + np.exp(a2_tilde) * x_sq)


def correlation_limit(n: int, x_sq: float, c0: float, a1_tilde: float) -> float:
    """lim_L rho^L = n e^a C / ((n-1)[(e^a - 1) C + n |X|^2]) - 1/(n-1) under a1^2 = a1_tilde / L (a2 cancels).

    With constant residual scales (a1 != 0 independent of L) the limit is 1 instead.
    """
    q = np.exp(a1_tilde)
    return float(n * q * c0 / ((n - 1) * ((q - 1) * c0 + n * x_sq)) - 1 / (n - 1))


def correlation_limit_rate(n: int, x_sq: float, c0: float, a1_tilde: float) -> float:
    """lim_L L (rho^L - rho^inf) = -(a^2 e^a / 2) d rho/dq at q = e^a: the first-order gap at finite depth L.

    From (1 + a/L)^L = e^a (1 - a^2/(2L) + O(1/L^2)) and d rho/dq = n C (n|X|^2 - C) / ((n-1)[(q-1)C + n|X|^2]^2).
    """
    q = np.exp(a1_tilde)
    drho_dq = n * c0 * (n * x_sq - c0) / ((n - 1) * ((q - 1) * c0 + n * x_sq) ** 2)
    return float(-(a1_tilde**2) * q / 2 * drho_dq)


# ---- any fixed row-stochastic attention matrix A (Fig S6; docs/init-time.md, "Any fixed attention matrix") ----
# With S(X) = A X Wv, a linear activation, no LN and fresh independent weights of variance 1/fan-in per layer,
# the expected Gram matrix G = E[X X^T] (n x n) obeys the closed, linear recursion
#     G^{l+1} = (1 + a2^2) (G^l + a1^2 A G^l A^T),
# so G^l = (1 + a2^2)^l sum_k binom(l, k) a1^(2k) A^k G^0 (A^T)^k. Uniform A = 1 1^T / n gives back the
# closed forms above (A G A^T = C(X) / n^2 1 1^T). The patterns A of Fig S6: :mod:`sigprop.patterns`.

def gram_expectation(g0: ArrayLike, attention: ArrayLike, depth: int, a1: float, a2: float) -> np.ndarray:
    """E[X^l X^l^T] for l = 0..depth (shape (depth + 1, n, n)) from the input's Gram matrix ``g0`` and a fixed
    row-stochastic ``attention`` matrix A: G^{l+1} = (1 + a2^2)(G^l + a1^2 A G^l A^T)."""
    g = np.asarray(g0, dtype=float)
    a = np.asarray(attention, dtype=float)
    out = [g]
    for _ in range(int(depth)):
        g = (1 + a2**2) * (g + a1**2 * a @ g @ a.T)
        out.append(g)
    return np.stack(out)


def gram_correlation(gram: ArrayLike) -> np.ndarray:
    """The paper's token correlation from (expected) Gram matrices (..., n, n): the mean over pairs k != k' of
    G_kk' / sqrt(G_kk G_k'k') (for equal expected norms, as under uniform attention, the rho^l above)."""
    g = np.asarray(gram, dtype=float)
    n = g.shape[-1]
    diag = np.sqrt(np.diagonal(g, axis1=-2, axis2=-1))
    cos = g / (diag[..., :, None] * diag[..., None, :])
    return (cos.sum((-2, -1)) - np.trace(cos, axis1=-2, axis2=-1)) / (n * (n - 1))


def gram_sq_norm(gram: ArrayLike) -> np.ndarray:
    """|X|_F^2 = trace of the Gram matrix (..., n, n)."""
    return np.trace(np.asarray(gram, dtype=float), axis1=-2, axis2=-1)
