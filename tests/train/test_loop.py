"""The loop: exact resume, refusal of a foreign workdir, NaN halt, SIGTERM, EMA, two players."""
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from gen_jax.errors import NonFiniteError, UserError
from gen_jax import workdir as workdir_lib
from gen_jax.train import build as build_lib
from gen_jax.train.metrics import read_metrics
from tests.train.conftest import tiny_vae_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def leaves(tree):
  return [np.asarray(x) for x in jax.tree.leaves(jax.device_get(tree))]


def assert_trees_bitwise_equal(a, b):
  la, lb = leaves(a), leaves(b)
  assert len(la) == len(lb)
  for x, y in zip(la, lb):
    np.testing.assert_array_equal(x, y)


def losses(workdir):
  return [(r["step"], r["loss"]) for r in read_metrics(workdir) if "loss" in r]


def test_train_writes_the_workdir_contract(tmp_path):
  config = tiny_vae_config()
  state = workdir_lib.train(config, str(tmp_path), progress=False)
  assert int(state.step) == 12
  for name in ("config.json", "metrics.jsonl", "samples/step_12.png"):
    assert (tmp_path / name).exists(), name
  assert os.listdir(tmp_path / "tensorboard")
  assert sorted(int(s) for s in os.listdir(tmp_path / "checkpoints")) == [4, 8, 12]
  records = read_metrics(str(tmp_path))
  assert [r["step"] for r in records if "loss" in r] == list(range(1, 13))
  final_eval = [r for r in records if "eval/bits_per_dim" in r][-1]
  assert 0 < final_eval["eval/bits_per_dim"] < np.log2(17) + 1
  assert final_eval["eval/num_examples"] == 360        # the whole digits test split


def test_periodic_eval_can_score_a_subset(tmp_path):
  config = tiny_vae_config(eval_max_examples=100, num_train_steps=4, checkpoint_every_steps=4,
                           eval_every_steps=2, sample_every_steps=4)
  workdir_lib.train(config, str(tmp_path), progress=False)
  counts = [r["eval/num_examples"] for r in read_metrics(str(tmp_path))
            if "eval/num_examples" in r]
  assert counts == [100, 100]                          # steps 2 and 4


@pytest.mark.parametrize("grad_accum_steps", [1, 2])
def test_resume_is_bitwise_identical_to_an_uninterrupted_run(tmp_path, monkeypatch,
                                                             grad_accum_steps):
  config = tiny_vae_config(ema_decay=0.9, grad_accum_steps=grad_accum_steps)
  full = workdir_lib.train(config, str(tmp_path / "full"), progress=False)
  # "Crash" after step 8: train a copy of the run to 8 steps, then drop the
  # step-8 metrics and relaunch; it must resume from the checkpoint at 8.
  interrupted = str(tmp_path / "interrupted")
  short = tiny_vae_config(ema_decay=0.9, num_train_steps=12, grad_accum_steps=grad_accum_steps)
  short.lock()
  # Stop early through SIGTERM's code path: the flag is checked every step.
  from gen_jax.train import loop
  original = loop.StopRequest.__enter__

  def stop_at_6(self):
    result = original(self)
    calls = {"n": 0}
    orig_put = build_lib.Run.put_batch

    def counting_put(run_self, batch):
      calls["n"] += 1
      if calls["n"] == 6:
        self.requested = True
      return orig_put(run_self, batch)
    monkeypatch.setattr(build_lib.Run, "put_batch", counting_put)
    return result

  monkeypatch.setattr(loop.StopRequest, "__enter__", stop_at_6)
  partial = workdir_lib.train(short, interrupted, progress=False)
  monkeypatch.undo()
  assert int(partial.step) == 6
  resumed = workdir_lib.train(config, interrupted, progress=False)
  assert int(resumed.step) == 12
  assert_trees_bitwise_equal(full.params, resumed.params)
  assert_trees_bitwise_equal(full.ema_params, resumed.ema_params)
  assert_trees_bitwise_equal(full.opt_state, resumed.opt_state)
  assert losses(str(tmp_path / "full")) == losses(interrupted)


def test_a_workdir_from_another_config_is_refused(tmp_path):
  workdir_lib.train(tiny_vae_config(num_train_steps=2), str(tmp_path), progress=False)
  other = tiny_vae_config(num_train_steps=2)
  other.optimizer.learning_rate = 0.5
  with pytest.raises(UserError, match="different config.*optimizer.learning_rate"):
    workdir_lib.train(other, str(tmp_path), progress=False)
  # Fields that only change logging frequency may differ between launches.
  workdir_lib.train(tiny_vae_config(num_train_steps=2, log_every_steps=2), str(tmp_path), progress=False)


