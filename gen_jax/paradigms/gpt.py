r"""GPT: a decoder-only transformer trained by next-token NLL on token sequences.

    log p(x_1..x_T | x_0) = \sum_{t=1}^T log p_theta(x_t | x_<t)   (exact)

(Radford et al. 2018/2019; the character-level recipe of Karpathy's nanoGPT.)
Text batches are `batch['tokens']` int32 [B, seq_len + 1]: the model reads
tokens[:, :-1] and predicts tokens[:, 1:]; an optional `batch['token_mask']`
bool [B, seq_len] leaves padded targets out. `info.vocab` is the characters in
token order.

`sample(params, rng, num, prompt=None, temperature=1.0, top_k=None, top_p=None,
num_tokens=None)` returns int32 [num, len(prompt) + num_tokens]: the prompt's
tokens then the samples (KV-cached, gen_jax.samplers.autoregressive). Without a
prompt the run starts from "\n" (token 0 if the vocabulary has no newline), as
nanoGPT does. Beyond the block size the context slides: the last max_len/2
tokens are re-read and max_len/2 more generated per chunk.

config.model fields: `Fields` below (`TransformerFields`, shared by every transformer
paradigm: pixel_ar, vq_gpt, maskgit, text2image, and max_len, sample_num_tokens).
This module also holds the pieces `pixel_ar` shares (`make_model`, `ArCore`).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from gen_jax.errors import UserError
from gen_jax.losses import nll as nll_lib
from gen_jax.nets.transformer import Transformer, check_attention_impl
from gen_jax.paradigms.base import Paradigm, parse_model_config
from gen_jax.samplers import autoregressive as ar_sampler


@dataclasses.dataclass(frozen=True, kw_only=True)
class TransformerFields:
  """The config.model fields of the transformer every autoregressive / masked-token
  paradigm builds (`make_model`), with their defaults."""
  num_layers: int = 4
  num_heads: int = 4
  embed_dim: int = 128
  mlp_ratio: int = 4                 # MLP width = mlp_ratio * embed_dim
  dropout: float = 0.0
  use_bias: bool = False             # biases in the dense layers and layer norms (GPT-2: True)
  attention_impl: str = "xla"        # dot_product_attention's kernel: xla | cudnn (NVIDIA GPUs)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Fields(TransformerFields):
  """gpt's config.model fields, with their defaults."""
  max_len: int = 0                   # positions (block size); 0 = the data's seq_len
  sample_num_tokens: int = 0         # tokens per sample; 0 = max_len (beyond it the block slides)


def make_model(model_config, vocab_size: int, max_len: int) -> Transformer:
  """The `TransformerFields` of `model_config` (its other names are the caller's) -> a
  causal Transformer."""
  f = parse_model_config(TransformerFields, model_config, strict=False)
  check_attention_impl(f.attention_impl)
  return Transformer(vocab_size=vocab_size, max_len=max_len,
                     num_layers=f.num_layers, num_heads=f.num_heads,
                     embed_dim=f.embed_dim, mlp_ratio=f.mlp_ratio,
                     dropout=f.dropout, use_bias=f.use_bias, causal=True,
                     attention_impl=f.attention_impl)


