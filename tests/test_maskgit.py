"""Truth tests of MaskGIT (arXiv:2202.04200): the cosine schedule, the training mask, the masked
loss and iterative parallel decoding (fake models with known logits), and the paradigm."""
from __future__ import annotations

import math
import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from gen_jax.samplers import maskgit as mg

N, K = 16, 5          # tokens per canvas, real tokens (the mask id is K)


def _random_logits_fn(seed=0):
  """A fake model: fixed random logits per position plus a term that depends on the whole
  canvas (the mean embedding of its tokens, [MASK] included), so every step sees new logits."""
  pos = jax.random.normal(jax.random.key(seed), (N, K)) * 2.0
  emb = jax.random.normal(jax.random.key(seed + 1), (K + 1, K))

  def logits_fn(canvas):
    return pos[None] + 3.0 * jnp.take(emb, canvas, axis=0).mean(axis=1, keepdims=True)
  return logits_fn


# --- schedule ------------------------------------------------------------------------------

def test_cosine_schedule_at_known_points():
  r = np.array([0.0, 1 / 3, 0.5, 2 / 3, 1.0])
  expected = [1.0, math.sqrt(3) / 2, math.sqrt(0.5), 0.5, 0.0]   # cos(0), cos(pi/6), ...
  np.testing.assert_allclose(mg.cosine_schedule(r), expected, atol=1e-6)
  assert np.all(np.diff(np.asarray(mg.cosine_schedule(np.linspace(0, 1, 50)))) < 0)


def test_decoding_counts_are_floor_of_the_cosine():
  for n, steps in [(16, 8), (49, 12), (10, 10), (10, 3), (1024, 3)]:
    got = [int(mg.decoding_mask_counts(n, t, steps)) for t in range(1, steps + 1)]
    want = [math.floor(math.cos(math.pi / 2 * t / steps) * n) for t in range(1, steps)]
    assert got == want + [0], (n, steps, got)


# --- decoding ------------------------------------------------------------------------------

@pytest.mark.parametrize("steps,temperature,choice", [(8, 1.0, 4.5), (4, 0.0, 0.0), (6, 0.7, 1.0)])
def test_every_position_is_filled_once_never_remasked_and_counts_follow_the_cosine(
    steps, temperature, choice):
  b = 6
  start = jnp.full((b, N), K, jnp.int32)
  decode = jax.jit(lambda rng: mg.decode(_random_logits_fn(), start, rng, steps, mask_id=K,
                                         temperature=temperature, choice_temperature=choice,
                                         return_trajectory=True))
  out, info = decode(jax.random.key(3))
  traj = np.asarray(info["trajectory"])                     # [T + 1, B, N]
  assert info["nfe"] == steps and traj.shape == (steps + 1, b, N)
  assert not np.any(np.asarray(out) == K) and np.all((np.asarray(out) >= 0) & (np.asarray(out) < K))
  np.testing.assert_array_equal(traj[-1], out)
  masked = traj == K
  assert masked[0].all()
  # Once fixed, a position keeps its token to the end: filled exactly once, never re-masked.
  for t in range(1, steps + 1):
    fixed_before = ~masked[t - 1]
    np.testing.assert_array_equal(traj[t][fixed_before], traj[t - 1][fixed_before])
    # n_t = floor(cos(pi t / 2T) N) still masked after step t (none after step T); here the
    # cosine counts decrease strictly, so the "fix at least one token" clamp never acts.
    want = math.floor(math.cos(math.pi / 2 * t / steps) * N) if t < steps else 0
    np.testing.assert_array_equal(masked[t].sum(axis=1), want)
  # The newly fixed tokens are the sampled ones of that step.
  preds = np.asarray(info["predictions"])
  for t in range(1, steps + 1):
    new = masked[t - 1] & ~masked[t]
    np.testing.assert_array_equal(traj[t][new], preds[t - 1][new])


def test_more_steps_than_tokens_still_fills_everything_fixing_at_least_one_per_step():
  n, steps = 4, 10                  # cosine counts repeat here: the clamp makes progress
  start = jnp.full((3, n), K, jnp.int32)
  table = jax.random.normal(jax.random.key(1), (n, K))
  out, info = mg.decode(lambda c: jnp.broadcast_to(table, c.shape + (K,)), start,
                        jax.random.key(0), steps, mask_id=K, return_trajectory=True)
  masked = np.asarray(info["trajectory"]) == K
  counts = masked.sum(axis=2)                       # [T + 1, B]
  assert counts[-1].max() == 0 and not np.any(np.asarray(out) == K)
  assert np.all(np.diff(counts, axis=0) <= 0)       # never re-masks
  assert np.all(counts[1:] <= np.array([math.floor(math.cos(math.pi / 2 * t / steps) * n)
                                        for t in range(1, steps + 1)])[:, None])


def test_without_noise_the_most_confident_positions_are_kept_first():
  # Greedy draws and no Gumbel noise: position i predicts token i % K with probability
  # increasing in i, so step 1 keeps the N - n_1 positions with the largest i.
  steps = 4
  conf = jnp.linspace(0.0, 5.0, N)
  logits = jax.nn.one_hot(jnp.arange(N) % K, K) * conf[:, None]

  out, info = mg.decode(lambda c: jnp.broadcast_to(logits, c.shape + (K,)),
                        jnp.full((2, N), K, jnp.int32), jax.random.key(0), steps, mask_id=K,
                        temperature=0.0, choice_temperature=0.0, return_trajectory=True)
  n1 = math.floor(math.cos(math.pi / 8) * N)
  fixed = np.asarray(info["trajectory"][1] != K)
  np.testing.assert_array_equal(fixed, np.broadcast_to(np.arange(N) >= n1, fixed.shape))
  np.testing.assert_array_equal(out, np.broadcast_to(np.arange(N) % K, out.shape))


def test_given_tokens_are_kept_and_counts_use_the_unknown_ones():
  steps = 3
  start = np.full((2, N), K, np.int32)
  start[:, :6] = np.arange(6) % K                      # 6 given, 10 unknown
  out, info = mg.decode(_random_logits_fn(), jnp.asarray(start), jax.random.key(0), steps,
                        mask_id=K, return_trajectory=True)
  np.testing.assert_array_equal(np.asarray(out)[:, :6], start[:, :6])
  counts = (np.asarray(info["trajectory"]) == K).sum(axis=2)[:, 0]
  assert list(counts) == [10] + [math.floor(math.cos(math.pi / 2 * t / steps) * 10)
                                 for t in (1, 2)] + [0]
