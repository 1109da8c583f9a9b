r"""Consistency models: the boundary parameterisation, the discretisation schedules and the
distillation / training losses (Song, Dhariwal, Chen, Sutskever 2023, arXiv:2303.01469).

A consistency function maps any point x_sigma of a probability-flow ODE trajectory of
x = x_0 + sigma n (EDM's, dx/dsigma = (x - D(x; sigma)) / sigma) to the trajectory's end at
sigma_min:  f(x_sigma, sigma) = x_{sigma_min}. It is parameterised so that the boundary
condition f(x, sigma_min) = x holds for any network (Sec. 3 and App. C, eq. 3):

    f_theta(x, sigma) = c_skip(sigma) x + c_out(sigma) F_theta(c_in(sigma) x, c_noise(sigma)),
    c_skip = sigma_data^2 / ((sigma - sigma_min)^2 + sigma_data^2),
    c_out  = sigma_data (sigma - sigma_min) / sqrt(sigma_data^2 + sigma^2),

with EDM's c_in = 1 / sqrt(sigma^2 + sigma_data^2) and c_noise = ln(sigma) / 4
(`score_matching.edm_preconditioning`), so that a student initialised from an EDM teacher's
weights starts near the teacher's denoiser.

The losses compare the online network f_theta at the noisier of two adjacent noise levels
sigma_{n+1} > sigma_n of a discretisation with the target network f_{theta^-} (an EMA of
theta, held under stop-gradient) at the less noisy one:

    L = E_n [ lambda(sigma_n) d( f_theta(x_{n+1}, sigma_{n+1}), f_{theta^-}(x_n, sigma_n) ) ],

n ~ U{1, ..., N - 1}, with the levels of Karras et al.'s rho-schedule (EDM eq. 5; CM App. C):
sigma_i = (sigma_min^{1/rho} + (i - 1) / (N - 1) (sigma_max^{1/rho} - sigma_min^{1/rho}))^rho,
i = 1..N, ascending. Distillation (CD, Algorithm 2): x_{n+1} = x_0 + sigma_{n+1} z and x_n is one
step of the teacher's ODE solver (Euler or Heun) from x_{n+1}. Training (CT, Algorithm 3): x_n =
x_0 + sigma_n z with the same z (the one-sample estimate of the score, no teacher).

Distances d (per example, over the data dimensions): 'l2', the squared L2 of the paper, as a
mean over dimensions; 'pseudo_huber', sqrt(||a - b||^2 + c^2) - c with c = 0.00054 sqrt(D)
(Song & Dhariwal 2023, "Improved techniques for training consistency models",
arXiv:2310.14189, Sec. 3.3). The paper's LPIPS needs an ImageNet network this project does not
ship. Weightings lambda: 'uniform' (lambda = 1, the CM paper) or 'inverse_gap'
(lambda = 1 / (sigma_{n+1} - sigma_n), arXiv:2310.14189 Sec. 3.4).

Losses are per example ([B]); the paradigm reduces over the batch. Networks come in as
closures f(x, sigma[B]) and denoise(x, sigma[B]) (no Flax here).
"""
from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp

from gen_jax.errors import UserError
from gen_jax.losses.score_matching import _bcast, edm_preconditioning

DISTANCES = ('l2', 'pseudo_huber')
WEIGHTINGS = ('uniform', 'inverse_gap')
SOLVERS = ('heun', 'euler')


def consistency_preconditioning(sigma, sigma_data: float = 0.5, sigma_min: float = 0.002):
  r"""(c_skip, c_out, c_in, c_noise) of the consistency parameterisation (arXiv:2303.01469,
  App. C): c_skip = sd^2 / ((sigma - sigma_min)^2 + sd^2),
  c_out = sd (sigma - sigma_min) / sqrt(sd^2 + sigma^2), and EDM's c_in and c_noise.
  At sigma = sigma_min, c_skip = 1 and c_out = 0 exactly in floating point."""
  _, _, c_in, c_noise = edm_preconditioning(sigma, sigma_data)
  sd2 = sigma_data ** 2
  gap = sigma - sigma_min
  c_skip = sd2 / (jnp.square(gap) + sd2)
  c_out = sigma_data * gap * jax.lax.rsqrt(sd2 + jnp.square(sigma))
  return c_skip, c_out, c_in, c_noise


