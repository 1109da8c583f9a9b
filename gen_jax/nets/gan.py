r"""Generators and discriminators for the adversarial family (Flax linen).

* DCGAN-style convolutional G and D (Radford et al. 2016, arXiv:1511.06434):
  G maps z to an [h0, w0] map and doubles it ``num_upsamples`` times with
  stride-2 transposed convolutions (8x8 from 2x2, 28x28 from 7x7 with two);
  D halves the image as many times with stride-2 convolutions. No batch
  normalisation anywhere: the nets hold parameters only, the discriminator
  treats examples independently (which the gradient penalty needs), and the
  paradigm stays a pure function of ``params``.
* MLP versions for 2-D toy data.
* Spectral normalisation (Miyato et al. 2018, arXiv:1802.05957) as an option of
  every discriminator layer: W / σ(W), with σ(W) the largest singular value.
* Class conditioning (``num_classes`` set): G concatenates a learnt class
  embedding to z; D is a projection discriminator (Miyato & Koyama 2018,
  arXiv:1802.05637, Eq. 3): D(x, y) = ψ(φ(x)) + <embed(y), φ(x)>.

Outputs: G returns values in the data's own scale (``tanh`` for images in
[-1, 1], linear for points); D returns one logit per example, shape [B].

Mixed precision: under a bfloat16 policy (`gen_jax.policy`) the spectrally normalised
layers (SNDense, SNConv: written with jnp / lax, so the policy's layer casts do not reach
them) cast their input to the compute dtype as flax's Dense and Conv do, so G's and D's
matmuls and convolutions run in bfloat16. σ(W) -- the power iteration and vᵀ W u -- is computed in
float32 from the bfloat16 kernel: a normalisation statistic, whose bfloat16 error would
rescale every layer's output. The projection <embed(y), φ(x)> is summed in float32, and
G's samples and D's logits reach the losses (and the gradient penalties' ∇_x D) in float32
because the policy casts every top-level output back.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from gen_jax import policy as policy_lib
from gen_jax.errors import UserError


def spectral_normalize(w, num_iters: int = 5, eps: float = 1e-12):
  r"""W / σ(W), σ estimated by power iteration on W reshaped to [fan_in, out].

  σ(W) ≈ vᵀ W u with u ← Wᵀv / ||Wᵀv||, v ← W u / ||W u|| (Miyato et al. 2018,
  arXiv:1802.05957, Alg. 1), u and v held constant in the gradient as in the
  paper. The paper carries u from one step to the next; here the iteration
  restarts from a fixed vector at every call (so the nets stay stateless) and
  runs ``num_iters`` steps instead of one. σ is a lower bound of the true
  largest singular value that tightens with ``num_iters``. Computed in float32 (at least)
  and returned in w's dtype.
  """
  if num_iters < 1:
    raise UserError(f'spectral_normalize needs num_iters >= 1, got {num_iters}.')
  w_dtype = w.dtype
  w = w.astype(jnp.promote_types(w_dtype, jnp.float32))
  w2 = jnp.reshape(w, (-1, w.shape[-1]))
  # A fixed start vector (a constant of the trace): the same at every call.
  u = jax.random.normal(jax.random.key(0), (w2.shape[1],), w2.dtype)
  u = u / jnp.linalg.norm(u)
  w_sg = jax.lax.stop_gradient(w2)

  def power_step(_, uv):
    u, _ = uv
    v = w_sg @ u
    v = v / (jnp.linalg.norm(v) + eps)
    u = w_sg.T @ v
    return u / (jnp.linalg.norm(u) + eps), v

  u, v = jax.lax.fori_loop(0, num_iters, power_step, (u, jnp.zeros((w2.shape[0],), w2.dtype)))
  u, v = jax.lax.stop_gradient(u), jax.lax.stop_gradient(v)
  sigma = v @ w2 @ u
  return (w / (sigma + eps)).astype(w_dtype)


def _matmul_dtype(x, *params):
  """x in the active policy's compute dtype, then x and params promoted to one dtype, as
  flax's Dense / Conv see them under the policy (unchanged in float32)."""
  return nn.dtypes.promote_dtype(policy_lib.current().cast_to_compute(jnp.asarray(x)), *params)


class SNDense(nn.Module):
  """Dense layer whose kernel is optionally spectrally normalised."""
  features: int
  spectral_norm: bool = False
  num_power_iters: int = 5

  @nn.compact
  def __call__(self, x):
    kernel = self.param('kernel', nn.initializers.lecun_normal(), (x.shape[-1], self.features))
    bias = self.param('bias', nn.initializers.zeros, (self.features,))
    if self.spectral_norm:
      kernel = spectral_normalize(kernel, self.num_power_iters)
    x, kernel, bias = _matmul_dtype(x, kernel, bias)
    return x @ kernel + bias


