r"""The evidence lower bound and its importance-weighted tightening, with decoders.

All functions keep a per-example axis [B] and return nats (natural-log units).
Decoder log-likelihoods are on the data's own levels: integer levels k = 0..L-1
of each sub-pixel, so they are log-probabilities of the discrete data and the
bounds below are bounds on log P(x) in the units of `gen_jax.losses.nll`.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from gen_jax.errors import UserError

LOG_2PI = math.log(2 * math.pi)


def _sum_except_batch(x):
  return x.reshape(x.shape[0], -1).sum(axis=1)


def reparameterize(rng, mean, logvar, num_samples=None):
  r"""z = mean + exp(logvar / 2) * eps, eps ~ N(0, I) (Kingma & Welling 2014, arXiv:1312.6114, Eq. 10).

  With `num_samples` = K, returns [K, *mean.shape].
  """
  shape = mean.shape if num_samples is None else (num_samples, *mean.shape)
  eps = jax.random.normal(rng, shape, mean.dtype)
  return mean + jnp.exp(0.5 * logvar) * eps


def diag_gaussian_log_prob(z, mean, logvar):
  r"""log N(z; mean, diag(exp(logvar))), summed over the last axis."""
  return -0.5 * jnp.sum(LOG_2PI + logvar + (z - mean) ** 2 * jnp.exp(-logvar), axis=-1)


def standard_normal_log_prob(z):
  return -0.5 * jnp.sum(LOG_2PI + z ** 2, axis=-1)


def gaussian_kl(mean, logvar):
  r"""KL(N(mean, diag(exp(logvar))) || N(0, I)) = 1/2 sum(mean^2 + exp(logvar) - 1 - logvar).

  Closed form of Kingma & Welling 2014 (arXiv:1312.6114), Appendix B. [B, D] -> [B].
  """
  return 0.5 * jnp.sum(mean ** 2 + jnp.exp(logvar) - 1.0 - logvar, axis=-1)


def categorical_log_likelihood(logits, x_levels):
  r"""log p(x | z) = sum_i log softmax(logits_i)[x_i] for integer levels; logits [B, ..., L] -> [B]."""
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  picked = jnp.take_along_axis(log_probs, jnp.asarray(x_levels, jnp.int32)[..., None], axis=-1)
  return _sum_except_batch(picked[..., 0])


def discretized_logistic_log_likelihood(mean, log_scale, x_levels, num_levels):
  r"""Discretized logistic over L levels (Salimans et al. 2017, PixelCNN++, arXiv:1701.05517, Eq. 2).

  Level k is the bin [c_k - 1/(L-1), c_k + 1/(L-1)] around c_k = 2k/(L-1) - 1 in
  [-1, 1]; the first and last bins extend to -inf and +inf, so the L
  probabilities sum to one. P(k) = sigmoid((c_k + d - mean)/s) - sigmoid((c_k - d - mean)/s).
  `mean`, `log_scale` and `x_levels` share one shape [B, ...]; returns [B].
  """
  k = jnp.asarray(x_levels, jnp.float32)
  centre = 2.0 * k / (num_levels - 1) - 1.0
  half_bin = 1.0 / (num_levels - 1)
  inv_s = jnp.exp(-log_scale)
  upper = (centre + half_bin - mean) * inv_s
  lower = (centre - half_bin - mean) * inv_s
  log_cdf_upper = jax.nn.log_sigmoid(upper)             # log F(upper)
  log_one_minus_cdf_lower = -jax.nn.softplus(lower)     # log (1 - F(lower))
  # log(F(upper) - F(lower)) computed stably: F(u) - F(l) = sigmoid(u) - sigmoid(l).
  mid = jnp.log(jnp.maximum(jax.nn.sigmoid(upper) - jax.nn.sigmoid(lower), 1e-12))
  # In the far tails use the log-density at the centre times the bin width.
  log_pdf_mid = (-(centre - mean) * inv_s - log_scale
                 - 2.0 * jax.nn.softplus(-(centre - mean) * inv_s) + jnp.log(2 * half_bin))
  mid = jnp.where(jax.nn.sigmoid(upper) - jax.nn.sigmoid(lower) > 1e-5, mid, log_pdf_mid)
  log_p = jnp.where(k <= 0, log_cdf_upper,
                    jnp.where(k >= num_levels - 1, log_one_minus_cdf_lower, mid))
  return _sum_except_batch(log_p)


def bernoulli_log_likelihood(logits, x_binary):
  r"""log p(x | z) = sum_i x_i log sigmoid(l_i) + (1 - x_i) log sigmoid(-l_i); [B, ...] -> [B]."""
  x = jnp.asarray(x_binary, jnp.float32)
  return _sum_except_batch(x * jax.nn.log_sigmoid(logits) + (1 - x) * jax.nn.log_sigmoid(-logits))


def gaussian_log_likelihood(x, mean, logvar):
  r"""log N(x; mean, exp(logvar) I) summed over all but the batch axis (a density, for real x)."""
  return _sum_except_batch(-0.5 * (LOG_2PI + logvar + (x - mean) ** 2 * jnp.exp(-logvar)))


# ------------------------------------------------- decoders over the levels ---
# A decoder net outputs [B, H, W, C'] with C' = decoder_channels(...); these turn
# that output into log p(x | z), the mean E[x | z] and a draw x ~ p(x | z) for
# images of C channels with L levels. Shared by the VAE and the VQ-VAE.

DECODERS = ("categorical", "logistic", "bernoulli")
LOG_SCALE_MIN = -7.0          # floor of the logistic's log-scale (PixelCNN++)


def check_decoder(decoder: str, num_levels: int) -> None:
  if decoder not in DECODERS:
    raise UserError(f"Unknown model.decoder {decoder!r}; use one of {DECODERS}.")
  if decoder == "bernoulli" and num_levels != 2:
    raise UserError(f"model.decoder='bernoulli' needs binary data but the data has {num_levels} "
                     "levels; set --config.preprocess=binarize or another decoder.")


def decoder_channels(decoder: str, num_levels: int, channels: int) -> int:
  """C': an L-way softmax per sub-pixel, a logistic's (mean, log-scale), or one Bernoulli logit."""
  return {"categorical": channels * num_levels, "logistic": 2 * channels,
          "bernoulli": channels}[decoder]


def decoder_log_likelihood(decoder: str, out, x_levels, num_levels: int):
  r"""log p(x | z) in nats on the levels, out [B, H, W, C'] and x_levels [B, H, W, C] -> [B]."""
  if decoder == "categorical":
    logits = out.reshape(*x_levels.shape, num_levels)
    return categorical_log_likelihood(logits, x_levels)
  if decoder == "logistic":
    mean, log_scale = jnp.split(out, 2, axis=-1)
    return discretized_logistic_log_likelihood(
        jnp.tanh(mean), jnp.maximum(log_scale, LOG_SCALE_MIN), x_levels, num_levels)
  return bernoulli_log_likelihood(out, x_levels)


def decoder_mean(decoder: str, out, num_levels: int):
  r"""E[x | z] / (L - 1) in [0, 1] (logistic: its location, clipped), [B, H, W, C]."""
  if decoder == "categorical":
    logits = out.reshape(*out.shape[:-1], -1, num_levels)
    return jnp.sum(jax.nn.softmax(logits) * jnp.arange(num_levels), axis=-1) / (num_levels - 1)
  if decoder == "logistic":
    mean = jnp.tanh(jnp.split(out, 2, axis=-1)[0])
    return jnp.clip((mean + 1) / 2, 0.0, 1.0)
  return jax.nn.sigmoid(out)


def decoder_sample(decoder: str, rng, out, num_levels: int):
  r"""x ~ p(x | z) scaled to [0, 1] (logistic: a continuous draw, clipped), [B, H, W, C]."""
  if decoder == "categorical":
    logits = out.reshape(*out.shape[:-1], -1, num_levels)
    return jax.random.categorical(rng, logits).astype(jnp.float32) / (num_levels - 1)
  if decoder == "logistic":
    mean, log_scale = jnp.split(out, 2, axis=-1)
    u = jax.random.uniform(rng, mean.shape, minval=1e-5, maxval=1 - 1e-5)
    x = jnp.tanh(mean) + jnp.exp(jnp.maximum(log_scale, LOG_SCALE_MIN)) * (jnp.log(u) - jnp.log1p(-u))
    return jnp.clip((x + 1) / 2, 0.0, 1.0)
  return jax.random.bernoulli(rng, jax.nn.sigmoid(out)).astype(jnp.float32)


def elbo(log_px_given_z, mean, logvar, beta=1.0):
  r"""Evidence lower bound in nats per example; a bound, never exact.

  ELBO(x) = E_q(z|x)[log p(x|z)] - KL(q(z|x) || N(0, I))  (Kingma & Welling 2014,
  arXiv:1312.6114, Eq. 3), estimated with the reparameterized sample(s) that gave
  `log_px_given_z` [B]. With beta != 1 the KL is weighted by beta (Higgins et al.
  2017, beta-VAE): the result is then an objective, a bound only for beta = 1.
  Returns (elbo [B], {'recon': [B], 'kl': [B]}).
  """
  kl = gaussian_kl(mean, logvar)
  return log_px_given_z - beta * kl, {"recon": log_px_given_z, "kl": kl}


def iwae_bound(log_px_given_z, z, mean, logvar):
  r"""Importance-weighted bound with K samples (Burda et al. 2016, arXiv:1509.00519, Eq. 8).

  L_K(x) = log (1/K) sum_k p(x, z_k) / q(z_k | x),  z_k ~ q(z | x),
  with log_px_given_z [K, B], z [K, B, D] and the posterior (mean, logvar) [B, D].
  L_1 is the ELBO; L_K <= L_{K+1} <= log p(x) in expectation. Returns [B].
  """
  log_w = (log_px_given_z + standard_normal_log_prob(z)
           - diag_gaussian_log_prob(z, mean, logvar))
  return jax.nn.logsumexp(log_w, axis=0) - jnp.log(log_w.shape[0])
