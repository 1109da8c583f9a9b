"""Crashes, corrupted checkpoints, determinism and bad input."""
import os
import shutil
import signal
import subprocess
import sys
import time
import types

import numpy as np
import pytest

from gen_jax.errors import UserError
from gen_jax import workdir as workdir_lib
from gen_jax.train import sharding
from gen_jax.train.metrics import read_metrics
from tests.train.conftest import tiny_vae_config
from tests.train.test_loop import _launch, assert_trees_bitwise_equal, losses

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_same_seed_same_losses_other_seed_differs(tmp_path):
  a = workdir_lib.train(tiny_vae_config(num_train_steps=4), str(tmp_path / "a"), progress=False)
  b = workdir_lib.train(tiny_vae_config(num_train_steps=4), str(tmp_path / "b"), progress=False)
  c = workdir_lib.train(tiny_vae_config(num_train_steps=4, seed=1), str(tmp_path / "c"), progress=False)
  assert losses(str(tmp_path / "a")) == losses(str(tmp_path / "b"))
  assert_trees_bitwise_equal(a.params, b.params)
  assert losses(str(tmp_path / "a")) != losses(str(tmp_path / "c"))
  del c


def test_a_corrupted_newest_checkpoint_is_named_kept_and_skipped(tmp_path, caplog):
  workdir = str(tmp_path)
  full = workdir_lib.train(tiny_vae_config(), str(tmp_path / "reference"), progress=False)
  workdir_lib.train(tiny_vae_config(), workdir, progress=False)
  # Truncate every array file of the newest step (12), as a full disk would.
  newest = tmp_path / "checkpoints" / "12" / "state"
  for root, _, files in os.walk(newest):
    for name in files:
      with open(os.path.join(root, name), "r+b") as f:
        f.truncate(3)
  # A kill in the middle of a save leaves a temporary directory behind.
  shutil.copytree(tmp_path / "checkpoints" / "8",
                  tmp_path / "checkpoints" / "16.orbax-checkpoint-tmp-1234")
  with caplog.at_level("WARNING"):
    resumed = workdir_lib.train(tiny_vae_config(), workdir, progress=False)
  assert "Checkpoint step 12" in caplog.text and "12.corrupt" in caplog.text
  assert (tmp_path / "checkpoints" / "12.corrupt").is_dir()          # kept, not deleted
  assert_trees_bitwise_equal(full.params, resumed.params)             # retrained 8 -> 12
  assert losses(workdir) == losses(str(tmp_path / "reference"))


def test_sigkill_mid_run_then_relaunch_is_bitwise_identical(tmp_path):
  reference = _launch(str(tmp_path / "reference"))
  _, err = reference.communicate(timeout=900)
  assert reference.returncode == 0, err[-2000:]
  workdir = str(tmp_path / "killed")
  proc = _launch(workdir)
  start = time.time()
  while time.time() - start < 300:
    ckpts = os.path.join(workdir, "checkpoints")
    steps = [int(s) for s in os.listdir(ckpts) if s.isdigit()] if os.path.isdir(ckpts) else []
    if steps and max(steps) >= 20:
      break
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.communicate()
  killed_at = max(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")) if s.isdigit())
  assert killed_at < 150, "the run finished before it was killed"
  relaunch = _launch(workdir)
  _, err = relaunch.communicate(timeout=900)
  assert relaunch.returncode == 0, err[-2000:]
  _, ref_state, _ = workdir_lib.restore(str(tmp_path / "reference"))
  _, state, step = workdir_lib.restore(workdir)
  assert step == 150
  assert_trees_bitwise_equal(ref_state.params, state.params)
  assert_trees_bitwise_equal(ref_state.opt_state, state.opt_state)
  assert losses(workdir) == losses(str(tmp_path / "reference"))


def test_batch_not_divisible_by_the_data_axes_is_refused():
  fake_mesh = types.SimpleNamespace(shape={"data": 4, "fsdp": 2})
  with pytest.raises(UserError, match="multiple of 8"):
    sharding.global_batch_size_check(12, fake_mesh)
  sharding.global_batch_size_check(16, fake_mesh)


@pytest.mark.parametrize("args, needle", [
    (["--config.model.no_such_field=1"], "unknown config field '--config.model.no_such_field'"),
    (["--config.batch_size=abc"], "invalid literal for int()"),
    (["--config.mesh=data=2"], "needs 2 devices but 1 are available"),
    (["--config.manual_dir=/nonexistent"], None),
])
def test_bad_input_is_one_line(tmp_path, args, needle):
  dataset = ["--config=experiments/configs/vae.py:mnist_idx"] if "manual_dir" in args[0] else [
      "--config=experiments/configs/vae.py:digits"]
  proc = subprocess.run([sys.executable, "-m", "experiments.train", f"--workdir={tmp_path}",
                         *dataset, *args], cwd=REPO, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 2, proc.stderr[-2000:]
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr[-2000:]
  if needle:
    assert needle in last, last
  else:
    assert "/nonexistent" in last and "t10k-images-idx3-ubyte" in last, last


def test_an_unwritable_checkpoint_dir_stops_with_one_line(tmp_path):
  # /sys/fs refuses new directories even to root: a stand-in for a read-only or full disk.
  assert not os.access("/sys/fs", os.W_OK) or not _can_mkdir("/sys/fs")
  os.symlink("/sys/fs", tmp_path / "checkpoints")
  proc = _launch(str(tmp_path), "--config.checkpoint_every_steps=2", steps=4)
  _, err = proc.communicate(timeout=600)
  assert proc.returncode == 2, err[-2000:]
  last = err.strip().splitlines()[-1]
  assert last.startswith("error: Could not write checkpoint step 2") and "writable" in last, last


def _can_mkdir(parent):
  try:
    os.mkdir(os.path.join(parent, "gen_jax_probe"))
  except OSError:
    return False
  os.rmdir(os.path.join(parent, "gen_jax_probe"))
  return True
