"""A run on synthetic data (`--config.dataset=synthetic`) trains through gen_jax.workdir like
any run: batches made on device, checkpointed position, exact resume; no test split, so no
periodic evaluation and `evaluate` refuses it."""
import os
import shutil

import numpy as np
import pytest

from gen_jax import workdir as workdir_lib
from gen_jax.errors import UserError
from gen_jax.train.metrics import read_metrics
from tests.train.conftest import tiny_vae_config
from tests.train.test_loop import assert_trees_bitwise_equal


def synthetic_config(**overrides):
  return tiny_vae_config(**{"dataset": "synthetic", "num_train_steps": 4, "log_every_steps": 1,
                            "checkpoint_every_steps": 2, "eval_every_steps": 2,
                            "sample_every_steps": 4, **overrides})


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
  """(workdir, final state) of 4 uninterrupted steps on synthetic digits-shaped batches."""
  workdir = str(tmp_path_factory.mktemp("synthetic") / "straight")
  return workdir, workdir_lib.train(synthetic_config(), workdir, progress=False)


def test_a_tiny_config_trains_on_synthetic_data(straight):
  workdir, state = straight
  assert int(state.step) == 4
  records = read_metrics(workdir)
  assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4]
  assert all(np.isfinite(r["loss"]) for r in records)
  assert not any(k.startswith("eval/") for r in records for k in r)    # no test split
  assert os.path.exists(os.path.join(workdir, "samples", "step_4.png"))
  assert workdir_lib.load_config(workdir).synthetic_like == "digits"
  with pytest.raises(UserError, match="synthetic data"):
    workdir_lib.evaluate(workdir)


def test_a_relaunch_draws_the_batches_an_uninterrupted_run_draws(straight, tmp_path):
  workdir, state = straight
  resumed = str(tmp_path / "resumed")
  shutil.copytree(workdir, resumed)
  shutil.rmtree(os.path.join(resumed, "checkpoints", "4"))      # as if stopped after step 2
  again = workdir_lib.train(synthetic_config(), resumed, progress=False)
  assert_trees_bitwise_equal(again.params, state.params)
  assert read_metrics(resumed) == read_metrics(workdir)


def test_a_saved_config_that_predates_synthetic_like_resumes(tmp_path):
  """synthetic_like matters only when dataset == "synthetic": a run saved without it (or with
  another value) is the same experiment."""
  record = workdir_lib.config_record(tiny_vae_config())
  old = {k: v for k, v in record.items() if k != "synthetic_like"}
  workdir_lib.write_record(str(tmp_path), old)
  assert workdir_lib.config_changes(str(tmp_path), record) == {}
  assert workdir_lib.config_changes(str(tmp_path), {**record, "synthetic_like": "cifar10"}) == {}
  with pytest.raises(UserError, match="dataset"):
    workdir_lib.config_changes(str(tmp_path), {**record, "dataset": "synthetic"})
