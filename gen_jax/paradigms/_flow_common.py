r"""What the flow paradigms (realnvp, glow, flow2d) share: data checks, init, loss,
likelihood and sampling around a bijective linen module from `gen_jax.nets.flows`.

Images. Integer levels x in {0..L-1}^D are dequantized, v = x + u with
u ~ U[0, 1)^D, and rescaled to y = v / L - 1/2 in [-1/2, 1/2)^D; the flow maps
y to z with log p(y) = log N(z; 0, I) + log|det dz/dy|, and
log p(v) = log p(y) - D log L. `log_likelihood` returns log p(v) for one draw of u:
the flow's density of v is exact, and it is an unbiased estimate of a lower
bound on log P(x) of the discrete levels (Theis et al. 2016, arXiv:1511.01844),
which is why `likelihood_is_exact` is False for the image paradigms.

Points (toy2d). The flow models the continuous data directly: log p(x) is exact.

Sampling: z = temperature * eps, eps ~ N(0, I), then one inverse pass; images
are quantized back to levels, floor((y + 1/2) L), and returned as level / (L - 1).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from gen_jax.losses import nll as nll_lib
from gen_jax.paradigms.base import Paradigm


def check_image_info(info, paradigm: str):
  """Raises ValueError unless `info` describes images with levels."""
  if info.kind != "image":
    raise ValueError(
        f"The {paradigm} paradigm models images, but dataset {info.name!r} holds {info.kind!r} "
        f"data. Use an image dataset (digits, mnist_idx), or the flow2d paradigm for toy2d points.")
  if len(info.shape) != 3 or not info.num_levels:
    raise ValueError(f"{paradigm} needs images [H, W, C] with num_levels; got shape {info.shape} "
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


def image_flow_paradigm(flow, info) -> Paradigm:
  """A Paradigm of uniformly dequantized images under the bijection `flow` (an
  `x -> (z [B, D], log_det [B])` linen module with `reverse=True` for the inverse)."""
  num_levels = int(info.num_levels)
  shape = tuple(info.shape)
  num_dims = math.prod(shape)

  def to_flow_space(rng, x_levels):
    v = nll_lib.uniform_dequantize(rng, x_levels)  # [0, L)
    return v / num_levels - 0.5                    # y = v / L - 1/2, scale 1/L

  def init(rng, example_batch):
    """Params; ActNorm layers are initialised from the statistics of `example_batch`
    (when it holds more than one distinct image; else they start as the identity)."""
    x = example_batch["image"]
    y = to_flow_space(jax.random.fold_in(rng, 1), x)
    params = flow.init(jax.random.fold_in(rng, 0), y)["params"]
    return _actnorm_to_identity_unless(params, _non_constant(x))

  def flow_terms(params, batch, rng):
    x = batch["image"]
    if x.shape[1:] != shape:
      raise ValueError(f"Expected images of shape {shape}, got {x.shape[1:]}.")
    z, log_det = flow.apply({"params": params}, to_flow_space(rng, x))
    return nll_lib.standard_normal_log_prob(z), log_det

  def loss(params, batch, rng):
    log_p_z, log_det = flow_terms(params, batch, rng)
    bpd, metrics = nll_lib.dequantized_flow_nll(log_p_z, log_det, num_dims, num_levels)
    metrics["log_det_per_dim"] = jnp.mean(log_det) / num_dims
    return bpd, metrics

  def log_likelihood(params, batch, rng):
    log_p_z, log_det = flow_terms(params, batch, rng)
    return nll_lib.dequantized_log_likelihood(
        nll_lib.flow_log_prob(log_p_z, log_det), num_dims, 1.0 / num_levels)

  def sample(params, rng, num, temperature: float = 1.0):
    """num images in [0, 1] ([num, H, W, C]); z = temperature * eps, one inverse pass."""
    z = temperature * jax.random.normal(rng, (num, num_dims), jnp.float32)
    y, _ = flow.apply({"params": params}, z, reverse=True)
    levels = jnp.clip(jnp.floor((y + 0.5) * num_levels), 0, num_levels - 1)
    return levels / (num_levels - 1)

  return Paradigm(init=init, loss=loss, sample=sample, log_likelihood=log_likelihood,
                  likelihood_is_exact=False)


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
