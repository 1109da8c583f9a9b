r"""VQ-GPT: the Autoregressive family's GPT as a prior over a VQ-VAE's codes
(van den Oord et al. 2017, arXiv:1711.00937, Sec. 4, with a transformer prior
as in Esser et al. 2021, "Taming Transformers", arXiv:2012.09841).

Stage 2 of a two-stage model: it trains on the dataset "encoded" (the stage-1
VQ-VAE's codes of its images, `gen_jax.data.encoded`), reading each code grid
k = k(x) [h, w] in raster order as the sequence k_1..k_n, n = h w:

    log p(k) = \sum_{i=1}^n log p_theta(k_i | k_<i),

a categorical over the K codes at each step (`gen_jax.paradigms.gpt.ArCore`:
the same Transformer, next-token NLL and KV-cached sampler as gpt/pixel_ar).
Tokens 0..K-1 are codes; K is the start token (K + label with
model.class_conditional, and `sample(..., label=c)` draws class c).

sample: codes by KV-cached decoding (temperature, top_k, top_p), then the
stage-1 decoder's mean E[x | z_q(k)]: images float32 [num, H, W, C] in [0, 1].

log_likelihood: for the deterministic encoder, q(k | x) = 1{k = k(x)}, so
    log p(x) >= E_q[log p(x | k)] - KL(q || p) = log p(x | k(x)) + log p_theta(k(x)),
the stage-1 decoder's log-likelihood on the image's levels plus the prior's
log-probability of the codes, in nats per image: a bound (likelihood_is_exact
=False), so the loop's bits/dim is a bound per image sub-pixel.
Metrics while training: nats/bits per code of the prior.
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
  """vq_gpt's config.model fields, with their defaults."""
  class_conditional: bool = False    # start token = K + label; sample(label=c)


def make(model_config, info) -> Paradigm:
  fields = parse_model_config(Fields, model_config)
  if info.kind != "codes" or info.stage1 is None:
    raise UserError(f"The vq_gpt paradigm models a VQ-VAE's codes (dataset 'encoded' with "
                     f"config.stage1 naming a vqvae run); dataset {info.name!r} is kind "
                     f"{info.kind!r}. Set config.dataset='encoded' and config.stage1.workdir.")
  stage1 = info.stage1
  grid = tuple(info.shape)
  n = math.prod(grid)
  num_codes = info.num_codes
  conditional = bool(fields.class_conditional)
  if conditional and not info.num_classes:
    raise UserError("model.class_conditional=True but the stage-1 images have no labels; "
                     "set model.class_conditional=False.")
  num_starts = info.num_classes if conditional else 1
  core = ArCore(make_model(fields, num_codes + num_starts, n), num_outputs=num_codes)

  def split(batch):
    codes = jnp.asarray(batch["codes"], jnp.int32)
    if codes.shape[1:] != grid:
      raise UserError(f"batch['codes'] has grid {codes.shape[1:]} but the model was built for "
                       f"{grid}; rebuild the paradigm with this dataset's info.")
    targets = codes.reshape(codes.shape[0], n)
    start = num_codes + (jnp.asarray(batch["label"], jnp.int32) if conditional
                         else jnp.zeros((codes.shape[0],), jnp.int32))
    return jnp.concatenate([start[:, None], targets[:, :-1]], axis=1), targets

  def init(rng, batch):
    return core.init(rng, split(batch)[0])

  def loss(params, batch, rng):
    inputs, targets = split(batch)
    nats, metrics = core.loss(params, inputs, targets, rng)
    return nats, {"nats_per_code": metrics["nats_per_token"],
                  "bits_per_code": metrics["bits_per_token"]}

  def log_likelihood(params, batch, rng=None):
    """log p(x | k(x)) + log p_theta(k(x)) in nats per image [B]: a bound on log p(x)."""
    inputs, targets = split(batch)
    prior = core.log_likelihood(params, inputs, targets)
    return stage1.decoder_log_likelihood(batch["codes"], batch["image"]) + prior

  def sample(params, rng, num, temperature: float = 1.0, top_k: Optional[int] = None,
             top_p: Optional[float] = None, label: Optional[int] = None):
    """float32 [num, H, W, C] in [0, 1]: codes from the prior, decoded by stage 1."""
    _check_sampling_options(temperature, top_k, top_p)
    labels = sample_labels(num, label, conditional, num_starts)
    prompt = jnp.asarray((num_codes + labels.astype(np.int32))[:, None])
    tokens, _ = core.decode(params, prompt, rng, n, float(temperature), top_k, top_p)
    return stage1.decode(tokens[:, 1:].reshape(num, *grid))

  return Paradigm(init=init, loss=loss, sample=sample, log_likelihood=log_likelihood,
                  likelihood_is_exact=False)
