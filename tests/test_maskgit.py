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


# --- training: mask and loss ---------------------------------------------------------------

def test_training_mask_counts_follow_ceil_of_the_cosine_of_a_uniform_ratio():
  # |M| = ceil(cos(pi r / 2) n), r ~ U[0, 1): P(|M| = k) = P(k - 1 < n cos(pi r / 2) <= k)
  # = (2 / pi) (arccos((k - 1) / n) - arccos(k / n)), k = 1..n.
  from gen_jax.paradigms import maskgit
  rows, n = 40_000, 8
  mask = np.asarray(jax.jit(maskgit.random_mask, static_argnums=1)(jax.random.key(0), (rows, n)))
  counts = np.bincount(mask.sum(axis=1), minlength=n + 1)
  assert counts[0] == 0
  want = [2 / math.pi * (math.acos((k - 1) / n) - math.acos(k / n)) for k in range(1, n + 1)]
  np.testing.assert_allclose(counts[1:] / rows, want, atol=0.01)
  # Every position equally likely to be masked: E|M| / n each.
  np.testing.assert_allclose(mask.mean(axis=0), np.dot(np.arange(1, n + 1), want) / n, atol=0.01)


def test_masked_loss_is_the_cross_entropy_of_the_masked_positions_only():
  from gen_jax.paradigms import maskgit
  logits = np.array([[[2.0, 0.0, -1.0], [0.5, 0.5, 3.0], [1.0, -2.0, 0.0]],
                     [[0.0, 1.0, 0.0], [4.0, 0.0, 1.0], [-1.0, 2.0, 2.0]]], np.float32)
  codes = np.array([[0, 2, 1], [1, 1, 2]])
  mask = np.array([[True, False, True], [False, True, False]])
  seen = []

  def logits_fn(canvas):
    seen.append(np.asarray(canvas))
    return jnp.asarray(logits)

  nats, metrics = maskgit.masked_token_loss(logits_fn, jnp.asarray(codes), jnp.asarray(mask), 3)
  np.testing.assert_array_equal(seen[0], [[3, 2, 3], [1, 3, 2]])    # [MASK] = 3 where masked
  ce = lambda z, y: math.log(sum(math.exp(v) for v in z)) - z[y]
  by_hand = np.mean([ce(logits[0, 0], 0), ce(logits[0, 2], 1), ce(logits[1, 1], 1)])
  np.testing.assert_allclose(nats, by_hand, rtol=1e-6)
  np.testing.assert_allclose(metrics["mask_fraction"], 0.5)


# --- the paradigm --------------------------------------------------------------------------

PATTERNS = np.array([[0, 1, 2, 3], [3, 3, 0, 0]])    # two 2x2 code images, K = 4


def _codes_info():
  """Codes of a stand-in stage 1 whose decoder writes code k as the level k / (K - 1)."""
  from gen_jax.data.info import DatasetInfo
  stage1 = types.SimpleNamespace(decode=lambda c: (c[..., None] / 3.0).astype(jnp.float32))
  return DatasetInfo(name="encoded", kind="codes", shape=(2, 2), num_levels=4, num_codes=4,
                     image_shape=(2, 2, 1), num_classes=None, stage1=stage1)


def test_maskgit_learns_two_code_images_and_samples_them_in_t_steps(adam_fit):
  from gen_jax.paradigms import maskgit
  model = ml_collections.ConfigDict(dict(num_layers=1, num_heads=2, embed_dim=32, mlp_ratio=2,
                                         num_steps=3))
  p = maskgit.make(model, _codes_info())
  assert p.log_likelihood is None
  batch = {"codes": jnp.asarray(np.repeat(PATTERNS, 16, axis=0).reshape(-1, 2, 2))}
  params = p.init(jax.random.key(0), batch)
  params, _ = adam_fit(p, params, batch, 300)
  # Any visible token determines the pattern; with all 4 masked (P = (2/pi) arccos(3/4)) each
  # masked token is a coin flip. So the best loss is log 2 * 4 P(|M| = 4) / E|M| = 0.430, while
  # a model ignoring the context scores log 2 = 0.693 on every token.
  p4 = 2 / math.pi * math.acos(3 / 4)
  e_m = sum(k * 2 / math.pi * (math.acos((k - 1) / 4) - math.acos(k / 4)) for k in range(1, 5))
  best = math.log(2) * 4 * p4 / e_m
  loss = np.mean([p.loss(params, batch, jax.random.key(10_000 + i))[0] for i in range(16)])
  assert best - 0.02 < loss < 0.55, (loss, best)
  images, frames, info = p.sample(params, jax.random.key(1), 64, temperature=0.5,
                                  return_trajectory=True,
                                  return_info=True)
  assert images.shape == (64, 2, 2, 1) and frames.shape == (3, 64, 2, 2, 1) and info["nfe"] == 3
  codes = np.rint(np.asarray(images).reshape(64, 4) * 3).astype(int)
  is_pattern = (codes[:, None, :] == PATTERNS[None]).all(-1)
  assert is_pattern.any(axis=1).mean() >= 0.9
  assert 0.2 < is_pattern[:, 0].mean() < 0.8           # both modes drawn
  np.testing.assert_array_equal(frames[-1], images)     # the last prediction is the sample


def test_maskgit_refuses_data_that_are_not_codes():
  from gen_jax.data.info import DatasetInfo
  from gen_jax.paradigms import maskgit
  with pytest.raises(ValueError, match="encoded"):
    maskgit.make(ml_collections.ConfigDict(), DatasetInfo(name="digits", kind="image",
                                                          shape=(8, 8, 1), num_levels=17))
