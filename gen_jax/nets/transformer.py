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

Attention runs through `jax.nn.dot_product_attention` (`attention_impl`: "xla",
XLA's einsum-softmax-einsum, or "cudnn", cuDNN's flash kernel on an NVIDIA GPU,
which never forms the [T, T] score matrix and skips the masked half under
`is_causal`). Activations are laid out [B, T, H, d_head], the layout it takes, so
the q/k/v and output projections are plain [B*T, C] x [C, C] matmuls with no
transposes; the full forward pass masks with `is_causal`, a cached chunk with a
boolean [n, max_len] mask (cache slot <= query position). 1/sqrt(d_head) is folded
into the query projection (scale=1.0 is passed), as before the kernel was used, so
parameters and logits are those of earlier checkpoints. cuDNN's kernel takes only
bfloat16/float16 inputs and head widths that are multiples of 8 (<= 256): attention
in float32 (evaluation, sampling, compute_dtype=float32) runs XLA's kernel, whose
backward pass is written out (`attention`: FlashAttention's, 1.3x faster on a CPU than
autodiff of the library call, and it keeps no [T, T] residual).

Mixed precision (gen_jax.policy). Under a bfloat16 compute dtype the matmuls and
activations run in bfloat16 and three things stay float32: the attention softmax
(dot_product_attention forms its scores with a float32 accumulator and takes the
softmax in float32, so rows of many near-equal scores are not rounded to a few
bfloat16 levels); the LayerNorm mean and variance (flax's LayerNorm computes them
in float32, `force_float32_reductions`: a variance of bfloat16 squares loses the
small deviations); and the logits the loss reduces over (the policy casts a
top-level network's outputs to float32 before the log-softmax).

Rematerialisation. The blocks are built with `gen_jax.policy.remat_block`, so a
training step traced under remat="blocks" (or a jax.checkpoint_policies name)
keeps each block's input only and recomputes the rest in the backward pass;
`train` is the blocks' static (positional) argument.
"""
from __future__ import annotations

import functools
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from gen_jax import policy as policy_lib
from gen_jax.errors import UserError

Cache = Any  # tuple over layers of {'k': [B, L, H, Dh], 'v': [B, L, H, Dh]}

_INIT = nn.initializers.normal(stddev=0.02)  # GPT-2's initialisation


ATTENTION_IMPLS = ("xla", "cudnn")


def check_attention_impl(impl: str) -> None:
  """Refuses an `attention_impl` that is unknown, or "cudnn" where no GPU is (UserError)."""
  if impl not in ATTENTION_IMPLS:
    raise UserError(f"attention_impl={impl!r} is not an attention kernel; use one of "
                    f"{', '.join(ATTENTION_IMPLS)} (config.model.attention_impl).")
  if impl == "cudnn" and jax.default_backend() != "gpu":
    raise UserError(f"attention_impl='cudnn' needs an NVIDIA GPU, and the backend is "
                    f"{jax.default_backend()!r}; use --config.model.attention_impl=xla.")


def _attend(q, k, v, *, is_causal=False, mask=None, impl="xla"):
  """softmax(q k^T + M) v for q [B,Tq,H,D], k/v [B,Tk,H,D] (q pre-scaled by 1/sqrt(D)).

  M: causal when `is_causal` (Tq == Tk), else -inf where the boolean `mask`
  [Tq, Tk] is False (none without it). "cudnn" is used where its kernel takes
  the inputs (bfloat16/float16), with its own fused backward pass; otherwise XLA's
  kernel runs, with the backward pass of `attention`.
  """
  if impl == "cudnn" and q.dtype in (jnp.bfloat16, jnp.float16):
    return jax.nn.dot_product_attention(q, k, v, mask=None if mask is None else mask[None, None],
                                        scale=1.0, is_causal=is_causal, implementation="cudnn")
  return attention(q, k, v, mask, is_causal)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def attention(q, k, v, mask=None, is_causal=False):
  r"""O = softmax(S) V, S = Q K^T + M: `jax.nn.dot_product_attention` (XLA's kernel, scale 1).

  The backward pass is FlashAttention's (Dao et al. 2022, arXiv:2205.14135, Algorithm 4),
  with P = softmax(S) recomputed from Q and K in float32, so only Q, K, V and O are kept
  (no [Tq, Tk] residual):
      dV = P^T dO,   dP = dO V^T,   D = rowsum(dO * O),   dS = P * (dP - D),
      dQ = dS K,     dK = dS^T Q.
  Autodiff of the library's XLA kernel (vmapped over key/value-head groups) costs 1.3x
  this on a CPU (fwd + bwd at the nanoGPT recipe's shapes: 3.9 vs 3.0 ms a layer).
  mask: None or bool [Tq, Tk] (True: attend), is_causal: M lower-triangular (Tq == Tk).
  """
  return jax.nn.dot_product_attention(q, k, v, mask=None if mask is None else mask[None, None],
                                      scale=1.0, is_causal=is_causal, implementation="xla")


def _attention_fwd(q, k, v, mask, is_causal):
  o = attention(q, k, v, mask, is_causal)
  return o, (q, k, v, mask, o)


def _attention_bwd(is_causal, res, d_o):
  q, k, v, mask, o = res
  s = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32)
  if is_causal:
    mask = jnp.tril(jnp.ones(s.shape[-2:], bool))
  if mask is not None:
    s = jnp.where(mask, s, jnp.finfo(jnp.float32).min)
  p = jax.nn.softmax(s, axis=-1)
  d_v = jnp.einsum("bhqk,bqhd->bkhd", p.astype(v.dtype), d_o)
  d_p = jnp.einsum("bqhd,bkhd->bhqk", d_o, v, preferred_element_type=jnp.float32)
  row = jnp.einsum("bqhd,bqhd->bhq", d_o.astype(jnp.float32), o.astype(jnp.float32))
  d_s = (p * (d_p - row[..., None])).astype(q.dtype)
  d_q = jnp.einsum("bhqk,bkhd->bqhd", d_s, k)
  d_k = jnp.einsum("bhqk,bqhd->bkhd", d_s, q)
  return d_q, d_k, d_v, None


attention.defvjp(_attention_fwd, _attention_bwd)


def rotary(x, positions, base: float = 10_000.0):
  r"""Rotary position embedding (Su et al. 2021, RoFormer, arXiv:2104.09864) of x [B, T, H, D]
  at integer positions [T]: the pairs (x_i, x_{i + D/2}) rotated by the angle
  position * base^{-2i / D}, so that <rotary(q, m), rotary(k, n)> depends on m - n only."""
  half = x.shape[-1] // 2
  freqs = base ** (-jnp.arange(half, dtype=jnp.float32) / half)
  angle = jnp.asarray(positions, jnp.float32)[:, None] * freqs[None]      # [T, D/2]
  cos, sin = jnp.cos(angle)[None, :, None].astype(x.dtype), jnp.sin(angle)[None, :, None].astype(x.dtype)
  x1, x2 = x[..., :half], x[..., half:]
  return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


def _gelu(h):
  """GELU, tanh form (Hendrycks & Gimpel 2016, arXiv:1606.08415)."""
  return jax.nn.gelu(h, approximate=True)


@jax.custom_vjp
def mlp(x, w1, b1, w2, b2):
  """gelu(x W1 + b1) W2 + b2 over the last axis (b1, b2 may be None).

  The backward pass is written out, with u = tanh(c (h + 0.044715 h^3)),
  c = sqrt(2/pi), kept from the forward pass instead of recomputed:
    gelu'(h) = (1 + u)/2 + h/2 (1 - u^2) c (1 + 3 * 0.044715 h^2),
    dh = (dy W2^T) * gelu'(h),  dW1 = x^T dh,  dW2 = gelu(h)^T dy,  dx = dh W1^T,
  with dh kept in row-major layout: XLA's CPU backend otherwise fuses gelu'
  into a transposed write for dW1 that costs more than the matmuls themselves.
  (Single-threaded CPU time of the nanoGPT-recipe training step: 62.8 ms with
  two nn.Dense and autodiff, 51.8 ms with this.)
  """
  return _mlp_fwd(x, w1, b1, w2, b2)[0]


_GELU_C = (2.0 / 3.141592653589793) ** 0.5


def _mlp_fwd(x, w1, b1, w2, b2):
  h = x @ w1 + (0.0 if b1 is None else b1)
  u = jnp.tanh(_GELU_C * (h + 0.044715 * h * h * h))
  y = (0.5 * h * (1.0 + u)) @ w2 + (0.0 if b2 is None else b2)
  return y, (x, w1, b1, w2, b2, h, u)


def _mlp_bwd(res, dy):
  x, w1, b1, w2, b2, h, u = res
  lead = x.shape[:-1]
  flat = lambda z: z.reshape(-1, z.shape[-1])
  x2, h2, u2, dy2 = flat(x), flat(h), flat(u), flat(dy)
  a2 = 0.5 * h2 * (1.0 + u2)
  dgelu = 0.5 * (1.0 + u2) + 0.5 * h2 * (1.0 - u2 * u2) * _GELU_C * (1.0 + 0.134145 * h2 * h2)
  dh2 = jax.lax.optimization_barrier((dy2 @ w2.T) * dgelu)
  dx = (dh2 @ w1.T).reshape(*lead, x.shape[-1])
  db1 = None if b1 is None else dh2.sum(0)
  db2 = None if b2 is None else dy2.sum(0)
  return dx, x2.T @ dh2, db1, a2.T @ dy2, db2


mlp.defvjp(_mlp_fwd, _mlp_bwd)


class Mlp(nn.Module):
  """Dense(hidden) -> GELU -> Dense(out), parameters named like two nn.Dense (fc, fc_out)."""
  hidden: int
  use_bias: bool = False
  out_init_std: float = 0.02

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    w1 = self.param("fc_kernel", _INIT, (c, self.hidden))
    w2 = self.param("fc_out_kernel", nn.initializers.normal(self.out_init_std), (self.hidden, c))
    b1 = self.param("fc_bias", nn.initializers.zeros, (self.hidden,)) if self.use_bias else None
    b2 = self.param("fc_out_bias", nn.initializers.zeros, (c,)) if self.use_bias else None
    return mlp(x, w1, b1, w2, b2)


class SelfAttention(nn.Module):
  """Multi-head self-attention; q, k, v and the output projected per head.

  Parameters: qkv_kernel [C, 3, H, D] (q, k, v stacked), proj_kernel [H, D, C]
  (and biases with use_bias). Activations are [B, T, H, D], the layout
  dot_product_attention takes, so every projection is one matmul over [B*T, C]
  and no transposes are materialised; the cache holds keys/values in the same
  layout [B, max_len, H, D].
  """
  num_heads: int
  use_bias: bool = False
  dropout: float = 0.0
  num_layers: int = 1  # scales the output projection's init (GPT-2: 1/sqrt(2 L))
  causal: bool = True
  attention_impl: str = "xla"
  rope: bool = False            # rotary position embedding of q and k (`rotary`)

  @nn.compact
  def __call__(self, x, mask, train: bool, cache=None, index=None):
    """x [B, T, C] -> (y [B, T, C], updated cache or None).

    mask: None (causal or bidirectional as `causal` says) or, for a cached chunk,
    bool [T, max_len].
    """
    b, t, c = x.shape
    h = self.num_heads
    if c % h:
      raise UserError(f"embed_dim={c} is not divisible by num_heads={h}.")
    d = c // h
    if self.attention_impl == "cudnn" and (d % 8 or d > 256):
      raise UserError(f"attention_impl='cudnn' needs a head width (embed_dim / num_heads) that "
                      f"is a multiple of 8 and <= 256, not {d}; change num_heads or use xla.")
    w = self.param("qkv_kernel", _INIT, (c, 3, h, d))
    q = jnp.einsum("btc,chd->bthd", x, w[:, 0] * d ** -0.5)   # 1/sqrt(d) folded into q
    k = jnp.einsum("btc,chd->bthd", x, w[:, 1])
    v = jnp.einsum("btc,chd->bthd", x, w[:, 2])
    if self.use_bias:
      bias = self.param("qkv_bias", nn.initializers.zeros, (3, h, d))
      q, k, v = q + bias[0] * d ** -0.5, k + bias[1], v + bias[2]
    if self.rope:
      positions = jnp.arange(t) + (0 if cache is None else index)
      q, k = rotary(q, positions), rotary(k, positions)
    new_cache = None
    if cache is not None:
      k = jax.lax.dynamic_update_slice(cache["k"], k.astype(cache["k"].dtype), (0, index, 0, 0))
      v = jax.lax.dynamic_update_slice(cache["v"], v.astype(cache["v"].dtype), (0, index, 0, 0))
      new_cache = {"k": k, "v": v}
    dtype = jnp.result_type(q, k)
    y = _attend(q.astype(dtype), k.astype(dtype), v.astype(dtype),
                is_causal=self.causal and mask is None, mask=mask, impl=self.attention_impl)
    if self.dropout > 0:
      y = nn.Dropout(self.dropout, deterministic=not train)(y)
    wo = self.param("proj_kernel", nn.initializers.normal(0.02 / (2 * self.num_layers) ** 0.5),
                    (h, d, c))
    y = jnp.einsum("bthd,hdc->btc", y, wo)
    if self.use_bias:
      y = y + self.param("proj_bias", nn.initializers.zeros, (c,))
    return y, new_cache


class Block(nn.Module):
  """Pre-LN transformer block: x + Attn(LN x), then x + MLP(LN x).

  `train` is positional (argument 3 counting self), so that `nn.remat` can hold it
  static (`gen_jax.policy.remat_block(Block, static_argnums=(3,))`).
  """
  num_heads: int
  mlp_ratio: int = 4
  use_bias: bool = False
  dropout: float = 0.0
  num_layers: int = 1
  causal: bool = True
  attention_impl: str = "xla"
  rope: bool = False

  @nn.compact
  def __call__(self, x, mask, train: bool, cache=None, index=None):
    c = x.shape[-1]
    y, new_cache = SelfAttention(self.num_heads, self.use_bias, self.dropout, self.num_layers,
                                 self.causal, self.attention_impl, self.rope, name="attn")(
        nn.LayerNorm(epsilon=1e-5, use_bias=self.use_bias, name="ln1")(x), mask, train,
        cache, index)
    if self.dropout > 0:
      y = nn.Dropout(self.dropout, deterministic=not train)(y)
    x = x + y
    y = nn.LayerNorm(epsilon=1e-5, use_bias=self.use_bias, name="ln2")(x)
    y = Mlp(self.mlp_ratio * c, self.use_bias, 0.02 / (2 * self.num_layers) ** 0.5, name="mlp")(y)
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
    attention_impl: dot_product_attention's kernel, "xla" or "cudnn" (NVIDIA GPUs only).
    rope: also rotate q and k by their positions (`rotary`), beside the learned absolute
      embedding: attention that can depend on relative offsets from the start (mdlm).
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
  attention_impl: str = "xla"
  rope: bool = False

  def setup(self):
    check_attention_impl(self.attention_impl)
    self.wte = nn.Embed(self.vocab_size, self.embed_dim, embedding_init=_INIT)
    self.wpe = self.param("wpe", _INIT, (self.max_len, self.embed_dim))
    block = policy_lib.remat_block(Block, static_argnums=(3,))   # train: static
    self.blocks = [block(self.num_heads, self.mlp_ratio, self.use_bias, self.dropout,
                         self.num_layers, self.causal, self.attention_impl, self.rope,
                         name=f"block_{i}")
                   for i in range(self.num_layers)]
    self.ln_f = nn.LayerNorm(epsilon=1e-5, use_bias=self.use_bias)
    self.drop = nn.Dropout(self.dropout)

  def _run(self, h, pos_emb, mask, train, cache, index):
    h = h + pos_emb
    if self.dropout > 0:
      h = self.drop(h, deterministic=not train)
    new_cache = []
    for i, block in enumerate(self.blocks):
      h, c = block(h, mask, train, None if cache is None else cache[i], index)
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
      raise UserError(f"Sequence of {t} positions exceeds the model's max_len={self.max_len}; "
                       "raise max_len (the block size) or shorten the input.")
    logits, _ = self._run(h, self.wpe[:t], None, train, None, None)   # causal: is_causal
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
      raise UserError("Incremental decoding needs causal=True.")
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
