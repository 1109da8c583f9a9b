"""End to end: a tiny GPT trained by `experiments.train` on a text file the test writes, then
`experiments.sample` continues a prompt with it (and refuses characters it never saw)."""
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEXT = "hello world! " * 300


def run(*args, check=True):
  proc = subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True,
                        timeout=600)
  if check:
    assert proc.returncode == 0, proc.stderr[-3000:]
  return proc


def test_gpt_trains_on_a_text_file_and_samples_continue_it(tmp_path):
  (tmp_path / "text").mkdir()
  (tmp_path / "text" / "input.txt").write_text(TEXT)
  workdir = str(tmp_path / "gpt")
  out = run("experiments.train", "--config=experiments/configs/gpt.py:text_file",
            f"--workdir={workdir}", f"--config.manual_dir={tmp_path / 'text'}",
            f"--config.data_dir={tmp_path / 'tfds'}", "--config.seq_len=16",
            "--config.model.num_layers=1", "--config.model.num_heads=2",
            "--config.model.embed_dim=32", "--config.model.sample_num_tokens=20",
            "--config.batch_size=16", "--config.num_train_steps=150",
            "--config.optimizer.learning_rate=1e-2", "--config.optimizer.warmup_steps=10",
            "--config.log_every_steps=50", "--config.eval_every_steps=150",
            "--config.sample_every_steps=150", "--config.checkpoint_every_steps=150").stdout
  summary = json.loads(out.strip().splitlines()[-1])
  # The text is periodic: with >= 3 characters of context the next one is determined, so the
  # validation NLL of a model that learned it is near 0 (uniform over 9 characters: 2.2 nats).
  assert summary["nats_per_token"] < 0.1, summary
  assert os.path.exists(os.path.join(workdir, "samples", "step_150.txt"))
  out = run("experiments.sample", f"--workdir={workdir}", "--num=2", "--prompt=hello",
            "--temperature=0", "--num_tokens=20").stdout
  assert out.splitlines()[0] == "hello world! hello world!", out  # prompt + 20 characters
  proc = run("experiments.sample", f"--workdir={workdir}", "--num=1", "--prompt=hello Q",
             check=False)
  assert proc.returncode != 0 and "'Q'" in proc.stderr.strip().splitlines()[-1]
