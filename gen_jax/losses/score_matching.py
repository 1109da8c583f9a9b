r"""Noise schedules and denoising score-matching losses of the diffusion family.

Every process here is Gaussian and linear in the data:

    x_t = alpha_t * x_0 + sigma_t * eps,     eps ~ N(0, I),

so one function of (alpha_t, sigma_t) turns any network parametrisation
(eps, x_0, v, score, EDM denoiser, velocity) into any other, and each loss is a
weighted regression onto a target of the form  p * x_0 + q * eps.

Losses are *per example* ([B], mean over data dimensions); the paradigm
reduces over the batch. Each takes the network as a closure
``fn(x_t, time) -> output`` (the paradigm binds the parameters and labels),
which keeps the losses pure functions of (fn, x_0, rng) with no Flax inside.

Papers:
  * DDPM: Ho, Jain, Abbeel 2020, arXiv:2006.11239 (linear betas, L_simple).
  * Cosine schedule: Nichol & Dhariwal 2021, arXiv:2102.09672.
  * v-prediction: Salimans & Ho 2022, arXiv:2202.00512.
  * Score SDEs (VP, sub-VP, VE): Song et al. 2021, arXiv:2011.13456.
  * Likelihood weighting: Song, Durkan, Murray, Ermon 2021, arXiv:2101.09258.
  * EDM: Karras, Aittala, Aila, Laine 2022, arXiv:2206.00364.
  * Flow matching: Lipman et al. 2022, arXiv:2210.02747; rectified flow: Liu,
    Gong, Liu 2022, arXiv:2209.03003.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gen_jax.errors import UserError


def _bcast(v, x):
  """[B] (or scalar) -> shape broadcastable against x [B, ...]."""
  v = jnp.asarray(v, x.dtype)
  return v.reshape(v.shape + (1,) * (x.ndim - v.ndim))


def _mean_over_dims(v):
  return jnp.mean(v.reshape(v.shape[0], -1), axis=-1)


# --------------------------------------------------------------------------
# Discrete-time DDPM schedules.
# --------------------------------------------------------------------------

class DiscreteSchedule(NamedTuple):
  r"""A DDPM schedule of T steps, indexed n = 0..T-1 (Ho et al.'s t = n + 1).

  betas[n] = beta_{n+1};  alphas = 1 - betas;  alpha_bars[n] = prod_{m<=n} alphas[m],
  so q(x_n | x_0) = N(sqrt(alpha_bars[n]) x_0, (1 - alpha_bars[n]) I).
  `one_minus_alpha_bars` is 1 - alpha_bars computed in float64 before the cast: in float32,
  1 - alpha_bar cancels catastrophically where alpha_bar is near 1 (1.7e-4 relative off at
  n = 0 of the linear schedule), so every sigma^2 below is read from it. The quantities the
  losses and samplers use -- sqrt(alpha_bar), sqrt(1 - alpha_bar), the posterior q(x_{n-1} |
  x_n, x_0)'s coefficients and variance (`q_posterior`) -- are float64 too, each rounded to
  float32 once (`_schedule_from_betas`), so each is within half a float32 ulp of the truth.
  """
  betas: jax.Array
  alphas: jax.Array
  alpha_bars: jax.Array
  one_minus_alpha_bars: jax.Array
  sqrt_alpha_bars: jax.Array             # alpha_n = sqrt(alpha_bar_n)
  sqrt_one_minus_alpha_bars: jax.Array   # sigma_n = sqrt(1 - alpha_bar_n)
  posterior_x0_coefs: jax.Array          # sqrt(alpha_bar_{n-1}) beta_n / (1 - alpha_bar_n)
  posterior_xt_coefs: jax.Array          # sqrt(alpha_n) (1 - alpha_bar_{n-1}) / (1 - alpha_bar_n)
  posterior_variances: jax.Array         # beta_tilde_n = (1 - abar_{n-1}) / (1 - abar_n) beta_n

  @property
  def num_steps(self) -> int:
    return self.betas.shape[0]

  def alpha_sigma(self, n):
    """(alpha_n, sigma_n) = (sqrt(alpha_bar_n), sqrt(1 - alpha_bar_n)) at integer steps n."""
    return self.sqrt_alpha_bars[n], self.sqrt_one_minus_alpha_bars[n]


def _schedule_from_betas(betas) -> DiscreteSchedule:
  r"""The schedule of `betas`, in float64 and cast to float32 once:
  log alpha_bar_n = sum_{m<=n} log1p(-beta_m), alpha_bar = exp(.), 1 - alpha_bar = -expm1(.),
  and every derived quantity (square roots, posterior coefficients) from those float64 values."""
  betas = np.asarray(betas, np.float64)
  log_alpha_bars = np.cumsum(np.log1p(-betas))
  ab, oma = np.exp(log_alpha_bars), -np.expm1(log_alpha_bars)
  ab_prev, oma_prev = np.concatenate([[1.0], ab[:-1]]), np.concatenate([[0.0], oma[:-1]])
  f32 = lambda a: jnp.asarray(a, jnp.float32)
  return DiscreteSchedule(
      f32(betas), f32(1.0 - betas), f32(ab), f32(oma), f32(np.sqrt(ab)), f32(np.sqrt(oma)),
      f32(np.sqrt(ab_prev) * betas / oma), f32(np.sqrt(1.0 - betas) * oma_prev / oma),
      f32(oma_prev / oma * betas))


def linear_schedule(num_steps: int = 1000, beta_start: float = 1e-4,
                    beta_end: float = 0.02) -> DiscreteSchedule:
  r"""Ho et al. (arXiv:2006.11239): beta_t linear from 1e-4 to 0.02 over T=1000 steps.

  For T != 1000 the endpoints are rescaled by 1000 / T (as in Nichol &
  Dhariwal's code) so that alpha_bar_T stays near its T=1000 value; that needs
  beta_T = 1000 beta_end / T < 1, i.e. T > 20 with the default endpoints.
  """
  scale = 1000.0 / num_steps
  if scale * beta_end >= 1.0:
    raise UserError(f"The linear beta schedule with T={num_steps} steps reaches beta_T = "
                     f"{scale * beta_end:g} >= 1 (its endpoints are rescaled by 1000/T); use "
                     f"T > {int(1000 * beta_end)} (num_diffusion_steps) or schedule='cosine'.")
  return _schedule_from_betas(np.linspace(scale * beta_start, scale * beta_end, num_steps))


def cosine_alpha_bar(t, s: float = 0.008):
  r"""Nichol & Dhariwal (arXiv:2102.09672), eq. 17: alpha_bar(t) = f(t) / f(0) with
  f(t) = cos^2( (t + s) / (1 + s) * pi / 2 ),  t in [0, 1]."""
  f = lambda u: jnp.cos((u + s) / (1.0 + s) * jnp.pi / 2) ** 2
  return f(t) / f(0.0)


def cosine_schedule(num_steps: int = 1000, s: float = 0.008,
                    max_beta: float = 0.999) -> DiscreteSchedule:
  r"""Cosine schedule: beta_n = 1 - alpha_bar(n+1/T) / alpha_bar(n/T), clipped at 0.999."""
  t = np.arange(num_steps + 1, dtype=np.float64) / num_steps
  ab = np.cos((t + s) / (1.0 + s) * np.pi / 2) ** 2     # cosine_alpha_bar, in float64
  betas = np.clip(1.0 - ab[1:] / ab[:-1], 0.0, max_beta)
  return _schedule_from_betas(betas)


def get_discrete_schedule(name: str, num_steps: int) -> DiscreteSchedule:
  if name == 'linear':
    return linear_schedule(num_steps)
  if name == 'cosine':
    return cosine_schedule(num_steps)
  raise UserError(f"Unknown DDPM schedule {name!r}: use 'linear' or 'cosine'.")


# --------------------------------------------------------------------------
# Converting between parametrisations of x_t = alpha x_0 + sigma eps.
# --------------------------------------------------------------------------

def to_eps_x0(prediction: str, out, x_t, alpha, sigma):
  r"""Network output in parametrisation `prediction` -> (eps_hat, x0_hat).

  eps: x0 = (x_t - sigma eps) / alpha.   x0: eps = (x_t - alpha x0) / sigma.
  v (Salimans & Ho, arXiv:2202.00512, for alpha^2 + sigma^2 = 1): v = alpha eps - sigma x0,
  hence x0 = alpha x_t - sigma v and eps = sigma x_t + alpha v.
  """
  alpha, sigma = _bcast(alpha, x_t), _bcast(sigma, x_t)
  if prediction == 'eps':
    return out, (x_t - sigma * out) / alpha
  if prediction == 'x0':
    return (x_t - alpha * out) / sigma, out
  if prediction == 'v':
    return sigma * x_t + alpha * out, alpha * x_t - sigma * out
  raise UserError(f"Unknown prediction {prediction!r}: use 'eps', 'x0' or 'v'.")


PREDICTIONS = ('eps', 'x0', 'v')


def prediction_target(prediction: str, x0, eps, alpha, sigma):
  """The regression target of each parametrisation: eps, x0 or v = alpha eps - sigma x0."""
  if prediction == 'eps':
    return eps
  if prediction == 'x0':
    return x0
  if prediction == 'v':
    return _bcast(alpha, x0) * eps - _bcast(sigma, x0) * x0
  raise UserError(f"Unknown prediction {prediction!r}: use 'eps', 'x0' or 'v'.")


def ddpm_loss_at(fn: Callable, schedule: DiscreteSchedule, x0, n, eps,
                 prediction: str = 'eps'):
  r"""L_simple at given steps n [B] and noise eps (Ho et al. eq. 14, generalised):

      || target - fn(sqrt(abar_n) x0 + sqrt(1 - abar_n) eps, n) ||^2 / D,

  with target eps, x0 or v. Unweighted, as in Ho et al.'s L_simple.
  """
  alpha, sigma = schedule.alpha_sigma(n)
  x_t = _bcast(alpha, x0) * x0 + _bcast(sigma, x0) * eps
  target = prediction_target(prediction, x0, eps, alpha, sigma)
  return _mean_over_dims(jnp.square(fn(x_t, n) - target))


def ddpm_loss(fn: Callable, schedule: DiscreteSchedule, x0, rng, prediction: str = 'eps'):
  """L_simple with n ~ U{0..T-1} and eps ~ N(0, I): per-example losses [B]."""
  n_key, eps_key = jax.random.split(rng)
  n = jax.random.randint(n_key, x0.shape[:1], 0, schedule.num_steps)
  eps = jax.random.normal(eps_key, x0.shape, x0.dtype)
  return ddpm_loss_at(fn, schedule, x0, n, eps, prediction)


# --------------------------------------------------------------------------
# Continuous-time SDEs (Song et al. 2021, arXiv:2011.13456).
# --------------------------------------------------------------------------

class SDE(NamedTuple):
  r"""A linear SDE dx = f(t) x dt + g(t) dw with Gaussian perturbation kernel.

  Attributes:
    name: 'vp', 'subvp' or 've'.
    marginal: t -> (alpha_t, sigma_t), the kernel p_t(x_t | x_0) = N(alpha_t x_0, sigma_t^2 I).
    drift_coef: t -> f(t) (the drift is f(t) * x).
    diffusion: t -> g(t).
    prior_std: the prior p_T = N(0, prior_std^2 I).
    T: end time (1).
    eps: smallest time used in training and likelihoods (1e-5).
  """
  name: str
  marginal: Callable
  drift_coef: Callable
  diffusion: Callable
  prior_std: float
  T: float = 1.0
  eps: float = 1e-5

  def prior_logp(self, z):
    """log N(z; 0, prior_std^2 I) summed over all but the first axis."""
    d = math.prod(z.shape[1:])
    s2 = self.prior_std ** 2
    return (-0.5 * d * jnp.log(2 * jnp.pi * s2)
            - 0.5 * jnp.sum(jnp.square(z).reshape(z.shape[0], -1), -1) / s2)


def vp_sde(beta_min: float = 0.1, beta_max: float = 20.0) -> SDE:
  r"""Variance preserving (Song et al. eq. 11): dx = -1/2 beta(t) x dt + sqrt(beta(t)) dw,
  beta(t) = beta_min + t (beta_max - beta_min). The kernel has
  log alpha_t = -1/4 t^2 (beta_max - beta_min) - 1/2 t beta_min, sigma_t^2 = 1 - alpha_t^2
  (the continuous limit of DDPM's linear schedule)."""
  beta = lambda t: beta_min + t * (beta_max - beta_min)
  log_alpha = lambda t: -0.25 * t ** 2 * (beta_max - beta_min) - 0.5 * t * beta_min

  def marginal(t):
    la = log_alpha(t)
    return jnp.exp(la), jnp.sqrt(-jnp.expm1(2.0 * la))

  return SDE('vp', marginal, lambda t: -0.5 * beta(t), lambda t: jnp.sqrt(beta(t)), 1.0)


def subvp_sde(beta_min: float = 0.1, beta_max: float = 20.0) -> SDE:
  r"""Sub-VP (Song et al. eq. 12): dx = -1/2 beta(t) x dt + sqrt(beta(t) (1 - e^{-2 int_0^t beta})) dw.
  Same mean as VP; sigma_t = 1 - alpha_t^2 (so sigma_t^2 <= the VP variance)."""
  beta = lambda t: beta_min + t * (beta_max - beta_min)
  log_alpha = lambda t: -0.25 * t ** 2 * (beta_max - beta_min) - 0.5 * t * beta_min

  def marginal(t):
    la = log_alpha(t)
    return jnp.exp(la), -jnp.expm1(2.0 * la)

  diffusion = lambda t: jnp.sqrt(beta(t) * -jnp.expm1(4.0 * log_alpha(t)))
  return SDE('subvp', marginal, lambda t: -0.5 * beta(t), diffusion, 1.0)


def ve_sde(sigma_min: float = 0.01, sigma_max: float = 50.0) -> SDE:
  r"""Variance exploding (Song et al. eq. 9 / 30): dx = sqrt(d sigma^2(t) / dt) dw with
  sigma(t) = sigma_min (sigma_max / sigma_min)^t, so g(t) = sigma(t) sqrt(2 log(sigma_max / sigma_min)).
  As in Song et al., the kernel is taken as N(x_0, sigma(t)^2 I) (exact for data already
  smoothed by N(0, sigma_min^2))."""
  log_ratio = math.log(sigma_max / sigma_min)
  sigma = lambda t: sigma_min * jnp.exp(t * log_ratio)
  marginal = lambda t: (jnp.ones_like(jnp.asarray(t, jnp.float32)), sigma(t))
  diffusion = lambda t: sigma(t) * math.sqrt(2.0 * log_ratio)
  return SDE('ve', marginal, lambda t: jnp.zeros_like(jnp.asarray(t, jnp.float32)),
             diffusion, sigma_max)


def get_sde(name: str, beta_min=0.1, beta_max=20.0, sigma_min=0.01, sigma_max=50.0) -> SDE:
  if name == 'vp':
    return vp_sde(beta_min, beta_max)
  if name == 'subvp':
    return subvp_sde(beta_min, beta_max)
  if name == 've':
    return ve_sde(sigma_min, sigma_max)
  raise UserError(f"Unknown SDE {name!r}: use 'vp', 'subvp' or 've'.")


def dsm_loss_at(score_fn: Callable, sde: SDE, x0, t, z, weighting: str = 'uniform'):
  r"""Continuous denoising score matching at times t [B] (Song et al. eq. 7):

      lambda(t) || s(x_t, t) + z / sigma_t ||^2 / D,   x_t = alpha_t x_0 + sigma_t z,

  since grad log p_t(x_t | x_0) = -z / sigma_t. Weightings:
    'uniform':    lambda = sigma_t^2 (Song et al.'s default; the eps-loss in score units);
    'likelihood': lambda = g(t)^2 (Song, Durkan et al. arXiv:2101.09258), which makes
                  1/2 * E_t[(T - eps) D * loss] + prior/decoder terms bound -log p.
  """
  alpha, sigma = sde.marginal(t)
  x_t = _bcast(alpha, x0) * x0 + _bcast(sigma, x0) * z
  residual = score_fn(x_t, t) + z / _bcast(sigma, x0)
  if weighting == 'uniform':
    lam = sigma ** 2
  elif weighting == 'likelihood':
    lam = sde.diffusion(t) ** 2
  else:
    raise UserError(f"Unknown weighting {weighting!r}: use 'uniform' or 'likelihood'.")
  return lam * _mean_over_dims(jnp.square(residual))


def dsm_loss(score_fn: Callable, sde: SDE, x0, rng, weighting: str = 'uniform'):
  """DSM with t ~ U(eps, T) and z ~ N(0, I): per-example losses [B]."""
  t_key, z_key = jax.random.split(rng)
  t = jax.random.uniform(t_key, x0.shape[:1], minval=sde.eps, maxval=sde.T)
  z = jax.random.normal(z_key, x0.shape, x0.dtype)
  return dsm_loss_at(score_fn, sde, x0, t, z, weighting)


# --------------------------------------------------------------------------
# EDM (Karras et al. 2022, arXiv:2206.00364).
# --------------------------------------------------------------------------

def edm_preconditioning(sigma, sigma_data: float = 0.5):
  r"""EDM Table 1: D(x; sigma) = c_skip x + c_out F(c_in x; c_noise) with
  c_skip = sd^2 / (sigma^2 + sd^2), c_out = sigma sd / sqrt(sigma^2 + sd^2),
  c_in = 1 / sqrt(sigma^2 + sd^2), c_noise = ln(sigma) / 4.
  They make the network's input and its effective target both unit-variance.
  Returns (c_skip, c_out, c_in, c_noise)."""
  sd2 = sigma_data ** 2
  s2 = jnp.square(sigma)
  return (sd2 / (s2 + sd2), sigma * sigma_data * jax.lax.rsqrt(s2 + sd2),
          jax.lax.rsqrt(s2 + sd2), jnp.log(sigma) / 4.0)


def edm_denoiser(raw_fn: Callable, sigma_data: float = 0.5) -> Callable:
  """Wraps a raw network F(x_in, c_noise) into the preconditioned D(x, sigma)."""
  def denoise(x, sigma):
    c_skip, c_out, c_in, c_noise = edm_preconditioning(sigma, sigma_data)
    return _bcast(c_skip, x) * x + _bcast(c_out, x) * raw_fn(_bcast(c_in, x) * x, c_noise)
  return denoise


def edm_loss_weight(sigma, sigma_data: float = 0.5):
  """EDM's lambda(sigma) = (sigma^2 + sd^2) / (sigma sd)^2 (Table 1)."""
  return (jnp.square(sigma) + sigma_data ** 2) / jnp.square(sigma * sigma_data)


def edm_loss_at(denoise_fn: Callable, x0, sigma, n, sigma_data: float = 0.5):
  r"""EDM eq. 2 with its weighting: lambda(sigma) || D(x_0 + sigma n; sigma) - x_0 ||^2 / D.

  With x_0 ~ N(mu, sd^2 I) the ideal denoiser attains exactly 1 at every sigma,
  the point of the preconditioning (unit-variance effective target)."""
  x_t = x0 + _bcast(sigma, x0) * n
  err = _mean_over_dims(jnp.square(denoise_fn(x_t, sigma) - x0))
  return edm_loss_weight(sigma, sigma_data) * err


def edm_loss(denoise_fn: Callable, x0, rng, sigma_data: float = 0.5,
             p_mean: float = -1.2, p_std: float = 1.2):
  """EDM loss with ln(sigma) ~ N(P_mean, P_std^2): per-example losses [B]."""
  s_key, n_key = jax.random.split(rng)
  sigma = jnp.exp(p_mean + p_std * jax.random.normal(s_key, x0.shape[:1]))
  n = jax.random.normal(n_key, x0.shape, x0.dtype)
  return edm_loss_at(denoise_fn, x0, sigma, n, sigma_data)


# --------------------------------------------------------------------------
# Conditional flow matching / rectified flow.
# --------------------------------------------------------------------------

def flow_path(t, sigma_min: float = 0.0):
  r"""Conditional OT path (Lipman et al. eq. 20-23, time reversed to noise at t=0):
  x_t = t x_1 + (1 - (1 - sigma_min) t) x_0 with x_0 ~ N(0, I) noise and x_1 data;
  returns (alpha_t, sigma_t) = (t, 1 - (1 - sigma_min) t). sigma_min = 0 is rectified flow."""
  return t, 1.0 - (1.0 - sigma_min) * t


def flow_matching_loss_at(velocity_fn: Callable, x1, t, x0, sigma_min: float = 0.0):
  r"""Conditional flow matching: || v(x_t, t) - (x_1 - (1 - sigma_min) x_0) ||^2 / D."""
  a, s = flow_path(t, sigma_min)
  x_t = _bcast(a, x1) * x1 + _bcast(s, x1) * x0
  target = x1 - (1.0 - sigma_min) * x0
  return _mean_over_dims(jnp.square(velocity_fn(x_t, t) - target))


def flow_matching_loss(velocity_fn: Callable, x1, rng, sigma_min: float = 0.0):
  """Flow matching with t ~ U(0, 1), x_0 ~ N(0, I): per-example losses [B]."""
  t_key, z_key = jax.random.split(rng)
  t = jax.random.uniform(t_key, x1.shape[:1])
  x0 = jax.random.normal(z_key, x1.shape, x1.dtype)
  return flow_matching_loss_at(velocity_fn, x1, t, x0, sigma_min)


# --------------------------------------------------------------------------
# The DDPM variational bound (Ho et al. eq. 5), in nats on the data's levels.
# --------------------------------------------------------------------------

def gaussian_kl(mean1, var1, mean2, var2):
  """KL(N(mean1, var1) || N(mean2, var2)), elementwise."""
  return 0.5 * (jnp.log(var2) - jnp.log(var1) + (var1 + jnp.square(mean1 - mean2)) / var2 - 1.0)


def _log_normal_interval(a, b):
  """log(Phi(b) - Phi(a)) for a <= b (either may be infinite), computed in the
  lower tail (flipping the interval when it lies to the right of 0)."""
  flip = a > 0
  lo, hi = jnp.where(flip, -b, a), jnp.where(flip, -a, b)
  log_hi, log_lo = jax.scipy.special.log_ndtr(hi), jax.scipy.special.log_ndtr(lo)
  d = jnp.minimum(log_lo - log_hi, -1e-12)
  return log_hi + jnp.log(-jnp.expm1(d))


def discretized_gaussian_log_likelihood(x, mean, std, num_levels: int):
  r"""log P(x) of the discretised Gaussian decoder of Ho et al. (eq. 13).

  x holds levels k mapped to c_k = 2k/(L-1) - 1 in [-1, 1]; level k receives the
  mass of N(mean, std^2) on [c_k - 1/(L-1), c_k + 1/(L-1)], the end bins
  extended to -inf / +inf, so the probabilities of the L levels sum to 1.
  """
  half = 1.0 / (num_levels - 1)
  lo = jnp.where(x < -1.0 + 1e-3 * half, -jnp.inf, (x - half - mean) / std)
  hi = jnp.where(x > 1.0 - 1e-3 * half, jnp.inf, (x + half - mean) / std)
  return _log_normal_interval(lo, hi)


def q_posterior(schedule: DiscreteSchedule, x0, x_t, n):
  r"""q(x_{n-1} | x_n, x_0) = N(mu_tilde, beta_tilde) (Ho et al. eq. 6-7):
  mu_tilde = sqrt(abar_{n-1}) beta_n / (1 - abar_n) x_0 + sqrt(alpha_n) (1 - abar_{n-1}) / (1 - abar_n) x_n,
  beta_tilde = (1 - abar_{n-1}) / (1 - abar_n) beta_n, with abar_{-1} = 1 (float64 tables of
  the schedule, rounded to float32 once)."""
  c0, ct = schedule.posterior_x0_coefs[n], schedule.posterior_xt_coefs[n]
  mean = _bcast(c0, x0) * x0 + _bcast(ct, x0) * x_t
  return mean, schedule.posterior_variances[n]


def reverse_variance(schedule: DiscreteSchedule, n, variance: str = 'beta'):
  """Fixed reverse-process variance sigma_n^2 of Ho et al.: beta_n ('beta') or
  beta_tilde_n ('beta_tilde'; at n = 0, where beta_tilde is 0, beta_tilde_1 is used
  as in Nichol & Dhariwal's clipped log-variance)."""
  if variance == 'beta':
    return schedule.betas[n]
  if variance == 'beta_tilde':
    bt = schedule.posterior_variances
    return jnp.concatenate([bt[1:2], bt[1:]])[n]
  raise UserError(f"Unknown variance {variance!r}: use 'beta' or 'beta_tilde'.")


def ddpm_prior_kl(schedule: DiscreteSchedule, x0):
  """L_T = KL(q(x_T | x_0) || N(0, I)) in nats, summed over dimensions: [B]."""
  alpha, sigma = schedule.alpha_sigma(schedule.num_steps - 1)
  kl = gaussian_kl(alpha * x0, sigma ** 2, 0.0, 1.0)
  return jnp.sum(kl.reshape(x0.shape[0], -1), -1)


def ddpm_vlb_term(x0_hat_fn: Callable, schedule: DiscreteSchedule, x0, n, eps,
                  num_levels=None, variance: str = 'beta'):
  r"""One term of the bound at steps n [B], in nats summed over dimensions:
  n >= 1: L_{n} = KL(q(x_{n-1} | x_n, x_0) || p(x_{n-1} | x_n));
  n == 0: L_0 = -log p(x_0 | x_1), the discretised decoder on `num_levels` levels
  (images in [-1, 1], x0_hat clipped to [-1, 1]), or for num_levels=None (continuous
  data) the Gaussian density N(x_0; mu, sigma_1^2), which makes the bound one on -log p(x_0).
  p(x_{n-1} | x_n) = N(mu_tilde(x_n, x0_hat), sigma_n^2) with x0_hat = x0_hat_fn(x_n, n)."""
  alpha, sigma = schedule.alpha_sigma(n)
  x_t = _bcast(alpha, x0) * x0 + _bcast(sigma, x0) * eps
  x0_hat = x0_hat_fn(x_t, n)
  if num_levels is not None:
    x0_hat = jnp.clip(x0_hat, -1.0, 1.0)
  mean_q, var_q = q_posterior(schedule, x0, x_t, n)
  mean_p, _ = q_posterior(schedule, x0_hat, x_t, n)
  var_p = _bcast(reverse_variance(schedule, n, variance), x0)
  kl = gaussian_kl(mean_q, _bcast(jnp.maximum(var_q, 1e-20), x0), mean_p, var_p)
  if num_levels is None:
    decoder = 0.5 * (jnp.log(2 * jnp.pi * var_p) + jnp.square(x0 - mean_p) / var_p)
  else:
    decoder = -discretized_gaussian_log_likelihood(x0, mean_p, jnp.sqrt(var_p), num_levels)
  per_dim = jnp.where(_bcast(n, x0) == 0, decoder, kl)
  return jnp.sum(per_dim.reshape(x0.shape[0], -1), -1)
