r"""Pixel-autoregressive image model: a GPT over raster-order pixel tokens.

Each image x (uint8 levels 0..L-1, [H, W, C]) is the sequence x_1..x_D,
D = H W C in raster order (row, column, channel), and

    log p(x) = \sum_{d=1}^D log p_theta(x_d | x_<d),

a categorical over the L levels at each step (van den Oord et al. 2016,
"Pixel Recurrent Neural Networks", arXiv:1601.06759; here with a transformer as
in Chen et al. 2020, "Generative Pretraining from Pixels"). The likelihood is
exact on the data's own levels, so bits/dim = -log2 p(x) / D and a uniform
model scores log2(L).

Tokens: 0..L-1 are the levels; L is the start token the first pixel is
predicted from. With `model.class_conditional` the start token is L + label,
one per class, and `sample(..., label=k)` draws from class k.
Samples are float32 [num, H, W, C] in [0, 1] (level k -> k / (L - 1)).
config.model fields: `Fields` below.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Optional

import jax.numpy as jnp
import numpy as np

from gen_jax.errors import UserError
from gen_jax.paradigms.base import Paradigm, parse_model_config
from gen_jax.paradigms.gpt import (ArCore, TransformerFields, _check_sampling_options, make_model,
                                   sample_labels)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Fields(TransformerFields):
  """pixel_ar's config.model fields, with their defaults."""
  class_conditional: bool = False    # start each image from a class token; sample(label=k)


def make(model_config, info) -> Paradigm:
  fields = parse_model_config(Fields, model_config)
  if info.kind != "image" or not info.num_levels:
    raise UserError(f"The pixel_ar paradigm models images with discrete levels; dataset "
                     f"{info.name!r} is kind {info.kind!r}. Use an image dataset (digits, "
                     "mnist_idx) or the gpt paradigm for text.")
  h, w, c = info.shape
  levels = info.num_levels
  dims = math.prod(info.shape)
  conditional = bool(fields.class_conditional)
  if conditional and not info.num_classes:
    raise UserError(f"model.class_conditional=True but dataset {info.name!r} has no labels; "
                     "set model.class_conditional=False.")
  num_starts = info.num_classes if conditional else 1
  core = ArCore(make_model(fields, levels + num_starts, dims), dims_per_token=1,
                num_outputs=levels)

  def split(batch):
    x = jnp.asarray(batch["image"])
    if x.shape[1:] != tuple(info.shape):
      raise UserError(f"batch['image'] has shape {x.shape[1:]} per example but the model was built "
                       f"for {tuple(info.shape)}; rebuild the paradigm with this dataset's info.")
    tokens = x.reshape(x.shape[0], dims).astype(jnp.int32)
    start = levels + (jnp.asarray(batch["label"], jnp.int32) if conditional
                      else jnp.zeros((x.shape[0],), jnp.int32))
    inputs = jnp.concatenate([start[:, None], tokens[:, :-1]], axis=1)
    return inputs, tokens

  def init(rng, batch):
    return core.init(rng, split(batch)[0])

  def loss(params, batch, rng):
    inputs, targets = split(batch)
    return core.loss(params, inputs, targets, rng)

  def log_likelihood(params, batch, rng=None):
    """log p(x) in nats per image [B], exact on the L levels."""
    inputs, targets = split(batch)
    return core.log_likelihood(params, inputs, targets)

  def sample(params, rng, num, temperature: float = 1.0, top_k: Optional[int] = None,
             top_p: Optional[float] = None, label: Optional[int] = None):
    """float32 [num, H, W, C] in [0, 1]; `label` (int or [num] ints) for class-conditional models."""
    _check_sampling_options(temperature, top_k, top_p)
    labels = sample_labels(num, label, conditional, num_starts)
    prompt = (levels + labels.astype(np.int32))[:, None]
    tokens, _ = core.decode(params, jnp.asarray(prompt), rng, dims, float(temperature), top_k,
                            top_p)
    tokens = tokens[:, 1:]  # drop the start token; samples are levels only (num_outputs)
    return (tokens.reshape(num, h, w, c).astype(jnp.float32) / (levels - 1))

  return Paradigm(init=init, loss=loss, sample=sample, log_likelihood=log_likelihood,
                  likelihood_is_exact=True)
