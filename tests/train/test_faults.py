"""The faults a cluster throws at a run: damaged checkpoints, two writers, a full disk,
Ctrl-C, torn metrics, deliberate continuation, bad input. Nothing saved is lost."""
import errno
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from gen_jax import workdir as workdir_lib
from gen_jax.errors import UserError
from gen_jax.train import checkpoint as ckpt_lib
from gen_jax.train.metrics import read_metrics
from tests.train.conftest import tiny_vae_config
from tests.train.test_loop import (REPO, _launch, _wait_for_checkpoint,
                                   assert_trees_bitwise_equal, losses)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """An uninterrupted 12-step run (checkpoints at 4, 8, 12)."""
  workdir = str(tmp_path_factory.mktemp("reference"))
  state = workdir_lib.train(tiny_vae_config(), workdir, progress=False)
  return workdir, state


def _array_files(step_dir):
  out = []
  for root, _, files in os.walk(os.path.join(step_dir, "state")):
    out += [os.path.join(root, f) for f in files if "ocdbt" in root or f.startswith("d")]
  return sorted(p for p in out if os.path.getsize(p) > 64)


def _flip_one_bit(path, offset=None):
  with open(path, "r+b") as f:
    data = bytearray(f.read())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0x01
    f.seek(0)
    f.write(data)


def test_one_flipped_bit_is_caught_named_and_the_previous_checkpoint_used(tmp_path, reference,
                                                                          caplog):
  ref_dir, ref_state = reference
  workdir = str(tmp_path)
  workdir_lib.train(tiny_vae_config(), workdir, progress=False)
  step12 = os.path.join(workdir, "checkpoints", "12")
  victim = _array_files(step12)[0]
  _flip_one_bit(victim)
  with pytest.raises(ckpt_lib.CheckpointError, match="does not match its sha256"):
    ckpt_lib.verify_manifest(step12)
  with caplog.at_level("WARNING"):
    resumed = workdir_lib.train(tiny_vae_config(), workdir, progress=False)
  assert os.path.relpath(victim, step12) in caplog.text and "sha256" in caplog.text
  assert os.path.isdir(step12 + ".corrupt")                       # set aside, not deleted
  assert_trees_bitwise_equal(ref_state.params, resumed.params)     # retrained 8 -> 12
  assert losses(workdir) == losses(ref_dir)


def test_a_checkpoint_saved_before_manifests_restores_with_a_note(tmp_path, reference, caplog):
  workdir = str(tmp_path)
  workdir_lib.train(tiny_vae_config(), workdir, progress=False)
  # A save killed after Orbax's rename, before its manifest: incomplete, the previous is used.
  os.remove(os.path.join(workdir, "checkpoints", "12", ckpt_lib.MANIFEST))
  _, _, step = workdir_lib.restore(workdir)
  assert step == 8
  # A workdir saved before manifests existed has none at all: its steps restore, with a note.
  for step in ("4", "8"):
    os.remove(os.path.join(workdir, "checkpoints", step, ckpt_lib.MANIFEST))
  with caplog.at_level("WARNING"):
    _, state, step = workdir_lib.restore(workdir)
  assert step == 12 and "has no manifest" in caplog.text
  assert_trees_bitwise_equal(reference[1].params, state.params)


def test_when_no_checkpoint_restores_the_run_stops_and_restart_sets_them_aside(tmp_path):
  workdir = str(tmp_path)
  config = tiny_vae_config(num_train_steps=8)
  workdir_lib.train(config, workdir, progress=False)
  records = read_metrics(workdir)
  for step in ("4", "8"):
    _flip_one_bit(_array_files(os.path.join(workdir, "checkpoints", step))[0])
  with pytest.raises(UserError, match=r"none restores \(step 8: file .* step 4: .*--restart"):
    workdir_lib.train(config, workdir, progress=False)
  assert read_metrics(workdir) == records                         # nothing truncated
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["4", "8"]
  state = workdir_lib.train(config, workdir, progress=False, restart=True)
  assert int(state.step) == 8
  assert os.path.isdir(os.path.join(workdir, "checkpoints.before_restart.1"))
  with open(os.path.join(workdir, "metrics.jsonl.before_restart.1")) as f:
    assert len(f.readlines()) == len(records)