class ArCore:
  """Loss, likelihood and jitted decoding for one Transformer (shared by gpt and pixel_ar)."""

  def __init__(self, model: Transformer, dims_per_token: int = 1, num_outputs: Optional[int] = None):
    """num_outputs: predict only token ids < num_outputs (pixel_ar's start tokens are inputs only)."""
    self.model = model
    self.dims_per_token = dims_per_token
    self.num_outputs = num_outputs or model.vocab_size

  def init(self, rng, inputs):
    return self.model.init(rng, inputs)["params"]

  def logits(self, params, inputs, rng=None, train=False):
    rngs = {"dropout": rng} if (train and self.model.dropout > 0) else None
    logits = self.model.apply({"params": params}, inputs, train=train, rngs=rngs)
    return logits[..., :self.num_outputs]

  def loss(self, params, inputs, targets, rng, token_mask=None):
    logits = self.logits(params, inputs, rng, train=True)
    return nll_lib.next_token_nll(logits, targets, token_mask, self.dims_per_token)

  def log_likelihood(self, params, inputs, targets, token_mask=None):
    return nll_lib.sequence_log_likelihood(self.logits(params, inputs), targets, token_mask)

  @functools.partial(jax.jit, static_argnums=(0, 4, 5, 6, 7, 8))
  def decode(self, params, prompt, rng, num_tokens, temperature, top_k, top_p, naive=False):
    """prompt int32 [B, P] -> int32 [B, P + num_tokens] (KV-cached unless naive)."""
    opts = dict(max_len=self.model.max_len, temperature=temperature, top_k=top_k, top_p=top_p)
    variables = {"params": params}
    if naive:
      return ar_sampler.sample_naive(lambda t: self.logits(params, t), prompt, rng,
                                     num_tokens, **opts)
    cache = self.model.init_cache(prompt.shape[0])

    def decode_fn(tokens, cache, index):
      logits, cache = self.model.apply(variables, tokens, cache, index, method=Transformer.decode)
      return logits[..., :self.num_outputs], cache

    return ar_sampler.sample_cached(decode_fn, cache, prompt, rng, num_tokens, **opts)

  def generate(self, params, prompt, rng, num_tokens, temperature=1.0, top_k=None, top_p=None,
               naive=False):
    """Any length: one cached run up to max_len, then sliding chunks of max_len // 2."""
    prompt = jnp.asarray(prompt, jnp.int32)
    max_len = self.model.max_len
    if prompt.shape[1] > max_len:
      prompt_tail = prompt[:, -max_len:]
      head = prompt[:, :-max_len]
    else:
      prompt_tail, head = prompt, prompt[:, :0]
    _check_sampling_options(temperature, top_k, top_p)
    first = min(num_tokens, max_len + 1 - prompt_tail.shape[1])
    out, info = self.decode(params, prompt_tail, jax.random.fold_in(rng, 0), first,
                            float(temperature), top_k, top_p, naive)
    nfe, left, chunk_id = info["nfe"], num_tokens - first, 1
    chunk = max(1, max_len // 2)
    while left > 0:
      n = min(chunk, left)
      ctx = out[:, -(max_len + 1 - chunk):]  # fixed shape: compiled once
      new, _ = self.decode(params, ctx, jax.random.fold_in(rng, chunk_id), chunk,
                           float(temperature), top_k, top_p, naive)
      out = jnp.concatenate([out, new[:, ctx.shape[1]:ctx.shape[1] + n]], axis=1)
      nfe, left, chunk_id = nfe + chunk, left - n, chunk_id + 1
    return jnp.concatenate([head, out], axis=1), {"nfe": nfe}


def _check_sampling_options(temperature, top_k, top_p):
  if temperature < 0:
    raise UserError(f"temperature must be >= 0 (0 = greedy), got {temperature}.")
  if top_k is not None and (int(top_k) != top_k or top_k < 1):
    raise UserError(f"top_k must be a positive integer or None, got {top_k}.")
  if top_p is not None and not 0.0 < top_p <= 1.0:
    raise UserError(f"top_p must be in (0, 1] or None, got {top_p}.")


def sample_labels(num: int, label, conditional: bool, num_starts: int) -> np.ndarray:
  """int32 [num]: the class of each sample of a class-conditional AR model (its start token is
  base + class): `label` (an int or [num] ints) for all, else 0..num_starts-1 in turn; zeros for
  an unconditional model, which refuses label=."""
  if label is not None and not conditional:
    raise UserError("label= needs a model trained with model.class_conditional=True.")
  if not conditional:
    return np.zeros((num,), np.int32)
  labels = (np.arange(num) % num_starts if label is None
            else np.broadcast_to(np.asarray(label, np.int32), (num,)))
  if np.any((labels < 0) | (labels >= num_starts)):
    raise UserError(f"label must be in 0..{num_starts - 1}, got {label}.")
  return labels.astype(np.int32)


def encode(text: str, vocab: str) -> np.ndarray:
  """Characters -> int32 token ids; ValueError naming characters not in the vocabulary."""
  index = {ch: i for i, ch in enumerate(vocab)}
  missing = sorted({ch for ch in text if ch not in index})
  if missing:
    raise UserError(f"Prompt has characters outside the model's vocabulary: "
                     f"{', '.join(repr(c) for c in missing)}. "
                     "Remove them or train on text that contains them.")
  return np.asarray([index[ch] for ch in text], np.int32)


def decode_text(tokens, vocab: str) -> list[str]:
  """int [B, T] tokens -> B strings."""
  return ["".join(vocab[int(i)] for i in row) for row in np.asarray(tokens)]


def make(model_config, info) -> Paradigm:
  """A GPT over `info.vocab` with block size `model_config.max_len` (0 = the data's seq_len)."""
  if info.kind != "text" or not info.vocab:
    raise UserError(f"The gpt paradigm models text (DatasetInfo kind 'text' with a vocab); dataset "
                     f"{info.name!r} is kind {info.kind!r}. Use a text dataset (text_file) or the "
                     "pixel_ar paradigm for images.")
  fields = parse_model_config(Fields, model_config)
  seq_len = info.shape[0] - 1
  max_len = fields.max_len or seq_len
  if max_len < seq_len:
    raise UserError(f"model.max_len={max_len} is shorter than the data's seq_len={seq_len}; "
                     "set model.max_len >= seq_len (or 0 to use seq_len).")
  vocab = info.vocab
  core = ArCore(make_model(fields, len(vocab), max_len))
  default_start = vocab.index("\n") if "\n" in vocab else 0

  def split(batch):
    tokens = jnp.asarray(batch["tokens"], jnp.int32)
    if tokens.ndim != 2:
      raise UserError(f"batch['tokens'] must be int [B, seq_len + 1], got shape {tokens.shape}.")
    return tokens[:, :-1], tokens[:, 1:], batch.get("token_mask")

  def init(rng, batch):
    return core.init(rng, split(batch)[0])

  def loss(params, batch, rng):
    inputs, targets, mask = split(batch)
    return core.loss(params, inputs, targets, rng, mask)

  def log_likelihood(params, batch, rng=None):
    """log p(tokens[1:] | tokens[0]) in nats per sequence [B] (exact; padded tokens skipped)."""
    inputs, targets, mask = split(batch)
    return core.log_likelihood(params, inputs, targets, mask)

  def sample(params, rng, num, prompt: Optional[str] = None, temperature: float = 1.0,
             top_k: Optional[int] = None, top_p: Optional[float] = None,
             num_tokens: Optional[int] = None):
    """int32 [num, P + num_tokens]: prompt tokens then samples; see the module docstring."""
    ids = encode(prompt, vocab) if prompt else np.asarray([default_start], np.int32)
    if num_tokens is None:
      num_tokens = fields.sample_num_tokens or max_len
    tokens, _ = core.generate(params, np.broadcast_to(ids, (num, ids.size)), rng, int(num_tokens),
                              temperature, top_k, top_p)
    return tokens

  return Paradigm(init=init, loss=loss, sample=sample, log_likelihood=log_likelihood,
                  likelihood_is_exact=True)
