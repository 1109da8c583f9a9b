r"""Ancestral unmasking: the reverse process of masked diffusion (MDLM / MD4).

Sahoo et al. 2024, arXiv:2406.07524, eq. 7 (and Shi et al. 2024, arXiv:2406.04329,
Sec. 3). From s < t, with alpha_t = 1 - t, a masked token of z_t stays masked with
probability (1 - alpha_s) / (1 - alpha_t) = s / t, else it becomes a draw from the
model's x_theta(z_t); an unmasked token is carried over unchanged:

    p(z_s^i | z_t) = (s / t) 1[z_s^i = m] + (1 - s / t) x_theta^i(z_t)     if z_t^i = m
                   = 1[z_s^i = z_t^i]                                      otherwise,

on the grid t_k = 1 - k / S, k = 0..S (the last step, s = 0, unmasks every token left).
One network evaluation a step: NFE = S.
"""
from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp

from gen_jax.samplers.autoregressive import sample_token


def ancestral_unmasking(logits_fn: Callable, z, rng, num_steps: int, mask_id: int,
                        temperature: float = 1.0, top_k: Optional[int] = None,
                        top_p: Optional[float] = None, return_trajectory: bool = False):
  """z [B, L] (mask_id where masked) -> (tokens [B, L] with no mask left, info with 'nfe'
  and, with return_trajectory, 'trajectory' [S + 1, B, L]). logits_fn: z -> [B, L, V']."""
  times = 1.0 - jnp.arange(num_steps + 1) / num_steps

  def step(z, inp):
    k, t, s = inp
    key = jax.random.fold_in(rng, k)
    draw = sample_token(jax.random.fold_in(key, 0), logits_fn(z)[..., :mask_id], temperature,
                        top_k, top_p)
    unmask = jax.random.uniform(jax.random.fold_in(key, 1), z.shape) >= s / t
    z_next = jnp.where((z == mask_id) & unmask, draw.astype(z.dtype), z)
    return z_next, (z_next if return_trajectory else None)

  z_final, traj = jax.lax.scan(step, z, (jnp.arange(num_steps), times[:-1], times[1:]))
  info = {"nfe": num_steps}
  if return_trajectory:
    info["trajectory"] = jnp.concatenate([z[None], traj], axis=0)
  return z_final, info
