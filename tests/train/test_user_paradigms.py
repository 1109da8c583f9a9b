"""Paradigms given by a user: their own bugs keep their tracebacks, validation errors stay one
line, and a run trained with a paradigm built in code records where it came from."""
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from experiments.configs import gan as gan_config
from gen_jax import data as data_lib
from gen_jax import workdir as workdir_lib
from gen_jax.errors import UserError
from gen_jax.losses import adversarial as adv
from gen_jax.paradigms import gan
from tests.train.conftest import tiny_vae_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_a_bug_in_a_user_paradigm_surfaces_as_itself(tmp_path):
  config = tiny_vae_config(paradigm="tests.train.buggy_paradigm")
  with pytest.raises(TypeError, match="has no len") as raised:
    workdir_lib.train(config, str(tmp_path), progress=False)
  assert not isinstance(raised.value, UserError)
  assert str(raised.traceback[-1].path).endswith("buggy_paradigm.py")
  assert not (tmp_path / "config.json").exists()       # a failed launch leaves no config behind


def test_the_cli_shows_a_user_bug_with_its_traceback_and_a_config_error_in_one_line(tmp_path):
  def train(paradigm, workdir):
    return subprocess.run(
        [sys.executable, "-m", "experiments.train", "--config=experiments/configs/vae.py:digits",
         f"--workdir={tmp_path / workdir}", "--config.num_train_steps=1",
         f"--config.paradigm={paradigm}"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
  bug = train("tests.train.buggy_paradigm", "bug")
  assert bug.returncode == 1
  assert "Traceback" in bug.stderr and "buggy_paradigm.py" in bug.stderr, bug.stderr
  assert bug.stderr.strip().splitlines()[-1].startswith("TypeError: object of type 'int' has no len()")
  for paradigm, message in (("no_such_paradigm", "error: Unknown paradigm 'no_such_paradigm'"),
                            ("diffusion", "error: config.paradigm='diffusion': module "
                                          "gen_jax.paradigms.diffusion has no make")):
    refused = train(paradigm, paradigm)
    assert refused.returncode == 2, refused.stderr
    assert "Traceback" not in refused.stderr, refused.stderr
    assert refused.stderr.strip().splitlines()[-1].startswith(message), refused.stderr
    assert not (tmp_path / paradigm / "config.json").exists()


def tiny_gan_config():
  config = gan_config.get_config("digits")
  config.num_train_steps = 2
  config.log_every_steps = 1
  config.checkpoint_every_steps = config.eval_every_steps = config.sample_every_steps = 2
  config.num_samples = 4
  config.model.update(dict(g_channels=8, d_channels=8, d_feature_dim=16, latent_dim=4))
  return config


def least_squares_d(real_logits, fake_logits):
  return 0.5 * jnp.mean((real_logits - 1.0) ** 2) + 0.5 * jnp.mean(fake_logits ** 2)


def least_squares_g(fake_logits):
  return 0.5 * jnp.mean((fake_logits - 1.0) ** 2)


def test_a_run_with_a_users_own_loss_records_it_in_config_and_eval_json(tmp_path):
  config = tiny_gan_config()
  pair = adv.AdversarialLoss(least_squares_d, least_squares_g)
  paradigm = gan.make(config.model, data_lib.get_info(config.dataset), adversarial_loss=pair)
  workdir = str(tmp_path)
  workdir_lib.train(config, workdir, paradigm=paradigm, progress=False)
  with open(os.path.join(workdir, "config.json")) as f:
    saved = json.load(f)
  recorded = saved[workdir_lib.USER_PARADIGM_KEY]
  for name in (f"{__name__}.least_squares_d", f"{__name__}.least_squares_g", "r1_gamma=1"):
    assert name in recorded, recorded
  assert saved["model"]["loss"] == "non_saturating"     # the config alone would say this
  record = workdir_lib.evaluate(workdir, paradigm=paradigm)
  assert record[workdir_lib.USER_PARADIGM_KEY] == recorded
  with open(os.path.join(workdir, "eval.json")) as f:
    assert json.load(f)[workdir_lib.USER_PARADIGM_KEY] == recorded
  # load_config gives the plain config back (the record is not a config field).
  assert workdir_lib.USER_PARADIGM_KEY not in workdir_lib.load_config(workdir)
  # Relaunching without the paradigm would silently train the built-in loss: refused.
  with pytest.raises(UserError, match="different config.*user_paradigm"):
    workdir_lib.train(config, workdir, progress=False)
  # With the same paradigm it resumes (here: already finished).
  state = workdir_lib.train(config, workdir, paradigm=paradigm, progress=False)
  assert int(jax.device_get(state.step)) == 2


def test_a_paradigm_built_in_code_is_named_by_its_loss_functions(tmp_path):
  def my_loss(params, batch, rng):
    return jnp.sum(params["w"] ** 2), {}
  base = gan.make(tiny_gan_config().model, data_lib.get_info("digits"))
  assert base.source == ""
  custom = base._replace(loss={"discriminator": my_loss, "generator": my_loss}, source="")
  described = workdir_lib.describe_paradigm(custom)
  assert described.count(f"{__name__}.") == 2 and "my_loss" in described