class SNConv(nn.Module):
  """2-D convolution (NHWC, SAME padding), kernel optionally spectrally normalised."""
  features: int
  kernel_size: int = 3
  strides: int = 1
  spectral_norm: bool = False
  num_power_iters: int = 5

  @nn.compact
  def __call__(self, x):
    k = self.kernel_size
    kernel = self.param('kernel', nn.initializers.lecun_normal(),
                        (k, k, x.shape[-1], self.features))
    bias = self.param('bias', nn.initializers.zeros, (self.features,))
    if self.spectral_norm:
      kernel = spectral_normalize(kernel, self.num_power_iters)
    x, kernel, bias = _matmul_dtype(x, kernel, bias)
    y = jax.lax.conv_general_dilated(
        x, kernel, (self.strides, self.strides), 'SAME',
        dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    return y + bias


class SNEmbed(nn.Module):
  """Class embedding [num_classes, features], optionally spectrally normalised."""
  num_classes: int
  features: int
  spectral_norm: bool = False
  num_power_iters: int = 5

  @nn.compact
  def __call__(self, label):
    table = self.param('embedding', nn.initializers.normal(stddev=1.0 / jnp.sqrt(self.features)),
                       (self.num_classes, self.features))
    if self.spectral_norm:
      table = spectral_normalize(table, self.num_power_iters)
    return jnp.take(table, label, axis=0)


def _condition_latent(z, label, num_classes, features):
  """[z, embed(label)]: class information for a generator (None = unconditional)."""
  if num_classes is None:
    return z
  if label is None:
    raise UserError('A class-conditional generator needs a label for every z.')
  return jnp.concatenate([z, nn.Embed(num_classes, features, name='label_embed')(label)], axis=-1)


def _projection_logit(h, label, num_classes, spectral_norm, num_power_iters):
  """ψ(h) + <embed(y), h> (Miyato & Koyama 2018, Eq. 3); ψ(h) alone when unconditional."""
  logit = SNDense(1, spectral_norm, num_power_iters, name='head')(h)[:, 0]
  if num_classes is None:
    return logit
  if label is None:
    raise UserError('A projection discriminator needs the label of every example.')
  e = SNEmbed(num_classes, h.shape[-1], spectral_norm, num_power_iters, name='projection')(label)
  f32 = jnp.promote_types(h.dtype, jnp.float32)
  return logit + jnp.sum(e.astype(f32) * h.astype(f32), axis=-1)


class MLPGenerator(nn.Module):
  """z [B, latent] (+ label [B]) -> x [B, *out_shape], ReLU MLP, linear (or tanh) output."""
  out_shape: Sequence[int] = (2,)
  hidden: Sequence[int] = (128, 128)
  tanh_output: bool = False
  num_classes: Optional[int] = None
  label_features: int = 16

  @nn.compact
  def __call__(self, z, label=None):
    h = _condition_latent(z, label, self.num_classes, self.label_features)
    for width in self.hidden:
      h = nn.relu(nn.Dense(width)(h))
    out = jnp.reshape(nn.Dense(math.prod(self.out_shape))(h), (z.shape[0],) + tuple(self.out_shape))
    return jnp.tanh(out) if self.tanh_output else out


class MLPDiscriminator(nn.Module):
  """x [B, D] (+ label [B]) -> logits [B], LeakyReLU(0.2) MLP (projection head if conditional)."""
  hidden: Sequence[int] = (128, 128)
  spectral_norm: bool = False
  num_classes: Optional[int] = None
  num_power_iters: int = 5

  @nn.compact
  def __call__(self, x, label=None):
    h = jnp.reshape(x, (x.shape[0], -1))
    for width in self.hidden:
      h = nn.leaky_relu(SNDense(width, self.spectral_norm, self.num_power_iters)(h), 0.2)
    return _projection_logit(h, label, self.num_classes, self.spectral_norm, self.num_power_iters)


class ConvGenerator(nn.Module):
  """DCGAN generator: z -> [H, W, C] in [-1, 1] (tanh).

  Dense to an [H / 2^n, W / 2^n, channels * 2^(n-1)] map, then n stride-2
  4x4 transposed convolutions that halve the channels as they double the size,
  ReLU after each, and a 3x3 convolution to C channels. H and W must be
  divisible by 2^n (n = ``num_upsamples``).
  """
  image_shape: Sequence[int] = (8, 8, 1)
  channels: int = 64
  num_upsamples: int = 2
  num_classes: Optional[int] = None
  label_features: int = 16

  @nn.compact
  def __call__(self, z, label=None):
    height, width, out_channels = self.image_shape
    n = self.num_upsamples
    h0, w0 = height // 2 ** n, width // 2 ** n
    c0 = self.channels * 2 ** max(n - 1, 0)
    h = _condition_latent(z, label, self.num_classes, self.label_features)
    h = nn.relu(nn.Dense(h0 * w0 * c0)(h))
    h = jnp.reshape(h, (z.shape[0], h0, w0, c0))
    for i in range(n):
      c = self.channels * 2 ** max(n - 2 - i, 0)
      h = nn.relu(nn.ConvTranspose(c, (4, 4), strides=(2, 2), padding='SAME')(h))
    return jnp.tanh(nn.Conv(out_channels, (3, 3), padding='SAME')(h))


class ConvDiscriminator(nn.Module):
  """DCGAN discriminator: [B, H, W, C] -> logits [B].

  A 3x3 convolution to ``channels``, then n stride-2 4x4 convolutions that
  double the channels, LeakyReLU(0.2) after each, flatten, a dense feature
  layer φ(x) of ``feature_dim`` and the (projection) head.
  """
  channels: int = 64
  num_downsamples: int = 2
  feature_dim: int = 128
  spectral_norm: bool = False
  num_classes: Optional[int] = None
  num_power_iters: int = 5

  @nn.compact
  def __call__(self, x, label=None):
    sn, iters = self.spectral_norm, self.num_power_iters
    h = nn.leaky_relu(SNConv(self.channels, 3, 1, sn, iters)(x), 0.2)
    for i in range(self.num_downsamples):
      h = nn.leaky_relu(SNConv(self.channels * 2 ** (i + 1), 4, 2, sn, iters)(h), 0.2)
    h = jnp.reshape(h, (x.shape[0], -1))
    h = nn.leaky_relu(SNDense(self.feature_dim, sn, iters)(h), 0.2)
    return _projection_logit(h, label, self.num_classes, sn, iters)
