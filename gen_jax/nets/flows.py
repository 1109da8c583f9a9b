r"""Invertible layers for normalizing flows, as Flax linen modules.

RealNVP: Dinh, Sohl-Dickstein & Bengio, "Density estimation using Real NVP",
arXiv:1605.08803. Glow: Kingma & Dhariwal, "Glow: Generative Flow with
Invertible 1x1 Convolutions", arXiv:1807.03039.

Every layer is a bijection f with one call signature

    y, log_det = layer.apply(variables, x)                 # y = f(x), log|det df/dx|
    x, log_det_inv = layer.apply(variables, y, reverse=True)  # x = f^{-1}(y), log|det df^{-1}/dy|

and the methods ``forward(x) -> (z, log_det)`` and ``inverse(z) -> x`` (use them
through ``apply(..., method=Layer.forward)``). ``log_det`` has shape [B]: the
log-determinant of the Jacobian of one example's flattened map. Inputs are
images [B, H, W, C] or vectors [B, D]; the last axis is the channel axis.

Parameters are created on the first forward call, so ``init(rng, x)`` with a
batch of data runs the data-dependent initialisation of every ActNorm in the
order the data flows (each sees the activations produced by the layers before
it at their initial values).

Mixed precision: under a bfloat16 policy (`gen_jax.policy`) only the convolutional and
dense nets inside the layers -- the couplings' conditioners, the split prior's conv, the
dequantizer's context convs -- run in bfloat16 (the policy casts their inputs). Every
bijection casts its (bfloat16) parameters and those nets' outputs to the data's dtype, at
least float32 (`_dtype`), before using them, so the data path y = f(x) (the 1x1 conv's
matmul included) and every log-determinant term -- ActNorm's log-scales, the 1x1 conv's
log|s|, the couplings' s, the split prior's log sigma -- are computed and summed in float32:
each layer's log-det is that of the map it computes, bfloat16 conditioner included, to
float32 rounding (tests/test_flows.py checks it against jacfwd). Summed in
bfloat16 (8 significant bits) each term would be off by up to ~2e-3 relative, nats per
image where log-dets run to thousands. Under remat="blocks" (or a named policy) each
coupling's conditioner -- the only part whose activations are wider than the data -- keeps
only its input for the backward pass.
"""
from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg

from gen_jax.errors import UserError
from gen_jax.policy import remat_block


def _positions(x) -> int:
  """Number of positions a per-channel map acts on: H * W for images, 1 for vectors."""
  return math.prod(x.shape[1:-1])


def _dtype(x):
  """The dtype of a bijection's data path and log-det terms: x's, at least float32."""
  return jnp.promote_types(x.dtype, jnp.float32)


def _sum_except_batch(x):
  return jnp.sum(x.reshape(x.shape[0], -1), axis=1)


class _Bijector(nn.Module):
  """Adds ``forward``/``inverse`` to a module whose ``__call__(x, reverse)`` is a bijection."""

  def forward(self, x):
    """x -> (z, log|det dz/dx|) with log_det of shape [B]."""
    return self(x, reverse=False)

  def inverse(self, z):
    """z -> x = f^{-1}(z)."""
    return self(z, reverse=True)[0]


class ActNorm(_Bijector):
  r"""Per-channel affine map y = (x + bias) * exp(log_scale)  (Glow, arXiv:1807.03039, §3.1).

  log|det| = (number of positions) * sum_c log_scale_c.
  Data-dependent initialisation: on the init batch, bias = -mean and
  log_scale = -log(std + eps) per channel (statistics over every axis but the
  last), so that y has zero mean and unit variance per channel there.
  """
  eps: float = 1e-6

  @nn.compact
  def __call__(self, x, reverse: bool = False):
    axes = tuple(range(x.ndim - 1))
    c = x.shape[-1]
    bias = self.param('bias', lambda rng, shape: -jnp.mean(x, axes).reshape(shape), (c,))
    log_scale = self.param(
        'log_scale', lambda rng, shape: -jnp.log(jnp.std(x, axes) + self.eps).reshape(shape), (c,))
    dtype = _dtype(x)
    x, bias, log_scale = x.astype(dtype), bias.astype(dtype), log_scale.astype(dtype)
    log_det = _positions(x) * jnp.sum(log_scale) * jnp.ones(x.shape[:1], dtype)
    if not reverse:
      return (x + bias) * jnp.exp(log_scale), log_det
    return x * jnp.exp(-log_scale) - bias, -log_det