def test_a_workdir_saved_before_a_field_existed_resumes_with_its_old_behaviour(tmp_path):
  """A saved config lacking a field of workdir.ADDED_FIELDS matches a new config holding the
  value that reproduces the old behaviour, and no other value."""
  check = lambda config: workdir_lib.check_or_write_config(
      str(tmp_path), workdir_lib.config_record(config))
  assert workdir_lib.ADDED_FIELDS["model.split_prior"] == "standard"
  config = tiny_vae_config(num_train_steps=2)
  config.model.split_prior = "standard"
  check(config)
  path = tmp_path / "config.json"
  saved = json.loads(path.read_text())
  del saved["model"]["split_prior"]                 # as written before the field existed
  path.write_text(json.dumps(saved))
  check(config)
  config.model.split_prior = "learned"
  with pytest.raises(UserError, match="different config.*model.split_prior: None -> 'learned'"):
    check(config)
  other = tiny_vae_config(num_train_steps=2)
  other.model.new_field = 1                         # a field not in ADDED_FIELDS still differs
  with pytest.raises(UserError, match="model.new_field"):
    check(other)


def diverging_config(**overrides):
  config = tiny_vae_config(num_train_steps=80, checkpoint_every_steps=10, log_every_steps=5,
                           eval_every_steps=1000, sample_every_steps=1000, **overrides)
  config.paradigm = "tests.train.toy_paradigms"
  config.model = {"kind": "diverging"}
  config.optimizer.name = "sgd"
  config.optimizer.b1 = 0.0
  config.optimizer.learning_rate = 1.5
  config.optimizer.schedule = "constant"
  config.optimizer.warmup_steps = 0
  config.optimizer.grad_clip_norm = 0.0
  return config


def test_nan_halts_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
  # w_s = (-2)^s: the global gradient norm sqrt((2 w)^2) squares 2^64 at s = 63 -> inf.
  with pytest.raises(NonFiniteError, match=r"gradient norm became NaN/inf at step 63"):
    workdir_lib.train(diverging_config(), str(tmp_path), progress=False)
  steps = sorted(int(s) for s in os.listdir(tmp_path / "checkpoints"))
  assert steps[-1] == 60
  run, state, step = workdir_lib.restore(str(tmp_path))
  assert step == 60
  np.testing.assert_equal(float(state.params["w"]), (-2.0) ** 60)


def test_nonfinite_steps_can_be_skipped(tmp_path):
  state = workdir_lib.train(diverging_config(on_nonfinite="skip"), str(tmp_path), progress=False)
  assert int(state.step) == 80
  assert np.isfinite(float(state.params["w"]))
  assert int(state.nonfinite_step) == 63


def test_two_player_schedule_updates_only_the_scheduled_player(tmp_path):
  config = tiny_vae_config(num_train_steps=3, eval_every_steps=1000)
  config.paradigm = "tests.train.toy_paradigms"
  config.model = {"kind": "two_player", "schedule": ("a",)}
  state = workdir_lib.train(config, str(tmp_path / "a_only"), progress=False)
  assert float(state.params["a"]["v"]) != 0.0
  assert float(state.params["b"]["v"]) == 0.0        # bitwise unchanged
  config.model = {"kind": "two_player", "schedule": ("a", "a", "b")}
  state = workdir_lib.train(config, str(tmp_path / "both"), progress=False)
  assert float(state.params["b"]["v"]) != 0.0
  assert set(state.opt_state) == {"a", "b"}


def _launch(workdir, *extra, steps=150):
  cmd = [sys.executable, "-m", "experiments.train",
         "--config=experiments/configs/vae.py:digits", f"--workdir={workdir}",
         "--config.model.channels=(8,)", "--config.model.latent_dim=2",
         "--config.batch_size=8", f"--config.num_train_steps={steps}",
         "--config.checkpoint_every_steps=5", "--config.eval_every_steps=1000",
         "--config.sample_every_steps=1000", "--config.log_every_steps=5", *extra]
  return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)


def _wait_for_checkpoint(workdir, proc, timeout=240):
  start = time.time()
  while time.time() - start < timeout:
    ckpts = os.path.join(workdir, "checkpoints")
    if os.path.isdir(ckpts) and any(s.isdigit() for s in os.listdir(ckpts)):
      return
    assert proc.poll() is None, proc.stderr.read()
    time.sleep(0.2)
  raise AssertionError("no checkpoint appeared")


def test_sigterm_saves_exits_zero_and_the_relaunch_continues(tmp_path):
  workdir = str(tmp_path)
  proc = _launch(workdir)
  _wait_for_checkpoint(workdir, proc)
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=120)
  assert proc.returncode == 0, err
  assert "SIGTERM" in out
  stopped = max(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")) if s.isdigit())
  assert 0 < stopped < 150
  logged = [r["step"] for r in read_metrics(workdir) if "loss" in r]
  relaunch = _launch(workdir)
  out, err = relaunch.communicate(timeout=600)
  assert relaunch.returncode == 0, err
  steps = [r["step"] for r in read_metrics(workdir) if "loss" in r]
  assert steps == list(range(5, 151, 5)), (stopped, logged[-3:], steps[:5])
  assert json.loads(out.strip().splitlines()[-1])["step"] == 150
