"""Plan a run without running it: parameters, memory per device and FLOPs on a mesh.

Everything is abstract (`jax.eval_shape`, `jit(...).lower(...)` on
ShapeDtypeStructs): no parameter is allocated, so paper-scale configs can be
planned on a laptop with fake CPU devices
(XLA_FLAGS=--xla_force_host_platform_device_count=N, set by
`experiments.train --dry_run` itself).
"""
from __future__ import annotations

import dataclasses
import math

import jax
import numpy as np

from gen_jax.data.info import PLANNING_INFO
from gen_jax.train import build as build_lib
from gen_jax.train import loop
from gen_jax.train import sharding as shard_lib

ACCELERATORS_GIB = {"16 GiB (V100 / TPU v3 core pair)": 16, "32 GiB (V100-32G / TPU v4)": 32,
                    "80 GiB (A100 / H100)": 80}


def _bytes_per_device(abstract_tree) -> int:
  total = 0
  for leaf in jax.tree.leaves(abstract_tree):
    shard = leaf.sharding.shard_shape(leaf.shape)
    total += math.prod(shard) * np.dtype(leaf.dtype).itemsize
  return total


def count_params(abstract_params) -> int:
  return sum(math.prod(x.shape) for x in jax.tree.leaves(abstract_params))


def plan(config, compile_step: bool = True, stage1=None) -> dict:
  """Parameter count, bytes/device of params + optimizer + EMA, step FLOPs and memory
  (`stage1`: a two-stage config's loaded stage-1 run, `gen_jax.workdir.stage1_of`)."""
  info = PLANNING_INFO.get(config.dataset)
  if info is not None and info.kind == "text":
    info = dataclasses.replace(info, shape=(config.seq_len + 1,))
  run = build_lib.build(config, stage1=stage1, info=info)
  state = run.abstract_state
  report = {
      "paradigm": config.paradigm, "dataset": config.dataset,
      "mesh": dict(run.mesh.shape), "devices": run.mesh.size,
      "parameters": count_params(state.params),
      "bytes_per_device": {
          "params": _bytes_per_device(state.params),
          "optimizer": _bytes_per_device(state.opt_state),
          "ema": _bytes_per_device(state.ema_params) if state.ema_params is not None else 0,
      },
  }
  if compile_step:
    batch = build_lib.example_batch(run.info, config.batch_size)
    batch_sharding = shard_lib.batch_sharding(run.mesh)
    abstract_batch = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=batch_sharding)
                      for k, v in batch.items()}
    compiled = loop.jit_train_step(run).lower(state, abstract_batch, run.keys["train"]).compile()
    report["flops_per_step"] = compiled_flops(compiled)
    memory = compiled.memory_analysis()
    if memory is not None:
      report["bytes_per_device"]["activations_and_temporaries"] = int(memory.temp_size_in_bytes)
  total = sum(report["bytes_per_device"].values())
  report["bytes_per_device"]["total"] = total
  report["fits"] = {name: total <= gib * 2 ** 30 for name, gib in ACCELERATORS_GIB.items()}
  report["fits_basis"] = ("params + optimizer + EMA + compiled step's temporaries" if compile_step
                          else "params + optimizer + EMA only (activations need compile_step)")
  return report


def compiled_flops(compiled) -> float | None:
  """Floating-point operations of one call of a compiled XLA computation, from XLA's cost
  analysis (every op counted, not only the model's matmuls); None where XLA reports none."""
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops = cost.get("flops") if cost else None
  return float(flops) if flops is not None else None
