"""experiments/evaluate.py scores a two-stage run's samples against its stage-1 images."""
import json

from experiments.configs.vae import get_config as vae_config
from experiments.evaluate import image_source


def _write_config(workdir, config):
  workdir.mkdir()
  (workdir / "config.json").write_text(json.dumps(config.to_dict()))


def test_a_single_stage_run_is_its_own_image_source():
  config = vae_config("digits")
  assert image_source(config) is config


def test_a_two_stage_run_scores_against_its_stage1_dataset(tmp_path):
  stage1 = vae_config("mnist_idx")
  stage1.manual_dir = "/data/mnist"
  _write_config(tmp_path / "stage1", stage1)
  stage2 = vae_config("digits")
  stage2.dataset = "encoded"
  stage2.stage1 = {"workdir": str(tmp_path / "stage1"), "paradigm": "vae"}
  source = image_source(stage2)
  assert (source.dataset, source.manual_dir) == ("mnist_idx", "/data/mnist")


def test_evaluate_scores_the_ddpm_bound_with_the_terms_asked_for(tmp_path):
  """--vlb_num_steps reaches the restored paradigm: with T - 1 stratified steps the estimator
  visits every step once with the same noise, so it equals the full bound (0) exactly, while
  the saved config's 2-step estimate differs. A run of another paradigm refuses the flag."""
  import numpy as np
  import pytest
  from experiments.configs.ddpm import get_config as ddpm_config
  from gen_jax.errors import UserError
  from gen_jax import workdir as workdir_lib
  from tests.train.conftest import tiny_vae_config
  config = ddpm_config("digits")
  config.model.update(dict(num_diffusion_steps=8, schedule="cosine", vlb_num_steps=2, channels=8,
                           channel_mult=(1,), attn_resolutions=(), groups=4))
  config.update(dict(batch_size=8, num_train_steps=2, eval_every_steps=2, sample_every_steps=2,
                     checkpoint_every_steps=2, num_samples=4, eval_max_examples=16))
  config.optimizer.warmup_steps = 1
  workdir = str(tmp_path / "ddpm")
  workdir_lib.train(config, workdir, progress=False)
  bpd = {k: workdir_lib.evaluate(workdir, max_examples=16, vlb_num_steps=k)["bits_per_dim"]
         for k in (-1, 0, 7)}
  np.testing.assert_allclose(bpd[7], bpd[0], rtol=1e-6)
  assert abs(bpd[-1] - bpd[0]) > 1e-4
  saved = json.loads((tmp_path / "ddpm" / "eval.json").read_text())
  assert saved["vlb_num_steps"] == 7
  vae_dir = str(tmp_path / "vae")
  workdir_lib.train(tiny_vae_config(num_train_steps=2), vae_dir, progress=False)
  with pytest.raises(UserError, match="vlb_num_steps is a ddpm setting"):
    workdir_lib.evaluate(vae_dir, vlb_num_steps=0)
