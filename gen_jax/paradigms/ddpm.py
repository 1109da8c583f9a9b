r"""DDPM: denoising diffusion probabilistic models (Ho, Jain, Abbeel 2020, arXiv:2006.11239).

Forward process q(x_n | x_0) = N(sqrt(abar_n) x_0, (1 - abar_n) I) over T steps of a
linear (Ho et al.) or cosine (Nichol & Dhariwal, arXiv:2102.09672) schedule; the
network predicts eps, x_0 or v = alpha eps - sigma x_0 (Salimans & Ho, arXiv:2202.00512)
and is trained with the unweighted L_simple. Sampling: ancestral (Ho et al. Alg. 2,
T steps) or DDIM with eta (Song et al., arXiv:2010.02502) on any number of steps.
log_likelihood: the variational bound L_T + sum_n L_n + L_0 with the discretised
decoder on the data's levels (a bound, in nats; all T terms, or an unbiased
estimate from `vlb_num_steps` stratified steps). The training metric
'bits_per_dim' is a one-step unbiased estimate of the same bound (noisy).

config.model fields: `Fields` below (beside gen_jax.paradigms.diffusion's DiffusionFields).
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import jax
import jax.numpy as jnp

from gen_jax.errors import UserError
from gen_jax.losses import score_matching as sm
from gen_jax.paradigms import diffusion as common
from gen_jax.paradigms.base import Paradigm, parse_model_config
from gen_jax.samplers import diffusion as samplers


@dataclasses.dataclass(frozen=True, kw_only=True)
class Fields(common.DiffusionFields):
  """ddpm's config.model fields, with their defaults."""
  num_diffusion_steps: int = 1000   # T
  schedule: str = 'linear'          # linear | cosine
  prediction: str = 'eps'           # eps | x0 | v
  sampler: str = 'ancestral'        # ancestral (T steps) | ddim (num_steps, eta; default 50) |
                                    # dpm_solver_pp (DPM-Solver++(2M), num_steps; default 10)
  eta: float = 0.0                  # DDIM: 0 deterministic, 1 = ancestral with beta_tilde
  ddim_spacing: str = 'uniform'     # DDIM steps: uniform | quadratic (more at low noise)
  variance: str = 'beta'            # reverse-process variance: beta | beta_tilde
  clip_denoised: Optional[bool] = None   # clip x0_hat to [-1, 1]; None = for images only
  vlb_num_steps: int = 0            # VLB terms in log_likelihood: 0 = all T; K = L_0 and L_T
                                    # exactly + an unbiased estimate of the T-1 KL terms from
                                    # K stratified steps


SAMPLERS = ('ancestral', 'ddim', 'dpm_solver_pp')
DEFAULT_NUM_STEPS = {'ddim': 50, 'dpm_solver_pp': 10}