def _lu_init(num_channels: int, seed: int):
  """A random rotation Q = P L U (numpy, from `seed`): P, strict L, strict U, sign(s), log|s|."""
  rs = np.random.RandomState(seed)
  q, _ = np.linalg.qr(rs.randn(num_channels, num_channels))
  p, lower, upper = scipy.linalg.lu(q)
  s = np.diag(upper)
  return (p.astype(np.float32), np.tril(lower, -1).astype(np.float32),
          np.triu(upper, 1).astype(np.float32), np.sign(s).astype(np.float32),
          np.log(np.abs(s)).astype(np.float32))


class InvertibleConv1x1(_Bijector):
  r"""Invertible 1x1 convolution, LU-parameterised (Glow, arXiv:1807.03039, §3.2, eq. 10).

  W = P L (U + diag(sign(s) * exp(log_s))), with P a fixed permutation, L unit
  lower triangular, U strictly upper triangular; y = x W at every position
  (a dense invertible linear map for vectors [B, D]).
  log|det| = (number of positions) * sum(log_s).
  Initialised at a random rotation drawn from `seed` (P and sign(s) are
  constants of the layer, not parameters).
  """
  seed: int = 0

  @nn.compact
  def __call__(self, x, reverse: bool = False):
    c = x.shape[-1]
    p, l0, u0, sign_s, log_s0 = _lu_init(c, self.seed)
    lower = self.param('lower', lambda rng: jnp.asarray(l0))
    upper = self.param('upper', lambda rng: jnp.asarray(u0))
    log_s = self.param('log_s', lambda rng: jnp.asarray(log_s0))
    dtype = _dtype(x)
    x, lower, upper, log_s = (v.astype(dtype) for v in (x, lower, upper, log_s))
    eye = jnp.eye(c, dtype=dtype)
    l = jnp.tril(lower, -1) + eye
    u = jnp.triu(upper, 1) + jnp.diag(jnp.asarray(sign_s) * jnp.exp(log_s))
    w = jnp.asarray(p) @ l @ u
    log_det = _positions(x) * jnp.sum(log_s) * jnp.ones(x.shape[:1], dtype)
    if not reverse:
      return x @ w, log_det
    return x @ jnp.linalg.inv(w), -log_det


class ConvConditioner(nn.Module):
  """h -> [B, H, W, out]: conv3x3 - ReLU - conv1x1 - ReLU - conv3x3 (Glow §3.3), with
  `res_blocks` residual blocks h + conv3x3(ReLU(conv3x3(ReLU(h)))) after the first conv
  (RealNVP §3.3 and App. A use such residual conditioners; each block widens the receptive
  field by 4 pixels). The output conv is zero-initialised, so a coupling layer starts as the
  identity (Glow's "zero initialisation")."""
  hidden: int
  out: int
  res_blocks: int = 0

  @nn.compact
  def __call__(self, h):
    h = nn.relu(nn.Conv(self.hidden, (3, 3))(h))
    for _ in range(self.res_blocks):
      r = nn.Conv(self.hidden, (3, 3))(nn.relu(h))
      h = h + nn.Conv(self.hidden, (3, 3))(nn.relu(r))
    h = nn.relu(nn.Conv(self.hidden, (1, 1))(h))
    return nn.Conv(self.out, (3, 3), kernel_init=nn.initializers.zeros,
                   bias_init=nn.initializers.zeros)(h)


class MLPConditioner(nn.Module):
  """h -> [B, out]: `num_layers` Dense+ReLU of width `hidden`, then a zero-initialised Dense."""
  hidden: int
  out: int
  num_layers: int = 2

  @nn.compact
  def __call__(self, h):
    for _ in range(self.num_layers):
      h = nn.relu(nn.Dense(self.hidden)(h))
    return nn.Dense(self.out, kernel_init=nn.initializers.zeros,
                    bias_init=nn.initializers.zeros)(h)


