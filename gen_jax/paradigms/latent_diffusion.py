r"""Latent diffusion: the Diffusion family on a frozen VAE's latents (Rombach et al. 2022,
arXiv:2112.10752; a diffusion prior in a VAE's latent space as in Vahdat et al. 2021,
arXiv:2106.05931, here with the VAE trained first and frozen).

Stage 1 is a VAE run (`experiments/configs/vae.py`), read through `config.stage1`; its
encoder's posterior mean z = mu(x) of every image is computed once into the "encoded"
dataset (kind "latents", batches {"z": float32 [B, *latent_shape], ...}). Stage 2 trains
one of the Diffusion family's objectives on the standardised latents

    u = (z - m) / s,   m_d = mean of z_d,  s_d = std of z_d  over the encoded TRAIN split,

per latent dimension d (the dataset carries m and s: `info.latent_mean`, `info.latent_std`),
so that the data the noise schedules see have zero mean and unit variance in every
coordinate (Rombach et al. rescale by one global factor 1 / std for the same reason).
The objective, its sampler and its network are the existing ones, unchanged: the
`DiffusionSpec` of `model.objective` ('ddpm' | 'score_sde' | 'edm' | 'flow_matching',
configured by that paradigm's own `config.model` fields) bound by
`gen_jax.paradigms.diffusion.make_paradigm` to the ScoreMLP of 2-D points, applied to u flattened
to a vector of prod(latent_shape) coordinates.

Sampling: u ~ the objective's sampler, z = m + s u, x = E[x | z] of the frozen VAE
decoder (`info.stage1.decode`): images float32 [num, H, W, C] in [0, 1].

log_likelihood: none. The code z = mu(x) is a continuous, deterministic function of x,
so log p(x | z) + log p_theta(z) is not a bound on log P(x) (unlike a VQ code's two-stage
bound). A bound exists: the ELBO with the diffusion prior,
E_q[log p(x|z)] + E_q[log p_theta(z)] + H[q(z|x)] (LSGM), but it needs the posterior's
variance and a density of the latent model, neither of which this module uses; so the
paradigm is scored by its samples (FD), like a GAN.

config.model fields: `fields_class(objective)`, i.e. `Fields.objective` and the objective
paradigm's own `Fields`: hidden, num_layers (ScoreMLP), conditional / label_dropout /
guidance (classifier-free guidance with the stage-1 images' labels), num_steps, and the
objective's fields (e.g. edm: sigma_data, sigma_min, sigma_max, rho; ddpm:
num_diffusion_steps, schedule, prediction, sampler). The fields of the other objectives are
accepted and unused (a config switched by --config.model.objective keeps them).
"""
from __future__ import annotations

import dataclasses
import functools
import importlib
import math

import chex
import jax
import jax.numpy as jnp

from gen_jax.data.info import DatasetInfo
from gen_jax.errors import UserError
from gen_jax.paradigms import diffusion as common
from gen_jax.paradigms.base import Paradigm, parse_model_config

OBJECTIVES = ('ddpm', 'score_sde', 'edm', 'flow_matching')


@dataclasses.dataclass(frozen=True, kw_only=True)
class Fields:
  """latent_diffusion's own config.model field; the others are its objective's."""
  objective: str = 'edm'             # edm | ddpm | score_sde | flow_matching


def objective_module(objective: str):
  """The paradigm module of `objective`; UserError unless it is one of OBJECTIVES."""
  if objective not in OBJECTIVES:
    raise UserError(f"latent_diffusion: unknown model.objective {objective!r}; use one of "
                     f"{OBJECTIVES}.")
  return importlib.import_module(f'gen_jax.paradigms.{objective}')


@functools.cache
def fields_class(objective: str) -> type:
  """The config.model fields of latent diffusion with `objective`: `Fields` and the
  objective paradigm's `Fields`, with their defaults."""
  cls = dataclasses.make_dataclass(
      f'Fields_{objective}', [], bases=(Fields, objective_module(objective).Fields),
      frozen=True, kw_only=True)
  cls.__module__, cls.__qualname__ = __name__, f'fields_class({objective!r})'
  return cls


def standardisation(info):
  """(m, s): float32 arrays of the latent shape, the encoded train split's per-dimension
  mean and standard deviation (`info.latent_mean`, `info.latent_std`)."""
  mean, std = getattr(info, 'latent_mean', None), getattr(info, 'latent_std', None)
  if mean is None or std is None:
    raise UserError(f"latent_diffusion: dataset {info.name!r} carries no latent statistics "
                     "(latent_mean / latent_std); train on the 'encoded' dataset of a VAE.")
  mean = jnp.asarray(mean, jnp.float32).reshape(info.shape)
  std = jnp.asarray(std, jnp.float32).reshape(info.shape)
  return mean, jnp.maximum(std, 1e-6)      # a dead latent dimension (std 0) stays finite


def make(model_config, info) -> Paradigm:
  """Builds latent diffusion on the "latents" dataset described by `info` (with `info.stage1`)."""
  if info.kind != 'latents':
    raise UserError(
        f"latent_diffusion models a VAE's latents, but dataset {info.name!r} holds {info.kind}. "
        "Set config.dataset='encoded' and config.stage1 to a VAE run "
        "(see experiments/configs/latent_diffusion.py).")
  objective = parse_model_config(Fields, model_config, strict=False).objective
  fields_of = fields_class(objective)
  other_objectives = {f.name for o in OBJECTIVES for f in dataclasses.fields(fields_class(o))}
  fields = parse_model_config(fields_of, model_config, accept=other_objectives)
  mean, std = standardisation(info)
  latent_shape = tuple(info.shape)
  num_latent = math.prod(latent_shape)
  # The objective sees u flattened to points of num_latent coordinates (ScoreMLP).
  points = DatasetInfo(name=f'{info.name}/standardised', kind='points', shape=(num_latent,),
                       num_classes=info.num_classes)
  spec = objective_module(objective).make_spec(fields, points)
  inner = common.make_paradigm(spec, fields, points, 'latent_diffusion')
  decode = info.stage1.decode

  def standardise(batch):
    """Stage-2 batch -> the objective's points batch {'x': u [B, num_latent], 'label'}."""
    z = jnp.asarray(batch['z'], jnp.float32)
    chex.assert_shape(z, (None, *latent_shape))
    u = ((z - mean) / std).reshape(z.shape[0], num_latent)
    return {'x': u, **({'label': batch['label']} if 'label' in batch else {})}

  def to_images(u):
    """u [..., num_latent] -> images [..., H, W, C] in [0, 1] through z = m + s u."""
    lead = u.shape[:-1]
    z = mean + std * u.reshape(-1, *latent_shape)
    x = decode(z)
    return x.reshape(*lead, *x.shape[1:])

  def init(rng, batch):
    return inner.init(rng, standardise(batch))

  def loss(params, batch, rng):
    return inner.loss(params, standardise(batch), rng)

  def sample(params, rng, num, num_steps=None, guidance=None, label=None,
             return_trajectory=False, return_info=False):
    """Images [num, H, W, C] in [0, 1]; the options of the diffusion paradigms' `sample`
    (num_steps, label, guidance, return_trajectory: frames decoded too, return_info)."""
    out = inner.sample(params, rng, num, num_steps=num_steps, guidance=guidance, label=label,
                       return_trajectory=return_trajectory, return_info=return_info)
    if not (return_trajectory or return_info):
      return to_images(out)
    out = list(out)
    out[0] = to_images(out[0])
    if return_trajectory:
      out[1] = to_images(out[1])
    return tuple(out)

  return Paradigm(init=init, loss=loss, sample=sample, log_likelihood=None)
