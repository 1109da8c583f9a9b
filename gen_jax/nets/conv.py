"""Convolutional encoders and decoders for small images (8x8 digits, 28x28 MNIST).

Each of the `channels` stages halves (encoder) or doubles (decoder) the
resolution with a stride-2 convolution, so H and W must be divisible by
2 ** len(channels).

Mixed precision: under a bfloat16 policy (`gen_jax.policy`) every convolution and dense
layer here runs in bfloat16 (the policy casts their inputs), and the activations between
them stay bfloat16: there is no normalisation layer to keep in float32. What reaches the
loss -- the top-level outputs of the VAE or VQ-VAE net built from these stages (posterior
mean and log-variance, the decoder's parameters) -- is cast back to float32 by the policy.
`to_unit_range` returns float32.
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from gen_jax.errors import UserError


def check_divisible(shape, num_stages: int, what: str) -> None:
  h, w = shape[0], shape[1]
  factor = 2 ** num_stages
  if h % factor or w % factor:
    raise UserError(
        f"{what}: image {h}x{w} is not divisible by 2**{num_stages} = {factor} "
        f"({num_stages} stride-2 stages); use fewer entries in model.channels.")


def downsample(x, channels: Sequence[int]):
  """A 3x3 stem, then per entry c of `channels` a stride-2 4x4 conv and a 3x3 conv to c
  channels (GELU after each). Called inside an `nn.compact` method, whose submodules
  the convolutions become."""
  x = nn.gelu(nn.Conv(channels[0], (3, 3))(x))
  for c in channels:
    x = nn.gelu(nn.Conv(c, (4, 4), strides=(2, 2))(x))
    x = nn.gelu(nn.Conv(c, (3, 3))(x))
  return x


def upsample(x, channels: Sequence[int], out_channels: int):
  """The mirror of `downsample`: per entry of reversed `channels` a 3x3 conv and a stride-2
  4x4 transposed conv, then a 3x3 conv and a 3x3 output conv to `out_channels`."""
  for c in reversed(channels):
    x = nn.gelu(nn.Conv(c, (3, 3))(x))
    x = nn.gelu(nn.ConvTranspose(c, (4, 4), strides=(2, 2))(x))
  x = nn.gelu(nn.Conv(channels[0], (3, 3))(x))
  return nn.Conv(out_channels, (3, 3))(x)


class ConvEncoder(nn.Module):
  """[B, H, W, C] -> [B, out_features] through stride-2 conv stages."""
  channels: Sequence[int] = (32, 64)
  out_features: int = 32

  @nn.compact
  def __call__(self, x):
    x = downsample(x, self.channels)
    x = x.reshape(x.shape[0], -1)
    return nn.Dense(self.out_features)(x)


class ConvDecoder(nn.Module):
  """[B, D] -> [B, H, W, out_channels] mirroring ConvEncoder."""
  image_shape: Sequence[int] = (8, 8, 1)
  channels: Sequence[int] = (32, 64)
  out_channels: int = 1

  @nn.compact
  def __call__(self, z):
    factor = 2 ** len(self.channels)
    h, w = self.image_shape[0] // factor, self.image_shape[1] // factor
    x = nn.Dense(h * w * self.channels[-1])(z)
    x = nn.gelu(x.reshape(z.shape[0], h, w, self.channels[-1]))
    return upsample(x, self.channels, self.out_channels)


def to_unit_range(x_levels, num_levels: int):
  """Integer levels 0..L-1 -> floats in [-1, 1]."""
  return jnp.asarray(x_levels, jnp.float32) / (num_levels - 1) * 2.0 - 1.0
