"""VAR (next-scale prediction, arXiv:2404.02905): the multi-scale residual quantiser, the
block-causal mask over scales, the K-pass cached sampler, a tiny prior that overfits, a tiny
msvq -> var run through the training loop, and the refused ladder."""
import os
import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from experiments.configs import msvq as msvq_config
from experiments.configs import var as var_config
from experiments.configs.common import stage1_config
from gen_jax import data
from gen_jax import workdir as workdir_lib
from gen_jax.data.builders import digits_arrays
from gen_jax.data.info import DatasetInfo
from gen_jax.errors import UserError
from gen_jax.train.metrics import read_metrics
from gen_jax.nets import vq as vq_nets
from gen_jax.nets.var import NextScaleTransformer, block_causal_mask
from gen_jax.paradigms import msvq, var

pytestmark = pytest.mark.xdist_group("test_var")

DIGITS = DatasetInfo(name="digits", kind="image", shape=(8, 8, 1), num_levels=17, num_classes=10)
SCALES = (1, 2, 4, 8)
L = 1 + 4 + 16 + 64


def tiny_msvq(**kw):
  return ml_collections.ConfigDict(dict(channels=(), width=8, code_dim=4, num_codes=8,
                                        scales=SCALES, phi_mix=0.5, decoder="categorical",
                                        beta=0.25, codebook_update="ema", codebook_decay=0.9,
                                        dead_code_threshold=0.5) | kw)


def digits_batch(n=16):
  images, labels = digits_arrays()
  return {"image": images[:n], "label": labels[:n].astype(np.int32)}


def untrained_stage1(seed=0):
  """A real msvq paradigm at its init params, holding what var reads of a stage-1 run."""
  model = tiny_msvq()
  paradigm = msvq.make(model, DIGITS)
  params = jax.tree.map(np.asarray, paradigm.init(jax.random.key(seed), digits_batch()))
  return types.SimpleNamespace(
      config=ml_collections.ConfigDict(dict(paradigm="msvq", model=model)), info=DIGITS,
      params=params, decode=lambda c: paradigm.decode(params, c),
      decoder_log_likelihood=lambda c, x: paradigm.decoder_log_likelihood(params, c, x))


def codes_info(stage1):
  return DatasetInfo(name="encoded", kind="codes", shape=(L,), num_levels=17, num_classes=10,
                     num_codes=8, image_shape=(8, 8, 1), stage1=stage1)


def tiny_prior(**kw):
  return ml_collections.ConfigDict(dict(num_layers=2, num_heads=2, embed_dim=32, dropout=0.0) | kw)


def prior_net(num_starts=1):
  return NextScaleTransformer(num_codes=8, scales=SCALES, feature_dim=4, num_starts=num_starts,
                              num_layers=2, num_heads=2, embed_dim=32)


# ------------------------------------------------------------ the quantiser ---

def test_multiscale_quantizer_reconstructs_exactly_when_the_codebook_holds_the_residuals():
  """f = c + (+-d in a checkerboard). Built by hand: the 1x1 residual is the mean c; every
  2x2 and 4x4 block of the checkerboard averages to 0, so those residuals are 0; the 8x8
  residual is +-d. With the codebook {c, 0, d, -d} (phi = identity) the quantiser picks exactly
  those and f_hat = f, whatever the interpolation (constants upsample to constants)."""
  c, d = np.array([0.5, -0.25, 1.5]), np.array([1.0, 2.0, -1.0])
  checker = np.where((np.arange(8)[:, None] + np.arange(8)[None]) % 2 == 0, 1.0, -1.0)
  f = (c + checker[..., None] * d)[None].astype(np.float32)             # [1, 8, 8, 3]
  codebook = jnp.asarray(np.stack([c, np.zeros(3), d, -d]), jnp.float32)
  codes, residuals, partial_sums = vq_nets.multiscale_quantize(jnp.asarray(f), codebook, SCALES,
                                                               lambda k, z: z)
  np.testing.assert_array_equal(codes[0], [[[0]]])
  np.testing.assert_array_equal(codes[1], np.ones((1, 2, 2)))
  np.testing.assert_array_equal(codes[2], np.ones((1, 4, 4)))
  np.testing.assert_array_equal(codes[3], np.where(checker > 0, 2, 3)[None])
  np.testing.assert_array_equal(residuals[3], (checker[..., None] * d)[None])
  np.testing.assert_array_equal(partial_sums[-1], f)                     # exact reconstruction
  np.testing.assert_allclose(partial_sums[0], np.broadcast_to(c, f.shape))


