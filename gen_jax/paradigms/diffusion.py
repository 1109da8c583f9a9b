r"""The diffusion family: what ddpm, score_sde, edm, flow_matching (and latent_diffusion) share.

This is the public module to extend the family from. Each paradigm supplies only its
mathematics as a `DiffusionSpec` -- how the network's time input is made, its per-example
loss, its sampler and its likelihood -- written against a *model closure*
``model(x, t) -> raw network output`` in which the parameters and labels are bound. This
module owns everything else: the network (`net`: U-Net or DiT for images; ScoreMLP for
points), the map between the data and the model space, label dropout and classifier-free
guidance, the `sample` options of `gen_jax.paradigms.base`, trajectories, and turning a
density into a likelihood on the data's own levels (uniform dequantisation).

Model space: images with L levels are mapped k -> 2k/(L-1) - 1 in [-1, 1] and back
to [0, 1] by (x + 1) / 2; points are used as they are.

Model fields: `DiffusionFields` (network, labels and guidance, sampler steps, dequantised
evaluation), the base class of every diffusion paradigm's `Fields`; `ODEDiffusionFields`
adds the ODE likelihood's solver fields (score_sde, edm, flow_matching).

A new diffusion variant
-----------------------
`config.paradigm` names a module of gen_jax/paradigms/ (or a dotted module path) whose
`make(model_config, info)` returns the Paradigm. A variant is such a module with its own
fields, a `make_spec` and a two-line `make`; e.g. gen_jax/paradigms/my_diffusion.py::

  import dataclasses
  import jax, jax.numpy as jnp
  from gen_jax.paradigms import diffusion
  from gen_jax.paradigms.base import parse_model_config
  from gen_jax.samplers import diffusion as samplers

  @dataclasses.dataclass(frozen=True, kw_only=True)
  class Fields(diffusion.DiffusionFields):
    sigma_max: float = 80.0              # config.model.sigma_max, with its one default

  def make_spec(model_config, info) -> diffusion.DiffusionSpec:
    f = parse_model_config(Fields, model_config, strict=False)
    def loss(model, x0, rng):            # model(x, t): the network, params and labels bound
      ...                                # -> (per-example loss [B], metrics)
    def sample(model, rng, shape, num_steps, return_trajectory):
      ...                                # -> (x in model space, {'nfe': ..., ['trajectory']})
    def log_likelihood(model, x, rng):
      ...                                # -> [B] nats (a density in model space here)
    return diffusion.DiffusionSpec(
        time_input=lambda t: 999.0 * jnp.asarray(t, jnp.float32), loss=loss, sample=sample,
        log_likelihood=log_likelihood, likelihood_kind='density', likelihood_is_exact=True,
        default_num_steps=50)

  def make(model_config, info):
    fields = parse_model_config(Fields, model_config)    # refuses unknown fields
    return diffusion.make_paradigm(make_spec(fields, info), fields, info, 'my_diffusion')

and a config file experiments/configs/my_diffusion.py: ``config =
base_diffusion_config('my_diffusion', arg)`` (experiments/configs/_diffusion.py: the
network's fields for the dataset), then
``config.model.update(model_fields(my_diffusion.Fields, 'sigma_max'))`` (the fields the
config exposes, at the dataclass defaults; experiments/configs/common.py). Added to
latent_diffusion.OBJECTIVES, the variant also runs on a VAE's latents. ddpm.py, edm.py,
score_sde.py and flow_matching.py are the worked examples.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, NamedTuple, Optional

import chex
import jax
import jax.numpy as jnp

from gen_jax.errors import UserError
from gen_jax.losses.nll import bits_per_dim
from gen_jax.nets.dit import DiT
from gen_jax.nets.unet import ScoreMLP, UNet
from gen_jax.paradigms.base import Paradigm, parse_model_config
from gen_jax.samplers.diffusion import classifier_free_guidance

MAX_TRAJECTORY_FRAMES = 100


@dataclasses.dataclass(frozen=True, kw_only=True)
class DiffusionFields:
  """The config.model fields every diffusion paradigm shares, with their defaults."""
  # U-Net (images)
  channels: int = 32                          # width of the first stage
  channel_mult: tuple[int, ...] = (1, 2)      # width multipliers; the image halves len - 1 times
  num_res_blocks: int = 1                     # residual blocks per stage
  attn_resolutions: tuple[int, ...] = ()      # resolutions (H) with self-attention
  dropout: float = 0.0
  groups: int = 8                             # GroupNorm groups
  # the image network: unet | dit (Peebles & Xie 2023; gen_jax.nets.dit)
  net: str = 'unet'
  patch_size: int = 2                         # DiT: p x p patches
  dit_width: int = 128                        # DiT: token width
  dit_depth: int = 4                          # DiT: blocks
  dit_heads: int = 4                          # DiT: attention heads
  # ScoreMLP (points)
  hidden: int = 128
  num_layers: int = 3                         # residual layers
  # labels: classifier-free guidance (Ho & Salimans 2022, arXiv:2207.12598)
  conditional: bool = False                   # condition on batch['label']
  label_dropout: float = 0.1                  # null label with this probability in training
  guidance: float = 1.0                       # w: uncond + w (cond - uncond); 0 = uncond, 1 = cond
  num_steps: int = 0                          # sampler steps; 0 = the paradigm's default
  dequantize_eval: bool = True                # images: uniformly dequantised ODE likelihoods


# Which of them configure the U-Net, the ScoreMLP and the guidance (the config files list them).
UNET_FIELDS = ('channels', 'channel_mult', 'num_res_blocks', 'attn_resolutions', 'dropout',
               'groups')
MLP_FIELDS = ('hidden', 'num_layers')
DIT_FIELDS = ('net', 'patch_size', 'dit_width', 'dit_depth', 'dit_heads', 'dropout')
NETS = ('unet', 'dit')
GUIDANCE_FIELDS = ('conditional', 'label_dropout', 'guidance')


@dataclasses.dataclass(frozen=True, kw_only=True)
class ODEDiffusionFields(DiffusionFields):
  """DiffusionFields and the solver of an ODE likelihood (`gen_jax.samplers.ode_likelihood`)."""
  trace: str = 'hutchinson'                   # hutchinson | exact: the divergence estimator
  rtol: float = 1e-5
  atol: float = 1e-5


class DiffusionSpec(NamedTuple):
  """The part of a diffusion paradigm that is its own.

  Attributes:
    time_input: t [B] (the paradigm's own time: step index, t, c_noise) -> the float
      fed to the network's sinusoidal embedding (scaled to about [0, 1000]).
    loss: (model, x [B, ...], rng) -> (per-example loss [B], metrics dict of scalars);
      `model(x, t)` is the raw network with parameters and (dropped) labels bound.
    sample: (model, rng, shape, num_steps, return_trajectory) -> (x, info) in model
      space, info with 'nfe' and optionally 'trajectory'.
    log_likelihood: (model, x, rng) -> [B] nats. With likelihood_kind='discrete' this
      is already log P on the data's levels (DDPM's bound); with 'density' it is a log
      density in model space, which the common code dequantises and converts.
    likelihood_kind: 'discrete' or 'density'.
    likelihood_is_exact: False for bounds (DDPM VLB), True for the ODE likelihood
      (exact for points; for images the dequantised density is a bound on log P of
      the levels, so the paradigm reports False there).
    default_num_steps: sampler steps when neither the call nor the config set them.
  """
  time_input: Callable
  loss: Callable
  sample: Callable
  log_likelihood: Callable
  likelihood_kind: str
  likelihood_is_exact: bool
  default_num_steps: int


def build_net(model_config, info, paradigm: str):
  """U-Net for images, ScoreMLP for points (the `DiffusionFields` of `model_config`);
  UserError naming the fix otherwise."""
  f = parse_model_config(DiffusionFields, model_config, strict=False)
  conditional = bool(f.conditional)
  if conditional and not info.num_classes:
    raise UserError(f"{paradigm}: model.conditional=True needs labelled data, but "
                     f"{info.name!r} has no classes. Set --config.model.conditional=False.")
  num_classes = int(info.num_classes) if conditional else 0
  if f.net not in NETS:
    raise UserError(f"{paradigm}: model.net={f.net!r} is not a network; use one of {', '.join(NETS)}.")
  if info.kind == 'image':
    if len(info.shape) != 3:
      raise UserError(f"{paradigm}: images must be [H, W, C]; {info.name!r} has shape "
                       f"{info.shape}.")
    if f.net == 'dit':
      return DiT(patch_size=int(f.patch_size), width=int(f.dit_width), depth=int(f.dit_depth),
                 num_heads=int(f.dit_heads), dropout=float(f.dropout), num_classes=num_classes)
    mult = tuple(f.channel_mult)
    factor = 2 ** (len(mult) - 1)
    h, w, _ = info.shape
    if h % factor or w % factor:
      raise UserError(
          f"{paradigm}: the U-Net with channel_mult={mult} halves the image {len(mult) - 1} "
          f"times, so H and W must be divisible by {factor}, but {info.name!r} is {h}x{w}. "
          f"Use fewer entries in --config.model.channel_mult.")
    return UNet(channels=int(f.channels), channel_mult=mult,
                num_res_blocks=int(f.num_res_blocks),
                attn_resolutions=tuple(f.attn_resolutions),
                dropout=float(f.dropout), num_classes=num_classes, groups=int(f.groups))
  if info.kind == 'points':
    return ScoreMLP(hidden=int(f.hidden), num_layers=int(f.num_layers), num_classes=num_classes)
  raise UserError(f"{paradigm} models images or points, but {info.name!r} holds "
                   f"{info.kind}. Use an image dataset (digits, mnist_idx) or a toy2d set.")


def to_model_space(batch, info):
  """Batch -> float32 model-space data: image levels k -> 2k/(L-1) - 1; points as they are."""
  if info.kind == 'image':
    x = batch['image']
    chex.assert_rank(x, 4)
    return 2.0 * jnp.asarray(x, jnp.float32) / (info.num_levels - 1) - 1.0
  x = jnp.asarray(batch['x'], jnp.float32)
  chex.assert_rank(x, 2)
  return x


def from_model_space(x, info):
  """Model space -> sample units: images (x + 1) / 2 clipped to [0, 1]; points unchanged."""
  if info.kind == 'image':
    return jnp.clip((x + 1.0) / 2.0, 0.0, 1.0)
  return x


def make_paradigm(spec: DiffusionSpec, model_config, info, paradigm: str) -> Paradigm:
  """Binds a DiffusionSpec to a network (the `DiffusionFields` of `model_config`) and
  returns the Paradigm object; `paradigm` names it in error messages."""
  f = parse_model_config(DiffusionFields, model_config, strict=False)
  net = build_net(f, info, paradigm)
  conditional = bool(f.conditional)
  null_label = int(info.num_classes) if conditional else 0
  label_dropout = float(f.label_dropout)
  default_guidance = float(f.guidance)
  config_steps = int(f.num_steps or 0)
  dequantize = bool(f.dequantize_eval)

  def bind(params, labels=None, train=False, dropout_rng=None):
    def model(x, t):
      rngs = {'dropout': dropout_rng} if (train and dropout_rng is not None) else None
      return net.apply({'params': params}, x, spec.time_input(t), labels, train=train,
                       rngs=rngs)
    return model

  def init(rng, batch):
    x = to_model_space(batch, info)[:1]
    labels = jnp.zeros((1,), jnp.int32) if conditional else None
    return net.init(rng, x, jnp.zeros((1,), jnp.float32), labels)['params']

  def loss(params, batch, rng):
    x = to_model_space(batch, info)
    drop_key, loss_key, dropout_key = jax.random.split(rng, 3)
    labels = None
    if conditional:
      labels = jnp.asarray(batch['label'], jnp.int32)
      drop = jax.random.bernoulli(drop_key, label_dropout, labels.shape)
      labels = jnp.where(drop, null_label, labels)
    per_example, metrics = spec.loss(bind(params, labels, True, dropout_key), x, loss_key)
    chex.assert_shape(per_example, x.shape[:1])
    return jnp.mean(per_example), metrics

  @functools.partial(jax.jit, static_argnames=('num', 'num_steps', 'return_trajectory',
                                               'guided'))
  def _sample(params, rng, guidance, label, *, num, num_steps, return_trajectory, guided):
    if guided:
      def labelled(x, t, lab):
        return net.apply({'params': params}, x, spec.time_input(t), lab)
      model = classifier_free_guidance(labelled, label, null_label, guidance)
    else:
      model = bind(params)           # unconditional (the null label when conditional)
    x, info_ = spec.sample(model, rng, (num, *info.shape), num_steps, return_trajectory)
    out = {'nfe': info_['nfe']}
    if return_trajectory:
      traj = info_['trajectory']
      stride = max(1, math.ceil((traj.shape[0] - 1) / MAX_TRAJECTORY_FRAMES))
      idx = sorted(set(range(0, traj.shape[0], stride)) | {traj.shape[0] - 1})
      out['trajectory'] = from_model_space(traj[jnp.array(idx)], info)
    return from_model_space(x, info), out

  def sample(params, rng, num, num_steps=None, guidance=None, label=None,
             return_trajectory=False, return_info=False):
    """Samples [num, *shape] (images in [0, 1]). Options: num_steps, label (int or [num]
    ints; conditional models), guidance (w; default config.model.guidance when a label is
    given), return_trajectory (-> (samples, trajectory [frames, num, ...], at most ~100
    frames)), return_info (-> also {'nfe', 'network_evals'})."""
    if label is None and guidance is not None:
      raise UserError(f"{paradigm}: guidance={guidance} needs a label; pass label=<class>.")
    if label is not None and not conditional:
      raise UserError(f"{paradigm}: label={label} given to an unconditional model; train "
                       "with --config.model.conditional=True to use labels and guidance.")
    guided = label is not None
    steps = int(num_steps or config_steps or spec.default_num_steps)
    w = jnp.float32(default_guidance if guidance is None else guidance)
    lab = jnp.broadcast_to(jnp.asarray(0 if label is None else label, jnp.int32), (num,))
    x, out = _sample(params, rng, w, lab, num=int(num), num_steps=steps,
                     return_trajectory=bool(return_trajectory), guided=guided)
    out['network_evals'] = out['nfe'] * (2 if guided else 1)
    result = (x, out['trajectory']) if return_trajectory else x
    if return_info:
      info_ = {k: v for k, v in out.items() if k != 'trajectory'}
      return (*result, info_) if return_trajectory else (result, info_)
    return result

  def log_likelihood(params, batch, rng):
    """log P(x) [B] in nats on the data's levels (a bound; see likelihood_is_exact)."""
    x = to_model_space(batch, info)
    model = bind(params)
    if spec.likelihood_kind == 'discrete' or info.kind != 'image':
      return spec.log_likelihood(model, x, rng)
    # Uniform dequantisation: y = k + u in [0, L), z = 2 (y - 1/2) / (L - 1) - 1, so that
    # log p(y) = log p(z) + D log(2 / (L - 1)) and E_u log p(y) <= log P(k).
    u_key, ll_key = jax.random.split(rng)
    levels = info.num_levels
    u = jax.random.uniform(u_key, x.shape) - 0.5 if dequantize else jnp.zeros_like(x)
    z = x + 2.0 * u / (levels - 1)
    return spec.log_likelihood(model, z, ll_key) + info.num_dims * math.log(2.0 / (levels - 1))

  # Dequantised images give a bound on log P of the levels even for an exact density.
  return Paradigm(init=init, loss=loss, sample=sample, log_likelihood=log_likelihood,
                  likelihood_is_exact=spec.likelihood_is_exact and info.kind != 'image')


def bpd_metric(nll_nats, info) -> Optional[Any]:
  """Mean NLL (nats per example, on the data's levels) -> bits/dim."""
  return bits_per_dim(jnp.mean(nll_nats), info.num_dims)
