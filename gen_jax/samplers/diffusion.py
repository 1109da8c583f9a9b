r"""Samplers of the diffusion / score family: pure functions, `lax.scan` loops.

Every sampler takes the model as a closure of (x, time) — an eps predictor, a
score, an EDM denoiser or a velocity — the starting noise or a key, and returns
``(x, info)`` with ``info['nfe']`` the number of model evaluations (a Python int)
and, when ``return_trajectory=True``, ``info['trajectory']`` [steps + 1, *x.shape]
(the start, then x after each step). Randomness comes in as a key and is
``fold_in``-ed with the step index.

Papers:
  * DDPM ancestral sampling: Ho et al. 2020, arXiv:2006.11239, Algorithm 2.
  * DDIM: Song, Meng, Ermon 2021, arXiv:2010.02502, eq. 12 and 16.
  * Euler–Maruyama, predictor–corrector (Langevin corrector), probability-flow
    ODE: Song et al. 2021, arXiv:2011.13456, eq. 6, 13, Algorithms 2-5.
  * EDM sampler (Heun, rho-schedule, churn): Karras et al. 2022, arXiv:2206.00364,
    Algorithm 2, eq. 5.
  * DPM-Solver++ (2M): Lu et al. 2022, arXiv:2211.01095, Algorithm 2, logSNR-uniform steps.
  * Flow matching / rectified flow ODE: Lipman et al. arXiv:2210.02747, Liu et al.
    arXiv:2209.03003.
  * Classifier-free guidance: Ho & Salimans 2022, arXiv:2207.12598.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import jax
import numpy as np
import jax.numpy as jnp

from gen_jax.errors import UserError
from gen_jax.losses.score_matching import (DiscreteSchedule, SDE, q_posterior,
                                           reverse_variance)


def _bcast(v, x):
  v = jnp.asarray(v, x.dtype)
  return v.reshape(v.shape + (1,) * (x.ndim - v.ndim))


def _full(x, value, dtype=jnp.float32):
  """A per-example time array [B] filled with `value`."""
  return jnp.full(x.shape[:1], value, dtype)


def _scan(step, x, xs, return_trajectory):
  """Runs `step(x, xs_i) -> x` over xs (x an array or a tuple of them); returns
  (x, trajectory or None)."""
  def body(carry, inp):
    new = step(carry, inp)
    return new, (new if return_trajectory else None)
  x_final, traj = jax.lax.scan(body, x, xs)
  if return_trajectory:
    traj = jax.tree.map(lambda first, rest: jnp.concatenate([first[None], rest], axis=0), x, traj)
  return x_final, traj


def _info(nfe, traj):
  info = {'nfe': int(nfe)}
  if traj is not None:
    info['trajectory'] = traj
  return info


def _x0_from_eps(schedule, x, n, eps, clip):
  alpha, sigma = schedule.alpha_sigma(n)
  x0 = (x - _bcast(sigma, x) * eps) / _bcast(alpha, x)
  if clip:
    x0 = jnp.clip(x0, -1.0, 1.0)
    eps = (x - _bcast(alpha, x) * x0) / _bcast(sigma, x)
  return x0, eps


# --------------------------------------------------------------------------
# Discrete time (DDPM, DDIM).
# --------------------------------------------------------------------------

def ddpm_ancestral(eps_fn: Callable, schedule: DiscreteSchedule, x_T, rng,
                   variance: str = 'beta', clip_denoised: bool = False,
                   return_trajectory: bool = False):
  r"""Ho et al. Algorithm 2: for n = T-1..0,
  x_{n-1} = mu_tilde(x_n, x0_hat) + sigma_n z  (z = 0 at the last step),
  with x0_hat = (x_n - sqrt(1 - abar_n) eps(x_n, n)) / sqrt(abar_n), optionally
  clipped to [-1, 1], mu_tilde the posterior mean (eq. 7) and
  sigma_n^2 = beta_n or beta_tilde_n. NFE = T."""
  def step(x, n):
    nb = jnp.full(x.shape[:1], n, jnp.int32)
    x0, _ = _x0_from_eps(schedule, x, nb, eps_fn(x, nb), clip_denoised)
    mean, _ = q_posterior(schedule, x0, x, nb)
    z = jax.random.normal(jax.random.fold_in(rng, n), x.shape, x.dtype)
    std = jnp.sqrt(reverse_variance(schedule, n, variance))
    return mean + jnp.where(n > 0, std, 0.0) * z

  ns = jnp.arange(schedule.num_steps - 1, -1, -1)
  x, traj = _scan(step, x_T, ns, return_trajectory)
  return x, _info(schedule.num_steps, traj)


DDIM_SPACINGS = ('uniform', 'quadratic')


def ddim_timesteps(num_train_steps: int, num_steps: int, spacing: str = 'uniform'):
  """The sub-sequence tau of 0..T-1 (descending, from T-1, ending at 0): 'uniform' spaces
  tau_i evenly; 'quadratic' spaces sqrt(tau_i) evenly, i.e. tau_i ~ (T-1) (i/(S-1))^2, so
  more steps fall at low noise (Song et al. 2021, App. D.2). Duplicates are dropped, so a
  quadratic sequence may have a few fewer than num_steps entries when num_steps ~ T."""
  if spacing not in DDIM_SPACINGS:
    raise UserError(f"ddim spacing {spacing!r}: use one of {DDIM_SPACINGS}.")
  u = np.linspace(1.0, 0.0, num_steps)
  taus = np.round((num_train_steps - 1) * (u if spacing == 'uniform' else u ** 2))
  return jnp.asarray(np.unique(taus)[::-1].astype(np.int32))


def ddim_variance_factor(schedule: DiscreteSchedule, n, n_prev):
  r"""(1 - abar_prev) / (1 - abar) (1 - abar / abar_prev): DDIM's s^2 at eta = 1 (eq. 16),
  abar_prev = 1 for n_prev = -1. 1 - abar / abar_prev = (abar_prev - abar) / abar_prev, the
  difference taken from the float32 tables of whichever of abar_prev and 1 - abar is the
  smaller, so it does not cancel: near abar = 1 (the first steps), 1 - abar / abar_prev in
  float32 would keep ~3 digits of a beta ~ 1e-4."""
  ab, oma = schedule.alpha_bars[n], schedule.one_minus_alpha_bars[n]
  ab_prev = jnp.where(n_prev >= 0, schedule.alpha_bars[jnp.maximum(n_prev, 0)], 1.0)
  oma_prev = jnp.where(n_prev >= 0, schedule.one_minus_alpha_bars[jnp.maximum(n_prev, 0)], 0.0)
  drop = jnp.where(ab_prev <= oma, ab_prev - ab, oma - oma_prev)    # abar_prev - abar
  return oma_prev / oma * (drop / ab_prev)


def ddim(eps_fn: Callable, schedule: DiscreteSchedule, x_T, rng, num_steps: int,
         eta: float = 0.0, clip_denoised: bool = False, return_trajectory: bool = False,
         spacing: str = 'uniform'):
  r"""DDIM (Song, Meng, Ermon, arXiv:2010.02502, eq. 12) on the sub-sequence tau:

  x_prev = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev - s^2) eps_hat + s z,
  s = eta sqrt((1 - abar_prev) / (1 - abar)) sqrt(1 - abar / abar_prev)  (eq. 16),
  abar_prev = 1 after the last step. eta = 0 is deterministic given x_T; eta = 1
  with all T steps is DDPM ancestral sampling with sigma^2 = beta_tilde. NFE = len(tau)
  (= num_steps; see ddim_timesteps for the spacing)."""
  taus = ddim_timesteps(schedule.num_steps, num_steps, spacing)
  prevs = jnp.concatenate([taus[1:], jnp.array([-1], jnp.int32)])

  def step(x, inp):
    i, n, n_prev = inp
    nb = jnp.full(x.shape[:1], n, jnp.int32)
    x0, eps = _x0_from_eps(schedule, x, nb, eps_fn(x, nb), clip_denoised)
    s = eta * jnp.sqrt(ddim_variance_factor(schedule, n, n_prev))
    sqrt_ab_prev = jnp.where(n_prev >= 0, schedule.sqrt_alpha_bars[jnp.maximum(n_prev, 0)], 1.0)
    oma_prev = jnp.where(n_prev >= 0, schedule.one_minus_alpha_bars[jnp.maximum(n_prev, 0)], 0.0)
    z = jax.random.normal(jax.random.fold_in(rng, n), x.shape, x.dtype)
    return (sqrt_ab_prev * x0 + jnp.sqrt(jnp.maximum(oma_prev - s ** 2, 0.0)) * eps
            + s * z)

  x, traj = _scan(step, x_T, (jnp.arange(len(taus)), taus, prevs), return_trajectory)
  return x, _info(len(taus), traj)


# --------------------------------------------------------------------------
# Continuous time SDEs (score_fn(x, t) ~ grad log p_t(x)).
# --------------------------------------------------------------------------

def _time_grid(sde: SDE, num_steps: int, t_min: Optional[float]):
  t_min = sde.eps if t_min is None else t_min
  return jnp.linspace(sde.T, t_min, num_steps + 1)


def _tweedie(score_fn, sde, x, t):
  """E[x_0 | x_t] = (x_t + sigma_t^2 score) / alpha_t (Tweedie's formula)."""
  tb = _full(x, t)
  alpha, sigma = sde.marginal(tb)
  return (x + _bcast(sigma ** 2, x) * score_fn(x, tb)) / _bcast(alpha, x)


def _tweedie_end(score_fn, sde, x, traj, t, denoise: bool):
  """The samplers' optional last step: x <- Tweedie's E[x_0 | x_t] at t (appended to the
  trajectory, when one is kept)."""
  if not denoise:
    return x, traj
  x = _tweedie(score_fn, sde, x, t)
  return x, (None if traj is None else jnp.concatenate([traj, x[None]], 0))


def euler_maruyama(score_fn: Callable, sde: SDE, x_T, rng, num_steps: int,
                   t_min: Optional[float] = None, denoise: bool = True,
                   return_trajectory: bool = False):
  r"""Euler–Maruyama on the reverse SDE (Song et al. eq. 6), t from T to t_min:
  x <- x - [f(t) x - g(t)^2 s(x, t)] dt + g(t) sqrt(dt) z   (dt > 0, time decreasing),
  with no noise on the last step; then, if `denoise`, one Tweedie step
  x_0 = (x + sigma^2 s) / alpha at t_min. NFE = num_steps (+ 1)."""
  ts = _time_grid(sde, num_steps, t_min)

  def step(x, inp):
    i, t, t_next = inp
    dt = t - t_next
    z = jax.random.normal(jax.random.fold_in(rng, i), x.shape, x.dtype)
    return _reverse_em_step(score_fn, sde, x, t, dt, z, last=i == num_steps - 1)

  x, traj = _scan(step, x_T, (jnp.arange(num_steps), ts[:-1], ts[1:]), return_trajectory)
  x, traj = _tweedie_end(score_fn, sde, x, traj, ts[-1], denoise)
  return x, _info(num_steps + int(denoise), traj)


def _reverse_em_step(score_fn: Callable, sde: SDE, x, t, dt, z, last):
  r"""One Euler–Maruyama step of the reverse SDE from t to t - dt:
  x <- x - [f(t) x - g(t)^2 s(x, t)] dt + g(t) sqrt(dt) z, without noise on the last step."""
  tb = _full(x, t)
  drift = _bcast(sde.drift_coef(tb), x) * x - _bcast(sde.diffusion(tb) ** 2, x) * score_fn(x, tb)
  noise = jnp.where(last, 0.0, 1.0) * _bcast(sde.diffusion(tb), x) * jnp.sqrt(dt) * z
  return x - drift * dt + noise


def langevin_step(score_fn: Callable, x, t, rng, snr: float, alpha):
  r"""One Langevin corrector step (Song et al. Algorithm 4/5):
  eps = 2 alpha (snr ||z|| / ||s||)^2 (norms per example, averaged over the batch),
  x <- x + eps s(x, t) + sqrt(2 eps) z."""
  s = score_fn(x, _full(x, t))
  z = jax.random.normal(rng, x.shape, x.dtype)
  flat = lambda v: v.reshape(v.shape[0], -1)
  s_norm = jnp.mean(jnp.linalg.norm(flat(s), axis=-1))
  z_norm = jnp.mean(jnp.linalg.norm(flat(z), axis=-1))
  eps = 2.0 * alpha * jnp.square(snr * z_norm / s_norm)
  return x + eps * s + jnp.sqrt(2.0 * eps) * z


def predictor_corrector(score_fn: Callable, sde: SDE, x_T, rng, num_steps: int,
                        snr: float = 0.16, corrector_steps: int = 1,
                        t_min: Optional[float] = None, denoise: bool = True,
                        return_trajectory: bool = False):
  r"""Predictor–corrector sampling (Song et al. Algorithm 1): at each time, first
  `corrector_steps` Langevin steps at signal-to-noise `snr` (alpha = 1 - beta(t) dt for
  VP-type SDEs, the discretised alpha_i of Algorithm 5; 1 for VE), then one
  Euler–Maruyama predictor step. NFE = num_steps (1 + corrector_steps) (+ 1)."""
  ts = _time_grid(sde, num_steps, t_min)

  def step(x, inp):
    i, t, t_next = inp
    dt = t - t_next
    key = jax.random.fold_in(rng, i)
    alpha = 1.0 + 2.0 * sde.drift_coef(t) * dt          # 1 - beta(t) dt (VP), 1 (VE)
    for j in range(corrector_steps):
      x = langevin_step(score_fn, x, t, jax.random.fold_in(key, j + 1), snr, alpha)
    z = jax.random.normal(jax.random.fold_in(key, 0), x.shape, x.dtype)
    return _reverse_em_step(score_fn, sde, x, t, dt, z, last=i == num_steps - 1)

  x, traj = _scan(step, x_T, (jnp.arange(num_steps), ts[:-1], ts[1:]), return_trajectory)
  x, traj = _tweedie_end(score_fn, sde, x, traj, ts[-1], denoise)
  return x, _info(num_steps * (1 + corrector_steps) + int(denoise), traj)


def probability_flow_drift(score_fn: Callable, sde: SDE) -> Callable:
  r"""The probability-flow ODE (Song et al. eq. 13): dx/dt = f(t) x - 1/2 g(t)^2 s(x, t).
  Returns drift(x, t[B])."""
  def drift(x, t):
    return (_bcast(sde.drift_coef(t), x) * x
            - 0.5 * _bcast(sde.diffusion(t) ** 2, x) * score_fn(x, t))
  return drift


def _ode_solve(drift: Callable, x, ts, method: str, return_trajectory: bool):
  """Fixed-step Euler or Heun (trapezoidal predictor-corrector) on dx/dt = drift(x, t)
  over the grid ts. NFE = steps (Euler) or 2 * steps (Heun)."""
  if method not in ('euler', 'heun'):
    raise UserError(f"Unknown ODE method {method!r}: use 'euler' or 'heun'.")

  def step(x, inp):
    t, t_next = inp
    h = t_next - t
    d = drift(x, _full(x, t))
    x_e = x + h * d
    if method == 'euler':
      return x_e
    d2 = drift(x_e, _full(x, t_next))
    return x + 0.5 * h * (d + d2)

  x, traj = _scan(step, x, (ts[:-1], ts[1:]), return_trajectory)
  steps = ts.shape[0] - 1
  return x, traj, steps * (1 if method == 'euler' else 2)


def probability_flow_sampler(score_fn: Callable, sde: SDE, x_T, num_steps: int,
                             method: str = 'heun', t_min: Optional[float] = None,
                             denoise: bool = True, return_trajectory: bool = False):
  """Integrates the probability-flow ODE from T to t_min with Euler or Heun steps on a
  uniform time grid; optional final Tweedie denoising. Deterministic given x_T."""
  ts = _time_grid(sde, num_steps, t_min)
  x, traj, nfe = _ode_solve(probability_flow_drift(score_fn, sde), x_T, ts, method,
                            return_trajectory)
  x, traj = _tweedie_end(score_fn, sde, x, traj, ts[-1], denoise)
  return x, _info(nfe + int(denoise), traj)


# --------------------------------------------------------------------------
# EDM (denoise_fn(x, sigma[B]) ~ E[x_0 | x_0 + sigma n = x]).
# --------------------------------------------------------------------------

def edm_sigmas(num_steps: int, sigma_min: float = 0.002, sigma_max: float = 80.0,
               rho: float = 7.0):
  r"""EDM eq. 5: sigma_i = (smax^{1/rho} + i/(N-1) (smin^{1/rho} - smax^{1/rho}))^rho,
  i = 0..N-1, followed by sigma_N = 0. Returns [N + 1]."""
  i = jnp.arange(num_steps, dtype=jnp.float32)
  inv = 1.0 / rho
  denom = max(num_steps - 1, 1)
  s = (sigma_max ** inv + i / denom * (sigma_min ** inv - sigma_max ** inv)) ** rho
  return jnp.concatenate([s, jnp.zeros((1,), jnp.float32)])


def edm_sampler(denoise_fn: Callable, shape, rng, num_steps: int = 18,
                sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0,
                s_churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float = float('inf'),
                s_noise: float = 1.0, heun: bool = True, return_trajectory: bool = False):
  r"""EDM Algorithm 2 (Karras et al., arXiv:2206.00364) on dx/dsigma = (x - D(x; sigma)) / sigma:
  x_0 = sigma_0 z; at step i, gamma = min(S_churn / N, sqrt(2) - 1) when
  S_tmin <= sigma_i <= S_tmax, sigma_hat = (1 + gamma) sigma_i,
  x_hat = x + sqrt(sigma_hat^2 - sigma_i^2) S_noise eps; an Euler step to sigma_{i+1},
  corrected by Heun's second-order step unless sigma_{i+1} = 0.
  S_churn = 0 is the deterministic sampler. NFE = 2N - 1 (Heun) or N (Euler)."""
  sigmas = edm_sigmas(num_steps, sigma_min, sigma_max, rho)
  x_init = sigmas[0] * jax.random.normal(jax.random.fold_in(rng, num_steps), shape)
  gamma_max = min(s_churn / num_steps, math.sqrt(2.0) - 1.0)

  def deriv(x, sigma):
    return (x - denoise_fn(x, _full(x, sigma))) / sigma

  def churn(x, i, sigma):
    gamma = jnp.where((sigma >= s_tmin) & (sigma <= s_tmax), gamma_max, 0.0)
    sigma_hat = sigma * (1.0 + gamma)
    if s_churn > 0:
      eps = s_noise * jax.random.normal(jax.random.fold_in(rng, i), x.shape, x.dtype)
      x = x + jnp.sqrt(jnp.maximum(sigma_hat ** 2 - sigma ** 2, 0.0)) * eps
    return x, sigma_hat

  def step(x, inp):
    i, sigma, sigma_next = inp
    x_hat, sigma_hat = churn(x, i, sigma)
    d = deriv(x_hat, sigma_hat)
    x_next = x_hat + (sigma_next - sigma_hat) * d
    if heun:
      d2 = deriv(x_next, sigma_next)
      x_next = x_hat + (sigma_next - sigma_hat) * 0.5 * (d + d2)
    return x_next

  # N - 1 steps end at sigma > 0 (Heun); the last step to sigma = 0 is Euler.
  n = num_steps
  x, traj = _scan(step, x_init, (jnp.arange(n - 1), sigmas[:n - 1], sigmas[1:n]),
                  return_trajectory)
  x_hat, sigma_hat = churn(x, n - 1, sigmas[n - 1])
  x = x_hat - sigma_hat * deriv(x_hat, sigma_hat)        # = D(x_hat, sigma_hat)
  if traj is not None:
    traj = jnp.concatenate([traj, x[None]], 0)
  return x, _info((2 * n - 1) if heun else n, traj)


def dpm_solver_pp_sigmas(num_steps: int, sigma_min: float, sigma_max: float):
  r"""The M + 1 noise levels of DPM-Solver++'s logSNR-uniform steps: lambda = -log sigma
  (the half log-SNR of x = x_0 + sigma eps) evenly spaced from -log sigma_max to
  -log sigma_min (Lu et al. 2022, arXiv:2211.01095, Sec. 3.3 and App. D). Returns [M + 1]."""
  lam = np.linspace(-math.log(sigma_max), -math.log(sigma_min), num_steps + 1)
  return jnp.asarray(np.exp(-lam), jnp.float32)


def dpm_solver_pp_2m(denoise_fn: Callable, x_T, num_steps: int = 10,
                     sigma_min: float = 0.002, sigma_max: float = 80.0,
                     lower_order_final: bool = True, return_trajectory: bool = False):
  r"""DPM-Solver++(2M) (Lu et al. 2022, arXiv:2211.01095, Algorithm 2) on the probability-flow
  ODE of x = x_0 + sigma eps, with the data prediction D(x; sigma) (an EDM denoiser; a VP
  model's through `edm_denoiser_from_discrete`: the solver is the same in either
  parametrisation, x_vp = x / sqrt(1 + sigma^2)).

  With lambda = -log sigma, h_i = lambda_i - lambda_{i-1} and r_i = h_{i-1} / h_i:
      x_1 = (sigma_1 / sigma_0) x_0 - (e^{-h_1} - 1) D_0                     (DDIM's step)
      x_i = (sigma_i / sigma_{i-1}) x_{i-1} - (e^{-h_i} - 1) [(1 + 1/(2 r_i)) D_{i-1}
                                                            - 1/(2 r_i) D_{i-2}],
  D_j = D(x_j; sigma_j), one evaluation a step (NFE = M), sigma_i logSNR-uniform from sigma_max
  to sigma_min (`dpm_solver_pp_sigmas`), from x_0 = x_T (noise at sigma_max: sigma_max z).
  Deterministic given x_T. With `lower_order_final` the last
  step is first order when M < 15, as the paper's code does for few steps (its stability).
  Returns x at sigma_min (not denoised further)."""
  sigmas = dpm_solver_pp_sigmas(num_steps, sigma_min, sigma_max)
  lam = -jnp.log(sigmas)
  first_order_last = lower_order_final and num_steps < 15

  def step(carry, inp):
    x, d_prev = carry                                 # x_{i}, D_{i-1}
    i, sigma, sigma_next, h, h_prev = inp
    d = denoise_fn(x, _full(x, sigma))
    r = h_prev / h
    second = jnp.where(i == 0, 0.0, 1.0)
    if first_order_last:
      second = jnp.where(i == num_steps - 1, 0.0, second)
    d_hat = d + second * (d - d_prev) / (2.0 * r)     # (1 + 1/2r) D_{i-1} - 1/2r D_{i-2}
    x_next = (sigma_next / sigma) * x - jnp.expm1(-h) * d_hat
    return x_next, d

  h = lam[1:] - lam[:-1]
  h_prev = jnp.concatenate([h[:1], h[:-1]])
  inputs = (jnp.arange(num_steps), sigmas[:-1], sigmas[1:], h, h_prev)
  (x, _), traj = _scan(step, (x_T, jnp.zeros_like(x_T)), inputs, return_trajectory)
  return x, _info(num_steps, None if traj is None else traj[0])


def edm_denoiser_from_discrete(x0_fn: Callable, schedule: DiscreteSchedule, clip: bool = True):
  r"""EDM's denoiser D(x; sigma) from a discrete-time VP model (DDPM), so that `edm_sampler`
  can drive it (Karras et al. 2022, arXiv:2206.00364, Sec. 3 and Table 1, VP column; App. C.1).

  A VP state x_n = sqrt(abar_n) x_0 + sqrt(1 - abar_n) eps is x / sqrt(1 + sigma^2) for the
  EDM state x = x_0 + sigma eps with sigma_n = sqrt((1 - abar_n) / abar_n). So at any sigma:
  alpha = 1 / sqrt(1 + sigma^2) (= sqrt(abar)), x_vp = alpha x, sigma_vp = alpha sigma, the
  continuous step index n(sigma) is interpolated linearly in log sigma between the schedule's
  sigma_n, and D(x; sigma) = x0_hat(x_vp, n(sigma)): the model's estimate of x_0 is the same
  in both parametrisations.

  Args:
    x0_fn: (x_vp, n [B] float, alpha [B], sigma_vp [B]) -> the model's x_0 estimate.
    schedule: the model's `DiscreteSchedule`.
    clip: clip D to [-1, 1] (image data).
  Returns:
    (denoise(x, sigma [B]) -> D, sigma_min = sigma_0, sigma_max = sigma_{T-1}).
  """
  log_sigmas = 0.5 * jnp.log(schedule.one_minus_alpha_bars / schedule.alpha_bars)
  steps = jnp.arange(schedule.num_steps, dtype=jnp.float32)

  def denoise(x, sigma):
    n = jnp.interp(jnp.log(sigma), log_sigmas, steps)
    alpha = jax.lax.rsqrt(1.0 + sigma ** 2)
    x0 = x0_fn(x * _bcast(alpha, x), n, alpha, sigma * alpha)
    return jnp.clip(x0, -1.0, 1.0) if clip else x0
  return denoise, float(jnp.exp(log_sigmas[0])), float(jnp.exp(log_sigmas[-1]))


# --------------------------------------------------------------------------
# Flow matching (velocity_fn(x, t), noise at t = 0, data at t = 1).
# --------------------------------------------------------------------------

def flow_sampler(velocity_fn: Callable, x_0, num_steps: int, method: str = 'euler',
                 return_trajectory: bool = False):
  """Integrates dx/dt = v(x, t) from t = 0 (noise) to t = 1 (data) with Euler or Heun
  steps on a uniform grid. NFE = num_steps (Euler) or 2 num_steps (Heun)."""
  ts = jnp.linspace(0.0, 1.0, num_steps + 1)
  x, traj, nfe = _ode_solve(velocity_fn, x_0, ts, method, return_trajectory)
  return x, _info(nfe, traj)


# --------------------------------------------------------------------------
# Classifier-free guidance.
# --------------------------------------------------------------------------

def classifier_free_guidance(fn: Callable, label, null_label: int, guidance) -> Callable:
  r"""Ho & Salimans (arXiv:2207.12598): for a model fn(x, t, label) trained with label
  dropout, returns the guided model of (x, t)

      f_w(x, t) = f(x, t, null) + w (f(x, t, label) - f(x, t, null)),

  so w = 0 is the unconditional model, w = 1 the conditional one and w > 1 extrapolates
  (Ho & Salimans' w equals this w - 1). Valid for every output that is linear in the
  score (eps, score, x0 / denoiser, velocity). Both passes run as one batch of 2B."""
  def guided(x, t):
    b = x.shape[0]
    lab = jnp.broadcast_to(jnp.asarray(label, jnp.int32), (b,))
    labels = jnp.concatenate([lab, jnp.full((b,), null_label, jnp.int32)])
    out = fn(jnp.concatenate([x, x]), jnp.concatenate([t, t]), labels)
    cond, uncond = out[:b], out[b:]
    return uncond + guidance * (cond - uncond)
  return guided
