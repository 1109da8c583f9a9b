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

Multi-scale residual quantization (VAR, Tian et al. 2024, arXiv:2404.02905, Sec. 3.2):
`multiscale_quantize` quantises the feature map at scales r_1 < ... < r_K, each scale the
residual the coarser ones left (`resize_area` down, `upsample_bicubic` up, phi_k of
`MultiScaleVQNet`), with the same `nearest_code` / `lookup` / `straight_through`.
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

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


# --- Multi-scale residual quantization (VAR: Tian, Jiang, Yuan, Peng, Wang 2024, arXiv:2404.02905) ---

def area_weights(n_out: int, n_in: int) -> np.ndarray:
  """[n_out, n_in], rows summing to 1: output i is the mean of inputs
  floor(i n_in / n_out) .. ceil((i + 1) n_in / n_out) - 1 (adaptive average pooling: the
  `interpolate(mode="area")` VAR downsamples residuals with; block means when n_out divides n_in)."""
  weights = np.zeros((n_out, n_in), np.float32)
  for i in range(n_out):
    start, end = (i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)
    weights[i, start:end] = 1.0 / (end - start)
  return weights


def resize_area(x, size):
  """x [B, h, w, D] -> [B, size[0], size[1], D] by `area_weights` along each axis (exactly x
  when the size is x's)."""
  h, w = x.shape[1:3]
  if (h, w) == tuple(size):
    return x
  a, b = area_weights(size[0], h), area_weights(size[1], w)
  return jnp.einsum("ih,jw,bhwd->bijd", a, b, x, precision=jax.lax.Precision.HIGHEST)


def upsample_bicubic(z, size):
  """z [B, r, r', D] -> [B, size[0], size[1], D], bicubic (VAR's upsampling of each scale's
  codes to the feature map; exactly z when the size is z's; a 1x1 map becomes a constant)."""
  if z.shape[1:3] == tuple(size):
    return z
  return jax.image.resize(z, (z.shape[0], *size, z.shape[-1]), method="bicubic")


def scale_contribution(codebook, codes_k, size, phi_k):
  r"""phi_k(up(z(r_k), h)): the codes [B, r_k, r_k] of scale k looked up, upsampled to the
  feature map `size` (h, w) and passed through phi_k ([B, h, w, D] -> [B, h, w, D])."""
  return phi_k(upsample_bicubic(lookup(codebook, codes_k), size))


def multiscale_quantize(f, codebook, scales, phi):
  r"""Multi-scale residual quantization (VAR, arXiv:2404.02905, Sec. 3.2, Algorithm 1).

  With f [B, h, w, D] the encoder's feature map and scales r_1 < ... < r_K = h:

      f_rest = f
      for k = 1..K:   r_k = Q(interpolate(f_rest, r_k x r_k))      (nearest codebook entries)
                      f_rest <- f_rest - phi_k(upsample(z(r_k), h x w))
      f_hat = sum_k phi_k(upsample(z(r_k), h x w))  =  f - f_rest,

  interpolate = `resize_area`, upsample = `upsample_bicubic`. When the codebook holds every
  residual it is asked for, f_hat = f exactly (the last scale's residual is at full size).
  The codes carry no gradient; f_hat carries the codebook's and phi's (the decoder reads it
  with straight-through gradients to f, `straight_through(f, f_hat)`).

  Args:
    f: [B, h, w, D]. codebook: [K, D]. scales: the r_k (square maps r_k x r_k; the last is h,
      w is then h). phi: (k, z [B, h, w, D]) -> [B, h, w, D] (the identity for plain RQ).
  Returns:
    (codes: [int32 [B, r_k, r_k]] per scale, residuals: [the interpolated residual
     [B, r_k, r_k, D] each scale's codes quantise], partial_sums: [f_hat_k = sum_{j<=k}
     phi_j(up(z(r_j)))] per scale; partial_sums[-1] is f_hat).
  """
  size = f.shape[1:3]
  f_rest = jax.lax.stop_gradient(f)
  f_hat = jnp.zeros_like(f)
  codes, residuals, partial_sums = [], [], []
  for k, r in enumerate(scales):
    residual = resize_area(f_rest, (r, r))
    codes_k = nearest_code(residual, jax.lax.stop_gradient(codebook))
    contribution = scale_contribution(codebook, codes_k, size, lambda z, k=k: phi(k, z))
    f_hat = f_hat + contribution
    f_rest = f_rest - jax.lax.stop_gradient(contribution)
    codes.append(codes_k)
    residuals.append(residual)
    partial_sums.append(f_hat)
  return codes, residuals, partial_sums


class ScaleEncoder(nn.Module):
  """[B, H, W, C] -> f [B, H / 2^S, W / 2^S, code_dim]: GridEncoder's S = len(channels) stride-2
  stages, or with none (S = 0) `depth` 3x3 convs of `width` at the image's resolution."""
  channels: Sequence[int] = ()
  width: int = 64
  depth: int = 3
  code_dim: int = 16

  @nn.compact
  def __call__(self, x):
    if self.channels:
      return GridEncoder(self.channels, self.code_dim)(x)
    for _ in range(self.depth):
      x = nn.gelu(nn.Conv(self.width, (3, 3))(x))
    return nn.Conv(self.code_dim, (1, 1))(x)


class ScaleDecoder(nn.Module):
  """f_hat [B, h, w, D] -> [B, h 2^S, w 2^S, out_channels], mirroring ScaleEncoder."""
  channels: Sequence[int] = ()
  width: int = 64
  depth: int = 3
  out_channels: int = 1

  @nn.compact
  def __call__(self, z):
    if self.channels:
      return GridDecoder(self.channels, self.out_channels)(z)
    for _ in range(self.depth):
      z = nn.gelu(nn.Conv(self.width, (3, 3))(z))
    return nn.Conv(self.out_channels, (3, 3))(z)


class MultiScaleVQNet(nn.Module):
  r"""The encoder, decoder and per-scale phi_k of a multi-scale residual VQ-VAE (VAR, Sec. 3.2).

  phi_k(z) = (1 - phi_mix) z + phi_mix Conv3x3_k(z): VAR's "quant_resi" blend (0.5 in its code,
  which shares 4 convs among the scales; here one conv a scale). phi_mix = 0: phi_k = identity.
  The codebook is a separate parameter.
  """
  channels: Sequence[int] = ()
  width: int = 64
  code_dim: int = 16
  out_channels: int = 1
  num_scales: int = 4
  phi_mix: float = 0.5

  def setup(self):
    self.encoder = ScaleEncoder(self.channels, self.width, code_dim=self.code_dim)
    self.decoder = ScaleDecoder(self.channels, self.width, out_channels=self.out_channels)
    if self.phi_mix > 0:
      self.phi_convs = [nn.Conv(self.code_dim, (3, 3), name=f"phi_{k}")
                        for k in range(self.num_scales)]

  def encode(self, x):
    return self.encoder(x)

  def decode(self, f_hat):
    return self.decoder(f_hat)

  def phi(self, k: int, z):
    if self.phi_mix == 0:
      return z
    return (1.0 - self.phi_mix) * z + self.phi_mix * self.phi_convs[k](z)

  def __call__(self, x):
    f = self.encode(x)
    return self.decode(sum(self.phi(k, f) for k in range(self.num_scales)))