def coupling_mask(shape: Sequence[int], kind: str, parity: int) -> np.ndarray:
  """The binary mask b (1 = passed through unchanged, 0 = transformed) of one example.

  kind 'checkerboard': images [H, W, C], b = (h + w + parity) mod 2 == 0 on every channel;
  'channel': images, b = 1 on the first C/2 channels (the last C/2 when parity = 1);
  'alternate': vectors [D], b_d = (d + parity) mod 2 == 0.
  """
  shape = tuple(shape)
  if kind == 'checkerboard':
    h, w, c = shape
    b = (np.arange(h)[:, None] + np.arange(w)[None, :] + parity) % 2 == 0
    return np.broadcast_to(b[:, :, None], shape).astype(np.float32)
  if kind == 'channel':
    c = shape[-1]
    b = np.arange(c) < c // 2
    if parity:
      b = ~b
    return np.broadcast_to(b, shape).astype(np.float32)
  if kind == 'alternate':
    (d,) = shape
    return ((np.arange(d) + parity) % 2 == 0).astype(np.float32)
  raise UserError(f"Unknown coupling mask {kind!r}; use 'checkerboard', 'channel' or 'alternate'.")


class AffineCoupling(_Bijector):
  r"""Masked affine coupling (RealNVP, arXiv:1605.08803, eqs. 6-9).

  With a binary mask b and (s, t) = NN(b * x),
      y = b * x + (1 - b) * (x * exp(s) + t),   log|det| = sum((1 - b) * s),
  where s = scale * tanh(s_raw) (a learned per-channel scale, RealNVP §3.7) and the
  conditioner's last layer is zero-initialised, so the layer starts as the identity.
  Inverse: x = b * y + (1 - b) * (y - t) * exp(-s), with the same (s, t) since b*y = b*x.
  `mask` is 'checkerboard' or 'channel' (images, conv conditioner) or 'alternate'
  (vectors, MLP conditioner). An optional `context` (same leading shape as x, any number
  of channels) is concatenated to the conditioner's input, making (s, t) = NN(b * x, context)
  a conditional coupling (Flow++'s dequantizer q(u | x), arXiv:1902.00275, §3.1); the
  Jacobian with respect to x is unchanged.
  """
  mask: str
  parity: int = 0
  hidden: int = 64
  num_layers: int = 2     # MLP conditioner ('alternate'): Dense layers
  res_blocks: int = 0     # conv conditioner: residual blocks (see ConvConditioner)

  @nn.compact
  def __call__(self, x, reverse: bool = False, context=None):
    c = x.shape[-1]
    x = x.astype(_dtype(x))
    b = jnp.asarray(coupling_mask(x.shape[1:], self.mask, self.parity), x.dtype)
    # Under remat the conditioner keeps only its input h for the backward pass.
    if self.mask == 'alternate':
      net = remat_block(MLPConditioner)(self.hidden, 2 * c, self.num_layers, name='conditioner')
      h = b * x
    else:
      net = remat_block(ConvConditioner)(self.hidden, 2 * c, self.res_blocks, name='conditioner')
      # The checkerboard mask is fed in as an extra channel so the net knows which pixels are given.
      h = jnp.concatenate([b * x, jnp.broadcast_to(b[..., :1], x.shape[:-1] + (1,))], axis=-1)
    if context is not None:
      h = jnp.concatenate([h, context], axis=-1)
    s_raw, t = (v.astype(x.dtype) for v in jnp.split(net(h), 2, axis=-1))   # float32 from here
    scale = self.param('scale', nn.initializers.ones, (c,)).astype(x.dtype)
    s = (1 - b) * scale * jnp.tanh(s_raw)
    t = (1 - b) * t
    log_det = _sum_except_batch(s)
    if not reverse:
      return x * jnp.exp(s) + t, log_det
    return (x - t) * jnp.exp(-s), -log_det


class LogitTransform(_Bijector):
  r"""The logit preprocessing of RealNVP (arXiv:1605.08803, §4.1): w in [0, 1)^D ->
  y = logit(s), s = alpha + (1 - 2 alpha) w, so the flow sees unbounded data.

  log|det dy/dw| = sum_d [log(1 - 2 alpha) - log s_d - log(1 - s_d)].
  Inverse: w = (sigmoid(y) - alpha) / (1 - 2 alpha).
  """
  alpha: float = 0.05

  def __call__(self, w, reverse: bool = False):
    a = self.alpha
    if not reverse:
      s = a + (1 - 2 * a) * w
      y = jnp.log(s) - jnp.log1p(-s)
      return y, _sum_except_batch(math.log(1 - 2 * a) - jnp.log(s) - jnp.log1p(-s))
    s = jax.nn.sigmoid(w)
    log_det = _sum_except_batch(jax.nn.log_sigmoid(w) + jax.nn.log_sigmoid(-w) - math.log(1 - 2 * a))
    return (s - a) / (1 - 2 * a), log_det


