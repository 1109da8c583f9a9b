r"""The flow family: what the flow paradigms (glow, realnvp, flow2d) share -- data checks,
init, loss, likelihood and sampling around a bijective linen module from `gen_jax.nets.flows`.

This is the public module to extend the family from. A flow is any linen module with
``flow.apply(variables, y) -> (z [B, D], log_det [B])`` and
``flow.apply(variables, z, reverse=True) -> (y, log_det)``; `image_flow_paradigm(flow, info,
model_config)` makes it a Paradigm of dequantized images, `point_flow_paradigm(flow, info)`
one of continuous vectors. glow.py and realnvp.py are the config names of one paradigm here,
`multiscale_image_paradigm` (the `flows.MultiScaleFlow` of Glow steps or RealNVP couplings),
and flow2d.py is the point flow of the toy sets.

Model fields: `ImageFlowFields` (dequantization, logit transform, sample temperature) of
every image flow, and `MultiScaleFields` (scales, steps, conditioner width, ...) of
glow / realnvp; flow2d's are in flow2d.py.

A new flow
----------
`config.paradigm` names a module of gen_jax/paradigms/ (or a dotted module path) whose
`make(model_config, info)` returns the Paradigm. A new image flow is a bijective module
(gen_jax/nets/flows.py holds the layers: ActNorm, InvertibleConv1x1, AffineCoupling,
squeeze, ...) and such a module; e.g. gen_jax/paradigms/my_flow.py::

  import dataclasses
  from gen_jax.paradigms import flow
  from gen_jax.paradigms.base import parse_model_config
  from my_project.nets import MyBijection   # __call__(y, reverse=False) -> (out, log_det [B])

  @dataclasses.dataclass(frozen=True, kw_only=True)
  class Fields(flow.ImageFlowFields):
    num_layers: int = 8                  # config.model.num_layers, with its one default

  def make(model_config, info):
    fields = parse_model_config(Fields, model_config)   # refuses unknown fields
    flow.check_image_info(info, 'my_flow')
    return flow.image_flow_paradigm(MyBijection(num_layers=fields.num_layers), info, fields)

and a config file experiments/configs/my_flow.py with
``config.model = model_fields(my_flow.Fields, 'num_layers', 'dequantization', ...)``
(`experiments/configs/common.py`). For points, `point_flow_paradigm(MyBijection(...), info)`
(flow2d.py is the worked example).

Images. Integer levels x in {0..L-1}^D are dequantized, v = x + u, and rescaled to
w = v / L in [0, 1)^D, then to the flow's input y = w - 1/2 (or, with model.logit_alpha > 0,
RealNVP's y = logit(alpha + (1 - 2 alpha) w)); the flow maps y to z, so
log p(v) = log N(z; 0, I) + log|det dz/dy| + log|det dy/dw| - D log L.
* model.dequantization = 'uniform': u ~ U[0, 1)^D (Theis et al. 2016, arXiv:1511.01844).
  `log_likelihood` returns log p(v) for one draw of u: the flow's density of v is exact,
  and it is an unbiased estimate of a lower bound on log P(x) of the discrete levels.
* 'variational' (Flow++, Ho et al. 2019, arXiv:1902.00275): u ~ q(u | x), a conditional
  flow (`gen_jax.nets.flows.VariationalDequantizer`) trained jointly; `log_likelihood`
  returns log p(v) - log q(u | x), one draw of the bound (which training tightens)
  log P(x) >= E_q[log p(x + u) - log q(u | x)].
Either way `likelihood_is_exact` is False for the image paradigms.

Points (toy2d). The flow models the continuous data directly: log p(x) is exact.

Sampling: z = temperature * eps, eps ~ N(0, I), then one inverse pass; images
are quantized back to levels, floor(w L), and returned as level / (L - 1). The default
temperature is model.sample_temperature (Glow samples at 0.7, arXiv:1807.03039 §5).
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from gen_jax.errors import UserError
from gen_jax.losses import nll as nll_lib
from gen_jax.nets import flows
from gen_jax.paradigms.base import Paradigm, parse_model_config


@dataclasses.dataclass(frozen=True, kw_only=True)
class ImageFlowFields:
  """The config.model fields of every image flow (`image_flow_paradigm`), with their defaults."""
  dequantization: str = 'uniform'    # uniform | variational (Flow++'s learned q(u | x))
  dequantizer_steps: int = 4         # variational only: checkerboard couplings of q(u | x)
  dequantizer_hidden: int = 32       # variational only: width of its conv nets
  logit_alpha: float = 0.0           # 0: the flow sees w - 1/2, w = (x + u) / L;
                                     # > 0: RealNVP's logit(a + (1 - 2a) w)
  sample_temperature: float = 1.0    # default temperature of sample(), used by the loop's grids


@dataclasses.dataclass(frozen=True, kw_only=True)
class MultiScaleFields(ImageFlowFields):
  """The config.model fields of glow and realnvp (`multiscale_image_paradigm`)."""
  num_scales: int = 2                # squeeze + steps (+ split) per scale; H, W divisible by
                                     # 2**num_scales
  steps_per_scale: int = 4           # K: glow steps [ActNorm, 1x1 conv, coupling]
                                     # (realnvp: couplings) per scale
  hidden: int = 64                   # width of each coupling's conv conditioner
  res_blocks: int = 0                # residual blocks in each conditioner (RealNVP's ResNets)
  split_prior: str = 'standard'      # factored-out halves ~ N(0, I); 'learned': Glow's
                                     # N(mu(h), sigma(h)^2)


def check_image_info(info, paradigm: str):
  """Raises UserError unless `info` describes images with levels."""
  if info.kind != "image":
    raise UserError(
        f"The {paradigm} paradigm models images, but dataset {info.name!r} holds {info.kind!r} "
        f"data. Use an image dataset (digits, mnist_idx), or the flow2d paradigm for toy2d points.")
  if len(info.shape) != 3 or not info.num_levels:
    raise UserError(f"{paradigm} needs images [H, W, C] with num_levels; got shape {info.shape} "
                     f"and num_levels={info.num_levels} for dataset {info.name!r}.")


def _actnorm_to_identity_unless(params, keep):
  """Where `keep` is False (a traced bool), ActNorm parameters become the identity (zeros).

  The data-dependent ActNorm init needs a batch of real data; the training loop may
  initialise with a constant placeholder batch (e.g. all zeros), whose statistics would
  give a degenerate scale. Then every ActNorm starts as the identity instead.
  """
  def fix(path, leaf):
    names = [str(getattr(k, "key", k)) for k in path]
    if any(n.endswith("actnorm") for n in names):
      return jnp.where(keep, leaf, jnp.zeros_like(leaf))
    return leaf
  return jax.tree_util.tree_map_with_path(fix, params)


def _non_constant(x):
  """True when the batch has more than one distinct example (a traced bool)."""
  x = jnp.asarray(x, jnp.float32)
  return jnp.any(x != x[:1]) if x.shape[0] > 1 else jnp.asarray(False)


def check_dequantization(fields: ImageFlowFields):
  """Raises UserError unless model.dequantization is 'uniform' or 'variational' and
  model.logit_alpha is in [0, 1/2)."""
  kind = fields.dequantization
  if kind not in ("uniform", "variational"):
    raise UserError(f"Unknown model.dequantization {kind!r}; use 'uniform' or 'variational'.")
  alpha = fields.logit_alpha
  if not 0.0 <= alpha < 0.5:
    raise UserError(f"model.logit_alpha must be in [0, 0.5) (0 = no logit transform); got {alpha}.")


def image_flow_paradigm(flow, info, model_config=None) -> Paradigm:
  """A Paradigm of dequantized images under the bijection `flow` (an
  `y -> (z [B, D], log_det [B])` linen module with `reverse=True` for the inverse).

  model_config: its `ImageFlowFields` are read here (None = their defaults; other names
  are the caller's): dequantization, dequantizer_steps, dequantizer_hidden (the q(u | x)
  flow), logit_alpha, sample_temperature (the default of `sample`).
  Params are the flow's params with uniform dequantization, and
  {'flow': ..., 'dequantizer': ...} with variational dequantization.
  """
  f = parse_model_config(ImageFlowFields, model_config, strict=False)
  check_dequantization(f)
  num_levels = int(info.num_levels)
  shape = tuple(info.shape)
  num_dims = math.prod(shape)
  alpha = float(f.logit_alpha)
  logit = flows.LogitTransform(alpha) if alpha > 0 else None
  dequantizer = None
  if f.dequantization == "variational":
    dequantizer = flows.VariationalDequantizer(num_steps=int(f.dequantizer_steps),
                                               hidden=int(f.dequantizer_hidden))
  default_temperature = float(f.sample_temperature)

  def to_flow_space(w):
    """w = v / L in [0, 1)^D -> (y, log|det dy/dw| [B])."""
    if logit is None:
      return w - 0.5, jnp.zeros(w.shape[:1], w.dtype)
    return logit.apply({}, w)

  def from_flow_space(y):
    return y + 0.5 if logit is None else logit.apply({}, y, reverse=True)[0]

  def context(x_levels):
    return jnp.asarray(x_levels, jnp.float32) / (num_levels - 1) - 0.5

  def dequantize(dequantizer_params, rng, x_levels):
    """(v = x + u, log q(u | x) [B] or None): u ~ U[0, 1)^D, or u ~ q(u | x), a map of the
    same uniform draw (identical to it while the dequantizer is the identity)."""
    if dequantizer is None:
      return nll_lib.uniform_dequantize(rng, x_levels), None
    w = jax.random.uniform(rng, jnp.shape(x_levels), dtype=jnp.float32)
    u, log_q = dequantizer.apply({"params": dequantizer_params}, w, context(x_levels))
    return jnp.asarray(x_levels, jnp.float32) + u, log_q

  def split(params):
    return (params["flow"], params["dequantizer"]) if dequantizer else (params, None)

  def init(rng, example_batch):
    """Params; ActNorm layers are initialised from the statistics of `example_batch`
    (when it holds more than one distinct image; else they start as the identity)."""
    x = example_batch["image"]
    # Uniformly dequantized data: what a variational dequantizer also gives at its init.
    y, _ = to_flow_space(nll_lib.uniform_dequantize(jax.random.fold_in(rng, 1), x) / num_levels)
    params = flow.init(jax.random.fold_in(rng, 0), y)["params"]
    params = _actnorm_to_identity_unless(params, _non_constant(x))
    if dequantizer is None:
      return params
    w = jnp.full(jnp.shape(x), 0.5, jnp.float32)
    return {"flow": params,
            "dequantizer": dequantizer.init(jax.random.fold_in(rng, 2), w, context(x))["params"]}

  def flow_terms(params, batch, rng):
    """(log p_Z(z), log|det dz/dw|, log q(u | x) or None), all [B], for w = (x + u) / L."""
    x = batch["image"]
    if x.shape[1:] != shape:
      raise UserError(f"Expected images of shape {shape}, got {x.shape[1:]}.")
    flow_params, dequantizer_params = split(params)
    v, log_q = dequantize(dequantizer_params, rng, x)
    y, log_det_pre = to_flow_space(v / num_levels)
    z, log_det = flow.apply({"params": flow_params}, y)
    return nll_lib.standard_normal_log_prob(z), log_det + log_det_pre, log_q

  def loss(params, batch, rng):
    log_p_z, log_det, log_q = flow_terms(params, batch, rng)
    bpd, metrics = nll_lib.dequantized_flow_nll(log_p_z, log_det, num_dims, num_levels, log_q)
    metrics["log_det_per_dim"] = jnp.mean(log_det) / num_dims
    return bpd, metrics

  def log_likelihood(params, batch, rng):
    """One-sample estimate of the dequantization bound on log P(x), nats [B]."""
    log_p_z, log_det, log_q = flow_terms(params, batch, rng)
    log_p_v = nll_lib.dequantized_log_likelihood(
        nll_lib.flow_log_prob(log_p_z, log_det), num_dims, 1.0 / num_levels)
    return log_p_v if log_q is None else nll_lib.variational_dequantization_bound(log_p_v, log_q)

  def sample(params, rng, num, temperature: float = default_temperature):
    """num images in [0, 1] ([num, H, W, C]); z = temperature * eps, one inverse pass."""
    z = temperature * jax.random.normal(rng, (num, num_dims), jnp.float32)
    y, _ = flow.apply({"params": split(params)[0]}, z, reverse=True)
    levels = jnp.clip(jnp.floor(from_flow_space(y) * num_levels), 0, num_levels - 1)
    return levels / (num_levels - 1)

  return Paradigm(init=init, loss=loss, sample=sample, log_likelihood=log_likelihood,
                  likelihood_is_exact=False)


def multiscale_image_paradigm(model_config, info, architecture: str) -> Paradigm:
  """The Paradigm of `flows.MultiScaleFlow` ('glow' | 'realnvp') on the images of `info`,
  configured by the `MultiScaleFields` of `model_config` (an unknown field is refused)."""
  f = parse_model_config(MultiScaleFields, model_config)
  check_image_info(info, architecture)
  flows.multiscale_plan(info.shape, f.num_scales, architecture)  # raises on a bad shape
  if f.split_prior not in flows.SPLIT_PRIORS:
    raise UserError(f"Unknown model.split_prior {f.split_prior!r}; use one of "
                    f"{flows.SPLIT_PRIORS} ('learned': Glow's conditional prior of each factored-out half).")
  res_blocks = f.res_blocks
  if not isinstance(res_blocks, int) or res_blocks < 0:
    raise UserError(f"model.res_blocks must be an integer >= 0 (residual blocks in each "
                    f"coupling's conditioner); got {res_blocks!r}.")
  flow = flows.MultiScaleFlow(image_shape=tuple(info.shape), num_scales=f.num_scales,
                              steps_per_scale=f.steps_per_scale, hidden=f.hidden,
                              architecture=architecture, split_prior=f.split_prior,
                              res_blocks=res_blocks)
  return image_flow_paradigm(flow, info, f)


def point_flow_paradigm(flow, info) -> Paradigm:
  """A Paradigm of continuous vectors batch['x'] [B, D] under the bijection `flow`;
  log p(x) = log N(f(x); 0, I) + log|det df/dx| is exact."""
  num_dims = math.prod(info.shape)

  def init(rng, example_batch):
    """Params; ActNorm layers are initialised from the statistics of `example_batch`
    (when it holds more than one distinct point; else they start as the identity)."""
    x = jnp.asarray(example_batch["x"], jnp.float32)
    params = flow.init(rng, x)["params"]
    return _actnorm_to_identity_unless(params, _non_constant(x))

  def log_likelihood(params, batch, rng=None):
    del rng
    z, log_det = flow.apply({"params": params}, jnp.asarray(batch["x"], jnp.float32))
    return nll_lib.flow_log_prob(nll_lib.standard_normal_log_prob(z), log_det)

  def loss(params, batch, rng):
    nll = -jnp.mean(log_likelihood(params, batch, rng))
    return nll, {"nll_nats": nll, "bits_per_dim": nll_lib.bits_per_dim(nll, num_dims)}

  def sample(params, rng, num, temperature: float = 1.0):
    """num points [num, D]: x = f^{-1}(temperature * eps)."""
    z = temperature * jax.random.normal(rng, (num, num_dims), jnp.float32)
    return flow.apply({"params": params}, z, reverse=True)[0]

  return Paradigm(init=init, loss=loss, sample=sample, log_likelihood=log_likelihood,
                  likelihood_is_exact=True)
