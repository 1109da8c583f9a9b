"""--config.profile_steps=N,M: a jax.profiler trace of steps N..M in the workdir's TensorBoard
directory; bad values are refused in one line naming the fix."""
import glob
import gzip
import json
import os

import pytest

from gen_jax import workdir as workdir_lib
from gen_jax.errors import UserError
from gen_jax.train import profile
from tests.train.test_synthetic_training import synthetic_config


def test_profile_steps_write_a_trace_of_those_steps(tmp_path):
  workdir_lib.train(synthetic_config(profile_steps="2,3"), str(tmp_path), progress=False)
  runs = glob.glob(str(tmp_path / "tensorboard" / "plugins" / "profile" / "*"))
  assert len(runs) == 1, runs
  assert glob.glob(os.path.join(runs[0], "*.xplane.pb"))
  with gzip.open(glob.glob(os.path.join(runs[0], "*.trace.json.gz"))[0]) as f:
    events = json.load(f)["traceEvents"]
  steps = {int(e["args"]["step_num"]) for e in events if e.get("name") == "train"}
  assert steps == {2, 3}


@pytest.mark.parametrize("spec, why", [
    ("3", "not two whole numbers"), ("a,b", "not two whole numbers"),
    ("1,2,3", "not two whole numbers"), ("0,2", "count from 1"), ("-1,2", "count from 1"),
    ("3,2", "starts after it ends"), ("2,5", "past the run")])
def test_bad_profile_steps_are_refused_in_one_line(spec, why):
  config = synthetic_config(profile_steps=spec)      # num_train_steps = 4
  with pytest.raises(UserError, match=why) as error:
    workdir_lib.validate(config)
  message = str(error.value)
  assert "\n" not in message and "--config.profile_steps=N,M" in message
  assert "num_train_steps=4" in message


def test_good_profile_steps():
  assert profile.parse_steps("", 10) is None
  assert profile.parse_steps(" 2, 10 ", 10) == (2, 10)
  assert profile.parse_steps("1,1", 10) == (1, 1)


def test_the_command_line_refuses_a_window_past_the_run_in_one_line(cli, tmp_path):
  proc = cli("experiments.train", "--config=experiments/configs/vae.py:digits",
             f"--workdir={tmp_path}", "--config.num_train_steps=10",
             "--config.profile_steps=5,20", check=False)
  assert proc.returncode == 2
  assert proc.stderr.strip().count("\n") == 0 and "profile_steps" in proc.stderr, proc.stderr
  assert not os.listdir(tmp_path)                     # nothing written
