r"""The next-scale transformer of VAR (Tian, Jiang, Yuan, Peng, Wang 2024, arXiv:2404.02905,
Sec. 3.1-3.3): the GPT's pre-LN blocks (`gen_jax.nets.transformer.Block`) over the L = sum_k r_k^2
positions of K scales, with a block-causal mask over scales.

Inputs. Positions of scale 1 (r_1^2 of them) hold the start embedding (a class embedding for a
class-conditional model, VAR's [s] / class token); positions of scale k >= 2 hold
`word_embed`(interpolate(f_hat_{<k}, r_k)), the stage-1 features of the coarser scales
interpolated to scale k (`gen_jax.paradigms.msvq.Tokenizer.next_scale_inputs`), each plus a
learned position embedding and a learned embedding of its scale (VAR's `lvl_embed`). The output at
every position of scale k is the logits over the K codes of that position's token.

Mask (VAR's `attn_bias_for_masking`): a position of scale s attends to every position of the
scales <= s, its own scale's inputs included (they hold only scales < s), so the logits of scale s
depend only on the tokens of scales < s (`block_causal_mask`; tests/test_var.py checks both).

Incremental decoding: `init_cache` and `decode_scale` run one scale's positions as a chunk
against a key/value cache (the Block's own cache, with the mask cache slot < end of the scale),
so sampling takes K forward passes over r_k^2 positions each. Class conditioning here is the start
token only (VAR also modulates every block by adaLN from the class; not done here).
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from gen_jax import policy as policy_lib
from gen_jax.nets.transformer import Block

_INIT = nn.initializers.normal(stddev=0.02)   # GPT-2's, as gen_jax.nets.transformer


def scale_of_position(scales: Sequence[int]) -> np.ndarray:
  """int [L]: the scale index k (0-based) of every position, coarse to fine."""
  return np.concatenate([np.full(r * r, k, np.int32) for k, r in enumerate(scales)])


def block_causal_mask(scales: Sequence[int]) -> np.ndarray:
  """bool [L, L]: query position i may attend key position j iff scale(j) <= scale(i)."""
  level = scale_of_position(scales)
  return level[:, None] >= level[None, :]


class NextScaleTransformer(nn.Module):
  """Logits over `num_codes` for every position of the ladder `scales` (see the module docstring).

  Attributes:
    num_codes: K, the stage-1 codebook size (the logits' width).
    scales: r_1 < ... < r_K.
    feature_dim: D of the stage-1 features (word_embed's input).
    num_starts: start embeddings (1, or the number of classes).
    num_layers, num_heads, embed_dim, mlp_ratio, dropout, use_bias, attention_impl: as
      `gen_jax.nets.transformer.Transformer`'s.
  """
  num_codes: int
  scales: Sequence[int]
  feature_dim: int
  num_starts: int = 1
  num_layers: int = 4
  num_heads: int = 4
  embed_dim: int = 128
  mlp_ratio: int = 4
  dropout: float = 0.0
  use_bias: bool = False
  attention_impl: str = "xla"

  @property
  def num_positions(self) -> int:
    return sum(r * r for r in self.scales)

  def setup(self):
    self.start = nn.Embed(self.num_starts, self.embed_dim, embedding_init=_INIT)
    self.word_embed = nn.Dense(self.embed_dim, kernel_init=_INIT)
    self.pos = self.param("pos", _INIT, (self.num_positions, self.embed_dim))
    self.level = nn.Embed(len(self.scales), self.embed_dim, embedding_init=_INIT)
    block = policy_lib.remat_block(Block, static_argnums=(3,))   # train: static
    self.blocks = [block(self.num_heads, self.mlp_ratio, self.use_bias, self.dropout,
                         self.num_layers, False, self.attention_impl, name=f"block_{i}")
                   for i in range(self.num_layers)]
    self.ln_f = nn.LayerNorm(epsilon=1e-5, use_bias=self.use_bias)
    self.head = nn.Dense(self.num_codes, use_bias=self.use_bias, kernel_init=_INIT)
    self.drop = nn.Dropout(self.dropout)

  def _embed(self, start, features, begin: int, end: int):
    """Input embeddings of positions begin..end-1 (static): start [B] ids for scale-1
    positions, features [B, n, D] for the others (those of positions max(begin, r_1^2)..end-1)."""
    first = self.scales[0] ** 2
    parts = []
    if begin < first:
      parts.append(jnp.broadcast_to(self.start(start)[:, None], (start.shape[0], min(end, first) - begin,
                                                                 self.embed_dim)))
    if end > first:
      parts.append(self.word_embed(features))
    h = jnp.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
    level = jnp.asarray(scale_of_position(self.scales)[begin:end])
    return h + self.pos[begin:end] + self.level(level)

  def _run(self, h, mask, train, cache, index):
    if self.dropout > 0:
      h = self.drop(h, deterministic=not train)
    new_cache = []
    for i, block in enumerate(self.blocks):
      h, c = block(h, mask, train, None if cache is None else cache[i], index)
      new_cache.append(c)
    return self.head(self.ln_f(h)), (None if cache is None else tuple(new_cache))

  def __call__(self, start, features, *, train: bool = False):
    """start int32 [B], features [B, L - r_1^2, D] -> logits [B, L, num_codes] (teacher forcing)."""
    h = self._embed(start, features, 0, self.num_positions)
    logits, _ = self._run(h, jnp.asarray(block_causal_mask(self.scales)), train, None, None)
    return logits

  def init_cache(self, batch_size: int, dtype=jnp.float32):
    """Zero keys/values for every layer: {'k','v'} [B, L, H, d_head]."""
    shape = (batch_size, self.num_positions, self.num_heads, self.embed_dim // self.num_heads)
    return tuple({"k": jnp.zeros(shape, dtype), "v": jnp.zeros(shape, dtype)}
                 for _ in range(self.num_layers))

  def decode_scale(self, k: int, start, features, cache):
    """Scale k's positions (k static) against the cache of scales < k: start int32 [B] (used at
    k = 0), features [B, r_k^2, D] (k >= 1; None at k = 0) -> (logits [B, r_k^2, num_codes],
    cache with scale k's keys/values)."""
    begin = sum(r * r for r in self.scales[:k])
    end = begin + self.scales[k] ** 2
    h = self._embed(start, features, begin, end)
    mask = jnp.arange(self.num_positions)[None, :] < end                      # [1, L]
    mask = jnp.broadcast_to(mask, (end - begin, self.num_positions))
    return self._run(h, mask, False, cache, begin)
