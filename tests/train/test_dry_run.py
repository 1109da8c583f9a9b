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
