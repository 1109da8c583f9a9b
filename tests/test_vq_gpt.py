"""vq_gpt: a GPT prior over VQ codes trains, samples images, and its likelihood is the
two-stage bound log p(x | k(x)) + log p(k(x))."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import vq_gpt as vq_gpt_config
from gen_jax import data
from gen_jax.errors import UserError
from gen_jax import workdir as workdir_lib
from gen_jax.eval import likelihood as likelihood_lib
from test_two_stage import expect, train_tiny_vqvae

# Its module-scoped fixture is costly: one xdist worker runs the module (make test: --dist loadgroup).
pytestmark = pytest.mark.xdist_group("test_vq_gpt")


def tiny_vq_gpt_config(stage1_workdir, data_dir, **model):
  config = vq_gpt_config.get_config("digits")
  config.stage1 = expect(stage1_workdir)
  config.data_dir = data_dir
  config.model.update(num_layers=1, num_heads=2, embed_dim=16, dropout=0.0, **model)
  config.batch_size, config.eval_batch_size = 8, 128
  config.num_train_steps = 3
  config.log_every_steps = 1
  config.checkpoint_every_steps = config.eval_every_steps = config.sample_every_steps = 3
  config.num_samples = 4
  config.optimizer.warmup_steps = 1
  return config


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("vq_gpt"))
  stage1_workdir, data_dir = train_tiny_vqvae(str(tmp_path_factory.getbasetemp() / "tiny_stage1"))
  config = tiny_vq_gpt_config(stage1_workdir, data_dir, class_conditional=True)
  state = workdir_lib.train(config, f"{root}/vq_gpt", progress=False)
  return config, state, f"{root}/vq_gpt"


def test_trains_evaluates_a_bound_and_writes_image_samples(trained):
  config, state, workdir = trained
  assert int(state.step) == 3
  result = likelihood_lib.evaluate(workdir_lib.build(config), state)
  assert result["bound"] is True and np.isfinite(result["bits_per_dim"]) and result["bits_per_dim"] > 0
  assert os.path.exists(f"{workdir}/samples/step_3.png")
  # The run recorded its stage 1; a relaunch on a changed stage 1 is refused.
  with open(f"{workdir}/stage1.json") as f:
    record = json.load(f)
  assert record["step"] == 4
  with open(f"{workdir}/stage1.json", "w") as f:
    json.dump({**record, "fingerprint": "0" * 64}, f)
  with pytest.raises(UserError, match="Use a new --workdir for a stage 2 on the new stage 1"):
    workdir_lib.train(config, workdir, progress=False)
  with pytest.raises(UserError, match="that stage-1 run now holds other params"):
    workdir_lib.restore(workdir)                  # evaluate / sample would score other codes
  with open(f"{workdir}/stage1.json", "w") as f:
    json.dump(record, f)


def test_samples_are_decoded_images(trained):
  config, state, _ = trained
  run = workdir_lib.build(config)
  sample = jax.jit(run.paradigm.sample, static_argnums=2)
  x = np.asarray(sample(state.params, jax.random.key(0), 5))
  assert x.shape == (5, 8, 8, 1) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
  x7 = np.asarray(run.paradigm.sample(state.params, jax.random.key(0), 3, label=7, temperature=0.0))
  # Greedy decoding from one start token: the three samples are the same image.
  np.testing.assert_array_equal(x7[0], x7[1])
  with pytest.raises(ValueError, match="label must be in 0..9"):
    run.paradigm.sample(state.params, jax.random.key(0), 2, label=12)


def test_log_likelihood_is_the_two_stage_bound(trained):
  config, state, _ = trained
  run = workdir_lib.build(config)
  batch = next(data.eval_batches("encoded", split="test", batch_size=16, **workdir_lib.data_kwargs(run.config)))
  ll = np.asarray(run.paradigm.log_likelihood(state.params, batch, None))
  # Independently: the stage-1 decoder's log p(x | k) plus sum_i log softmax(logits_i)[k_i],
  # with the logits of the transformer on [start = K + label, k_1 .. k_{n-1}].
  s1, k = run.info.stage1, 8
  codes = np.asarray(batch["codes"]).reshape(16, 16)
  inputs = np.concatenate([k + np.asarray(batch["label"])[:, None], codes[:, :-1]], axis=1)
  from gen_jax.paradigms.gpt import make_model
  model = make_model(run.config.model, k + 10, 16)
  logits = np.asarray(model.apply({"params": state.params}, jnp.asarray(inputs)))[..., :k]
  log_probs = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
      - logits.max(-1, keepdims=True)
  prior = np.take_along_axis(log_probs, codes[..., None], axis=-1)[..., 0].sum(axis=1)
  recon = np.asarray(s1.decoder_log_likelihood(batch["codes"], batch["image"]))
  np.testing.assert_allclose(ll, recon + prior, rtol=1e-5, atol=1e-3)
  assert np.all(ll < 0)