def make_spec(model_config, info) -> common.DiffusionSpec:
  f = parse_model_config(Fields, model_config, strict=False)
  num_T = int(f.num_diffusion_steps)
  schedule = sm.get_discrete_schedule(f.schedule, num_T)
  prediction = f.prediction
  if prediction not in sm.PREDICTIONS:
    raise UserError(f"ddpm: unknown model.prediction {prediction!r}; use one of {sm.PREDICTIONS}.")
  sampler = f.sampler
  if sampler not in SAMPLERS:
    raise UserError(f"ddpm: unknown model.sampler {sampler!r}; use one of {', '.join(SAMPLERS)}.")
  eta = float(f.eta)
  spacing = f.ddim_spacing
  if spacing not in samplers.DDIM_SPACINGS:
    raise UserError(f"ddpm: unknown model.ddim_spacing {spacing!r}; use one of "
                     f"{samplers.DDIM_SPACINGS}.")
  variance = f.variance
  levels = info.num_levels if info.kind == 'image' else None
  clip = bool(info.kind == 'image' if f.clip_denoised is None else f.clip_denoised)
  vlb_steps = int(f.vlb_num_steps or num_T)

  def time_input(n):
    return jnp.asarray(n, jnp.float32) * (1000.0 / num_T)

  def predictions(out, x_t, n):
    alpha, sigma = schedule.alpha_sigma(n)
    return sm.to_eps_x0(prediction, out, x_t, alpha, sigma)

  def loss(model, x0, rng):
    n_key, eps_key = jax.random.split(rng)
    n = jax.random.randint(n_key, x0.shape[:1], 0, num_T)
    eps = jax.random.normal(eps_key, x0.shape, x0.dtype)
    alpha, sigma = schedule.alpha_sigma(n)
    x_t = alpha.reshape(-1, *[1] * (x0.ndim - 1)) * x0 + sigma.reshape(-1, *[1] * (x0.ndim - 1)) * eps
    out = model(x_t, n)                                   # one network call for both
    per_example = sm.ddpm_loss_at(lambda *_: out, schedule, x0, n, eps, prediction)
    x0_hat = jax.lax.stop_gradient(predictions(out, x_t, n)[1])
    term = sm.ddpm_vlb_term(lambda *_: x0_hat, schedule, x0, n, eps, levels, variance)
    vlb = num_T * term + sm.ddpm_prior_kl(schedule, x0)   # unbiased one-step estimate
    return per_example, {'bits_per_dim': common.bpd_metric(vlb, info)}

  def eps_fn(model):
    def fn(x, n):
      return predictions(model(x, n), x, n)[0]
    return fn

  def dpm_solver_pp(model, x_T, num_steps, return_trajectory):
    """DPM-Solver++(2M) on the VP model through its EDM denoiser: x_T ~ N(0, I) is the EDM
    state sqrt(1 + sigma_max^2) x_T at sigma_max = sigma_{T-1}; returns the state at sigma_0."""
    x0_fn = lambda x, n, alpha, sigma: sm.to_eps_x0(prediction, model(x, n), x, alpha, sigma)[1]
    denoise, sigma_min, sigma_max = samplers.edm_denoiser_from_discrete(x0_fn, schedule, clip)
    return samplers.dpm_solver_pp_2m(denoise, (1.0 + sigma_max ** 2) ** 0.5 * x_T, num_steps,
                                     sigma_min, sigma_max, return_trajectory=return_trajectory)

  def sample(model, rng, shape, num_steps, return_trajectory):
    noise_key, key = jax.random.split(rng)
    x_T = jax.random.normal(noise_key, shape)
    if sampler == 'ancestral':
      if num_steps != num_T:
        raise UserError(f"ddpm: ancestral sampling takes all T={num_T} steps, not "
                         f"num_steps={num_steps}; set --config.model.sampler=ddim for fewer.")
      return samplers.ddpm_ancestral(eps_fn(model), schedule, x_T, key, variance, clip,
                                     return_trajectory)
    if sampler == 'dpm_solver_pp':
      return dpm_solver_pp(model, x_T, num_steps, return_trajectory)
    return samplers.ddim(eps_fn(model), schedule, x_T, key, num_steps, eta, clip,
                         return_trajectory, spacing)

  def log_likelihood(model, x0, rng):
    """-(L_T + sum_{n>=1} L_n + L_0): all T terms, or the decoder L_0 and L_T exactly plus
    (T-1)/K times K stratified random steps of the T-1 KL terms, drawn independently for
    each example (unbiased; the large early terms make one shared draw per batch far too
    noisy, and keeping L_0 out of the sampling removes its share of the variance)."""
    x0_hat_fn = lambda x, n: predictions(model(x, n), x, n)[1]
    batch = x0.shape[0]

    def term(i, n):            # the i-th term, at steps n [B]
      eps = jax.random.normal(jax.random.fold_in(rng, i), x0.shape, x0.dtype)
      return sm.ddpm_vlb_term(x0_hat_fn, schedule, x0, n, eps, levels, variance)
    if vlb_steps >= num_T:
      ns = jnp.broadcast_to(jnp.arange(1, num_T)[:, None], (num_T - 1, batch))
      width = 1.0
    else:
      width = (num_T - 1) / vlb_steps
      offsets = jax.random.uniform(jax.random.fold_in(rng, num_T), (vlb_steps, batch)) * width
      ns = 1 + jnp.minimum(jnp.floor(jnp.arange(vlb_steps)[:, None] * width + offsets),
                           num_T - 2).astype(jnp.int32)
    kl_terms = jax.lax.map(lambda a: term(a[0], a[1]), (jnp.arange(1, len(ns) + 1), ns))
    return -(term(0, jnp.zeros((batch,), jnp.int32)) + width * jnp.sum(kl_terms, 0)
             + sm.ddpm_prior_kl(schedule, x0))

  return common.DiffusionSpec(
      time_input=time_input, loss=loss, sample=sample, log_likelihood=log_likelihood,
      likelihood_kind='discrete', likelihood_is_exact=False,
      default_num_steps=DEFAULT_NUM_STEPS.get(sampler, num_T))


def make(model_config, info) -> Paradigm:
  fields = parse_model_config(Fields, model_config)
  return common.make_paradigm(make_spec(fields, info), fields, info, 'ddpm')
