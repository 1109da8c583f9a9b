"""Plan a run without running it: parameters, memory per device and FLOPs on a mesh.

    from gen_jax.train.dry_run import plan
    report = plan(config)        # config.compute_dtype / remat / grad_accum_steps as set

Everything is abstract (`jax.eval_shape`, `jit(...).lower(...)` on
ShapeDtypeStructs): no parameter is allocated, so paper-scale configs can be
planned on a laptop with fake CPU devices
(XLA_FLAGS=--xla_force_host_platform_device_count=N, set by
`experiments.train --dry_run` itself).

The step compiled is the loop's own (`loop.jit_train_step`), so its memory is that of the
config's accelerator fields: `compute_dtype` (activations in bfloat16 take half the bytes),
`remat` (the blocks keep only their inputs for the backward pass) and `grad_accum_steps`
(activations of one micro-batch of B / k examples at a time). The bytes per device are
params, optimizer state and EMA (their shardings' shard shapes) and the compiled step's
temporaries (`memory_analysis().temp_size_in_bytes`: activations, gradients, all-gathered
fsdp params, XLA's scratch). They come from XLA's CPU compiler, whose fusion and buffer
assignment differ from a GPU's or TPU's: an estimate of what an accelerator needs, good to
tell which settings fit, not to the last GiB.

XLA's CPU compiler removes the optimisation barriers that keep rematerialised blocks from
being merged back into the forward pass, so on a CPU the compiled temporaries do not show
what `remat` saves. The report therefore also gives `saved_for_backward`: the bytes per
device the backward pass holds from the forward pass (the residuals of the loss's VJP, from
`jax.vjp` under `jax.eval_shape`, for one device's share of one micro-batch, B / (k devices)
examples, split into the activations, which grow with the examples, and the weights and
their compute-dtype copies, which do not), which is what `remat` and
the compute dtype change, on any backend. It counts the weights the backward pass reads
(their compute-dtype copies included); `remat="full"` holds, during its backward pass, what
"blocks" holds, and is reported as that.

The largest per-device batch that fits `FIT_GIB` (80 GiB, an A100 / H100) is estimated from
two compiles, at the config's per-device batch b1 and at b2 = 2 b1: the step's memory
m(b) = state + temporaries(b) + the batch's own bytes is affine in b (activations grow with
the examples; params, optimizer, EMA, gradients and gathered weights do not), so
b_max = b1 + (FIT_GIB - m(b1)) / slope, slope = (m(b2) - m(b1)) / (b2 - b1), rounded down
to a multiple of grad_accum_steps (the micro-batches must divide it). XLA's buffer
assignment is only close to affine: confirm a chosen batch with a dry run at that batch.
"""
from __future__ import annotations

import dataclasses
import math

import jax
import numpy as np

from gen_jax.data.info import planning_info
from gen_jax.train import build as build_lib
from gen_jax.train import loop
from gen_jax.train import sharding as shard_lib

ACCELERATORS_GIB = {"16 GiB (V100 / TPU v3 core pair)": 16, "32 GiB (V100-32G / TPU v4)": 32,
                    "80 GiB (A100 / H100)": 80}
FIT_GIB = 80          # the memory `largest_per_device_batch` is fitted to
SETTINGS = ("compute_dtype", "param_dtype", "remat", "grad_accum_steps")


def _bytes_per_device(abstract_tree) -> int:
  total = 0
  for leaf in jax.tree.leaves(abstract_tree):
    shard = leaf.sharding.shard_shape(leaf.shape)
    total += math.prod(shard) * np.dtype(leaf.dtype).itemsize
  return total


def count_params(abstract_params) -> int:
  return sum(math.prod(x.shape) for x in jax.tree.leaves(abstract_params))


def _planning_info(config):
  """The paper-scale shapes of the config's dataset (or, for synthetic data, of the one it
  copies) where PLANNING_INFO has them; None: `build` reads the dataset's own."""
  name = config.get("synthetic_like", "") if config.dataset == "synthetic" else config.dataset
  info = planning_info(name, config.seq_len, config.preprocess)
  if info is not None and config.dataset == "synthetic":
    info = dataclasses.replace(info, name=f"synthetic/{info.name}")
  return info


def _abstract_batch(run, batch_size: int) -> dict:
  sharding = shard_lib.batch_sharding(run.mesh)
  return {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=sharding)
          for k, v in build_lib.example_batch(run.info, batch_size).items()}


def compile_train_step(run, batch_size: int):
  """(compiled step, abstract batch) of the loop's jitted train step at a global batch."""
  batch = _abstract_batch(run, batch_size)
  step = loop.jit_train_step(run)
  return step.lower(run.abstract_state, batch, run.keys["train"]).compile(), batch


