"""The command-line contract: train, sample and evaluate a workdir; one-line user errors."""
import json
import os

import numpy as np
from PIL import Image

TINY = ["--config.model.channels=(8,)", "--config.model.latent_dim=2", "--config.batch_size=16",
        "--config.num_train_steps=20", "--config.log_every_steps=10",
        "--config.eval_every_steps=20", "--config.sample_every_steps=20",
        "--config.checkpoint_every_steps=10"]


def test_train_sample_evaluate(tmp_path, cli):
  workdir = str(tmp_path / "vae")
  out = cli("experiments.train", "--config=experiments/configs/vae.py:digits",
            f"--workdir={workdir}", *TINY).stdout
  summary = json.loads(out.strip().splitlines()[-1])
  assert summary["step"] == 20 and summary["bound"] is True
  assert 0 < summary["bits_per_dim"] < 2 * np.log2(17)

  png = str(tmp_path / "grid.png")
  cli("experiments.sample", f"--workdir={workdir}", "--num=16", f"--out={png}")
  assert Image.open(png).size[0] >= 64

  out = cli("experiments.evaluate", f"--workdir={workdir}").stdout.strip().splitlines()
  result = json.loads(out[-1])
  assert result["split"] == "test" and result["bound"] is True
  assert "bits/dim (bound)" in out[-2]
  np.testing.assert_allclose(result["bits_per_dim"], summary["bits_per_dim"], rtol=1e-6)
  with open(os.path.join(workdir, "eval.json")) as f:
    assert json.load(f)["bits_per_dim"] == result["bits_per_dim"]


def test_user_errors_are_one_line(tmp_path, cli):
  cases = [
      (["--config=experiments/configs/vae.py:no_such_data"], "no_such_data"),
      (["--config=experiments/configs/vae.py:digits", "--config.model.decoder=gaussian"],
       "decoder"),
      (["--config=experiments/configs/vae.py:digits", "--config.model.channels=(8,8,8,8)"],
       "divisible"),
  ]
  for i, (args, needle) in enumerate(cases):
    proc = cli("experiments.train", f"--workdir={tmp_path / str(i)}", *args, check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and needle in last, last
    assert "Traceback" not in proc.stderr
  proc = cli("experiments.sample", f"--workdir={tmp_path / 'nothing'}", check=False)
  assert proc.returncode == 2 and "not a gen_jax workdir" in proc.stderr
