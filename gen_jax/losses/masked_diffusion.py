r"""Masked (absorbing-state) discrete diffusion: the forward process and its ELBO.

Sahoo et al. 2024, "Simple and Effective Masked Diffusion Language Models" (MDLM),
arXiv:2406.07524; Shi et al. 2024, "Simplified and Generalized Masked Diffusion for
Discrete Data" (MD4), arXiv:2406.04329.

Forward process. Each maskable token x^i of a sequence is independently replaced by the
mask token m by time t in [0, 1], kept with probability alpha_t:

    q(z_t^i | x^i) = alpha_t 1[z = x^i] + (1 - alpha_t) 1[z = m],     alpha_t = 1 - t  (linear).

ELBO. With the model's x_theta(z_t) predicting each masked token (never m itself, and an
unmasked token carried over as it is), the continuous-time negative ELBO is a weighted
masked cross-entropy (MDLM eq. 10, MD4 eq. 5):

    -log p(x) <= NELBO = int_0^1 alpha'_t / (1 - alpha_t) E_q [ sum_{i: z_t^i = m} log x_theta^i(z_t)[x^i] ] dt
              = E_{t ~ U(0, 1)} E_q [ (1 / t) sum_{i: z_t^i = m} -log p_theta(x^i | z_t) ]      (linear alpha)

Two unbiased one-sample estimators of it (`nelbo(..., estimator=)`), t and the masks
stratified over the batch (t_b = (u + b) / B mod 1: VDM's low-discrepancy sampler, Kingma
et al. 2021):

* "time": t ~ U(0, 1), each token masked with probability t, weight 1 / t (MDLM's form).
  A draw with a small t and one masked token carries weight ~ 1 / t: at small batches
  its variance swamps the gradient.
* "count": the t integral done in closed form. Given k of the L maskable tokens masked,
  int_0^1 (1 / t) C(L, k) t^k (1 - t)^{L - k} dt = C(L, k) B(k, L - k + 1) = 1 / k, so

      NELBO = sum_{k=1}^{L} (1 / k) E_{S: |S| = k} [ sum_{i in S} -log p_theta(x^i | x_{~S}) ]
            = E_{k ~ U{1..L}} E_S [ L * mean_{i in S} -log p_theta(x^i | x_{~S}) ]

  (S a uniformly random k-subset): a mean cross-entropy over the masked tokens, weight L,
  never 1 / t (the masked-count form of Ou et al. 2024, arXiv:2406.03736, Sec. 4).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from gen_jax.losses.nll import token_nll


def stratified_times(rng, batch: int):
  """t_b = (u + b) / B mod 1, b = 0..B-1, u ~ U(0, 1): each t_b is U(0, 1), together they
  cover [0, 1] evenly (VDM's low-discrepancy sampler); clipped away from 0."""
  u = jax.random.uniform(rng, ())
  return jnp.maximum(jnp.mod(u + jnp.arange(batch) / batch, 1.0), 1e-5)


def mask_tokens(rng, x, t, mask_id: int, maskable):
  """z_t: each maskable token of x [B, L] replaced by `mask_id` with probability t [B]."""
  masked = (jax.random.uniform(rng, x.shape) < t[:, None]) & maskable
  return jnp.where(masked, mask_id, x), masked


def mask_count(rng, x, k, mask_id: int, maskable):
  """z: exactly k [B] of each row's maskable tokens of x [B, L] replaced by `mask_id`, the
  k-subset uniformly random (the k smallest of i.i.d. uniform keys)."""
  keys = jnp.where(maskable, jax.random.uniform(rng, x.shape), jnp.inf)
  rank = jnp.argsort(jnp.argsort(keys, axis=1), axis=1)
  masked = (rank < k[:, None]) & maskable
  return jnp.where(masked, mask_id, x), masked


ESTIMATORS = ("count", "time")


def nelbo(logits_fn, x, rng, mask_id: int, maskable, t=None, estimator: str = "count"):
  r"""The negative ELBO's one-sample estimate per example [B] in nats (module docstring), the
  mask token's own logit left out: "time": (1 / t) sum_{masked i} -log p_theta(x^i | z_t);
  "count": L mean_{masked i} -log p_theta(x^i | z), k = ceil(t L) of the L maskable masked.

  Args:
    logits_fn: z [B, L] int -> logits [B, L, V'] over the V' >= mask_id data tokens
      (columns from mask_id on are dropped: the model never predicts m).
    x: int [B, L] data tokens (< mask_id).
    maskable: bool [B, L] or [L]: the positions the process masks (others: always seen,
      e.g. a conditioning prefix).
    t: optional [B] in (0, 1]: the times, or for "count" the masked share (default:
      `stratified_times`, so k = ceil(t L) is stratified over 1..L too).
  """
  if estimator not in ESTIMATORS:
    raise ValueError(f"estimator {estimator!r} is not one of {ESTIMATORS}")
  t_key, mask_key = jax.random.split(rng)
  t = stratified_times(t_key, x.shape[0]) if t is None else t
  maskable = jnp.broadcast_to(maskable, x.shape)
  if estimator == "time":
    z, masked = mask_tokens(mask_key, x, t, mask_id, maskable)
    weight = 1.0 / t
  else:
    length = jnp.sum(maskable, axis=1)
    k = jnp.clip(jnp.ceil(t * length), 1, length).astype(jnp.int32)
    z, masked = mask_count(mask_key, x, k, mask_id, maskable)
    weight = length / k
  cross_entropy = token_nll(logits_fn(z)[..., :mask_id], x)     # [B, L] nats, float32
  return jnp.sum(jnp.where(masked, cross_entropy, 0.0), axis=1) * weight
