"""Two local CPU processes under jax.distributed train exactly like one process."""
import json
import os
import socket
import subprocess
import sys

import numpy as np

from gen_jax.train.metrics import read_metrics

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ARGS = ["--config=experiments/configs/vae.py:digits", "--config.model.channels=(8,)",
        "--config.model.latent_dim=2", "--config.batch_size=8", "--config.num_train_steps=6",
        "--config.log_every_steps=1", "--config.eval_every_steps=6",
        "--config.sample_every_steps=6", "--config.checkpoint_every_steps=3"]


def free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def launch(workdir, *extra):
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  env.pop("XLA_FLAGS", None)
  return subprocess.Popen([sys.executable, "-m", "experiments.train", f"--workdir={workdir}",
                           *ARGS, *extra], cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


def test_two_processes_match_one(tmp_path):
  single = launch(str(tmp_path / "single"))
  out, err = single.communicate(timeout=600)
  assert single.returncode == 0, err[-3000:]
  port = free_port()
  procs = [launch(str(tmp_path / "multi"), f"--coordinator_address=127.0.0.1:{port}",
                  "--num_processes=2", f"--process_id={i}") for i in range(2)]
  outs = [p.communicate(timeout=600) for p in procs]
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  one = [r["loss"] for r in read_metrics(str(tmp_path / "single")) if "loss" in r]
  two = [r["loss"] for r in read_metrics(str(tmp_path / "multi")) if "loss" in r]
  assert len(one) == 6
  np.testing.assert_allclose(two, one, rtol=1e-5, atol=1e-5)
  # Process 0 reports the same test bits/dim as the single process.
  final_one = json.loads(out.strip().splitlines()[-1])
  final_two = json.loads(outs[0][0].strip().splitlines()[-1])
  np.testing.assert_allclose(final_two["bits_per_dim"], final_one["bits_per_dim"], rtol=1e-5)
  assert (tmp_path / "multi" / "samples" / "step_6.png").exists()
  assert sorted(os.listdir(tmp_path / "multi" / "checkpoints" / "6" / "data")) == [
      "commit_success.txt", "process_0-of-2.json", "process_1-of-2.json"]
