r"""A decoder-only transformer (GPT) with an optional key/value cache.

Pre-LayerNorm blocks (Radford et al. 2019, "Language Models are Unsupervised
Multitask Learners"; Xiong et al. 2020, arXiv:2002.04745):

    h <- h + Attn(LN(h)),      h <- h + MLP(LN(h)),      logits = LN(h) E^T

with multi-head scaled dot-product attention (Vaswani et al. 2017,
arXiv:1706.03762)

    Attn(Q, K, V) = softmax(Q K^T / sqrt(d_head) + M) V,

M = 0 where key position <= query position and -inf elsewhere when `causal`
(M = 0 everywhere otherwise: the bidirectional encoder MaskGIT needs,
arXiv:2202.04200), learned absolute position embeddings and input/output
embeddings tied (Press & Wolf 2016, arXiv:1608.05859).

Conditioning. `cond` ([B, Tc, D] float embeddings, e.g. a class or a text
encoding) is prepended to the token embeddings as a prefix the tokens attend to;
logits are returned for the token positions only. Positions count the prefix.

Incremental decoding. `init_cache(batch)` gives zeroed keys/values
[B, max_len, H, d_head] per layer; `decode(tokens, cache, index)` runs a chunk
of n tokens at positions index..index+n-1, writes their keys/values into the
cache and attends over cache slots <= the query's position. A prompt is one
chunk (prefill); each generated token is a chunk of one. The cached logits are
the full-forward logits (tests/test_transformer.py checks both to 1e-5).
"""
from __future__ import annotations

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

Cache = Any  # tuple over layers of {'k': [B, L, H, Dh], 'v': [B, L, H, Dh]}

_INIT = nn.initializers.normal(stddev=0.02)  # GPT-2's initialisation


def _attend(q, k, v, mask):
  """softmax(q k^T / sqrt(d) + mask) v for q [B,Tq,H,D], k/v [B,Tk,H,D]."""
  scale = q.shape[-1] ** -0.5
  s = jnp.einsum("bqhd,bkhd->bhqk", q * scale, k)
  if mask is not None:
    s = jnp.where(mask, s, jnp.finfo(s.dtype).min)
  p = jax.nn.softmax(s, axis=-1)
  return jnp.einsum("bhqk,bkhd->bqhd", p, v)


