"""Masked diffusion (gen_jax.losses.masked_diffusion, samplers.masked_diffusion, paradigms.mdlm)
against truth: the Monte Carlo NELBO converges to the ELBO's closed form on a two-token
sequence (masks enumerated, the t integral done by hand), equals the exact NLL for a model that
ignores context, and the unmasking sampler carries tokens over and draws the model's law."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax.data.info import DatasetInfo
from gen_jax.errors import UserError
from gen_jax.losses import masked_diffusion as md
from gen_jax.paradigms import mdlm
from gen_jax.samplers.masked_diffusion import ancestral_unmasking

M = 3                          # the mask id: data tokens 0..2


def _context_logits(z):
  """A hand-made model over 3 tokens whose prediction at each position depends on the other
  position's token (m = 3 included), [B, 2] -> [B, 2, 4] (the last column, m's, unused)."""
  table = jnp.log(jnp.array([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3], [0.2, 0.2, 0.6], [0.4, 0.4, 0.2]]))
  other = z[:, ::-1]
  logits = table[other] + jnp.array([0.0, 0.3])[None, :, None]   # positions differ a little
  return jnp.concatenate([logits, jnp.zeros((*z.shape, 1))], axis=-1)


def _ce(z, x):
  logp = jax.nn.log_softmax(_context_logits(jnp.asarray([z]))[0, :, :M])
  return [-float(logp[i, x[i]]) for i in range(2)]


@pytest.mark.parametrize("estimator", ["time", "count"])
def test_mc_nelbo_converges_to_the_closed_form_on_two_tokens(estimator):
  """L = 2: masks {}, {1}, {2}, {1, 2} with probabilities (1-t)^2, t(1-t), t(1-t), t^2, weight
  1/t; int_0^1 (1 - t) dt = int_0^1 t dt = 1/2, so
  NELBO = 1/2 [CE_1(m, x_2) + CE_2(x_1, m)] + 1/2 [CE_1(m, m) + CE_2(m, m)]."""
  x = (2, 1)
  want = 0.5 * (_ce((M, x[1]), x)[0] + _ce((x[0], M), x)[1]) + 0.5 * sum(_ce((M, M), x))
  batch = jnp.tile(jnp.asarray([x]), (20_000, 1))
  est = md.nelbo(_context_logits, batch, jax.random.key(0), M, jnp.ones(2, bool),
                 estimator=estimator)
  se = float(np.std(est) / np.sqrt(len(est)))
  assert abs(float(np.mean(est)) - want) < 4 * se + 1e-3, (float(np.mean(est)), want, se)


def test_for_a_context_free_model_the_nelbo_is_the_exact_nll_at_every_t():
  logits = jnp.log(jnp.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]]))
  fn = lambda z: jnp.broadcast_to(jnp.concatenate([logits, jnp.zeros((2, 1))], -1), (*z.shape, 4))
  x = jnp.tile(jnp.array([[0, 2]]), (40_000, 1))
  exact = -(np.log(0.7) + np.log(0.8))
  for estimator in ("time", "count"):
    for t in (0.1, 0.5, 0.9):
      est = md.nelbo(fn, x, jax.random.key(1), M, jnp.ones(2, bool), t=jnp.full((40_000,), t),
                     estimator=estimator)
      np.testing.assert_allclose(np.mean(est), exact,
                                 rtol=4 * np.std(est) / np.sqrt(40_000) / exact + 1e-3)


def test_the_count_estimator_masks_exactly_k_and_has_the_smaller_variance():
  x = jnp.tile(jnp.arange(8)[None] % 3, (4096, 1))
  k = jnp.arange(4096) % 7 + 1
  maskable = jnp.arange(8) >= 1
  z, masked = md.mask_count(jax.random.key(5), x, k, M, maskable)
  np.testing.assert_array_equal(masked.sum(1), k)
  assert not bool(masked[:, 0].any()) and bool(((z == M) == masked).all())
  # every position equally likely to be masked
  np.testing.assert_allclose(masked[:, 1:].mean(0), masked[:, 1:].mean(), atol=0.03)
  logits = lambda z: jnp.where((z == M)[..., None], 0.0, jax.nn.one_hot(z, 4) * 3.0) + jnp.zeros(4)
  var = {e: float(np.var(md.nelbo(logits, x, jax.random.key(6), M, maskable, estimator=e)))
         for e in ("time", "count")}
  assert var["count"] < 0.2 * var["time"], var


def test_unmaskable_positions_are_never_masked_nor_scored():
  x = jnp.tile(jnp.array([[1, 2]]), (512, 1))
  z, masked = md.mask_tokens(jax.random.key(2), x, jnp.full((512,), 0.99), M, jnp.array([False, True]))
  assert not bool(masked[:, 0].any()) and bool((z[:, 0] == 1).all())
  assert 0.97 < float(masked[:, 1].mean()) <= 1.0
  t = md.stratified_times(jax.random.key(3), 8)
  np.testing.assert_allclose(np.sort(np.diff(np.sort(np.asarray(t)))), 1 / 8, atol=1e-6)


def test_unmasking_carries_tokens_over_and_draws_the_models_law():
  probs = jnp.array([0.1, 0.6, 0.3])
  fn = lambda z: jnp.broadcast_to(jnp.log(jnp.concatenate([probs, jnp.ones(1)])), (*z.shape, 4))
  z = jnp.full((4000, 5), M).at[:, 0].set(2)
  out, info = ancestral_unmasking(fn, z, jax.random.key(4), 8, M, return_trajectory=True)
  traj = np.asarray(info["trajectory"])
  assert info["nfe"] == 8 and traj.shape == (9, 4000, 5)
  assert not (np.asarray(out) == M).any() and (np.asarray(out)[:, 0] == 2).all()
  # once unmasked a token never changes, and the masked share falls as s / t says: 1 - k / 8
  for k in range(8):
    seen = traj[k] != M
    assert (traj[k + 1][seen] == traj[k][seen]).all()
  np.testing.assert_allclose((traj[4][:, 1:] == M).mean(), 0.5, atol=0.02)
  freq = np.bincount(np.asarray(out)[:, 1:].ravel(), minlength=3) / out[:, 1:].size
  np.testing.assert_allclose(freq, probs, atol=0.015)


TEXT = DatasetInfo(name="text_file", kind="text", shape=(9,), vocab="\nabcde")


def test_mdlm_trains_its_bound_falls_and_samples_have_no_mask(adam_fit):
  p = mdlm.make({"num_layers": 1, "num_heads": 2, "embed_dim": 16, "elbo_samples": 4,
                 "num_steps": 4}, TEXT)
  data = jnp.asarray(np.tile(np.arange(9) % 6, (16, 1)), jnp.int32)    # a learnable text
  batch = {"tokens": data}
  params = p.init(jax.random.key(0), batch)
  before = -float(p.log_likelihood(params, batch, jax.random.key(9)).mean()) / 8
  params, _ = adam_fit(p, params, batch, 300)
  after = -float(p.log_likelihood(params, batch, jax.random.key(9)).mean()) / 8
  assert before > np.log(6) * 0.8 and after < 0.5 * before, (before, after)
  out = p.sample(params, jax.random.key(1), 3, prompt="a", num_steps=4)
  assert out.shape == (3, 9) and int(out.max()) < 6 and (np.asarray(out)[:, 0] == 1).all()
  with pytest.raises(UserError, match="outside the model's vocabulary"):
    p.sample(params, jax.random.key(1), 1, prompt="z")
