r"""EDM: "Elucidating the design space of diffusion-based generative models"
(Karras, Aittala, Aila, Laine 2022, arXiv:2206.00364).

x = x_0 + sigma n; the denoiser D(x; sigma) = c_skip x + c_out F(c_in x; c_noise) with the
preconditioning of Table 1 (sigma_data), trained with lambda(sigma) ||D - x_0||^2 and
ln sigma ~ N(P_mean, P_std^2). Sampling: Algorithm 2 (Heun, rho = 7 schedule, optional
churn S_churn / S_tmin / S_tmax / S_noise); NFE = 2 num_steps - 1. log_likelihood: the
exact likelihood of the ODE dx/dsigma = (x - D(x; sigma)) / sigma from sigma_min to
sigma_max with prior N(0, sigma_max^2 I) (Hutchinson trace, diffrax), of dequantised
images, converted to the data's levels.

config.model fields: `Fields` below (beside gen_jax.paradigms.diffusion's ODEDiffusionFields).
"""
from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from gen_jax.samplers.ode_likelihood import gaussian_logp, ode_log_likelihood
from gen_jax.losses import score_matching as sm
from gen_jax.paradigms import diffusion as common
from gen_jax.paradigms.base import Paradigm, parse_model_config
from gen_jax.samplers import diffusion as samplers


@dataclasses.dataclass(frozen=True, kw_only=True)
class Fields(common.ODEDiffusionFields):
  """edm's config.model fields, with their defaults (Karras et al. 2022, Tables 1 and 5)."""
  sigma_data: float = 0.5            # data std (images in [-1, 1]: 0.5)
  p_mean: float = -1.2               # ln sigma ~ N(p_mean, p_std^2) in training
  p_std: float = 1.2
  sigma_min: float = 0.002           # the sampler's and the ODE likelihood's noise range
  sigma_max: float = 80.0
  rho: float = 7.0                   # the sampler's time-step exponent
  s_churn: float = 0.0               # stochastic sampling (churn); 0 = off
  s_tmin: float = 0.0
  s_tmax: float = float('inf')
  s_noise: float = 1.0
  heun: bool = True                  # Heun's 2nd-order steps (NFE = 2 num_steps - 1), else Euler


def make_spec(model_config, info) -> common.DiffusionSpec:
  f = parse_model_config(Fields, model_config, strict=False)
  sigma_data, p_mean, p_std = float(f.sigma_data), float(f.p_mean), float(f.p_std)
  sigma_min, sigma_max, rho = float(f.sigma_min), float(f.sigma_max), float(f.rho)
  churn = dict(s_churn=float(f.s_churn), s_tmin=float(f.s_tmin), s_tmax=float(f.s_tmax),
               s_noise=float(f.s_noise))
  heun = bool(f.heun)
  trace = f.trace
  rtol, atol = float(f.rtol), float(f.atol)

  def loss(model, x0, rng):
    return sm.edm_loss(sm.edm_denoiser(model, sigma_data), x0, rng, sigma_data, p_mean,
                       p_std), {}

  def sample(model, rng, shape, num_steps, return_trajectory):
    return samplers.edm_sampler(sm.edm_denoiser(model, sigma_data), shape, rng, num_steps,
                                sigma_min, sigma_max, rho, heun=heun,
                                return_trajectory=return_trajectory, **churn)

  def log_likelihood(model, x, rng):
    denoise = sm.edm_denoiser(model, sigma_data)

    def drift(y, sigma):
      return (y - denoise(y, sigma)) / sigma.reshape(-1, *[1] * (y.ndim - 1))
    logp, _ = ode_log_likelihood(drift, x, sigma_min, sigma_max, gaussian_logp(sigma_max),
                                 rng, trace=trace, rtol=rtol, atol=atol)
    return logp

  return common.DiffusionSpec(
      # the network sees c_noise = ln(sigma) / 4, scaled into the embedding's range
      time_input=lambda c_noise: 250.0 * jnp.asarray(c_noise, jnp.float32), loss=loss,
      sample=sample, log_likelihood=log_likelihood, likelihood_kind='density',
      likelihood_is_exact=True, default_num_steps=18)


def make(model_config, info) -> Paradigm:
  fields = parse_model_config(Fields, model_config)
  return common.make_paradigm(make_spec(fields, info), fields, info, 'edm')
