r"""VAR: next-scale prediction (Tian, Jiang, Yuan, Peng, Wang 2024, "Visual Autoregressive
Modeling: Scalable Image Generation via Next-Scale Prediction", arXiv:2404.02905).

Stage 2 of a two-stage model over an `msvq` tokenizer's token maps r_1, ..., r_K (the dataset
"encoded": batch["codes"] int32 [B, L], the scales flattened coarse to fine, L = sum_k r_k^2).
Autoregression runs over scales, not tokens (Sec. 3.2, Eq. 6):

    p(r_1, ..., r_K) = \prod_{k=1}^K p_theta(r_k | r_1, ..., r_{k-1}),

and the r_k^2 tokens of one scale are predicted in parallel, independent given the coarser scales:
p_theta(r_k | r_<k) = \prod_{i in scale k} p_theta(r_{k,i} | r_<k), a categorical over the K codes
at each position (`gen_jax.nets.var.NextScaleTransformer`: the GPT's blocks under a block-causal
mask). The inputs of scale k are the stage-1 features of the coarser scales interpolated to r_k
(the paper's teacher forcing: `msvq.Tokenizer.next_scale_inputs`); scale 1's are the start token
(the class with model.class_conditional). Loss: the cross-entropy of every token, nats per code
(`gen_jax.losses.nll.next_token_nll`, whose chain-rule factors are here the scales').

sample (`sample_codes`): K forward passes, one per scale, each over that scale's r_k^2
positions against a key/value cache of the coarser ones: draw r_k (temperature, top_k, top_p as
the other autoregressive samplers, `gen_jax.samplers.autoregressive.sample_token`), add
phi_k(upsample(z(r_k))) to f_hat and interpolate it to the next scale's inputs; then the
stage-1 decoder's mean E[x | f_hat]. NFE = K (`return_info=True`). `label=c` draws class c of a
class-conditional model.

log_likelihood: the tokenizer is deterministic, q(k | x) = 1{k = k(x)}, so
    log p(x) >= log p(x | k(x)) + log p_theta(k(x)),
the stage-1 decoder's log-likelihood on the image's levels plus the prior's exact
log-probability of the token maps, nats per image (a bound, as vq_gpt's).
config.model fields: `Fields` below (the transformer's, `gpt.TransformerFields`).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Optional

import jax
import jax.numpy as jnp

from gen_jax.errors import UserError
from gen_jax.losses import nll as nll_lib
from gen_jax.nets import vq as vq_nets
from gen_jax.nets.transformer import check_attention_impl
from gen_jax.nets.var import NextScaleTransformer
from gen_jax.paradigms import msvq
from gen_jax.paradigms.base import Paradigm, parse_model_config
from gen_jax.paradigms.gpt import TransformerFields, _check_sampling_options, sample_labels
from gen_jax.samplers import autoregressive as ar_sampler


@dataclasses.dataclass(frozen=True, kw_only=True)
class Fields(TransformerFields):
  """var's config.model fields, with their defaults."""
  class_conditional: bool = False    # start token = the class; sample(label=c)


def sample_codes(net: NextScaleTransformer, params, tok: msvq.Tokenizer, tok_params, start, rng,
                 temperature: float = 1.0, top_k: Optional[int] = None,
                 top_p: Optional[float] = None):
  r"""Next-scale sampling (VAR, arXiv:2404.02905, Sec. 3.2 and its `autoregressive_infer_cfg`
  without guidance): for k = 1..K,

      r_k ~ p_theta(r_k | inputs_k),     f_hat <- f_hat + phi_k(upsample(z(r_k), h x w)),
      inputs_{k+1} = interpolate(f_hat, r_{k+1} x r_{k+1}),

  each scale one forward pass over its r_k^2 positions against the cache of scales < k, its
  tokens drawn in parallel with the key fold_in(rng, k) (`sample_token`, tempered and filtered).

  Args:
    net: the prior. params: its params. tok: the stage-1 `msvq.Tokenizer`; tok_params its params.
    start: int32 [B] start ids (0, or the classes). rng: key.
  Returns:
    (codes int32 [B, L] coarse to fine, {'nfe': K}).
  """
  b = start.shape[0]
  cache = net.init_cache(b)
  f_hat = jnp.zeros((b, *tok.size, tok.code_dim), jnp.float32)
  features, codes = None, []
  for k, r in enumerate(tok.scales):
    logits, cache = net.apply({"params": params}, k, start, features, cache,
                              method=NextScaleTransformer.decode_scale)
    tokens = ar_sampler.sample_token(jax.random.fold_in(rng, k), logits.reshape(b * r * r, -1),
                                     temperature, top_k, top_p).reshape(b, r, r)
    codes.append(tokens)
    if k + 1 < len(tok.scales):
      f_hat = f_hat + tok.contribution(tok_params, k, tokens)
      nxt = tok.scales[k + 1]
      features = vq_nets.resize_area(f_hat, (nxt, nxt)).reshape(b, nxt * nxt, -1)
  return tok.flatten(codes), {"nfe": len(tok.scales)}


