"""VQ-VAE: straight-through gradients, nearest codes, the EMA codebook rule, restarts,
frozen (non-trainable) leaves and an exact resume of the non-gradient state."""
import os
import shutil

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from experiments.configs import vqvae as vqvae_config
from gen_jax.data.builders import digits_arrays
from gen_jax.data.info import DatasetInfo
from gen_jax.losses import vq as vq_lib
from gen_jax.nets.vq import nearest_code
from gen_jax.paradigms import vqvae
from gen_jax import workdir as workdir_lib
from gen_jax.train.state import freeze

DIGITS = DatasetInfo(name="digits", kind="image", shape=(8, 8, 1), num_levels=17, num_classes=10)


def model(**kw):
  return ml_collections.ConfigDict(dict(channels=(8,), code_dim=4, num_codes=8, decoder="categorical",
                                        beta=0.25, codebook_update="ema", codebook_decay=0.9,
                                        dead_code_threshold=0.5) | kw)


def digits_batch(n=16):
  images, labels = digits_arrays()
  return {"image": images[:n], "label": labels[:n].astype(np.int32)}


def test_nearest_code_matches_brute_force():
  rng = np.random.default_rng(0)
  z, codebook = rng.normal(size=(5, 3, 4)), rng.normal(size=(7, 4))
  brute = np.array([[np.argmin([np.sum((z[i, j] - e) ** 2) for e in codebook]) for j in range(3)]
                    for i in range(5)])
  np.testing.assert_array_equal(nearest_code(jnp.asarray(z), jnp.asarray(codebook)), brute)


def test_nearest_code_from_a_bfloat16_codebook_is_the_float32_argmin():
  """As under a bfloat16 policy: float32 encoder outputs, the codebook cast to bfloat16, codes
  clustered away from the origin. The codes equal the brute-force (float64) nearest entries
  of that bfloat16 codebook; rounding ||e_k||^2 to bfloat16 picked the wrong code for 214 of
  these 512 vectors."""
  rng = np.random.default_rng(0)
  centre = rng.standard_normal(16)
  codebook = jnp.asarray(centre + 0.1 * rng.standard_normal((64, 16)), jnp.bfloat16)
  z = centre + 0.1 * rng.standard_normal((512, 16))
  exact = np.asarray(codebook, np.float64)
  brute = np.argmin(((z[:, None] - exact[None]) ** 2).sum(-1), axis=1)
  np.testing.assert_array_equal(nearest_code(jnp.asarray(z, jnp.float32), codebook), brute)


def test_straight_through_gradient_reaches_the_encoder():
  # beta = 0 and the EMA codebook: the only path from the loss to the encoder is the
  # reconstruction term through the straight-through estimator.
  p = vqvae.make(model(beta=0.0), DIGITS)
  batch = digits_batch()
  params = p.init(jax.random.key(0), batch)
  grads = jax.jit(jax.grad(lambda q: p.loss(q, batch, jax.random.key(1))[0]))(params)
  for name, g in jax.tree_util.tree_flatten_with_path(grads["net"]["encoder"])[0]:
    assert float(jnp.abs(g).max()) > 0, jax.tree_util.keystr(name)
  # The codebook gets no gradient with EMA updates, and one with the codebook loss.
  assert float(jnp.abs(grads["codebook"]["embedding"]).max()) == 0
  p_loss = vqvae.make(model(codebook_update="loss"), DIGITS)
  params = p_loss.init(jax.random.key(0), batch)
  g = jax.jit(jax.grad(lambda q: p_loss.loss(q, batch, jax.random.key(1))[0]))(params)
  assert float(jnp.abs(g["codebook"]["embedding"]).max()) > 0
  assert p_loss.non_trainable == () and p_loss.post_update is None


def test_ema_codebook_update_matches_a_hand_computation():
  # K = 2, D = 1, gamma = 0.5; z = [1, 3, 10] assigned to codes [0, 0, 1].
  count, total = jnp.array([2.0, 1.0]), jnp.array([[4.0], [5.0]])
  z, idx = jnp.array([[1.0], [3.0], [10.0]]), jnp.array([0, 0, 1])
  new_count, new_total, codebook = vq_lib.ema_codebook_update(count, total, z, idx, 0.5, epsilon=0.0)
  # N = 0.5 [2, 1] + 0.5 [2, 1] = [2, 1]; m = 0.5 [4, 5] + 0.5 [1 + 3, 10] = [4, 7.5]
  np.testing.assert_allclose(new_count, [2.0, 1.0])
  np.testing.assert_allclose(new_total, [[4.0], [7.5]])
  np.testing.assert_allclose(codebook, [[2.0], [7.5]])
  # Laplace smoothing: N~_k = (N_k + eps) / (N + K eps) N.
  eps = 0.1
  _, _, smoothed = vq_lib.ema_codebook_update(count, total, z, idx, 0.5, epsilon=eps)
  n = 3.0
  np.testing.assert_allclose(smoothed[:, 0], [4.0 / ((2 + eps) / (n + 2 * eps) * n),
                                              7.5 / ((1 + eps) / (n + 2 * eps) * n)], rtol=1e-6)


