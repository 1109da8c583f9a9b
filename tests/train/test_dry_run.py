"""--dry_run plans paper-scale runs abstractly; parameter counts match the papers."""
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def dry_run(config, *extra):
  proc = subprocess.run([sys.executable, "-m", "experiments.train", f"--config={config}",
                         "--workdir=/nonexistent/never_written", "--dry_run", *extra], cwd=REPO,
                        capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stdout


@pytest.mark.parametrize("config, published", [
    ("experiments/configs/gpt.py:owt_124m", 124e6),     # GPT-2 small (Radford et al. 2019; nanoGPT: 124M)
    ("experiments/configs/ddpm.py:cifar10", 35.7e6),    # Ho et al. 2020, Sec. 4: 35.7M
])
def test_paper_scale_parameter_counts(config, published):
  report, _ = dry_run(config, "--dry_run_devices=64", "--dry_run_compile=false")
  assert abs(report["parameters"] - published) / published < 0.02, report["parameters"]
  if report["mesh"]["fsdp"] > 1:
    # fsdp splits the large matrices: float32 params per device well below the replicated size.
    assert report["bytes_per_device"]["params"] < 4 * report["parameters"] / 2


def test_dry_run_compiles_the_step_on_a_fake_mesh():
  report, text = dry_run("experiments/configs/vae.py:digits", "--config.mesh=data=4,fsdp=2")
  assert report["mesh"] == {"data": 4, "fsdp": 2}
  assert report["flops_per_step"] > 0
  assert report["bytes_per_device"]["activations_and_temporaries"] > 0
  assert report["bytes_per_device"]["optimizer"] >= report["bytes_per_device"]["params"]
  assert "fits 16 GiB" in text
  assert not os.path.exists("/nonexistent/never_written")


def test_dry_run_names_its_settings_and_the_largest_batch():
  _, text = dry_run("experiments/configs/vae.py:digits", "--config.compute_dtype=bfloat16",
                    "--config.remat=blocks", "--config.grad_accum_steps=2",
                    "--dry_run_devices=2")
  assert ("under compute_dtype=bfloat16, param_dtype=float32, remat=blocks, "
          "grad_accum_steps=2") in text
  assert "largest per-device batch in 80 GiB: " in text


def test_plan_reports_the_accelerator_fields_and_a_largest_batch_from_two_compiles():
  """The largest batch is the affine fit through two compiles of the loop's step, which the
  test makes itself: m(b) = state + temporaries(b) + batch bytes."""
  import math

  from gen_jax.train import build as build_lib
  from gen_jax.train import dry_run as dry_run_lib
  from tests.train.conftest import tiny_vae_config

  config = tiny_vae_config(grad_accum_steps=2)
  report = dry_run_lib.plan(config)
  assert report["settings"] == {"compute_dtype": "float32", "param_dtype": "float32",
                                "remat": "none", "grad_accum_steps": 2}
  memory = report["bytes_per_device"]
  assert memory["optimizer"] >= memory["params"] > 0 and memory["ema"] == 0
  state = memory["params"] + memory["optimizer"] + memory["ema"]
  run = build_lib.build(config)
  points = []
  for batch_size in (8, 16):
    compiled, batch = dry_run_lib.compile_train_step(run, batch_size)
    batch_bytes = sum(v.size * v.dtype.itemsize for v in batch.values())   # one device
    points.append((batch_size, state + compiled.memory_analysis().temp_size_in_bytes + batch_bytes))
  assert report["batch_fit"]["per_device_batch"] == [8, 16]
  assert report["batch_fit"]["bytes_per_device"] == [m for _, m in points]
  assert memory["activations_and_temporaries"] == report["batch_fit"]["activations_and_temporaries"][0]
  (b1, m1), (b2, m2) = points
  budget = 80 * 2 ** 30
  expected = math.floor(b1 + (budget - m1) * (b2 - b1) / (m2 - m1)) // 2 * 2
  assert report["largest_per_device_batch"] == expected
  assert expected % 2 == 0 and expected > 16
  # The estimate's memory fits the budget and two more examples' would not.
  slope = (m2 - m1) / (b2 - b1)
  assert m1 + (expected - b1) * slope <= budget < m1 + (expected + 2 - b1) * slope
  assert report["fits"]["80 GiB (A100 / H100)"]


def test_a_synthetic_paper_scale_config_plans_with_its_datasets_shapes():
  from experiments.configs import gpt
  from gen_jax.train import dry_run as dry_run_lib

  config = gpt.get_config("owt_124m")
  config.mesh = "data=-1,fsdp=1"
  config.batch_size = 8
  real = dry_run_lib.plan(config, compile_step=False)
  config.dataset = "synthetic"
  synthetic = dry_run_lib.plan(config, compile_step=False)
  assert synthetic["parameters"] == real["parameters"]
  assert synthetic["bytes_per_device"] == real["bytes_per_device"]
  assert "largest_per_device_batch" not in synthetic      # it needs the compiled step
