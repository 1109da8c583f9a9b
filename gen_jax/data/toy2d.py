"""Two-dimensional toy distributions: numpy samplers and true log densities.

These are the densities of the flow literature's toy panels (FFJORD,
arXiv:1810.01367, App. "toy data"; RealNVP, arXiv:1605.08803), written here so
that a model's log-likelihood can be checked against truth. This module has no
TFDS or grain side effects: paradigms' tests import it directly. The TFDS
builder that stores fixed samples of these distributions lives in
`gen_jax.data.builders`.

Samplers take a `numpy.random.Generator` and a count and return float32 [n, 2].
Log densities are pure jax functions [N, 2] -> [N] (nats).
"""
from __future__ import annotations

import math

import jax.numpy as jnp
import jax.scipy.special
import numpy as np

NAMES = ("moons", "eight_gaussians", "checkerboard", "swiss_roll")

# Eight isotropic Gaussians with equal weights, centred on the circle of radius 2.
EIGHT_GAUSSIANS_RADIUS = 2.0
EIGHT_GAUSSIANS_SIGMA = 0.2
EIGHT_GAUSSIANS_CENTRES = EIGHT_GAUSSIANS_RADIUS * np.stack(
    [np.cos(2 * np.pi * np.arange(8) / 8), np.sin(2 * np.pi * np.arange(8) / 8)], axis=1
).astype(np.float32)

# Checkerboard: a 4x4 board of unit squares over [-2, 2]^2; square (i, j) is
# [-2 + i, -1 + i] x [-2 + j, -1 + j]; the 8 "black" squares have (i + j) even.
CHECKERBOARD_HALF_WIDTH = 2.0


def sample_eight_gaussians(rng: np.random.Generator, n: int) -> np.ndarray:
  """x = c_k + sigma * eps, k ~ Uniform{0..7}, eps ~ N(0, I)."""
  k = rng.integers(0, 8, size=n)
  eps = rng.standard_normal((n, 2))
  return (EIGHT_GAUSSIANS_CENTRES[k] + EIGHT_GAUSSIANS_SIGMA * eps).astype(np.float32)


def eight_gaussians_log_prob(x):
  """log p(x) = logsumexp_k [log N(x; c_k, sigma^2 I)] - log 8,
  with log N(x; c, sigma^2 I) = -|x - c|^2 / (2 sigma^2) - log(2 pi sigma^2).  [N, 2] -> [N]."""
  x = jnp.asarray(x)
  sq = jnp.sum((x[:, None, :] - jnp.asarray(EIGHT_GAUSSIANS_CENTRES)[None]) ** 2, axis=-1)
  sigma2 = EIGHT_GAUSSIANS_SIGMA**2
  log_n = -sq / (2 * sigma2) - math.log(2 * math.pi * sigma2)
  return jax.scipy.special.logsumexp(log_n, axis=1) - math.log(8.0)


def sample_checkerboard(rng: np.random.Generator, n: int) -> np.ndarray:
  """Uniform on the 8 black squares: pick a black square uniformly, then a uniform point in it."""
  black = np.array([(i, j) for i in range(4) for j in range(4) if (i + j) % 2 == 0])
  sq = black[rng.integers(0, len(black), size=n)]
  u = rng.random((n, 2))
  return (sq - CHECKERBOARD_HALF_WIDTH + u).astype(np.float32)


def checkerboard_log_prob(x):
  """log p(x) = -log 8 on the black squares ((floor(x1 + 2) + floor(x2 + 2)) even, |x|_inf < 2),
  -inf elsewhere (the 8 unit squares carry density 1/8 each).  [N, 2] -> [N]."""
  x = jnp.asarray(x)
  cell = jnp.floor(x + CHECKERBOARD_HALF_WIDTH)
  inside = jnp.all((x >= -CHECKERBOARD_HALF_WIDTH) & (x < CHECKERBOARD_HALF_WIDTH), axis=-1)
  black = jnp.mod(cell[:, 0] + cell[:, 1], 2) == 0
  return jnp.where(inside & black, -math.log(8.0), -jnp.inf)


def sample_moons(rng: np.random.Generator, n: int, noise: float = 0.1) -> np.ndarray:
  """Two interleaved half circles (scikit-learn's make_moons with uniform angles), Gaussian
  noise of std `noise`, then x -> 2 x + (-1, -0.2) as in FFJORD's toy data (centred near 0)."""
  n_outer = n // 2
  t = np.pi * rng.random(n)
  outer = np.stack([np.cos(t), np.sin(t)], axis=1)
  inner = np.stack([1 - np.cos(t), 1 - np.sin(t) - 0.5], axis=1)
  x = np.where((np.arange(n) < n_outer)[:, None], outer, inner)
  x = x + noise * rng.standard_normal((n, 2))
  x = x[rng.permutation(n)]
  return (2.0 * x + np.array([-1.0, -0.2])).astype(np.float32)


def sample_swiss_roll(rng: np.random.Generator, n: int, noise: float = 1.0) -> np.ndarray:
  """t = 1.5 pi (1 + 2 u), x = (t cos t, t sin t) + noise * eps, scaled by 1/5
  (scikit-learn's make_swiss_roll projected on its two roll axes, as in FFJORD)."""
  t = 1.5 * np.pi * (1 + 2 * rng.random(n))
  x = np.stack([t * np.cos(t), t * np.sin(t)], axis=1) + noise * rng.standard_normal((n, 2))
  return (x / 5.0).astype(np.float32)


SAMPLERS = {
    "moons": sample_moons,
    "eight_gaussians": sample_eight_gaussians,
    "checkerboard": sample_checkerboard,
    "swiss_roll": sample_swiss_roll,
}

# Log densities known in closed form (the other two have none).
LOG_PROBS = {
    "eight_gaussians": eight_gaussians_log_prob,
    "checkerboard": checkerboard_log_prob,
}


def sample(name: str, rng: np.random.Generator, n: int) -> np.ndarray:
  """Samples [n, 2] float32 of the toy distribution `name` (one of NAMES)."""
  if name not in SAMPLERS:
    raise ValueError(f"Unknown toy2d distribution {name!r}; choose one of {NAMES}.")
  return SAMPLERS[name](rng, n)
