r"""Vector quantization (van den Oord et al. 2017, "Neural Discrete Representation
Learning", arXiv:1711.00937) and the convolutional encoder/decoder of a VQ-VAE.

The encoder maps an image [B, H, W, C] to a grid z_e [B, h, w, D] (h = H / 2^S
for S stride-2 stages); each grid vector is replaced by its nearest codebook
entry,

    k(i) = argmin_k ||z_e,i - e_k||^2,   z_q,i = e_{k(i)},

and the decoder maps z_q back to the parameters of p(x | z_q). The argmin has
no gradient: the straight-through estimator (Bengio et al. 2013) passes the
decoder's gradient with respect to z_q unchanged to z_e,
z_q^{st} = z_e + stop_gradient(z_q - z_e).

Mixed precision: under a bfloat16 policy (`gen_jax.policy`) the encoder's and decoder's
convolutions run in bfloat16, and their outputs (z_e, the decoder's parameters) reach the
paradigm in float32, since the policy casts every top-level output back. `nearest_code`
computes the distances and their argmin in float32 even from a bfloat16 codebook (the
training step casts the codebook with the other parameters): ||e_k||^2 rounded to
bfloat16 (~3 significant digits) swaps near codes, 40% of them in tests/test_vq.py. The EMA
codebook update (the paradigm's `post_update`, `gen_jax.losses.vq`) runs outside the policy,
on the float32 parameters.
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from gen_jax.nets.conv import downsample, upsample


def nearest_code(z, codebook):
  r"""argmin_k ||z - e_k||^2 for z [..., D] and codebook [K, D] -> int32 [...].

  Uses ||z||^2 - 2 z.e_k + ||e_k||^2 (one matrix product), in float32 (at least) whatever
  the dtypes of z and the codebook; ties go to the lowest index.
  """
  dtype = jnp.promote_types(jnp.result_type(z, codebook), jnp.float32)
  z, codebook = jnp.asarray(z, dtype), jnp.asarray(codebook, dtype)
  d2 = (jnp.sum(z ** 2, axis=-1, keepdims=True) - 2.0 * z @ codebook.T
        + jnp.sum(codebook ** 2, axis=-1))
  return jnp.argmin(d2, axis=-1).astype(jnp.int32)


def lookup(codebook, indices):
  """e_{k}: int [...] -> [..., D]."""
  return jnp.take(codebook, indices, axis=0)


def straight_through(z_e, z_q):
  r"""z_e + stop_gradient(z_q - z_e): the value of z_q, the gradient of the identity to z_e."""
  return z_e + jax.lax.stop_gradient(z_q - z_e)


class GridEncoder(nn.Module):
  """[B, H, W, C] -> z_e [B, H / 2^S, W / 2^S, code_dim] through S = len(channels)
  stride-2 conv stages (the stages of `gen_jax.nets.conv.ConvEncoder`, kept as a grid)."""
  channels: Sequence[int] = (64,)
  code_dim: int = 16

  @nn.compact
  def __call__(self, x):
    x = downsample(x, self.channels)
    return nn.Conv(self.code_dim, (1, 1))(x)


class GridDecoder(nn.Module):
  """z_q [B, h, w, D] -> [B, h 2^S, w 2^S, out_channels], mirroring GridEncoder."""
  channels: Sequence[int] = (64,)
  out_channels: int = 1

  @nn.compact
  def __call__(self, z):
    x = nn.gelu(nn.Conv(self.channels[-1], (3, 3))(z))
    return upsample(x, self.channels, self.out_channels)


class VQVAENet(nn.Module):
  """The encoder and decoder of a VQ-VAE (the codebook is a separate parameter)."""
  channels: Sequence[int] = (64,)
  code_dim: int = 16
  out_channels: int = 1

  def setup(self):
    self.encoder = GridEncoder(self.channels, self.code_dim)
    self.decoder = GridDecoder(self.channels, self.out_channels)

  def encode(self, x):
    return self.encoder(x)

  def decode(self, z_q):
    return self.decoder(z_q)

  def __call__(self, x):
    return self.decode(self.encode(x))
