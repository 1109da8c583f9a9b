"""The accelerator, precision and memory suites of experiments/benchmark.py at tiny sizes
(--smoke, a few steps), and the GPT's analytic FLOPs against a hand count of its parameters."""
from __future__ import annotations

import json
import math
import os

import jax
import pytest

from experiments import benchmark
from experiments.benchmarks import accelerator
from gen_jax import workdir as workdir_lib
from gen_jax.eval import speed

quiet = lambda *a, **k: None


def _read(out, name):
  with open(os.path.join(out, name)) as f:
    return json.load(f)


def _check_rows(rows, names, dtypes):
  assert {(r["model"], r["dtype"]) for r in rows} == {(n, d) for n in names for d in dtypes}
  for r in rows:
    assert "error" not in r
    assert r["timed_steps"] == accelerator.SMOKE_STEPS and r["seconds_per_step"] > 0
    assert r["xla_flops_per_step"] > 0 and r["model_flops_per_step"] > 0
    assert 0 < r["mfu"] <= 1 and 0 < r["mfu_xla"] <= 1
    assert r["peak_basis"] == f"measured {r['dtype']} matmul rate"     # a CPU: the rate measured here
    assert r["peak_flops"] == r["measured_matmul_flops"] > 0
    unit = r["throughput_unit"].split("/")[0]
    per_step = r["batch_per_device"] * (32 if unit == "tokens" else 1)   # smoke seq_len 32
    assert r[f"{unit}_per_s"] == pytest.approx(per_step / r["seconds_per_step"])
    assert r["loss_finite"]


def test_accelerator_smoke_gpt_both_dtypes(tmp_path):
  result = benchmark.run("accelerator", smoke=True, only=["gpt_owt_124m"], out=str(tmp_path), log=quiet)
  saved = _read(tmp_path, "accelerator.json")
  assert saved["rows"] == json.loads(json.dumps(result["rows"]))
  _check_rows(saved["rows"], ["gpt_owt_124m"], accelerator.DTYPES)
  for r in saved["rows"]:
    assert r["model_flops_basis"] == "analytic 6N + 12LTC"
    assert r["model_flops_per_step"] == r["analytic_flops_per_token"] * r["batch_per_device"] * 32
  assert saved["meta"]["device"] == jax.devices()[0].device_kind
  assert saved["targets"]["gpt_bf16_speedup"] > 0 and saved["targets"]["ddpm_bf16_speedup"] is None
  assert "| gpt_owt_124m | bfloat16 |" in (tmp_path / "accelerator.md").read_text()


def test_accelerator_smoke_image_models(tmp_path):
  benchmark.run("accelerator", smoke=True, only=["ddpm_cifar10", "glow_cifar10"], dtypes=["bfloat16"],
                out=str(tmp_path), log=quiet)
  rows = _read(tmp_path, "accelerator.json")["rows"]
  _check_rows(rows, ["ddpm_cifar10", "glow_cifar10"], ["bfloat16"])
  for r in rows:
    assert r["model_flops_basis"] == "XLA cost analysis" and r["mfu"] == r["mfu_xla"]


@pytest.mark.parametrize("use_bias", [True, False])
def test_gpt_flops_formula_against_a_hand_count(use_bias):
  # The smoke GPT: L = 2 layers, C = 32, T = 32, V = 50,257 (GPT-2's BPE), MLP ratio 4.
  L, C, T, V = 2, 32, 32, 50_257
  config = accelerator.config_of("gpt_owt_124m", "float32", smoke=True)
  config.model.use_bias = use_bias
  params = workdir_lib.build(config).abstract_state.params
  # Per layer: qkv C x 3C, output C x C, MLP C x 4C and 4C x C (12 C^2); biases 3C + C + 4C + C
  # and two LayerNorms' gains (+ biases): 2C (4C). Plus the tied token embedding V C and the
  # final LayerNorm C (2C). The position embeddings T C are left out of N.
  per_layer = 12 * C * C + (13 * C if use_bias else 2 * C)
  n = L * per_layer + V * C + (2 * C if use_bias else C)
  total = sum(math.prod(x.shape) for x in jax.tree.leaves(params))
  assert total == n + T * C
  assert accelerator.gpt_num_params(params) == n
  assert accelerator.gpt_flops_per_token(n, L, T, C) == 6 * n + 12 * L * T * C
  if not use_bias:     # speed.transformer_flops_per_token counts the same model without biases
    assert speed.transformer_flops_per_token(C, L, 4, T, V) == (6 * n + 12 * L * T * C, n)
  # GPT-2 small, as nanoGPT counts it: 124M parameters, 85M of them in the blocks.
  n124 = 12 * (12 * 768 ** 2 + 13 * 768) + V * 768 + 2 * 768
  assert 123e6 < n124 + 1024 * 768 < 125e6