class SelfAttention(nn.Module):
  """Multi-head self-attention with one fused q/k/v projection."""
  num_heads: int
  use_bias: bool = False
  dropout: float = 0.0
  num_layers: int = 1  # scales the output projection's init (GPT-2: 1/sqrt(2 L))

  @nn.compact
  def __call__(self, x, mask, *, train: bool, cache=None, index=None):
    b, t, c = x.shape
    h = self.num_heads
    if c % h:
      raise ValueError(f"embed_dim={c} is not divisible by num_heads={h}.")
    qkv = nn.Dense(3 * c, use_bias=self.use_bias, kernel_init=_INIT, name="qkv")(x)
    q, k, v = jnp.split(qkv.reshape(b, t, 3 * h, c // h), 3, axis=2)
    new_cache = None
    if cache is not None:
      k = jax.lax.dynamic_update_slice(cache["k"], k.astype(cache["k"].dtype), (0, index, 0, 0))
      v = jax.lax.dynamic_update_slice(cache["v"], v.astype(cache["v"].dtype), (0, index, 0, 0))
      new_cache = {"k": k, "v": v}
    y = _attend(q, k, v, mask)
    if self.dropout > 0:
      y = nn.Dropout(self.dropout, deterministic=not train)(y)
    y = nn.Dense(c, use_bias=self.use_bias, name="proj",
                 kernel_init=nn.initializers.normal(0.02 / (2 * self.num_layers) ** 0.5))(
                     y.reshape(b, t, c))
    return y, new_cache


class Block(nn.Module):
  """Pre-LN transformer block: x + Attn(LN x), then x + MLP(LN x)."""
  num_heads: int
  mlp_ratio: int = 4
  use_bias: bool = False
  dropout: float = 0.0
  num_layers: int = 1

  @nn.compact
  def __call__(self, x, mask, *, train: bool, cache=None, index=None):
    c = x.shape[-1]
    y, new_cache = SelfAttention(self.num_heads, self.use_bias, self.dropout, self.num_layers,
                                 name="attn")(
        nn.LayerNorm(use_bias=self.use_bias, name="ln1")(x), mask, train=train,
        cache=cache, index=index)
    if self.dropout > 0:
      y = nn.Dropout(self.dropout, deterministic=not train)(y)
    x = x + y
    y = nn.LayerNorm(use_bias=self.use_bias, name="ln2")(x)
    y = nn.Dense(self.mlp_ratio * c, use_bias=self.use_bias, kernel_init=_INIT, name="fc")(y)
    y = nn.gelu(y, approximate=True)
    y = nn.Dense(c, use_bias=self.use_bias, name="fc_out",
                 kernel_init=nn.initializers.normal(0.02 / (2 * self.num_layers) ** 0.5))(y)
    if self.dropout > 0:
      y = nn.Dropout(self.dropout, deterministic=not train)(y)
    return x + y, new_cache


class Transformer(nn.Module):
  """Decoder-only transformer over `vocab_size` tokens, `max_len` positions.

  Attributes:
    vocab_size: number of token ids (the output logits' width).
    max_len: positions with a learned embedding (conditioning prefix included).
    num_layers, num_heads, embed_dim, mlp_ratio: the usual sizes.
    dropout: rate on embeddings, attention output, residual branches (train only).
    use_bias: biases in Dense and LayerNorm (nanoGPT's `bias`).
    causal: True for a decoder (GPT); False for a bidirectional encoder (MaskGIT).
  """
  vocab_size: int
  max_len: int
  num_layers: int = 4
  num_heads: int = 4
  embed_dim: int = 128
  mlp_ratio: int = 4
  dropout: float = 0.0
  use_bias: bool = False
  causal: bool = True

  def setup(self):
    self.wte = nn.Embed(self.vocab_size, self.embed_dim, embedding_init=_INIT)
    self.wpe = self.param("wpe", _INIT, (self.max_len, self.embed_dim))
    self.blocks = [Block(self.num_heads, self.mlp_ratio, self.use_bias, self.dropout,
                         self.num_layers, name=f"block_{i}") for i in range(self.num_layers)]
    self.ln_f = nn.LayerNorm(use_bias=self.use_bias)
    self.drop = nn.Dropout(self.dropout)

  def _run(self, h, pos_emb, mask, train, cache, index):
    h = h + pos_emb
    if self.dropout > 0:
      h = self.drop(h, deterministic=not train)
    new_cache = []
    for i, block in enumerate(self.blocks):
      h, c = block(h, mask, train=train, cache=None if cache is None else cache[i], index=index)
      new_cache.append(c)
    h = self.ln_f(h)
    return self.wte.attend(h), (None if cache is None else tuple(new_cache))

  def __call__(self, tokens, *, train: bool = False, cond: Optional[jax.Array] = None):
    """tokens int32 [B, T] (and optional prefix `cond` [B, Tc, D]) -> logits [B, T, V]."""
    h = self.wte(tokens)
    tc = 0
    if cond is not None:
      tc = cond.shape[1]
      h = jnp.concatenate([cond.astype(h.dtype), h], axis=1)
    t = h.shape[1]
    if t > self.max_len:
      raise ValueError(f"Sequence of {t} positions exceeds the model's max_len={self.max_len}; "
                       "raise max_len (the block size) or shorten the input.")
    mask = jnp.tril(jnp.ones((t, t), bool)) if self.causal else None
    logits, _ = self._run(h, self.wpe[:t], mask, train, None, None)
    return logits[:, tc:]

  def init_cache(self, batch_size: int, dtype=jnp.float32) -> Cache:
    """Zero keys/values for every layer: {'k','v'} [B, max_len, H, d_head]."""
    shape = (batch_size, self.max_len, self.num_heads, self.embed_dim // self.num_heads)
    return tuple({"k": jnp.zeros(shape, dtype), "v": jnp.zeros(shape, dtype)}
                 for _ in range(self.num_layers))

  def decode(self, tokens, cache: Cache, index, *, cond: Optional[jax.Array] = None):
    """Runs tokens [B, n] at positions index..index+n-1 against the cache.

    Returns (logits [B, n, V], updated cache). With `cond` [B, Tc, D] the chunk is
    cond followed by tokens (use it in the first chunk, at index 0); logits are
    for the tokens only. `index` may be traced (inside lax.scan); n is static.
    """
    if not self.causal:
      raise ValueError("Incremental decoding needs causal=True.")
    h = self.wte(tokens)
    tc = 0
    if cond is not None:
      tc = cond.shape[1]
      h = jnp.concatenate([cond.astype(h.dtype), h], axis=1)
    n = h.shape[1]
    positions = index + jnp.arange(n)
    mask = jnp.arange(self.max_len)[None, :] <= positions[:, None]  # [n, max_len]
    pos_emb = jax.lax.dynamic_slice_in_dim(self.wpe, index, n, axis=0)
    logits, cache = self._run(h, pos_emb, mask, False, cache, index)
    return logits[:, tc:], cache
