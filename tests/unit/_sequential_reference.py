"""Independent references for the always-valid p-value and confidence sequence.

Written from the papers, not from `abrec.stats.sequential`:

* Johari, Pekelis & Walsh (2017), mixture SPRT with a normal mixing distribution
  N(0, tau^2) over the effect, for an estimate d ~ N(theta, V):
  Lambda = sqrt(V / (V + tau^2)) * exp(tau^2 d^2 / (2 V (V + tau^2))), p = min(1, 1/Lambda).
  The project mixes with tau^2 = rho^2 n V (docs/statistics.md).
* Howard, Ramdas, McAuliffe & Sekhon (2021), two-sided normal-mixture boundary for a sum S
  with intrinsic time v and mixing precision r: |S| < sqrt((v + r) log((v + r) / (r alpha^2))).
  For the effect, S = d / V, v = 1 / V and r = 1 / tau^2.
* The exact crossing probability of that boundary by a Gaussian random walk observed at
  equally spaced looks (known variance), by propagating the density of the paths that have
  not crossed yet on a fine grid (Armitage, McPherson & Rowe 1969 recursion). It is the real
  false-positive rate of the procedure, so simulations can be bounded from both sides.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import integrate, optimize
from scipy.signal import fftconvolve
from scipy.stats import norm


def johari_pvalue(d: float, v: float, n: float, rho: float) -> float:
    """Always-valid p-value of H0: effect = 0, mixture SPRT with tau^2 = rho^2 n V."""
    tau2 = rho * rho * n * v
    log_lambda = 0.5 * math.log(v / (v + tau2)) + tau2 * d * d / (2.0 * v * (v + tau2))
    return min(1.0, math.exp(-log_lambda))


def quad_log_lambda(d: float, v: float, n: float, rho: float, theta0: float = 0.0) -> float:
    """log of the mixture likelihood ratio for H0: effect = theta0, by numerical integration."""
    tau = math.sqrt(rho * rho * n * v)
    x = d - theta0

    def log_integrand(theta: float) -> float:
        # log of: likelihood ratio N(x; theta, V) / N(x; 0, V) times the N(0, tau^2) density
        return (2.0 * theta * x - theta * theta) / (2.0 * v) + float(norm.logpdf(theta, 0, tau))

    centre = x * tau * tau / (v + tau * tau)  # the mode, where the mass sits
    spread = math.sqrt(v * tau * tau / (v + tau * tau))
    peak = log_integrand(centre)
    value, _ = integrate.quad(
        lambda theta: math.exp(log_integrand(theta) - peak),
        centre - 40 * spread,
        centre + 40 * spread,
        points=[centre],
        epsabs=0.0,
        epsrel=1e-13,
        limit=200,
    )
    return peak + math.log(value)


def howard_radius(v: float, n: float, rho: float, alpha: float) -> float:
    """Half-width of the two-sided normal-mixture confidence sequence for the effect."""
    r = 1.0 / (rho * rho * n * v)  # mixing precision on the scale of S = d / V
    intrinsic = 1.0 / v
    s_bound = math.sqrt((intrinsic + r) * math.log((intrinsic + r) / (r * alpha * alpha)))
    return v * s_bound


def quad_radius(v: float, n: float, rho: float, alpha: float) -> float:
    """The radius as the root of Lambda_theta = 1/alpha, Lambda by numerical integration."""
    target = math.log(1.0 / alpha)

    def excess(a: float) -> float:
        return quad_log_lambda(0.0, v, n, rho, theta0=a) - target

    high = math.sqrt(v)
    while excess(high) < 0:
        high *= 2.0
    return float(optimize.brentq(excess, 0.0, high, xtol=1e-15, rtol=1e-14))


def z_threshold(t: np.ndarray, alpha: float) -> np.ndarray:
    """Squared z-score at which Lambda reaches 1/alpha, for t = n rho^2 (from johari_pvalue)."""
    return (1.0 + t) / t * (2.0 * math.log(1.0 / alpha) + np.log1p(t))


def exact_crossing_rate(t_looks: np.ndarray, alpha: float, h: float = 0.01) -> float:
    """P(some look rejects) under H0 for a Gaussian random walk with known variance.

    Look k (k = 1..K) sees k equal increments: Z_k = S_k / sqrt(k) with S a N(0, 1) random
    walk, and rejects when Z_k^2 >= z_threshold(t_k). The density of S over the paths that
    have not rejected is carried from look to look on a grid of step h.
    """
    k = np.arange(1, len(t_looks) + 1)
    bounds = np.sqrt(k * z_threshold(np.asarray(t_looks, dtype=np.float64), alpha))
    x = np.arange(-bounds.max() - 1.0, bounds.max() + 1.0 + h / 2, h)
    kernel = norm.pdf(np.arange(-9.0, 9.0 + h / 2, h)) * h
    f = np.where(np.abs(x) < bounds[0], norm.pdf(x), 0.0)
    for b in bounds[1:]:
        f = np.where(np.abs(x) < b, fftconvolve(f, kernel, mode="same"), 0.0)
    return float(1.0 - f.sum() * h)


def band(rate0: float, n_sims: int, extra: float = 0.0, k_sd: float = 4.0) -> tuple[float, float]:
    """Two-sided acceptance band: the exact rate +- k_sd binomial sd (+ `extra` above)."""
    sd = math.sqrt(rate0 * (1.0 - rate0) / n_sims)
    return rate0 - k_sd * sd, rate0 + k_sd * sd + extra