def test_perplexity_counts_effective_codes():
  assert float(vq_lib.perplexity(jnp.array([5.0, 5.0, 5.0, 5.0]))) == pytest.approx(4.0)
  assert float(vq_lib.perplexity(jnp.array([7.0, 0.0, 0.0]))) == pytest.approx(1.0)


def test_dead_code_restart_fires():
  count, total = jnp.array([3.0, 0.1, 2.0]), jnp.ones((3, 2))
  codebook = jnp.array([[0.0, 0.0], [100.0, 100.0], [1.0, 1.0]])
  z = jnp.array([[5.0, 6.0], [7.0, 8.0]])
  new_count, new_total, new_codebook, dead = vq_lib.restart_dead_codes(
      jax.random.key(0), count, total, codebook, z, threshold=0.5)
  np.testing.assert_array_equal(dead, [False, True, False])
  assert any(np.array_equal(new_codebook[1], row) for row in np.asarray(z))
  np.testing.assert_array_equal(new_codebook[jnp.array([0, 2])], codebook[jnp.array([0, 2])])
  np.testing.assert_array_equal(new_total[1], new_codebook[1])
  np.testing.assert_array_equal(new_count, [3.0, 1.0, 2.0])
  # Through the paradigm: a code far from every encoder output is never chosen, its
  # EMA usage decays below the threshold and post_update moves it onto an encoder output.
  p = vqvae.make(model(codebook_decay=0.5), DIGITS)
  batch = digits_batch()
  params = p.init(jax.random.key(0), batch)
  cb = params["codebook"]
  params["codebook"] = {"embedding": cb["embedding"].at[3].set(1e4),
                        "ema_sum": cb["ema_sum"].at[3].set(1e4),
                        "ema_count": cb["ema_count"].at[3].set(0.5)}   # 0.5 * 0.5 + 0 < 0.5
  after = jax.jit(p.post_update)(params, batch, jax.random.key(2))["codebook"]
  z_e = vqvae.VQVAENet(channels=(8,), code_dim=4, out_channels=17).apply(
      {"params": params["net"]}, jnp.asarray(batch["image"], jnp.float32) / 16 * 2 - 1,
      method=vqvae.VQVAENet.encode).reshape(-1, 4)
  assert float(jnp.min(jnp.sum((z_e - after["embedding"][3]) ** 2, axis=-1))) < 1e-8
  assert float(after["ema_count"][3]) == 1.0


def test_frozen_leaves_get_no_update_no_moments_no_weight_decay():
  params = {"w": jnp.ones((3, 3)), "codebook": {"embedding": jnp.ones((4, 2))}}
  grads = jax.tree.map(jnp.ones_like, params)
  opt = freeze(optax.chain(optax.clip_by_global_norm(1.0),
                           optax.adamw(0.1, weight_decay=0.5)), ("codebook",))
  state = opt.init(params)
  updates, _ = opt.update(grads, state, params)
  np.testing.assert_array_equal(updates["codebook"]["embedding"], 0.0)
  assert float(jnp.abs(updates["w"]).min()) > 0
  # Adam moments exist for "w" only (the frozen leaves' state is empty).
  shapes = [x.shape for x in jax.tree.leaves(state)]
  assert (4, 2) not in shapes and (3, 3) in shapes
  # Clipping sees only the trainable gradient: 9 ones -> norm 3.
  clip_only = freeze(optax.clip_by_global_norm(1.0), ("codebook",))
  clipped, _ = clip_only.update(grads, clip_only.init(params), params)
  np.testing.assert_allclose(clipped["w"], 1.0 / 3.0, rtol=1e-6)


def tiny_vqvae_config(**overrides):
  config = vqvae_config.get_config("digits")
  config.model.channels, config.model.code_dim, config.model.num_codes = (8,), 4, 8
  config.batch_size, config.eval_batch_size = 8, 128
  config.num_train_steps = 4
  config.log_every_steps = 1
  config.checkpoint_every_steps = 2
  config.eval_every_steps = config.sample_every_steps = 4
  config.num_samples = 4
  config.optimizer.warmup_steps = 1
  config.update_from_flattened_dict(overrides)   # keys may be dotted: "model.beta"
  return config


def test_ema_codebook_state_resumes_exactly(tmp_path):
  config = tiny_vqvae_config(ema_decay=0.9)
  full_dir, resumed_dir = str(tmp_path / "full"), str(tmp_path / "resumed")
  full = workdir_lib.train(config, full_dir, progress=False)
  # post_update ran: the EMA counts left their initial ones.
  assert not np.allclose(full.params["codebook"]["ema_count"], 1.0)
  # Relaunch from the step-2 checkpoint (the newest one removed): steps 3-4 again.
  shutil.copytree(full_dir, resumed_dir)
  shutil.rmtree(os.path.join(resumed_dir, "checkpoints", "4"))
  resumed = workdir_lib.train(config, resumed_dir, progress=False)
  for a, b in zip(jax.tree.leaves((full.params, full.ema_params, full.opt_state)),
                  jax.tree.leaves((resumed.params, resumed.ema_params, resumed.opt_state))):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