def test_a_second_writer_is_refused_at_once_and_a_stale_lock_does_not_block(tmp_path):
  workdir = str(tmp_path / "run")
  os.makedirs(workdir)
  with open(os.path.join(workdir, ".lock"), "w") as f:
    f.write("PID 1 on host gone (a killed run)\n")                # stale: nobody holds it
  first = _launch(workdir)
  _wait_for_checkpoint(workdir, first)
  start = time.time()
  second = subprocess.run(first.args, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert second.returncode == 2, second.stderr[-2000:]
  last = second.stderr.strip().splitlines()[-1]
  assert f"is being trained by PID {first.pid} on host" in last, last
  assert time.time() - start < 120
  first.send_signal(signal.SIGTERM)
  first.communicate(timeout=120)
  steps = [r["step"] for r in read_metrics(workdir) if "loss" in r]
  assert steps == sorted(set(steps))                              # one writer: no doubles


def test_a_full_disk_stops_with_one_line_and_the_relaunch_resumes_exactly(tmp_path, reference,
                                                                          monkeypatch):
  ref_dir, ref_state = reference
  workdir = str(tmp_path)
  original = ckpt_lib.ocp.CheckpointManager.save

  def save_fails_at_8(self, step, *args, **kwargs):
    if step == 8:
      raise ValueError("RESOURCE_EXHAUSTED: ... write failed: No space left on device")
    return original(self, step, *args, **kwargs)
  monkeypatch.setattr(ckpt_lib.ocp.CheckpointManager, "save", save_fails_at_8)
  with pytest.raises(UserError, match=r"Could not write checkpoint step 8 to .*checkpoints "
                                      r"\(no space left on the device\)"):
    workdir_lib.train(tiny_vae_config(), workdir, progress=False)
  monkeypatch.undo()
  assert ckpt_lib.verify_manifest(os.path.join(workdir, "checkpoints", "4"))   # intact
  # The disk filled while a metrics line was written: a torn last line.
  with open(os.path.join(workdir, "metrics.jsonl"), "a") as f:
    f.write('{"step": 9, "lo')
  resumed = workdir_lib.train(tiny_vae_config(), workdir, progress=False)
  assert_trees_bitwise_equal(ref_state.params, resumed.params)
  assert losses(workdir) == losses(ref_dir)


def test_write_errors_name_their_cause():
  assert ckpt_lib.write_error(OSError(errno.EROFS, "x", "/ckpt/4")) == \
      "read-only file system: /ckpt/4"
  assert ckpt_lib.write_error(OSError(errno.EDQUOT, "x")) == "disk quota exceeded"
  assert ckpt_lib.write_error(KeyError("a bug")) is None          # not translated


def test_ctrl_c_saves_exits_130_and_the_relaunch_is_bitwise(tmp_path):
  reference = _launch(str(tmp_path / "reference"), steps=60)
  assert reference.wait(timeout=600) == 0
  workdir = str(tmp_path / "interrupted")
  proc = _launch(workdir, steps=60)
  _wait_for_checkpoint(workdir, proc)
  proc.send_signal(signal.SIGINT)
  out, err = proc.communicate(timeout=120)
  assert proc.returncode == 130, err[-2000:]
  assert "SIGINT" in out and "Traceback" not in err
  stopped = max(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")) if s.isdigit())
  assert stopped < 60
  assert _launch(workdir, steps=60).wait(timeout=600) == 0
  _, a, _ = workdir_lib.restore(str(tmp_path / "reference"))
  _, b, _ = workdir_lib.restore(workdir)
  assert_trees_bitwise_equal(a.params, b.params)
  assert losses(workdir) == losses(str(tmp_path / "reference"))


def test_deliberate_continuation_is_allowed_recorded_and_bounded(tmp_path):
  workdir = str(tmp_path)
  workdir_lib.train(tiny_vae_config(num_train_steps=8), workdir, progress=False)
  # Longer, and skipping non-finite steps: no new workdir needed.
  state = workdir_lib.train(tiny_vae_config(num_train_steps=12, on_nonfinite="skip"), workdir,
                            progress=False)
  assert int(state.step) == 12
  lower = tiny_vae_config(num_train_steps=16, on_nonfinite="skip")
  first_lr = lower.optimizer.learning_rate
  lower.optimizer.learning_rate = 1e-4
  with pytest.raises(UserError, match="--resume_changes=optimizer.learning_rate"):
    workdir_lib.train(lower, workdir, progress=False)
  state = workdir_lib.train(lower, workdir, progress=False,
                            resume_changes=["optimizer.learning_rate"])
  assert int(state.step) == 16
  with open(os.path.join(workdir, "config.json")) as f:
    saved = json.load(f)
  assert saved["optimizer"]["learning_rate"] == 1e-4 and saved["num_train_steps"] == 16
  history = saved[workdir_lib.HISTORY_KEY]
  assert [h["step"] for h in history] == [8, 12]
  assert history[0]["changes"] == {"num_train_steps": [8, 12], "on_nonfinite": ["halt", "skip"]}
  assert history[1]["changes"] == {"num_train_steps": [12, 16],
                                   "optimizer.learning_rate": [first_lr, 1e-4]}
  assert workdir_lib.load_config(workdir).optimizer.learning_rate == 1e-4
  assert [r["step"] for r in read_metrics(workdir) if "loss" in r] == list(range(1, 17))


def test_a_stop_between_save_and_eval_loses_nothing_and_tensorboard_is_not_doubled(tmp_path):
  workdir = str(tmp_path)
  workdir_lib.train(tiny_vae_config(), workdir, progress=False)
  # As if killed right after the step-12 save: its eval record and sample grid are missing,
  # and (metrics after the checkpoint being cut on resume) TensorBoard had a doubled step.
  path = os.path.join(workdir, "metrics.jsonl")
  records = [r for r in read_metrics(workdir) if not any(k.startswith("eval/") for k in r)]
  with open(path, "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in records)
  os.remove(os.path.join(workdir, "samples", "step_12.png"))
  workdir_lib.train(tiny_vae_config(), workdir, progress=False)
  evals = [r["step"] for r in read_metrics(workdir) if "eval/bits_per_dim" in r]
  assert evals == [12]
  assert os.path.exists(os.path.join(workdir, "samples", "step_12.png"))
  from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
  events = EventAccumulator(os.path.join(workdir, "tensorboard"))
  events.Reload()
  loss_steps = [e.step for e in events.Scalars("loss")]
  assert loss_steps == list(range(1, 13))


def test_every_evaluation_keeps_its_step(tmp_path):
  workdir = str(tmp_path)
  workdir_lib.train(tiny_vae_config(num_train_steps=4, eval_every_steps=4,
                                    checkpoint_every_steps=4), workdir, progress=False)
  workdir_lib.evaluate(workdir, max_examples=16)
  workdir_lib.evaluate(workdir, max_examples=16, iwae_k=2)
  with open(os.path.join(workdir, "eval_history.jsonl")) as f:
    history = [json.loads(line) for line in f]
  assert [(h["step"], h.get("iwae_k")) for h in history] == [(4, None), (4, 2)]
  with open(os.path.join(workdir, "eval.json")) as f:
    assert json.load(f)["iwae_k"] == 2


@pytest.mark.parametrize("field, value, needle", [
    ("checkpoint_every_steps", 0, "config.checkpoint_every_steps=0; it must be >= 1"),
    ("num_train_steps", -5, "config.num_train_steps=-5; it must be a whole number >= 1"),
    ("optimizer.learning_rate", float("nan"), "learning_rate=nan; it must be a finite"),
])
def test_bad_run_fields_are_refused_before_anything_is_written(tmp_path, field, value, needle):
  config = tiny_vae_config(**{field: value})
  with pytest.raises(UserError, match=needle.replace("(", r"\(")):
    workdir_lib.train(config, str(tmp_path / "w"), progress=False)
  assert not os.path.exists(tmp_path / "w" / "config.json")


def test_bad_cli_input_ends_in_one_line_and_help_exits_zero(tmp_path):
  def run(module, *args):
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
  for module in ("experiments.train", "experiments.sample", "experiments.evaluate"):
    assert run(module, "--help").returncode == 0, module
  cases = [
      (["--config=experiments/configs/no_such.py:digits", f"--workdir={tmp_path}/a"],
       "error: --config=experiments/configs/no_such.py: no such file"),
      (["--config=experiments/configs/vae.py:digits", f"--workdir={tmp_path}/b",
        "--config.num_trian_steps=3"],
       "error: unknown config field '--config.num_trian_steps' in an override. Did you mean "
       '"num_train_steps"'),
      (["--config=experiments/configs/vae.py:digits", f"--workdir={tmp_path}/c",
        "--config.checkpoint_every_steps=0"], "error: config.checkpoint_every_steps=0"),
  ]
  for args, needle in cases:
    proc = run("experiments.train", *args)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1].startswith(needle), proc.stderr[-500:]


def test_iwae_k_on_a_paradigm_without_a_bound_is_one_line(tmp_path):
  from tests.train.test_user_paradigms import tiny_gan_config
  workdir = str(tmp_path)
  workdir_lib.train(tiny_gan_config(), workdir, progress=False)
  with pytest.raises(UserError, match="--iwae_k is the importance-weighted bound.*Drop --iwae_k"):
    workdir_lib.evaluate(workdir, iwae_k=4)