class VariationalDequantizer(nn.Module):
  r"""The dequantization distribution q(u | x) on (0, 1)^D of Flow++ (Ho et al. 2019,
  arXiv:1902.00275, §3.1), as a map of uniform noise w ~ U(0, 1)^D conditioned on x:

      eps = logit(w),  e = g(eps; x),  u = sigmoid(e),
      log q(u | x) = -log|det du/dw|
                   = -[log|det dg/deps| + sum_d (log sigmoid'(e_d) - log sigmoid'(eps_d))],

  since w has density 1 on the unit cube (logit(w) is a standard logistic variable, whose
  density is sigmoid'). g is `num_steps` checkerboard affine couplings (alternating parity)
  whose conv conditioners also see features of x (a small conv net, computed once). The
  couplings' conditioners are zero-initialised, so at init g is the identity, u = w and
  log q(u | x) = 0: exactly uniform dequantization.

  ``apply(variables, w, x_context) -> (u, log_q)``: w [B, H, W, C] in (0, 1), x_context
  [B, H, W, C'] (e.g. the levels rescaled to [-1/2, 1/2]); u [B, H, W, C], log_q [B].
  w is clipped to [1e-6, 1 - 1e-6] (logit(0) = -inf) and u to at most the largest float32
  below 1 (sigmoid rounds to 1 for e > 16.6), so that u lies in [0, 1).
  """
  num_steps: int = 4
  hidden: int = 32

  @nn.compact
  def __call__(self, w, x_context):
    feats = nn.relu(nn.Conv(self.hidden, (3, 3), name='context_conv0')(x_context))
    feats = nn.relu(nn.Conv(self.hidden, (3, 3), name='context_conv1')(feats))
    w = jnp.clip(w.astype(_dtype(w)), 1e-6, 1 - 1e-6)
    eps = jnp.log(w) - jnp.log1p(-w)
    e, log_det = eps, jnp.zeros(w.shape[:1], w.dtype)
    for k in range(self.num_steps):
      e, ld = AffineCoupling('checkerboard', k % 2, self.hidden, name=f'coupling{k}')(
          e, context=feats)
      log_det = log_det + ld
    log_sigmoid_prime = lambda a: jax.nn.log_sigmoid(a) + jax.nn.log_sigmoid(-a)
    log_det = log_det + _sum_except_batch(log_sigmoid_prime(e) - log_sigmoid_prime(eps))
    u = jnp.minimum(jax.nn.sigmoid(e), np.float32(1.0) - np.finfo(np.float32).epsneg)
    return u, -log_det


