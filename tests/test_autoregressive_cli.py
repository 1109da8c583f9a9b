"""End to end: a tiny GPT trained by `experiments.train` on a text file the test writes, then
`experiments.sample` continues a prompt with it (and refuses characters it never saw); a tiny
text2image over a tiny VQ-VAE writes the image grid of a prompt."""
import json
import os

from PIL import Image

TEXT = "hello world! " * 300


def test_gpt_trains_on_a_text_file_and_samples_continue_it(tmp_path, cli):
  (tmp_path / "text").mkdir()
  (tmp_path / "text" / "input.txt").write_text(TEXT)
  workdir = str(tmp_path / "gpt")
  out = cli("experiments.train", "--config=experiments/configs/gpt.py:text_file",
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
  out = cli("experiments.sample", f"--workdir={workdir}", "--num=2", "--prompt=hello",
            "--temperature=0", "--num_tokens=20").stdout
  assert out.splitlines()[0] == "hello world! hello world!", out  # prompt + 20 characters
  proc = cli("experiments.sample", f"--workdir={workdir}", "--num=1", "--prompt=hello Q",
             check=False)
  assert proc.returncode != 0 and "'Q'" in proc.stderr.strip().splitlines()[-1]


def test_text2image_writes_the_image_grid_of_a_prompt(tmp_path, cli):
  data = f"--config.data_dir={tmp_path / 'tfds'}"
  short = ["--config.batch_size=32", "--config.num_train_steps=10", "--config.log_every_steps=10",
           "--config.eval_every_steps=10", "--config.sample_every_steps=10",
           "--config.checkpoint_every_steps=10"]
  vq = str(tmp_path / "vqvae")
  cli("experiments.train", "--config=experiments/configs/vqvae.py:digits", f"--workdir={vq}",
      data, "--config.model.channels=(8,)", "--config.model.code_dim=4",
      "--config.model.num_codes=16", *short)
  stage2 = [data, f"--config.stage1.workdir={vq}", "--config.stage1.model.num_codes=16",
            "--config.model.num_layers=1", "--config.model.num_heads=2",
            "--config.model.embed_dim=16", "--config.num_samples=20", *short]
  t2i = str(tmp_path / "t2i")
  cli("experiments.train", "--config=experiments/configs/text2image.py:digits",
      f"--workdir={t2i}", *stage2)
  png = str(tmp_path / "three.png")
  out = cli("experiments.sample", f"--workdir={t2i}", "--prompt=a handwritten three", "--num=9",
            f"--out={png}").stdout
  assert f"wrote {png} (9 samples" in out
  assert Image.open(png).size == (252, 252)       # 3x3 grid of 8x8 digits, 1-px gaps, x9