def make(model_config, info) -> Paradigm:
  """VAR over the token maps of `info` (dataset 'encoded' of an msvq run); see the docstring."""
  fields = parse_model_config(Fields, model_config)
  stage1 = info.stage1
  if info.kind != "codes" or stage1 is None or stage1.config.paradigm != "msvq":
    raise UserError(f"The var paradigm models an msvq tokenizer's token maps: set "
                    f"config.dataset='encoded' and config.stage1.workdir to an msvq run (see "
                    f"experiments/configs/var.py); dataset {info.name!r} is kind {info.kind!r}.")
  check_attention_impl(fields.attention_impl)
  tok = msvq.tokenizer(stage1.config.model, stage1.info)
  num_tokens, num_codes = tok.num_tokens, tok.num_codes
  if tuple(info.shape) != (num_tokens,):
    raise UserError(f"The encoded codes have shape {tuple(info.shape)} but the msvq scales "
                    f"{tok.scales} give {num_tokens} tokens: re-encode with that stage-1 run.")
  conditional = bool(fields.class_conditional)
  if conditional and not info.num_classes:
    raise UserError("model.class_conditional=True but the stage-1 images have no labels; "
                    "set model.class_conditional=False.")
  num_starts = info.num_classes if conditional else 1
  net = NextScaleTransformer(
      num_codes=num_codes, scales=tok.scales, feature_dim=tok.code_dim, num_starts=num_starts,
      num_layers=fields.num_layers, num_heads=fields.num_heads, embed_dim=fields.embed_dim,
      mlp_ratio=fields.mlp_ratio, dropout=fields.dropout, use_bias=fields.use_bias,
      attention_impl=fields.attention_impl)

  def split(batch):
    """(start [B], inputs [B, L - r_1^2, D], targets int32 [B, L])."""
    codes = jnp.asarray(batch["codes"], jnp.int32)
    if codes.shape[1:] != (num_tokens,):
      raise UserError(f"batch['codes'] has shape {codes.shape[1:]} but the model was built for "
                      f"{(num_tokens,)}; rebuild the paradigm with this dataset's info.")
    start = (jnp.asarray(batch["label"], jnp.int32) if conditional
             else jnp.zeros((codes.shape[0],), jnp.int32))
    inputs = jax.lax.stop_gradient(tok.next_scale_inputs(stage1.params, codes))
    return start, inputs, codes

  def logits(params, batch, rng=None, train=False):
    start, inputs, codes = split(batch)
    rngs = {"dropout": rng} if (train and fields.dropout > 0) else None
    return net.apply({"params": params}, start, inputs, train=train, rngs=rngs), codes

  def init(rng, batch):
    start, inputs, _ = split(batch)
    return net.init(rng, start, inputs)["params"]

  def loss(params, batch, rng):
    out, codes = logits(params, batch, rng, train=True)
    nats, metrics = nll_lib.next_token_nll(out, codes)
    last = tok.offsets[-1]
    return nats, {"nats_per_code": metrics["nats_per_token"],
                  "bits_per_code": metrics["bits_per_token"],
                  "nats_per_code_last_scale": jnp.mean(nll_lib.token_nll(out[:, last:], codes[:, last:]))}

  def log_likelihood(params, batch, rng=None):
    """log p(x | k(x)) + log p_theta(k(x)) in nats per image [B]: a bound on log p(x)."""
    out, codes = logits(params, batch)
    prior = nll_lib.sequence_log_likelihood(out, codes)
    return stage1.decoder_log_likelihood(codes, batch["image"]) + prior

  @functools.partial(jax.jit, static_argnames=("temperature", "top_k", "top_p"))
  def _sample(params, rng, start, *, temperature, top_k, top_p):
    codes, _ = sample_codes(net, params, tok, stage1.params, start, rng, temperature, top_k, top_p)
    return stage1.decode(codes)

  def sample(params, rng, num, temperature: float = 1.0, top_k: Optional[int] = None,
             top_p: Optional[float] = None, label: Optional[int] = None, return_info: bool = False):
    """float32 [num, H, W, C] in [0, 1]: token maps drawn scale by scale, decoded by stage 1
    (and {'nfe': K} with return_info)."""
    _check_sampling_options(temperature, top_k, top_p)
    labels = sample_labels(num, label, conditional, num_starts)
    images = _sample(params, rng, jnp.asarray(labels, jnp.int32), temperature=float(temperature),
                     top_k=top_k, top_p=top_p)
    return (images, {"nfe": len(tok.scales)}) if return_info else images

  return Paradigm(init=init, loss=loss, sample=sample, log_likelihood=log_likelihood,
                  likelihood_is_exact=False)
