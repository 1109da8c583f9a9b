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