def squeeze(x):
  """[B, H, W, C] -> [B, H/2, W/2, 4C]: each 2x2 spatial block becomes 4 channels
  (RealNVP §3.6). A permutation: log|det| = 0."""
  b, h, w, c = x.shape
  x = x.reshape(b, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, h // 2, w // 2, 4 * c)


def unsqueeze(x):
  """Inverse of `squeeze`: [B, H, W, 4C] -> [B, 2H, 2W, C]."""
  b, h, w, c4 = x.shape
  c = c4 // 4
  x = x.reshape(b, h, w, 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, 2 * h, 2 * w, c)


class Squeeze(_Bijector):
  """`squeeze` as a layer (log_det = 0)."""

  def __call__(self, x, reverse: bool = False):
    zeros = jnp.zeros(x.shape[:1], _dtype(x))
    return (unsqueeze(x) if reverse else squeeze(x)), zeros


def multiscale_plan(image_shape: Sequence[int], num_scales: int, architecture: str):
  """The static sequence of stages of a multi-scale flow and the shapes of its latents.

  Returns (stages, latent_shapes): stages is a list of ('squeeze',), ('split',) and
  ('step', kind, parity, shape) entries; latent_shapes the per-example shapes of the
  factored-out halves, then of the final activation, in the order of the flat z.

  'glow' (arXiv:1807.03039, Fig. 2): at every scale squeeze, K steps
  [ActNorm, InvertibleConv1x1, channel AffineCoupling], and split off half the
  channels (not after the last scale).
  'realnvp' (arXiv:1605.08803, §3.6): at every scale but the last, K checkerboard
  couplings, squeeze, K channel couplings (alternating parities), split; at the
  last scale K + 1 checkerboard couplings.
  """
  h, w, c = image_shape
  if architecture not in ('glow', 'realnvp'):
    raise UserError(f"Unknown flow architecture {architecture!r}; use 'glow' or 'realnvp'.")
  squeezes = num_scales if architecture == 'glow' else num_scales - 1
  if num_scales < 1 or h % (2**squeezes) or w % (2**squeezes):
    raise UserError(
        f"A {num_scales}-scale {architecture} flow squeezes the image {squeezes} times, so H and W "
        f"must be divisible by {2**squeezes}; got image shape {tuple(image_shape)}. "
        f"Lower model.num_scales.")
  if architecture == 'realnvp' and min(h, w) // 2**squeezes < 2:
    raise UserError(
        f"The last scale of a {num_scales}-scale realnvp flow would be {h // 2**squeezes}x"
        f"{w // 2**squeezes} pixels, too small for a checkerboard coupling; lower model.num_scales.")
  stages, latents = [], []
  shape = (h, w, c)
  for scale in range(num_scales):
    last = scale == num_scales - 1
    if architecture == 'glow':
      stages.append(('squeeze',))
      shape = (shape[0] // 2, shape[1] // 2, shape[2] * 4)
      stages.append(('steps', 'glow', shape))
    else:
      stages.append(('steps', 'checkerboard', shape, last))
      if not last:
        stages.append(('squeeze',))
        shape = (shape[0] // 2, shape[1] // 2, shape[2] * 4)
        stages.append(('steps', 'channel', shape))
    if not last:
      stages.append(('split',))
      latents.append(shape[:2] + (shape[2] // 2,))
      shape = shape[:2] + (shape[2] - shape[2] // 2,)
  latents.append(shape)
  return stages, latents


class SplitPrior(nn.Module):
  r"""Glow's learned prior of a factored-out half (Kingma & Dhariwal 2018, arXiv:1807.03039,
  §3 and its `split2d` prior): z_i ~ N(mu(h), diag(sigma(h))^2) given the kept half h, with
  (mu, log sigma) from a zero-initialised 3x3 conv of h. Written as a bijection of z_i given h,

      eps = (z_i - mu(h)) * exp(-log sigma(h)),   log|det d eps / d z_i| = -sum log sigma(h),

  so that log N(z_i; mu, sigma) = log N(eps; 0, I) + log|det| and the flow's flat latent
  stays N(0, I). At init mu = 0 and sigma = 1: RealNVP's standard prior. Sampling with
  eps ~ N(0, T^2 I) gives z_i = mu + T sigma eps', Glow's temperature.
  ``apply(variables, z_i, h, reverse) -> (eps or z_i, log_det)`` (reverse: of the inverse).
  """

  @nn.compact
  def __call__(self, z, h, reverse: bool = False):
    out = nn.Conv(2 * z.shape[-1], (3, 3), kernel_init=nn.initializers.zeros,
                  bias_init=nn.initializers.zeros, name='conv')(h)
    z = z.astype(_dtype(z))
    mu, log_sigma = (v.astype(z.dtype) for v in jnp.split(out, 2, axis=-1))
    log_det = -_sum_except_batch(log_sigma)
    if not reverse:
      return (z - mu) * jnp.exp(-log_sigma), log_det
    return mu + z * jnp.exp(log_sigma), -log_det


SPLIT_PRIORS = ('standard', 'learned')


class MultiScaleFlow(_Bijector):
  r"""The multi-scale flow of RealNVP / Glow: x [B, H, W, C] <-> z [B, H*W*C].

  z concatenates the flattened halves factored out at each scale and the final
  activation (see `multiscale_plan`), so log p(x) = log N(z; 0, I) + log_det.
  split_prior: 'standard' factors each half out to N(0, I) (RealNVP §3.6); 'learned'
  gives it Glow's conditional prior N(mu(h), sigma(h)^2) on the kept half h (`SplitPrior`).
  """
  image_shape: tuple
  num_scales: int = 2
  steps_per_scale: int = 4
  hidden: int = 64
  architecture: str = 'glow'
  split_prior: str = 'standard'
  res_blocks: int = 0     # residual blocks in each coupling's conditioner

  def _steps(self, scale, kind, extra):
    """The bijective layers of one 'steps' stage, in forward order."""
    layers = []
    if kind == 'glow':
      for k in range(self.steps_per_scale):
        layers += [ActNorm(name=f's{scale}_k{k}_actnorm'),
                   InvertibleConv1x1(seed=1000 * scale + k, name=f's{scale}_k{k}_conv1x1'),
                   AffineCoupling('channel', 0, self.hidden, res_blocks=self.res_blocks,
                                  name=f's{scale}_k{k}_coupling')]
    else:
      n = self.steps_per_scale + (1 if (kind == 'checkerboard' and extra) else 0)
      for k in range(n):
        layers.append(AffineCoupling(kind, k % 2, self.hidden, res_blocks=self.res_blocks,
                                     name=f's{scale}_{kind}{k}'))
    return layers

  @nn.compact
  def __call__(self, x, reverse: bool = False):
    stages, latents = multiscale_plan(self.image_shape, self.num_scales, self.architecture)
    if self.split_prior not in SPLIT_PRIORS:
      raise UserError(f"Unknown split_prior {self.split_prior!r}; use one of {SPLIT_PRIORS}.")
    scales = []  # the layers of each stage, built in forward order (names are fixed)
    scale = 0
    for stage in stages:
      if stage[0] == 'steps':
        scales.append(self._steps(scale, stage[1], stage[3] if len(stage) > 3 else False))
      elif stage[0] == 'split':
        scales.append(SplitPrior(name=f'split{scale}_prior') if self.split_prior == 'learned'
                      else None)
        scale += 1
      else:
        scales.append(None)
    batch = x.shape[0]
    log_det = jnp.zeros((batch,), _dtype(x))
    if not reverse:
      h, zs = x, []
      for stage, layers in zip(stages, scales):
        if stage[0] == 'squeeze':
          h = squeeze(h)
        elif stage[0] == 'split':
          half = h.shape[-1] // 2
          z_i, h = h[..., :half], h[..., half:]
          if layers is not None:                     # the learned prior of z_i given h
            z_i, ld = layers(z_i, h)
            log_det = log_det + ld
          zs.append(z_i.reshape(batch, -1))
        else:
          for layer in layers:
            h, ld = layer(h)
            log_det = log_det + ld
      zs.append(h.reshape(batch, -1))
      return jnp.concatenate(zs, axis=1), log_det
    # Reverse: cut z into the latents, undo the stages from the last one.
    sizes = [math.prod(s) for s in latents]
    parts = jnp.split(x, np.cumsum(sizes)[:-1], axis=1)
    parts = [p.reshape((batch,) + tuple(s)) for p, s in zip(parts, latents)]
    h = parts.pop()
    for stage, layers in reversed(list(zip(stages, scales))):
      if stage[0] == 'squeeze':
        h = unsqueeze(h)
      elif stage[0] == 'split':
        z_i = parts.pop()
        if layers is not None:
          z_i, ld = layers(z_i, h, reverse=True)
          log_det = log_det + ld
        h = jnp.concatenate([z_i, h], axis=-1)
      else:
        for layer in reversed(layers):
          h, ld = layer(h, reverse=True)
          log_det = log_det + ld
    return h, log_det


class VectorFlow(_Bijector):
  r"""A flow on vectors [B, D] (e.g. the 2-D toy sets): K steps of Glow's
  [ActNorm, InvertibleConv1x1 (a dense LU-parameterised linear map), AffineCoupling
  with alternating masks and an MLP conditioner]."""
  num_steps: int = 8
  hidden: int = 64
  num_layers: int = 2

  def _layers(self):
    layers = []
    for k in range(self.num_steps):
      layers += [ActNorm(name=f'k{k}_actnorm'),
                 InvertibleConv1x1(seed=k, name=f'k{k}_linear'),
                 AffineCoupling('alternate', k % 2, self.hidden, self.num_layers, name=f'k{k}_coupling')]
    return layers

  @nn.compact
  def __call__(self, x, reverse: bool = False):
    layers = self._layers()
    log_det = jnp.zeros(x.shape[:1], _dtype(x))
    for layer in (reversed(layers) if reverse else layers):
      x, ld = layer(x, reverse=reverse)
      log_det = log_det + ld
    return x, log_det

