r"""The diffusion U-Net and the toy-data score MLP (Flax linen).

U-Net after Ho et al. 2020 (arXiv:2006.11239, Appendix B) and the PixelCNN++ /
Wide-ResNet backbone it builds on: sinusoidal time embedding (Vaswani et al.
2017) -> MLP; at each resolution `num_res_blocks` residual blocks with
GroupNorm (Wu & He 2018) and the time (and class) embedding added after the first
convolution, self-attention at the resolutions listed in `attn_resolutions`,
strided-conv downsampling, a middle block (res, attention, res), and an upsampling
path that concatenates the matching skip activations. The last convolution is
zero-initialised so a fresh network outputs 0.

Class conditioning (for classifier-free guidance, Ho & Salimans arXiv:2207.12598):
with ``num_classes = K > 0`` a label embedding of K + 1 entries is added to the
time embedding; label K is the "null" label of the unconditional model.

Mixed precision: under a bfloat16 policy (`gen_jax.policy`) the convolutions, dense layers
and attention projections run in bfloat16. Kept in float32: GroupNorm's mean and variance
(flax's force_float32_reductions), the attention softmax (force_fp32_for_softmax), the
sinusoidal time embedding (t w_i reaches ~1000 rad, where a bfloat16 t has a spacing of 4;
the first Dense casts the finished embedding), and the output -- the predicted eps / x_0 /
v / score reaches the loss in float32 because the policy casts every top-level output back.
Under remat="blocks" (or a named policy) the residual and attention blocks keep only their
inputs for the backward pass.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from gen_jax.errors import UserError
from gen_jax.policy import remat_block


def timestep_embedding(t, dim: int, max_period: float = 10_000.0):
  r"""Sinusoidal embedding [B, dim] of a float time [B]:
  (cos(t w_i), sin(t w_i)), w_i = max_period^{-i / (dim/2)}, i = 0..dim/2-1.
  Meant for t in roughly [0, 1000] (the paradigms scale their times into that range)."""
  half = dim // 2
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
  args = jnp.asarray(t, jnp.float32)[:, None] * freqs[None]
  emb = jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)
  if dim % 2:
    emb = jnp.pad(emb, ((0, 0), (0, 1)))
  return emb


def _groups(channels: int, groups: int) -> int:
  g = min(groups, channels)
  while channels % g:
    g -= 1
  return g


class ResBlock(nn.Module):
  """GroupNorm -> SiLU -> conv, + Dense(emb), GroupNorm -> SiLU -> dropout -> conv(0-init), + skip."""
  out_channels: int
  groups: int = 8
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x, emb, train: bool):
    h = nn.silu(nn.GroupNorm(_groups(x.shape[-1], self.groups))(x))
    h = nn.Conv(self.out_channels, (3, 3))(h)
    h = h + nn.Dense(self.out_channels)(nn.silu(emb))[:, None, None, :]
    h = nn.silu(nn.GroupNorm(_groups(self.out_channels, self.groups))(h))
    h = nn.Dropout(self.dropout, deterministic=not train)(h)
    h = nn.Conv(self.out_channels, (3, 3), kernel_init=nn.initializers.zeros)(h)
    if x.shape[-1] != self.out_channels:
      x = nn.Conv(self.out_channels, (1, 1))(x)
    return x + h


class AttnBlock(nn.Module):
  """Multi-head self-attention over the H*W positions, residual, output projection 0-init."""
  num_heads: int = 1
  groups: int = 8

  @nn.compact
  def __call__(self, x):
    b, h, w, c = x.shape
    y = nn.GroupNorm(_groups(c, self.groups))(x).reshape(b, h * w, c)
    y = nn.MultiHeadDotProductAttention(   # softmax in float32 under a bfloat16 policy
        num_heads=self.num_heads, out_kernel_init=nn.initializers.zeros,
        force_fp32_for_softmax=True)(y, y)
    return x + y.reshape(b, h, w, c)


class UNet(nn.Module):
  """eps / score / denoiser / velocity network for [B, H, W, C] images.

  Attributes:
    channels: base width; level i has channels * channel_mult[i].
    channel_mult: one entry per resolution; H and W must be divisible by
      2^(len(channel_mult) - 1).
    num_res_blocks: residual blocks per level (the up path has one more).
    attn_resolutions: feature-map sizes (H) that get self-attention, e.g. (4,) for 8x8
      inputs with channel_mult (1, 2) or (7,) for 28x28 with (1, 2, 2).
    dropout: dropout rate inside residual blocks (active with train=True, rng 'dropout').
    num_classes: 0 for an unconditional net; K > 0 adds a label embedding of K + 1
      entries, the last (label K) being the null label.
    out_channels: output channels (default: the input's).
    groups: GroupNorm groups (reduced to a divisor of the width when needed).
    num_heads: attention heads.
  """
  channels: int = 32
  channel_mult: Sequence[int] = (1, 2)
  num_res_blocks: int = 2
  attn_resolutions: Sequence[int] = ()
  dropout: float = 0.0
  num_classes: int = 0
  out_channels: Optional[int] = None
  groups: int = 8
  num_heads: int = 1

  @nn.compact
  def __call__(self, x, t, label=None, *, train: bool = False):
    b, height, width, c_in = x.shape
    factor = 2 ** (len(self.channel_mult) - 1)
    if height % factor or width % factor:
      raise UserError(f"UNet with channel_mult={tuple(self.channel_mult)} halves the image "
                       f"{len(self.channel_mult) - 1} times, so H and W must be divisible by "
                       f"{factor}; got {height}x{width}. Use fewer channel_mult entries.")
    emb_dim = 4 * self.channels
    emb = timestep_embedding(t, self.channels)
    emb = nn.Dense(emb_dim)(nn.silu(nn.Dense(emb_dim)(emb)))
    if self.num_classes:
      if label is None:
        label = jnp.full((b,), self.num_classes, jnp.int32)
      emb = emb + nn.Embed(self.num_classes + 1, emb_dim)(label)

    # Under remat (gen_jax.policy) the residual and attention blocks keep only their inputs
    # for the backward pass; named as linen names them unwrapped, so parameters do not
    # depend on it.
    res_block, res_count = remat_block(ResBlock, static_argnums=(3,)), iter(range(10 ** 6))
    attn_block, attn_count = remat_block(AttnBlock), iter(range(10 ** 6))
    res = lambda ch: res_block(ch, self.groups, self.dropout, name=f"ResBlock_{next(res_count)}")
    attn = lambda: attn_block(self.num_heads, self.groups, name=f"AttnBlock_{next(attn_count)}")
    h = nn.Conv(self.channels, (3, 3))(x)
    skips = [h]
    for level, mult in enumerate(self.channel_mult):
      for _ in range(self.num_res_blocks):
        h = res(self.channels * mult)(h, emb, train)
        if h.shape[1] in self.attn_resolutions:
          h = attn()(h)
        skips.append(h)
      if level != len(self.channel_mult) - 1:
        h = nn.Conv(h.shape[-1], (3, 3), strides=(2, 2))(h)
        skips.append(h)

    h = res(h.shape[-1])(h, emb, train)
    h = attn()(h)
    h = res(h.shape[-1])(h, emb, train)

    for level, mult in reversed(list(enumerate(self.channel_mult))):
      for _ in range(self.num_res_blocks + 1):
        h = res(self.channels * mult)(jnp.concatenate([h, skips.pop()], axis=-1), emb, train)
        if h.shape[1] in self.attn_resolutions:
          h = attn()(h)
      if level != 0:
        bb, hh, ww, cc = h.shape
        h = jax.image.resize(h, (bb, 2 * hh, 2 * ww, cc), 'nearest')
        h = nn.Conv(cc, (3, 3))(h)
    assert not skips
    h = nn.silu(nn.GroupNorm(_groups(h.shape[-1], self.groups))(h))
    return nn.Conv(self.out_channels or c_in, (3, 3), kernel_init=nn.initializers.zeros)(h)


class ScoreMLP(nn.Module):
  """Time-conditioned MLP for low-dimensional data [B, D] (toy2d): the sinusoidal time
  embedding (and optional label embedding, null label = num_classes) is projected and
  added to every hidden layer; SiLU activations; zero-initialised output layer."""
  hidden: int = 256
  num_layers: int = 3
  num_classes: int = 0
  emb_dim: int = 64

  @nn.compact
  def __call__(self, x, t, label=None, *, train: bool = False):
    del train
    emb = timestep_embedding(t, self.emb_dim)
    emb = nn.Dense(self.hidden)(nn.silu(nn.Dense(self.hidden)(emb)))
    if self.num_classes:
      if label is None:
        label = jnp.full((x.shape[0],), self.num_classes, jnp.int32)
      emb = emb + nn.Embed(self.num_classes + 1, self.hidden)(label)
    h = nn.Dense(self.hidden)(x)
    for _ in range(self.num_layers):
      h = nn.silu(h + nn.Dense(self.hidden)(nn.silu(emb)))
      h = nn.Dense(self.hidden)(h)
    h = nn.silu(h)
    return nn.Dense(x.shape[-1], kernel_init=nn.initializers.zeros)(h)