def test_device_peak_datasheets_and_measured_rates():
  measured = {"float32": 1e12, "bfloat16": 2e12}
  assert accelerator.device_peak("cpu", "bfloat16", measured)[0] == 2e12
  assert accelerator.device_peak("NVIDIA H100 80GB HBM3", "bfloat16", measured)[0] == 989e12
  assert accelerator.device_peak("NVIDIA H100 80GB HBM3", "float32", measured)[0] == 67e12
  assert accelerator.device_peak("NVIDIA H100 80GB HBM3", "float32", {"float32": 300e12})[0] == 495e12
  assert accelerator.device_peak("NVIDIA H100 PCIe", "bfloat16", measured)[0] == 756e12


def test_precision_smoke(tmp_path):
  """On the embedded digits (the GPT's Tiny Shakespeare is not in a user's clone)."""
  result = benchmark.run("precision", smoke=True, only=["vae"], steps=3, timed_steps=2,
                         workdir_root=str(tmp_path / "w"), out=str(tmp_path), log=quiet)
  (row,) = _read(tmp_path, "precision.json")["rows"]
  assert row["model"] == "vae" and row["steps_float32"] == row["steps_bfloat16"] == 3
  assert row["figure"] == "test bits/dim (ELBO)" and 0 < row["value_float32"] < 50
  assert row["ratio"] == pytest.approx(row["value_bfloat16"] / row["value_float32"])
  assert row["within_1pct"] == (abs(row["ratio"] - 1) <= 0.01)
  # the whole test split of digits
  assert row["eval_examples_float32"] == row["eval_examples_bfloat16"] == 360
  assert row["ms_per_step_float32"] > 0 and row["ms_per_step_bfloat16"] > 0
  assert row["workdir_float32"] != row["workdir_bfloat16"]
  assert workdir_lib.load_config(row["workdir_bfloat16"]).compute_dtype == "bfloat16"
  assert workdir_lib.load_config(row["workdir_bfloat16"]).param_dtype == "float32"
  assert "CPU" in result["meta"]["bf16_note"]
  assert "| vae.py:digits |" in (tmp_path / "precision.md").read_text()


def test_memory_smoke(tmp_path):
  result = benchmark.run("memory", smoke=True, only=["gpt_owt_124m"], dtypes=["float32"],
                         out=str(tmp_path), log=quiet)
  saved = _read(tmp_path, "memory.json")
  assert [(r["dtype"], r["remat"]) for r in saved["rows"]] == [("float32", "none"), ("float32", "blocks")]
  for r in saved["rows"]:
    assert r["devices"] == 2 and r["per_device_batch"] == 2        # the smoke mesh data=2, batch 4
    assert r["params_gib"] > 0 and r["optimizer_gib"] > r["params_gib"] and r["temporaries_gib"] > 0
    assert r["saved_gib"] > 0 and r["largest_per_device_batch"] > r["per_device_batch"]
  (ratios,) = result["ratios"]
  assert ratios["saved_remat_float32"] == pytest.approx(
      saved["rows"][0]["saved_gib"] / saved["rows"][1]["saved_gib"])
  assert "| gpt_owt_124m | float32 | blocks |" in (tmp_path / "memory.md").read_text()