def test_area_interpolation_is_the_block_mean_and_adaptive_pooling():
  x = np.random.default_rng(0).normal(size=(2, 8, 7, 3)).astype(np.float32)
  blocks = x[:, :, :6].reshape(2, 2, 4, 3, 2, 3).mean(axis=(2, 4))     # 8 -> 2 rows, 6 -> 3 cols
  np.testing.assert_allclose(vq_nets.resize_area(jnp.asarray(x[:, :, :6]), (2, 3)), blocks,
                             rtol=1e-6, atol=1e-6)
  # 7 -> 3 (PyTorch's interpolate(mode="area") = adaptive average pooling): bins 0:3, 2:5, 4:7.
  bins = [(0, 3), (2, 5), (4, 7)]
  want = np.stack([x[:, :, a:b].mean(axis=2) for a, b in bins], axis=2)   # [2, 8, 3, 3]
  got = vq_nets.resize_area(jnp.asarray(x), (8, 3))
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_a_ladder_that_does_not_end_at_the_feature_map_is_refused_in_one_line():
  with pytest.raises(UserError) as e:
    msvq.make(tiny_msvq(scales=(1, 2, 4)), DIGITS)
  msg = str(e.value)
  assert "\n" not in msg and "model.scales=(1, 2, 4) ends at 4" in msg and "make the last scale 8" in msg
  with pytest.raises(UserError, match=r"feature map is 4x4 .*make the last scale 4"):
    msvq.make(tiny_msvq(channels=(8,)), DIGITS)                        # one stride-2 stage: 4x4
  with pytest.raises(UserError, match="strictly increasing"):
    msvq.make(tiny_msvq(scales=(1, 4, 2, 8)), DIGITS)


def test_msvq_encodes_every_scale_and_its_bound_is_the_uniform_prior_one():
  paradigm = msvq.make(tiny_msvq(), DIGITS)
  batch = digits_batch(8)
  params = paradigm.init(jax.random.key(0), batch)

  @jax.jit
  def everything(params, batch):
    codes = paradigm.encode(params, batch["image"])
    return (codes, paradigm.decoder_log_likelihood(params, codes, batch["image"]),
            paradigm.log_likelihood(params, batch), paradigm.loss(params, batch, jax.random.key(1)),
            paradigm.post_update(params, batch, jax.random.key(2)))
  codes, recon, ll, (loss, metrics), new = everything(params, batch)
  codes = np.asarray(codes)
  assert codes.shape == (8, L) and codes.dtype == np.int32 and codes.min() >= 0 and codes.max() < 8
  np.testing.assert_allclose(ll, recon - L * np.log(8.0), rtol=1e-6)
  assert np.isfinite(loss) and 1 <= metrics["perplexity"] <= 8
  assert not np.allclose(new["codebook"]["ema_count"], 1.0)


# ----------------------------------------------------------------- the prior ---

def test_the_block_causal_mask_lets_a_scale_see_only_coarser_and_its_own_inputs():
  scales = (1, 2, 3)
  scale_of = [0] + [1] * 4 + [2] * 9                                   # by hand: 1 + 4 + 9
  mask = block_causal_mask(scales)
  assert mask.shape == (14, 14)
  for i in range(14):
    for j in range(14):
      assert mask[i, j] == (scale_of[j] <= scale_of[i]), (i, j)


def test_perturbing_a_finer_scale_leaves_the_coarser_logits_unchanged():
  """Logits of scale s are a function of the tokens of scales < s only."""
  s1 = untrained_stage1()
  tok = msvq.tokenizer(s1.config.model, DIGITS)
  net = prior_net()
  rng = np.random.default_rng(0)
  codes = rng.integers(0, 8, size=(3, L)).astype(np.int32)
  start = jnp.zeros((3,), jnp.int32)
  params = net.init(jax.random.key(0), start, tok.next_scale_inputs(s1.params, codes))["params"]
  logits_fn = jax.jit(lambda c: net.apply({"params": params}, start, tok.next_scale_inputs(s1.params, c)))
  logits = lambda c: np.asarray(logits_fn(c))
  base = logits(codes)
  for s, (begin, n) in enumerate(zip(tok.offsets, tok.lengths)):
    other = codes.copy()
    other[:, begin:begin + n] = (other[:, begin:begin + n] + rng.integers(1, 8, size=(3, n))) % 8
    moved = logits(other)
    np.testing.assert_allclose(moved[:, :begin + n], base[:, :begin + n], atol=1e-6)   # scales <= s
    if s + 1 < len(SCALES):                                   # ... and the next one does move
      assert np.abs(moved[:, begin + n:] - base[:, begin + n:]).max() > 1e-4, s


def test_greedy_next_scale_sampling_is_the_argmax_of_the_teacher_forced_logits():
  """K cached passes (one a scale) give the codes whose full forward pass picks them again."""
  s1 = untrained_stage1()
  tok = msvq.tokenizer(s1.config.model, DIGITS)
  net = prior_net(num_starts=10)
  start = jnp.arange(6, dtype=jnp.int32)
  params = net.init(jax.random.key(3), start, jnp.zeros((6, L - 1, 4)))["params"]
  codes, info = jax.jit(lambda p, r: var.sample_codes(net, p, tok, s1.params, start, r,
                                                      temperature=0.0))(params, jax.random.key(1))
  assert codes.shape == (6, L) and info["nfe"] == 4
  full = net.apply({"params": params}, start, tok.next_scale_inputs(s1.params, codes))
  np.testing.assert_array_equal(np.argmax(np.asarray(full), -1), np.asarray(codes))


