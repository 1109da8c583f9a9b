r"""Score-based generative modelling with SDEs (Song et al. 2021, arXiv:2011.13456).

Forward SDE 'vp' (the continuous DDPM), 'subvp' or 've'; the network predicts the
noise, so s_theta(x, t) = -net(x, t) / sigma_t (Song et al.'s parametrisation for VP;
the `scale_by_sigma` of their VE models). Loss: continuous denoising score matching
with the uniform weighting lambda = sigma_t^2 (an eps-regression) or the likelihood
weighting lambda = g(t)^2 (Song, Durkan et al., arXiv:2101.09258). Samplers:
'pc' (reverse Euler–Maruyama predictor + Langevin corrector), 'euler_maruyama',
'ode_heun' / 'ode_euler' (probability-flow ODE). log_likelihood: the probability-flow
ODE's exact likelihood (Hutchinson trace, diffrax Tsit5) of uniformly dequantised
images, converted to the data's levels (a bound on log P of the levels; exact for the
dequantised density up to the solver and the Hutchinson noise).

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

SAMPLERS = ('pc', 'euler_maruyama', 'ode_heun', 'ode_euler')


@dataclasses.dataclass(frozen=True, kw_only=True)
class Fields(common.ODEDiffusionFields):
  """score_sde's config.model fields, with their defaults."""
  sde: str = 'vp'                    # vp | subvp | ve
  beta_min: float = 0.1              # vp, subvp
  beta_max: float = 20.0
  sigma_min: float = 0.01            # ve (sigma_max ~ the largest data distance)
  sigma_max: float = 50.0
  weighting: str = 'uniform'         # uniform (sigma^2) | likelihood (g^2)
  sampler: str = 'pc'                # pc | euler_maruyama | ode_heun | ode_euler; num_steps
                                     # 0 = 500 (pc, euler_maruyama) or 100 (ode_*)
  snr: float = 0.16                  # Langevin corrector signal-to-noise ratio
  corrector_steps: int = 1
  sample_t_min: float = 1e-3         # sampling stops here, then one Tweedie denoising step


def make_spec(model_config, info) -> common.DiffusionSpec:
  f = parse_model_config(Fields, model_config, strict=False)
  sde = sm.get_sde(f.sde, float(f.beta_min), float(f.beta_max), float(f.sigma_min),
                   float(f.sigma_max))
  weighting = f.weighting
  sampler = f.sampler
  if sampler not in SAMPLERS:
    raise UserError(f"score_sde: unknown model.sampler {sampler!r}; use one of {SAMPLERS}.")
  snr = float(f.snr)
  corrector_steps = int(f.corrector_steps)
  t_min = float(f.sample_t_min)
  trace = f.trace
  rtol, atol = float(f.rtol), float(f.atol)

  def score(model):
    def fn(x, t):
      _, sigma = sde.marginal(t)
      return -model(x, t) / sigma.reshape(-1, *[1] * (x.ndim - 1))
    return fn

  def loss(model, x0, rng):
    return sm.dsm_loss(score(model), sde, x0, rng, weighting), {}

  def sample(model, rng, shape, num_steps, return_trajectory):
    noise_key, key = jax.random.split(rng)
    x_T = sde.prior_std * jax.random.normal(noise_key, shape)
    s = score(model)
    if sampler == 'pc':
      return samplers.predictor_corrector(s, sde, x_T, key, num_steps, snr, corrector_steps,
                                          t_min, return_trajectory=return_trajectory)
    if sampler == 'euler_maruyama':
      return samplers.euler_maruyama(s, sde, x_T, key, num_steps, t_min,
                                     return_trajectory=return_trajectory)
    return samplers.probability_flow_sampler(s, sde, x_T, num_steps, sampler[4:], t_min,
                                             return_trajectory=return_trajectory)

  def log_likelihood(model, x, rng):
    drift = samplers.probability_flow_drift(score(model), sde)
    logp, _ = ode_log_likelihood(drift, x, sde.eps, sde.T, gaussian_logp(sde.prior_std), rng,
                                 trace=trace, rtol=rtol, atol=atol)
    return logp

  return common.DiffusionSpec(
      time_input=lambda t: 999.0 * jnp.asarray(t, jnp.float32), loss=loss, sample=sample,
      log_likelihood=log_likelihood, likelihood_kind='density', likelihood_is_exact=True,
      default_num_steps=500 if sampler in ('pc', 'euler_maruyama') else 100)


def make(model_config, info) -> Paradigm:
  fields = parse_model_config(Fields, model_config)
  return common.make_paradigm(make_spec(fields, info), fields, info, 'score_sde')
