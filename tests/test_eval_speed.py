"""gen_jax.eval.speed: the budget rule, the step-time probe, flop counts and decoder timing."""
from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from gen_jax.eval import speed


def test_budget_steps():
  assert speed.budget_steps(0.5, 2.0) == 240          # 60 * 2 / 0.5
  assert speed.budget_steps(0.5, 2.0, max_steps=7) == 7
  assert speed.budget_steps(100.0, 0.01) == 1          # at least one step


def test_with_steps_sets_every_period_to_the_end():
  config = ml_collections.ConfigDict(dict(num_train_steps=9, sample_every_steps=2, checkpoint_every_steps=3,
                                          eval_every_steps=4))
  assert speed.with_steps(config, 5) is config
  assert (config.num_train_steps, config.sample_every_steps, config.checkpoint_every_steps,
          config.eval_every_steps) == (5, 5, 5, 5)
  assert speed.with_steps(config, 0).num_train_steps == 5     # 0 leaves it alone


def test_time_steps_runs_every_step_on_the_next_batch_and_counts_them():
  step = jax.jit(lambda s, b, k: (s + b, {"loss": s + b}), donate_argnums=0)
  batches = iter(jnp.float32(i) for i in range(1, 100))
  timings, state = speed.time_steps(step, jnp.float32(0), batches, jax.random.key(0), num_steps=5, timed_from=2)
  assert float(state) == 1 + 2 + 3 + 4 + 5                   # five steps, batches in order
  assert timings["timed_steps"] == 3 and timings["final_loss"] == pytest.approx(np.mean([1, 3, 6, 10, 15]))
  assert 0 < timings["seconds_per_step"] <= timings["seconds_per_step_with_data"]
  assert 0 <= timings["input_pipeline_share"] < 1


def test_transformer_flops_per_token_by_hand():
  # C = 2, L = 1, r = 4, T = 3, V = 5: per layer 4*4 + 2*4*4 + 2*2 = 52; N = 52 + 10 + 2 = 64.
  flops, n = speed.transformer_flops_per_token(2, 1, 4, 3, 5)
  assert n == 64 and flops == 6 * 64 + 12 * 1 * 2 * 3


def test_decoder_speedup_times_both_and_checks_their_tokens():
  def decode(n, naive):
    if naive:
      time.sleep(0.002)
    return np.arange(n)
  out = speed.decoder_speedup(decode, lengths=(2, 4), iters=2)
  assert out["identical_2"] and out["identical_4"]
  assert out["speedup_4"] == out["naive_s_4"] / out["cached_s_4"] > 1
  differs = speed.decoder_speedup(lambda n, naive: np.arange(n) + naive, lengths=(3,), iters=1)
  assert not differs["identical_3"]


def test_matmul_rate_and_machine():
  rate = speed.matmul_rate(n=64, iters=2)
  assert rate["matmul_n"] == 64 and rate["matmul_gflops"] > 0
  assert "jax" in speed.machine() and len(speed.loadavg()) == 3



HLO = """HloModule jit_step, entry_computation_layout={(f32[4,4]{1,0})->f32[4,4]{1,0}}

%fused_conv (p0: f32[1,4,4,1], p1: f32[3,3,1,1]) -> f32[1,4,4,1] {
  %p0 = f32[1,4,4,1]{3,2,1,0} parameter(0)
  %p1 = f32[3,3,1,1]{3,2,1,0} parameter(1)
  ROOT %convolution.1 = f32[1,4,4,1]{3,2,1,0} convolution(%p0, %p1), window={size=3x3 pad=1_1x1_1}, dim_labels=b01f_01io->b01f
}

%fused_add (p0.1: f32[4,4]) -> f32[4,4] {
  %p0.1 = f32[4,4]{1,0} parameter(0)
  ROOT %add.2 = f32[4,4]{1,0} add(%p0.1, %p0.1)
}

ENTRY %main.3 (x: f32[4,4]) -> (f32[4,4], f32[4,4]) {
  %x = f32[4,4]{1,0} parameter(0)
  %transpose.4 = f32[4,4]{0,1} transpose(%x), dimensions={1,0}
  %add_fusion = f32[4,4]{1,0} fusion(%x), kind=kLoop, calls=%fused_add
  %conv_fusion = f32[1,4,4,1]{3,2,1,0} fusion(%x, %x), kind=kOutput, calls=%fused_conv
  %dot.5 = f32[4,4]{1,0} dot(%x, %x), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  ROOT %tuple.6 = (f32[4,4]{1,0}, f32[4,4]{1,0}) tuple(%add_fusion, %dot.5)
}
"""


def test_hlo_op_kinds_reads_what_each_fusion_computes():
  kinds = speed.hlo_op_kinds(HLO)
  assert kinds["conv_fusion"] == "convolution" and kinds["add_fusion"] == "elementwise"
  assert kinds["transpose.4"] == "transpose/copy" and kinds["dot.5"] == "dot"
  assert kinds["convolution.1"] == "convolution" and "tuple.6" not in kinds and "add.2" not in kinds


def test_op_profile_shares_of_a_compiled_step_add_up_and_name_its_matmul(tmp_path):
  def step(state, x):
    y = jnp.tanh(x @ x.T) + state
    return state + 1.0, {"y": y.sum()}
  x = jnp.ones((256, 256))
  compiled = jax.jit(step).lower(jnp.zeros(()), x).compile()
  out = speed.op_profile(compiled, (jnp.zeros(()), x), steps=3, trace_dir=str(tmp_path))
  kinds = out["kinds"]
  assert float(out["state"]) == 3.0                        # the state went round 3 times
  assert abs(sum(v["share"] for v in kinds.values()) - 1.0) < 1e-9
  assert "dot" in kinds and kinds["dot"]["ops_per_step"] >= 1
