r"""The multistep consistency sampler (Song, Dhariwal, Chen, Sutskever 2023, arXiv:2303.01469,
Algorithm 1): a pure function of the consistency function f(x, sigma[B]).

    x <- f(sigma_max z, sigma_max);
    for tau in tau_2 > ... > tau_S:   z ~ N(0, I);  x <- f(x + sqrt(tau^2 - sigma_min^2) z, tau).

One network evaluation a step (NFE = S). The levels default to S of the training
discretisation's N levels (Karras et al.'s rho-schedule, `karras_sigma`), from sigma_max down at
indices i_j = round(N - j (N - 1) / S), j = 0..S-1 (`multistep_sigmas`): a consistency network is
trained at those N levels only, and between them its noise embedding is one it never saw (on
1-D Gaussian data with the exact teacher, two steps through the off-grid level 2.52 land 0.11
low in mean, through the grid's 3.26 on it). The paper's code also takes its sampling times
from the training grid (ImageNet 64 CD, N = 40: levels 39 and 22 of 0..39). For N = 18 and
S = 2: sigma_max, then sigma_10 = 3.26.
"""
from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from gen_jax.errors import UserError
from gen_jax.losses.consistency import karras_sigma


def multistep_sigmas(num_steps: int, num_scales: int, sigma_min: float = 0.002,
                     sigma_max: float = 80.0, rho: float = 7.0,
                     sigmas: Sequence[float] = ()) -> tuple[float, ...]:
  """The S noise levels of the multistep sampler, descending from sigma_max: `sigmas` (the
  S - 1 levels after sigma_max) when given, else the training grid's levels sigma_{i_j} of
  N = `num_scales`, i_j = round(N - j (N - 1) / S) for j = 0..S-1 (S <= N - 1)."""
  if num_steps < 1:
    raise UserError(f"The consistency sampler takes num_steps >= 1, not {num_steps}.")
  if sigmas:
    levels = (float(sigma_max), *map(float, sigmas))
    if len(levels) != num_steps:
      raise UserError(
          f"config.model.sampling_sigmas={tuple(sigmas)} gives {len(levels)} steps (sigma_max "
          f"and them) but num_steps={num_steps}; give {num_steps - 1} levels, or () for the "
          "training grid's.")
    if any(not sigma_min < s <= sigma_max for s in levels) or list(levels) != sorted(levels)[::-1]:
      raise UserError(f"config.model.sampling_sigmas={tuple(sigmas)} must descend within "
                      f"(sigma_min, sigma_max] = ({sigma_min}, {sigma_max}].")
    return levels
  if num_steps > num_scales - 1:
    raise UserError(f"num_steps={num_steps} exceeds the {num_scales - 1} levels above sigma_min "
                    f"of the training grid (N = {num_scales}); use fewer steps.")
  idx = [int(np.floor(num_scales - j * (num_scales - 1) / num_steps + 0.5))
         for j in range(num_steps)]
  with jax.ensure_compile_time_eval():          # static levels, also when traced under jit
    levels = np.asarray(karras_sigma(np.asarray(idx, np.float32), num_scales, sigma_min,
                                     sigma_max, rho))
  return tuple(float(s) for s in levels)


def multistep_consistency_sampler(f: Callable, shape, rng, sigmas: Sequence[float],
                                  sigma_min: float = 0.002, return_trajectory: bool = False):
  r"""Algorithm 1 of arXiv:2303.01469 at the levels `sigmas` (descending, sigmas[0] = sigma_max):
  x = f(sigmas[0] z_0, sigmas[0]), then x = f(x + sqrt(tau^2 - sigma_min^2) z_i, tau) for each
  later tau, z_i from fold_in(rng, i). Returns (x, {'nfe': S[, 'trajectory': [S + 1, ...]]}),
  the trajectory holding the starting noise, then x after each step."""
  sigmas = tuple(float(s) for s in sigmas)
  full = lambda x, s: jnp.full(x.shape[:1], s, jnp.float32)
  x = sigmas[0] * jax.random.normal(jax.random.fold_in(rng, 0), shape)
  frames = [x]
  x = f(x, full(x, sigmas[0]))
  frames.append(x)
  for i, tau in enumerate(sigmas[1:], start=1):
    z = jax.random.normal(jax.random.fold_in(rng, i), shape)
    x_tau = x + float(np.sqrt(max(tau ** 2 - sigma_min ** 2, 0.0))) * z
    x = f(x_tau, full(x, tau))
    frames.append(x)
  info = {'nfe': len(sigmas)}
  if return_trajectory:
    info['trajectory'] = jnp.stack(frames)
  return x, info
