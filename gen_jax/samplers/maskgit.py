r"""MaskGIT: the cosine mask schedule and iterative parallel decoding.

Chang, Zhang, Jiang, Liu, Freeman 2022, "MaskGIT: Masked Generative Image
Transformer", arXiv:2202.04200.

Mask schedule (Sec. 3.3, the cosine choice): at ratio r in [0, 1] a fraction

    gamma(r) = cos(pi r / 2)

of the N tokens is masked: gamma(0) = 1 (all masked), gamma(1) = 0 (none).
Training masks ceil(gamma(r) N) tokens, r ~ U[0, 1); decoding in T steps leaves
n_t = floor(gamma(t / T) N) tokens masked after step t = 1..T, so n_T = 0.

Iterative decoding (Sec. 3.2). Start from the canvas with every unknown
position set to [MASK]. At step t = 1..T:
  1. predict: p_theta(x_i | canvas) for every position in one forward pass;
  2. sample: x_i ~ p_theta at temperature tau for each masked position (already
     fixed positions keep their token);
  3. confidence: c_i = log p_theta(x_i | canvas) + tau_c (1 - t / T) g_i,
     g_i ~ Gumbel(0, 1) (the annealed noise of the reference implementation,
     google-research/maskgit `libml/parallel_decode.py`); fixed positions get
     c_i = +inf, so they are never re-masked;
  4. re-mask the n_t least confident of the newly sampled positions, with
     n_t = min(floor(gamma(t / T) N), |M_{t-1}| - 1) clipped at 0, where
     |M_{t-1}| is the number masked before the step (each step fixes at least
     one token, as the reference's clamp does; it acts only where two
     consecutive cosine counts are equal, e.g. N = 16, T = 16 gives 15, 15, ...,
     while N = 16, T = 8 gives 15, 14, 13, 11, 8, 6, 3, 0 unclamped).
After step T nothing is masked. The network is evaluated T times (NFE = T).
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from gen_jax.errors import UserError


def cosine_schedule(r):
  r"""gamma(r) = cos(pi r / 2): the fraction of tokens masked at ratio r in [0, 1]."""
  return jnp.cos(0.5 * jnp.pi * jnp.asarray(r, jnp.float32))


def decoding_mask_counts(num_unknown, t, num_steps: int):
  r"""n_t = floor(gamma(t / T) N) tokens left masked after step t (t = 1..T; n_T = 0).

  num_unknown: N, int [...] (tokens unknown at the start); t: int step, may be traced.
  gamma(t / T) is tabulated in float64 for the static T before the cast to float32,
  so the one rational value gamma = 1/2 (t / T = 2/3) is exact and, e.g., N = 10,
  T = 3 gives n_2 = 5 (float32 cos(pi / 3) is 0.49999997, which would floor to 4).
  """
  gammas = np.cos(0.5 * np.pi * np.arange(num_steps + 1) / num_steps)
  gamma_t = jnp.asarray(gammas, jnp.float32)[t]
  n = jnp.floor(gamma_t * jnp.asarray(num_unknown, jnp.float32))
  return jnp.maximum(n, 0.0).astype(jnp.int32)


def ranks(scores):
  """rank of each entry along the last axis, 0 = smallest (ties broken by position)."""
  return jnp.argsort(jnp.argsort(scores, axis=-1), axis=-1)


def decode(logits_fn: Callable, tokens, rng, num_steps: int, *, mask_id: int,
           temperature: float = 1.0, choice_temperature: float = 4.5,
           return_trajectory: bool = False):
  r"""MaskGIT iterative parallel decoding in `num_steps` = T steps (see the module docstring).

  Args:
    logits_fn: canvas int32 [B, N] (mask_id at masked positions) -> logits [B, N, K]
      over the K real tokens (the [MASK] id excluded, so it is never sampled).
    tokens: int32 [B, N], the start canvas: mask_id where unknown (everywhere for
      unconditional generation), given tokens elsewhere (kept as they are).
    rng: key; step t uses fold_in(rng, t).
    num_steps: T >= 1 (static).
    mask_id: the [MASK] token id.
    temperature: tau of the token draws x_i ~ softmax(logits / tau); 0 = argmax.
    choice_temperature: tau_c, the scale of the Gumbel noise added to the confidence
      at step 1, annealed linearly to 0 at step T (0 = rank by probability alone).
    return_trajectory: also return the canvases.
  Returns:
    (tokens int32 [B, N] with no mask left, info) with info['nfe'] = T and, with
    return_trajectory, info['trajectory'] int32 [T + 1, B, N] (the start canvas, then
    the canvas after each step, mask_id where masked) and info['predictions']
    int32 [T, B, N] (each step's sampled canvas before re-masking).
  """
  if num_steps < 1:
    raise UserError(f"num_steps must be >= 1, got {num_steps}.")
  if temperature < 0 or choice_temperature < 0:
    raise UserError(f"temperature ({temperature}) and choice_temperature "
                     f"({choice_temperature}) must be >= 0.")
  tokens = jnp.asarray(tokens, jnp.int32)
  num_unknown = jnp.sum(tokens == mask_id, axis=-1)            # N per row [B]

  def step(canvas, t):                                         # t = 1..T
    masked = canvas == mask_id
    logits = logits_fn(canvas).astype(jnp.float32)
    key_sample, key_noise = jax.random.split(jax.random.fold_in(rng, t))
    if temperature == 0:
      sampled = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    else:
      sampled = jax.random.categorical(key_sample, logits / temperature, axis=-1).astype(jnp.int32)
    sampled = jnp.where(masked, sampled, canvas)
    log_p = jnp.take_along_axis(jax.nn.log_softmax(logits, axis=-1), sampled[..., None],
                                axis=-1)[..., 0]
    anneal = choice_temperature * (1.0 - t / num_steps)
    confidence = log_p + anneal * jax.random.gumbel(key_noise, log_p.shape)
    confidence = jnp.where(masked, confidence, jnp.inf)        # fixed tokens stay fixed
    n_t = jnp.minimum(decoding_mask_counts(num_unknown, t, num_steps),
                      jnp.maximum(jnp.sum(masked, axis=-1) - 1, 0))
    remask = ranks(confidence) < n_t[:, None]                 # the n_t least confident
    new = jnp.where(remask, mask_id, sampled)
    return new, ((new, sampled) if return_trajectory else None)

  out, traj = jax.lax.scan(step, tokens, jnp.arange(1, num_steps + 1))
  info = {"nfe": int(num_steps)}
  if return_trajectory:
    canvases, predictions = traj
    info["trajectory"] = jnp.concatenate([tokens[None], canvases], axis=0)
    info["predictions"] = predictions
  return out, info