def saved_for_backward(run, batch_size: int) -> dict:
  """Bytes per device the backward pass holds from the forward pass (module docstring):
  "activations" (those of one device's share of one micro-batch) and "weights" (what does
  not grow with the examples: the weights and their compute-dtype copies). The VJP's
  residuals are measured at the share s and at 2 s; being affine in the batch, their
  difference is the activations of s examples. For a multi-player paradigm, the player's
  loss that holds the most."""
  share = max(1, batch_size // shard_lib.batch_shards(run.mesh)
              // int(run.config.get("grad_accum_steps", 1)))
  params = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), run.abstract_state.params)
  key, policy = run.keys["train"], run.policy
  losses = ({None: run.paradigm.loss} if not run.paradigm.players else
            {p: run.paradigm.loss[p] for p in run.paradigm.players})

  def residuals(params, batch, player):
    def loss(q):
      full = q if player is None else {**params, player: q}
      with policy.active():
        return losses[player](policy.cast_to_compute(full), batch, key)[0]
    return jax.vjp(loss, params if player is None else params[player])[1]

  def nbytes(x):   # PRNG keys held for the backward pass: 8 bytes each
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      return math.prod(x.shape) * 8
    return math.prod(x.shape) * np.dtype(x.dtype).itemsize

  def held(examples, player):
    batch = {k: jax.ShapeDtypeStruct(v.shape, v.dtype)
             for k, v in build_lib.example_batch(run.info, examples).items()}
    tree = jax.eval_shape(lambda p, b: residuals(p, b, player), params, batch)
    return sum(nbytes(x) for x in jax.tree.leaves(tree))

  one, two = max((held(share, p), held(2 * share, p)) for p in losses)
  return {"activations": two - one, "weights": 2 * one - two, "per_device_examples": share}


def largest_batch(b1: int, m1: int, b2: int, m2: int, budget: int, multiple: int = 1):
  """The largest per-device batch b (a multiple of `multiple`) with m(b) <= budget, for m
  affine through (b1, m1) and (b2, m2) bytes; None if m does not grow with b; 0 if not even
  `multiple` examples fit."""
  slope = (m2 - m1) / (b2 - b1)
  if slope <= 0:
    return None
  b = math.floor(b1 + (budget - m1) / slope)
  return max(0, b // multiple * multiple)


def plan(config, compile_step: bool = True, stage1=None, fit_batch: bool = True) -> dict:
  """Parameter count, bytes/device of params + optimizer + EMA, step FLOPs and memory under the
  config's compute_dtype, remat and grad_accum_steps, which accelerators it fits and (with
  `fit_batch`, a second compile) the largest per-device batch that fits FIT_GIB.

  `stage1`: a two-stage config's loaded stage-1 run (`gen_jax.workdir.stage1_of`). The
  report is a JSON-able dict: "settings", "bytes_per_device" (params, optimizer, ema,
  activations_and_temporaries, total), "flops_per_step", "fits", "per_device_batch",
  "largest_per_device_batch" and "batch_fit" (the two compiles it is estimated from), and
  "saved_for_backward" (bytes per device the backward pass holds; what remat changes).
  """
  run = build_lib.build(config, stage1=stage1, info=_planning_info(config))
  state = run.abstract_state
  shards = shard_lib.batch_shards(run.mesh)
  accum = int(config.get("grad_accum_steps", 1))
  report = {
      "paradigm": config.paradigm, "dataset": config.dataset,
      "settings": {name: config.get(name, default) for name, default in
                   zip(SETTINGS, ("float32", "float32", "none", 1))},
      "mesh": dict(run.mesh.shape), "devices": run.mesh.size,
      "parameters": count_params(state.params),
      "batch_size": config.batch_size, "per_device_batch": config.batch_size // shards,
      "bytes_per_device": {
          "params": _bytes_per_device(state.params),
          "optimizer": _bytes_per_device(state.opt_state),
          "ema": _bytes_per_device(state.ema_params) if state.ema_params is not None else 0,
      },
  }
  state_bytes = sum(report["bytes_per_device"].values())
  report["saved_for_backward"] = saved_for_backward(run, config.batch_size)
  if compile_step:
    compiled, batch = compile_train_step(run, config.batch_size)
    report["flops_per_step"] = compiled_flops(compiled)
    memory = compiled.memory_analysis()
    if memory is not None:
      report["bytes_per_device"]["activations_and_temporaries"] = int(memory.temp_size_in_bytes)
      if fit_batch:
        b1, m1 = report["per_device_batch"], (state_bytes + int(memory.temp_size_in_bytes)
                                              + _bytes_per_device(batch))
        compiled2, batch2 = compile_train_step(run, 2 * config.batch_size)
        temp2 = int(compiled2.memory_analysis().temp_size_in_bytes)
        b2, m2 = 2 * b1, state_bytes + temp2 + _bytes_per_device(batch2)
        budget = FIT_GIB * 2 ** 30
        report["largest_per_device_batch"] = largest_batch(b1, m1, b2, m2, budget, accum)
        report["batch_fit"] = {
            "per_device_batch": [b1, b2], "bytes_per_device": [m1, m2],
            "activations_and_temporaries": [int(memory.temp_size_in_bytes), temp2],
            "budget_bytes": budget,
            "basis": ("params + optimizer + EMA + temporaries + the batch, affine in the "
                      "per-device batch through the two compiles"),
        }
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
