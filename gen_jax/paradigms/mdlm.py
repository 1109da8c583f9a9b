r"""mdlm: a masked diffusion language model over characters (MDLM / MD4).

Sahoo et al. 2024, arXiv:2406.07524; Shi et al. 2024, arXiv:2406.04329. The same
transformer as `gpt` (`gpt.TransformerFields`), bidirectional (every position attends to
all), reads a partly masked window and predicts its masked characters; the vocabulary is
the text's characters plus the mask token m (the last id, never predicted).

Data as gpt's: `batch['tokens']` int32 [B, seq_len + 1]. The first token is always seen
(the context gpt conditions on too), the other seq_len are masked by the forward process,
so both models score the same seq_len characters given the same first one:

    -log p(x_1..x_T | x_0) <= E_t E_q [ (1 / t) sum_{i >= 1: z_t^i = m} -log p_theta(x^i | z_t) ]

(`gen_jax.losses.masked_diffusion`: alpha_t = 1 - t; by default estimated in its
masked-count form, k ~ U{1..T} of the T characters masked, weight T / k, stratified over
the batch). The loss is that bound per character; `log_likelihood` is minus it per
sequence, a Monte Carlo estimate from `elbo_samples` draws (stratified over them), so
the reported nats/char is a bound (likelihood_is_exact False) with a small sampling error.

Sampling: `sample(params, rng, num, prompt=None, num_steps=None, temperature=1.0,
top_k=None, top_p=None)` -> int32 [num, seq_len + 1]: the prompt (default "\n") then
characters drawn by ancestral unmasking in `num_steps` steps
(`gen_jax.samplers.masked_diffusion`), all masked to start with.

config.model fields: `Fields` below.

Positions. Besides the GPT's learned absolute embedding the attention rotates q and k by
their positions (RoPE, `rope`; no parameters, so the parameter count is the GPT's): a
masked position must find its neighbours by attention alone, and with only the learned
embedding (0.02 at init) the recipe's model stayed at the unigram loss for 1,000 steps
(every masked count scored 3.1-3.3 nats/char), where the GPT reads its last character off
its own input.

Mixed precision: as the GPT (gen_jax.nets.transformer); the cross-entropy is float32.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from gen_jax.errors import UserError
from gen_jax.losses import masked_diffusion as md
from gen_jax.paradigms.base import Paradigm, parse_model_config
from gen_jax.paradigms.gpt import TransformerFields, encode, make_model
from gen_jax.samplers.masked_diffusion import ancestral_unmasking


@dataclasses.dataclass(frozen=True, kw_only=True)
class Fields(TransformerFields):
  """mdlm's config.model fields, with their defaults."""
  rope: bool = True                  # rotary q/k beside the learned positions (no parameters)
  estimator: str = "count"           # the NELBO's estimator: count (k ~ U{1..L}, weight L/k) | time
  elbo_samples: int = 16             # draws of t (and masks) behind each sequence's ELBO
  num_steps: int = 64                # ancestral unmasking steps when sampling


def make(model_config, info) -> Paradigm:
  """A masked diffusion LM over `info.vocab` + the mask token, on windows of seq_len + 1."""
  if info.kind != "text" or not info.vocab:
    raise UserError(f"The mdlm paradigm models text (DatasetInfo kind 'text' with a vocab); "
                    f"dataset {info.name!r} is kind {info.kind!r}. Use a text dataset (text_file).")
  fields = parse_model_config(Fields, model_config)
  if fields.estimator not in md.ESTIMATORS:
    raise UserError(f"mdlm: model.estimator={fields.estimator!r} is not one of "
                    f"{', '.join(md.ESTIMATORS)}.")
  if fields.elbo_samples < 1 or fields.num_steps < 1:
    raise UserError(f"mdlm: elbo_samples ({fields.elbo_samples}) and num_steps "
                    f"({fields.num_steps}) must be >= 1.")
  vocab = info.vocab
  mask_id = len(vocab)
  length = info.shape[0]                                   # seq_len + 1
  net = make_model(fields, mask_id + 1, length).clone(causal=False, rope=fields.rope)
  maskable = jnp.arange(length) >= 1
  default_start = vocab.index("\n") if "\n" in vocab else 0

  def tokens_of(batch):
    tokens = jnp.asarray(batch["tokens"], jnp.int32)
    if tokens.ndim != 2 or tokens.shape[1] != length:
      raise UserError(f"batch['tokens'] must be int [B, {length}], got shape {tokens.shape}.")
    return tokens

  def logits_fn(params, rng=None, train=False):
    rngs = {"dropout": rng} if (train and fields.dropout > 0) else None
    return lambda z: net.apply({"params": params}, z, train=train, rngs=rngs)

  def init(rng, batch):
    return net.init(rng, tokens_of(batch))["params"]

  def loss(params, batch, rng):
    x = tokens_of(batch)
    model_key, dropout_key = jax.random.split(rng)
    per_sequence = md.nelbo(logits_fn(params, dropout_key, train=True), x, model_key, mask_id,
                            maskable, estimator=fields.estimator)
    nats = jnp.mean(per_sequence) / (length - 1)
    return nats, {"nelbo_nats_per_token": nats, "bits_per_token": nats / np.log(2.0)}

  def log_likelihood(params, batch, rng):
    """-NELBO per sequence [B] (nats): the mean of `elbo_samples` one-sample estimates, the
    times stratified over the draws for each sequence."""
    x = tokens_of(batch)
    k = fields.elbo_samples
    u = jax.random.uniform(jax.random.fold_in(rng, 0), (x.shape[0],))

    def one(j):
      t = jnp.maximum(jnp.mod(u + j / k, 1.0), 1e-5)
      return md.nelbo(logits_fn(params), x, jax.random.fold_in(rng, j + 1), mask_id, maskable, t,
                      fields.estimator)
    return -jnp.mean(jax.lax.map(one, jnp.arange(k)), axis=0)

  def sample(params, rng, num, prompt: Optional[str] = None, num_steps: Optional[int] = None,
             temperature: float = 1.0, top_k: Optional[int] = None, top_p: Optional[float] = None):
    ids = encode(prompt, vocab) if prompt else np.asarray([default_start], np.int32)
    if ids.size >= length:
      raise UserError(f"mdlm: the prompt has {ids.size} characters; the window holds {length} "
                      f"(seq_len + 1): shorten it.")
    z = jnp.full((num, length), mask_id, jnp.int32).at[:, :ids.size].set(jnp.asarray(ids))
    steps = int(num_steps or fields.num_steps)
    tokens, _ = jax.jit(lambda z, key: ancestral_unmasking(
        logits_fn(params), z, key, steps, mask_id, float(temperature), top_k, top_p))(z, rng)
    return tokens

  return Paradigm(init=init, loss=loss, sample=sample, log_likelihood=log_likelihood,
                  likelihood_is_exact=False)