def consistency_function(raw_fn: Callable, sigma_data: float = 0.5,
                         sigma_min: float = 0.002) -> Callable:
  """A raw network F(x_in, c_noise) -> f(x, sigma[B]) = c_skip x + c_out F(c_in x, c_noise)."""
  def f(x, sigma):
    c_skip, c_out, c_in, c_noise = consistency_preconditioning(sigma, sigma_data, sigma_min)
    return _bcast(c_skip, x) * x + _bcast(c_out, x) * raw_fn(_bcast(c_in, x) * x, c_noise)
  return f


def karras_sigma(i, num_scales, sigma_min: float, sigma_max: float, rho: float = 7.0):
  r"""sigma_i = (sigma_min^{1/rho} + (i - 1)/(N - 1) (sigma_max^{1/rho} - sigma_min^{1/rho}))^rho
  for i = 1..N (ascending: sigma_1 = sigma_min, sigma_N = sigma_max). `i` and `num_scales` may
  be traced (consistency training's N(k) changes during training)."""
  i = jnp.asarray(i, jnp.float32)
  frac = (i - 1.0) / (jnp.asarray(num_scales, jnp.float32) - 1.0)
  lo, hi = sigma_min ** (1.0 / rho), sigma_max ** (1.0 / rho)
  return (lo + frac * (hi - lo)) ** rho


def ct_num_scales(k, total_steps: int, s0: int = 2, s1: int = 150):
  r"""N(k) of consistency training (arXiv:2303.01469, App. C, Table 3):
  N(k) = ceil( sqrt( k / K ((s1 + 1)^2 - s0^2) + s0^2 ) - 1 ) + 1, from s0 at k = 0 to s1 + 1
  at k = K. Returns float32 (an integer value)."""
  k = jnp.asarray(k, jnp.float32)
  inner = k / float(total_steps) * float((s1 + 1) ** 2 - s0 ** 2) + float(s0 ** 2)
  return jnp.ceil(jnp.sqrt(inner) - 1.0) + 1.0


def ct_target_decay(num_scales, s0: int = 2, mu0: float = 0.9):
  r"""mu(k) = exp(s0 log(mu0) / N(k)), the EMA decay of the target network in consistency
  training (arXiv:2303.01469, App. C): mu0 at N = s0, towards 1 as N grows."""
  return jnp.exp(s0 * math.log(mu0) / jnp.asarray(num_scales, jnp.float32))


def consistency_distance(a, b, distance: str = 'l2'):
  """d(a, b) per example [B]: 'l2' = mean over dimensions of (a - b)^2 (the paper's squared L2,
  per dimension); 'pseudo_huber' = sqrt(||a - b||^2 + c^2) - c, c = 0.00054 sqrt(D)
  (arXiv:2310.14189, Sec. 3.3)."""
  sq = jnp.square(a - b).reshape(a.shape[0], -1)
  if distance == 'l2':
    return jnp.mean(sq, axis=-1)
  if distance == 'pseudo_huber':
    c = 0.00054 * math.sqrt(sq.shape[-1])
    return jnp.sqrt(jnp.sum(sq, axis=-1) + c * c) - c
  raise UserError(f"Unknown consistency distance {distance!r}: use one of {DISTANCES}.")


def consistency_weight(sigma_n, sigma_next, weighting: str = 'uniform'):
  """lambda(sigma_n): 1 ('uniform', arXiv:2303.01469) or 1 / (sigma_{n+1} - sigma_n)
  ('inverse_gap', arXiv:2310.14189 Sec. 3.4)."""
  if weighting == 'uniform':
    return jnp.ones_like(sigma_n)
  if weighting == 'inverse_gap':
    return 1.0 / (sigma_next - sigma_n)
  raise UserError(f"Unknown consistency weighting {weighting!r}: use one of {WEIGHTINGS}.")


def teacher_ode_step(denoise_fn: Callable, x, sigma_from, sigma_to, solver: str = 'heun'):
  r"""One step of the teacher's ODE dx/dsigma = (x - D(x; sigma)) / sigma from sigma_from
  to sigma_to (both [B], > 0): Euler x + (sigma_to - sigma_from) d(x, sigma_from), or Heun's
  x + (sigma_to - sigma_from) (d(x, sigma_from) + d(x_euler, sigma_to)) / 2 (EDM Algorithm 1's
  step; CM Algorithm 2's Phi). NFE 1 or 2."""
  def deriv(y, sigma):
    return (y - denoise_fn(y, sigma)) / _bcast(sigma, y)
  h = _bcast(sigma_to - sigma_from, x)
  d = deriv(x, sigma_from)
  x_euler = x + h * d
  if solver == 'euler':
    return x_euler
  if solver == 'heun':
    return x + 0.5 * h * (d + deriv(x_euler, sigma_to))
  raise UserError(f"Unknown teacher solver {solver!r}: use one of {SOLVERS}.")


