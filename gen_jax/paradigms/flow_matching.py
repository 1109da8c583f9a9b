r"""Conditional flow matching / rectified flow (Lipman et al. 2022, arXiv:2210.02747;
Liu, Gong, Liu 2022, arXiv:2209.03003).

Path x_t = t x_1 + (1 - (1 - sigma_min) t) x_0, x_0 ~ N(0, I) noise at t = 0, data x_1 at
t = 1 (sigma_min = 0: rectified flow); the network regresses the conditional velocity
x_1 - (1 - sigma_min) x_0. Sampling integrates dx/dt = v(x, t) from 0 to 1 with Euler
or Heun steps. log_likelihood: the exact likelihood of that ODE (Hutchinson trace,
diffrax Tsit5, prior N(0, I) at t = 0) of dequantised images on the data's levels.

config.model fields: `Fields` below (beside gen_jax.paradigms.diffusion's ODEDiffusionFields).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from gen_jax.errors import UserError
from gen_jax.samplers.ode_likelihood import gaussian_logp, ode_log_likelihood
from gen_jax.losses import score_matching as sm
from gen_jax.paradigms import diffusion as common
from gen_jax.paradigms.base import Paradigm, parse_model_config
from gen_jax.samplers import diffusion as samplers


@dataclasses.dataclass(frozen=True, kw_only=True)
class Fields(common.ODEDiffusionFields):
  """flow_matching's config.model fields, with their defaults."""
  sigma_min: float = 0.0             # 0 = rectified flow; Lipman et al. use a small sigma_min
  sampler: str = 'euler'             # euler | heun; num_steps 0 = 50 (euler) or 25 (heun)


def make_spec(model_config, info) -> common.DiffusionSpec:
  f = parse_model_config(Fields, model_config, strict=False)
  sigma_min = float(f.sigma_min)
  method = f.sampler
  if method not in ('euler', 'heun'):
    raise UserError(f"flow_matching: unknown model.sampler {method!r}; use 'euler' or 'heun'.")
  trace = f.trace
  rtol, atol = float(f.rtol), float(f.atol)

  def loss(model, x1, rng):
    return sm.flow_matching_loss(model, x1, rng, sigma_min), {}

  def sample(model, rng, shape, num_steps, return_trajectory):
    x0 = jax.random.normal(rng, shape)
    return samplers.flow_sampler(model, x0, num_steps, method, return_trajectory)

  def log_likelihood(model, x, rng):
    logp, _ = ode_log_likelihood(model, x, 1.0, 0.0, gaussian_logp(1.0), rng, trace=trace,
                                 rtol=rtol, atol=atol)
    return logp

  return common.DiffusionSpec(
      time_input=lambda t: 999.0 * jnp.asarray(t, jnp.float32), loss=loss, sample=sample,
      log_likelihood=log_likelihood, likelihood_kind='density', likelihood_is_exact=True,
      default_num_steps=50 if method == 'euler' else 25)


def make(model_config, info) -> Paradigm:
  fields = parse_model_config(Fields, model_config)
  return common.make_paradigm(make_spec(fields, info), fields, info, 'flow_matching')
