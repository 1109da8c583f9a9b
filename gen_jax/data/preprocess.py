"""Pure per-example preprocessing of image levels.

The input pipeline (`gen_jax.data.pipeline`) applies the numpy functions here
per example, as a grain `map`; the jax functions are for paradigms that want
them inside their loss (dequantization must draw fresh noise every step, so it
belongs in the jitted loss with the step's key, not in the data pipeline).

Images are integer levels 0..L-1 (L = `DatasetInfo.num_levels`).
"""
from __future__ import annotations

from gen_jax.errors import UserError

import jax
import jax.numpy as jnp
import numpy as np

PREPROCESS_OPTIONS = ("none", "binarize")


def binarize(image: np.ndarray, num_levels: int) -> np.ndarray:
  """Deterministic binarization: level k -> 1 if k >= L / 2 else 0 (uint8, levels {0, 1}).

  For L = 17 (digits) the threshold is level 9 (k >= 8.5); for L = 256, level 128.
  """
  return (np.asarray(image) >= num_levels / 2).astype(np.uint8)


def binarized_levels(num_levels: int) -> int:
  """Number of levels after `binarize` (always 2)."""
  del num_levels
  return 2


def dequantize(rng: jax.Array, x_levels: jax.Array) -> jax.Array:
  """Uniform dequantization: y = x + u, u ~ U[0, 1)^D (Theis et al. 2016, arXiv:1511.01844).

  Maps integer levels x in {0..L-1} to float32 y in [0, L). For any density q on
  [0, L)^D, the discrete model P(x) = int_{[0,1)^D} q(x + u) du satisfies
  E_u[log q(x + u)] <= log P(x) (Jensen), so the continuous log-likelihood of
  dequantized data is a lower bound on the log-probability of the levels, in the
  same units (nats on the data's own levels) that `Paradigm.log_likelihood`
  reports. A model of z = y / L in [0, 1)^D converts by the change of variables
  log q_y(y) = log q_z(y / L) - D log L.
  """
  u = jax.random.uniform(rng, jnp.shape(x_levels), dtype=jnp.float32)
  return jnp.asarray(x_levels, jnp.float32) + u


def to_unit_interval(x_levels: jax.Array, num_levels: int) -> jax.Array:
  """Level k -> k / (L - 1) in [0, 1] (float32): the convention of `Paradigm.sample` outputs."""
  return jnp.asarray(x_levels, jnp.float32) / (num_levels - 1)


def check_preprocess(preprocess: str) -> str:
  """Returns `preprocess` if known, else raises ValueError naming the options."""
  if preprocess not in PREPROCESS_OPTIONS:
    raise UserError(
        f"Unknown preprocess {preprocess!r}; options are {PREPROCESS_OPTIONS} "
        "('binarize' maps image level k to 1 if k >= L/2, else 0).")
  return preprocess
