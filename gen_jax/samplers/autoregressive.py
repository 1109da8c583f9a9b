r"""Autoregressive sampling: x_t ~ p(x_t | x_<t), one token at a time.

The filtered next-token distribution at temperature tau is

    p_tau(v) \propto exp(l_v / tau) on the allowed set S,  0 elsewhere,

where S is the top-k set (the k largest logits; Fan et al. 2018,
arXiv:1805.04833) intersected with the nucleus (the smallest set of most likely
tokens whose probability reaches top_p; Holtzman et al. 2019, arXiv:1904.09751).
tau = 0 means greedy decoding (argmax). Draw t of a run uses the key
fold_in(rng, t), so two decoders with the same logits give the same tokens.

Two decoders over the same model:
* `sample_cached`: a key/value cache (the prompt is one prefill chunk, then one
  token per step), O(T) work per token, inside `lax.scan` with fixed shapes.
* `sample_naive`: re-runs the full forward pass on a fixed [B, max_len] buffer
  at every step (O(T^2) per token); the reference the cache is tested against.
Both return (tokens [B, P + num_tokens], {'nfe': forward calls}).
"""
from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp

from gen_jax.errors import UserError


def filter_logits(logits, top_k: Optional[int] = None, top_p: Optional[float] = None):
  """Sets logits outside the top-k / nucleus set to -inf. logits [..., V].

  top_k keeps the k largest logits (ties at the k-th value are all kept); top_p
  keeps the most likely tokens up to and including the first one where the
  cumulative probability reaches top_p (so at least one token always survives).
  """
  neg_inf = jnp.asarray(-jnp.inf, logits.dtype)
  if top_k is not None and top_k > 0 and top_k < logits.shape[-1]:
    kth = jax.lax.top_k(logits, top_k)[0][..., -1:]
    logits = jnp.where(logits < kth, neg_inf, logits)
  if top_p is not None and top_p < 1.0:
    sorted_logits = jnp.sort(logits, axis=-1)[..., ::-1]
    probs = jax.nn.softmax(sorted_logits, axis=-1)
    mass_before = jnp.cumsum(probs, axis=-1) - probs  # probability of strictly better tokens
    keep = mass_before < top_p                           # the first token always kept
    threshold = jnp.min(jnp.where(keep, sorted_logits, jnp.inf), axis=-1, keepdims=True)
    logits = jnp.where(logits < threshold, neg_inf, logits)
  return logits


def sample_token(rng, logits, temperature: float = 1.0, top_k: Optional[int] = None,
                 top_p: Optional[float] = None):
  """One draw from the filtered, tempered distribution; logits [B, V] -> int32 [B]."""
  if temperature == 0.0:
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)
  logits = filter_logits(logits.astype(jnp.float32) / temperature, top_k, top_p)
  return jax.random.categorical(rng, logits, axis=-1).astype(jnp.int32)


def _check_lengths(prompt, num_tokens, max_len):
  """The model reads the prompt and every sample but the last: P + num_tokens - 1 positions."""
  if prompt.ndim != 2 or prompt.shape[1] < 1:
    raise UserError(f"prompt must be int [B, P] with P >= 1, got shape {prompt.shape}.")
  if num_tokens < 1:
    raise UserError(f"num_tokens must be >= 1, got {num_tokens}.")
  read = prompt.shape[1] + num_tokens - 1
  if read > max_len:
    raise UserError(f"Prompt ({prompt.shape[1]}) + num_tokens ({num_tokens}) - 1 = {read} positions "
                     f"exceed the model's max_len={max_len}; shorten them or use a longer block.")


def sample_cached(decode_fn: Callable, cache, prompt, rng, num_tokens: int, *, max_len: int,
                  temperature: float = 1.0, top_k: Optional[int] = None,
                  top_p: Optional[float] = None):
  """KV-cached decoding.

  Args:
    decode_fn: (tokens [B, n], cache, index) -> (logits [B, n, V], cache).
    cache: an empty cache for batch B (e.g. Transformer.init_cache).
    prompt: int32 [B, P], P >= 1 (a start token when there is no prompt).
    rng: key; draw t uses fold_in(rng, t).
    num_tokens: tokens to generate (static).
    max_len: the model's number of positions; P + num_tokens - 1 must fit.
  Returns:
    (int32 [B, P + num_tokens] = prompt then samples, {'nfe': num_tokens}).
  """
  prompt = jnp.asarray(prompt, jnp.int32)
  _check_lengths(prompt, num_tokens, max_len)
  p = prompt.shape[1]
  logits, cache = decode_fn(prompt, cache, 0)  # prefill: one forward over the prompt
  first = sample_token(jax.random.fold_in(rng, 0), logits[:, -1], temperature, top_k, top_p)

  def step(carry, t):
    cache, token = carry
    logits, cache = decode_fn(token[:, None], cache, p + t - 1)
    nxt = sample_token(jax.random.fold_in(rng, t), logits[:, -1], temperature, top_k, top_p)
    return (cache, nxt), nxt

  _, rest = jax.lax.scan(step, (cache, first), jnp.arange(1, num_tokens))
  out = jnp.concatenate([prompt, first[:, None], rest.T.reshape(prompt.shape[0], -1)], axis=1)
  return out, {"nfe": num_tokens}


def sample_naive(logits_fn: Callable, prompt, rng, num_tokens: int, *, max_len: int,
                 temperature: float = 1.0, top_k: Optional[int] = None,
                 top_p: Optional[float] = None):
  """Decoding by a full forward pass over a fixed [B, max_len] buffer per token.

  logits_fn: tokens [B, max_len] -> logits [B, max_len, V] (causal, so the
  padding after position t does not change the logits at t). Same signature
  and same draws as `sample_cached`.
  """
  prompt = jnp.asarray(prompt, jnp.int32)
  _check_lengths(prompt, num_tokens, max_len)
  b, p = prompt.shape
  buf = jnp.zeros((b, max_len + 1), jnp.int32).at[:, :p].set(prompt)

  def step(buf, t):
    logits = logits_fn(buf[:, :max_len])
    last = jax.lax.dynamic_index_in_dim(logits, p + t - 1, axis=1, keepdims=False)
    tok = sample_token(jax.random.fold_in(rng, t), last, temperature, top_k, top_p)
    return jax.lax.dynamic_update_slice(buf, tok[:, None], (0, p + t)), None

  buf, _ = jax.lax.scan(step, buf, jnp.arange(num_tokens))
  return buf[:, :p + num_tokens], {"nfe": num_tokens}