def consistency_loss_at(f_online: Callable, f_target: Callable, x_next, sigma_next, x_n,
                        sigma_n, distance: str = 'l2', weighting: str = 'uniform'):
  r"""lambda(sigma_n) d(f_theta(x_{n+1}, sigma_{n+1}), stopgrad f_{theta^-}(x_n, sigma_n)): [B]."""
  target = jax.lax.stop_gradient(f_target(x_n, sigma_n))
  d = consistency_distance(f_online(x_next, sigma_next), target, distance)
  return consistency_weight(sigma_n, sigma_next, weighting) * d


def _adjacent_levels(rng, batch: int, num_scales, sigma_min, sigma_max, rho):
  """n ~ U{1, ..., N - 1} per example -> (sigma_n, sigma_{n+1}), each [B]."""
  u = jax.random.uniform(rng, (batch,))
  n = jnp.floor(u * (jnp.asarray(num_scales, jnp.float32) - 1.0)) + 1.0
  n = jnp.minimum(n, jnp.asarray(num_scales, jnp.float32) - 1.0)
  return (karras_sigma(n, num_scales, sigma_min, sigma_max, rho),
          karras_sigma(n + 1.0, num_scales, sigma_min, sigma_max, rho))


def consistency_distillation_loss(f_online: Callable, f_target: Callable, denoise_fn: Callable,
                                  x0, rng, num_scales: int = 18, sigma_min: float = 0.002,
                                  sigma_max: float = 80.0, rho: float = 7.0,
                                  solver: str = 'heun', distance: str = 'l2',
                                  weighting: str = 'uniform'):
  r"""Consistency distillation (arXiv:2303.01469, Algorithm 2, eq. 7): n ~ U{1..N-1},
  x_{n+1} = x_0 + sigma_{n+1} z, x_n = Phi(x_{n+1}; sigma_{n+1} -> sigma_n) one step of the
  teacher's ODE solver (`teacher_ode_step`, on the teacher's denoiser D), and
  lambda d(f_theta(x_{n+1}, sigma_{n+1}), f_{theta^-}(x_n, sigma_n)). Per example [B]."""
  level_key, z_key = jax.random.split(rng)
  sigma_n, sigma_next = _adjacent_levels(level_key, x0.shape[0], num_scales, sigma_min,
                                         sigma_max, rho)
  z = jax.random.normal(z_key, x0.shape, x0.dtype)
  x_next = x0 + _bcast(sigma_next, x0) * z
  x_n = jax.lax.stop_gradient(teacher_ode_step(denoise_fn, x_next, sigma_next, sigma_n, solver))
  return consistency_loss_at(f_online, f_target, x_next, sigma_next, x_n, sigma_n, distance,
                             weighting)


def consistency_training_loss(f_online: Callable, f_target: Callable, x0, rng, num_scales,
                              sigma_min: float = 0.002, sigma_max: float = 80.0,
                              rho: float = 7.0, distance: str = 'l2',
                              weighting: str = 'uniform'):
  r"""Consistency training (arXiv:2303.01469, Algorithm 3, eq. 10): n ~ U{1..N-1}, one z ~ N(0, I),
  lambda d(f_theta(x_0 + sigma_{n+1} z, sigma_{n+1}), f_{theta^-}(x_0 + sigma_n z, sigma_n)).
  `num_scales` is N(k) (`ct_num_scales`), traced. Per example [B]."""
  level_key, z_key = jax.random.split(rng)
  sigma_n, sigma_next = _adjacent_levels(level_key, x0.shape[0], num_scales, sigma_min,
                                         sigma_max, rho)
  z = jax.random.normal(z_key, x0.shape, x0.dtype)
  return consistency_loss_at(f_online, f_target, x0 + _bcast(sigma_next, x0) * z, sigma_next,
                             x0 + _bcast(sigma_n, x0) * z, sigma_n, distance, weighting)