def test_a_tiny_var_overfits_a_few_token_maps(adam_fit):
  """Four token maps, one a class: the prior learns them (cross-entropy near 0), and greedy
  sampling of each class gives its map back."""
  s1 = untrained_stage1()
  paradigm = var.make(tiny_prior(class_conditional=True), codes_info(s1))
  codes = np.random.default_rng(1).integers(0, 8, size=(4, L)).astype(np.int32)
  batch = {"codes": codes, "label": np.arange(4, dtype=np.int32),
           "image": digits_batch(4)["image"]}
  params = paradigm.init(jax.random.key(0), batch)
  loss0 = float(paradigm.loss(params, batch, jax.random.key(0))[0])
  assert abs(loss0 - np.log(8.0)) < 0.2                                  # about uniform at init
  params, loss = adam_fit(paradigm, params, batch, steps=150, lr=3e-3)
  assert float(loss) < 0.05, float(loss)
  tok = msvq.tokenizer(s1.config.model, DIGITS)
  net = prior_net(num_starts=10)
  greedy, _ = jax.jit(lambda p: var.sample_codes(net, p, tok, s1.params, jnp.arange(4, dtype=jnp.int32),
                                                  jax.random.key(0), temperature=0.0))(params)
  np.testing.assert_array_equal(greedy, codes)
  images, info = paradigm.sample(params, jax.random.key(0), 2, label=2, temperature=0.0,
                                 return_info=True)
  assert images.shape == (2, 8, 8, 1) and info == {"nfe": 4}
  np.testing.assert_allclose(images[0], jax.jit(s1.decode)(codes[2:3])[0], atol=1e-5)


# ------------------------------------------------------- two stages, the loop ---

def tiny_msvq_config(data_dir):
  config = msvq_config.get_config("digits")
  config.model.update(width=8, code_dim=4, num_codes=8)
  config.data_dir = data_dir
  config.batch_size, config.eval_batch_size = 8, 128
  config.num_train_steps = 4
  config.log_every_steps = 1
  config.checkpoint_every_steps = config.eval_every_steps = config.sample_every_steps = 4
  config.num_samples = 4
  config.optimizer.warmup_steps = 1
  return config


def tiny_var_config(stage1_workdir, data_dir):
  config = var_config.get_config("digits")
  config.stage1 = stage1_config(stage1_workdir, paradigm="msvq", dataset="digits",
                                model=dict(num_codes=8, scales=SCALES))
  config.data_dir = data_dir
  config.model.update(num_layers=1, num_heads=2, embed_dim=16, dropout=0.0, class_conditional=True)
  config.batch_size, config.eval_batch_size = 8, 128
  config.num_train_steps = 3
  config.log_every_steps = 1
  config.checkpoint_every_steps = config.eval_every_steps = config.sample_every_steps = 3
  config.num_samples = 4
  config.optimizer.warmup_steps = 1
  return config


def test_msvq_then_var_through_the_training_loop(tmp_path):
  data_dir, s1_dir, s2_dir = (str(tmp_path / n) for n in ("data", "msvq", "var"))
  workdir_lib.train(tiny_msvq_config(data_dir), s1_dir, progress=False)
  config = tiny_var_config(s1_dir, data_dir)
  state = workdir_lib.train(config, s2_dir, progress=False)
  assert int(state.step) == 3 and os.path.exists(f"{s2_dir}/samples/step_3.png")
  run = workdir_lib.build(config)
  assert run.info.shape == (L,) and run.info.num_codes == 8
  [evaluated] = [m for m in read_metrics(s2_dir) if "eval/bits_per_dim" in m]   # the loop's, at step 3
  assert evaluated["eval/bound"] == 1.0 and 0 < evaluated["eval/bits_per_dim"] < np.inf
  # The cached codes are the stage-1 encoder's, and the bound is log p(x | k) + log p(k),
  # the prior's term computed here from the logits by a numpy log-softmax.
  batch = next(data.eval_batches("encoded", split="test", batch_size=16,
                                 **workdir_lib.data_kwargs(run.config)))
  s1 = run.info.stage1
  np.testing.assert_array_equal(batch["codes"], s1.encode(batch["image"]))
  ll = np.asarray(run.paradigm.log_likelihood(state.params, batch, None))
  tok = msvq.tokenizer(s1.config.model, s1.info)
  net = NextScaleTransformer(num_codes=8, scales=SCALES, feature_dim=4, num_starts=10,
                             num_layers=1, num_heads=2, embed_dim=16)
  logits = np.asarray(net.apply({"params": state.params}, jnp.asarray(batch["label"]),
                                tok.next_scale_inputs(s1.params, batch["codes"])), np.float64)
  log_probs = logits - logits.max(-1, keepdims=True)
  log_probs -= np.log(np.exp(log_probs).sum(-1, keepdims=True))
  prior = np.take_along_axis(log_probs, np.asarray(batch["codes"])[..., None], -1)[..., 0].sum(1)
  recon = np.asarray(s1.decoder_log_likelihood(batch["codes"], batch["image"]))
  np.testing.assert_allclose(ll, recon + prior, rtol=1e-5, atol=1e-3)
