"""What a benchmark's numbers cost and where they were measured: step time, the budget
rule, the machine's matmul rate, and its description.

    probe, state = time_steps(step_fn, state, batches, train_key)   # {'seconds_per_step', ...}
    config = with_steps(config, budget_steps(probe["seconds_per_step"], budget_minutes=2))

Every family benchmark trains under the same rule: a probe compiles the train step and
times a few steps on real batches, and the run gets floor(60 * budget / seconds_per_step)
steps. Times are wall clock on whatever machine runs them: `machine()` says which.
"""
from __future__ import annotations

import os
import platform
import re
import time
from typing import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np


def budget_steps(seconds_per_step: float, budget_minutes: float, max_steps: int = 0) -> int:
  """Steps that fit the budget: floor(60 * budget / seconds_per_step), at least 1, at most
  `max_steps` (0: no cap)."""
  steps = max(1, int(60.0 * budget_minutes / max(seconds_per_step, 1e-9)))
  return min(steps, max_steps) if max_steps else steps


def with_steps(config, steps: int):
  """`config` shortened to `steps` training steps (0: left as it is), evaluating, sampling and
  saving once, at the end; returns the same config."""
  if steps:
    config.num_train_steps = config.sample_every_steps = steps
    config.checkpoint_every_steps = config.eval_every_steps = steps
  return config


def time_call(fn: Callable, iters: int, warmup: int = 2, stat=np.median) -> float:
  """`stat` (median by default) of the wall seconds of `fn()` over `iters` calls, each
  waited for, after `warmup` untimed calls (compilation)."""
  for _ in range(warmup):
    jax.block_until_ready(fn())
  times = []
  for _ in range(iters):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return float(stat(times))


def decoder_speedup(decode: Callable, lengths=(64, 128, 256), iters: int = 5) -> dict:
  """A cached decoder against a naive one, `decode(n, naive) -> tokens` for n new tokens: the
  fastest of `iters` runs of each (the least disturbed by other processes), whether both give
  the same tokens, and the speed-up at the longest n: {'cached_s_<n>', 'naive_s_<n>',
  'identical_<n>', 'speedup_<max n>'}."""
  out = {}
  for n in lengths:
    for name, naive in (("cached", False), ("naive", True)):
      out[f"{name}_s_{n}"] = time_call(lambda: decode(n, naive), iters, 1, np.min)
    out[f"identical_{n}"] = bool(np.array_equal(np.asarray(decode(n, False)), np.asarray(decode(n, True))))
  n = max(lengths)
  out[f"speedup_{n}"] = out[f"naive_s_{n}"] / out[f"cached_s_{n}"]
  return out


def matmul_rate(n: int = 1024, iters: int = 30) -> dict:
  """{'matmul_n', 'matmul_gflops'}: float32 GFLOP/s of an n x n x n matmul (2 n^3 flops),
  median over `iters` calls: the rate a model-FLOPs utilisation is measured against."""
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
  f = jax.jit(jnp.dot)
  return {"matmul_n": n, "matmul_gflops": 2 * n ** 3 / time_call(lambda: f(a, b), iters) / 1e9}


def transformer_flops_per_token(embed_dim: int, num_layers: int, mlp_ratio: float, seq_len: int,
                                vocab_size: int) -> tuple:
  """(training flops per token, N) of a decoder-only transformer by nanoGPT's estimate
  (PaLM, arXiv:2204.02311, App. B): 6 N + 12 L C T, forward and backward, with N its
  parameters but the position embeddings: per layer 4 C^2 (attention) + 2 r C^2 (MLP of
  ratio r) + 2 C (LayerNorm gains), plus V C (the tied embedding) + C (the final LayerNorm)."""
  c = embed_dim
  n = num_layers * (4 * c * c + 2 * mlp_ratio * c * c + 2 * c) + vocab_size * c + c
  return 6 * n + 12 * num_layers * c * seq_len, n


def time_steps(step_fn, state, batches: Iterator, key, num_steps: int = 4, timed_from: int = 1):
  """Runs a jitted train step `step_fn(state, batch, key) -> (state, metrics)` for `num_steps`
  steps on `batches` (host or device batches, already laid out) and times them.

  The step is compiled first (its flops: XLA's cost analysis, None where XLA reports none).
  Each step's batch is fetched while the step before runs, so the step time (median over the
  steps from `timed_from` on, compilation excluded) leaves the input pipeline out and
  `seconds_per_step_with_data` puts it in. `state` is donated to the step. Returns
  ({'seconds_per_step', 'seconds_per_step_with_data', 'input_pipeline_share',
  'flops_per_step', 'timed_steps', 'wall_s', 'cpu_s' (this process), 'load_avg_1min_before',
  'load_avg_1min_after', 'final_loss' (mean of the last 50 steps' loss)}, the final state).
  """
  batch = next(batches)
  compiled = step_fn.lower(state, batch, key).compile()
  cost = compiled.cost_analysis()
  cost = (cost[0] if isinstance(cost, (list, tuple)) else cost) or {}
  steps, data, losses = [], [], []
  load, start, cpu = os.getloadavg()[0], time.perf_counter(), os.times()
  for _ in range(num_steps):
    t0 = time.perf_counter()
    state, metrics = compiled(state, batch, key)
    t1 = time.perf_counter()
    batch = next(batches)                  # overlaps the step dispatched above
    t2 = time.perf_counter()
    losses.append(float(metrics["loss"]))  # waits for the step
    steps.append(time.perf_counter() - t0 - (t2 - t1))
    data.append(t2 - t1)
  now = os.times()
  step_s = float(np.median(steps[timed_from:]))
  with_data = float(np.median(np.add(steps, data)[timed_from:]))
  return {"seconds_per_step": step_s, "seconds_per_step_with_data": with_data,
          "input_pipeline_share": 1.0 - step_s / with_data,
          "flops_per_step": None if cost.get("flops") is None else float(cost["flops"]),
          "timed_steps": num_steps - timed_from, "wall_s": time.perf_counter() - start,
          "cpu_s": now.user - cpu.user + now.system - cpu.system, "load_avg_1min_before": load,
          "load_avg_1min_after": os.getloadavg()[0], "final_loss": float(np.mean(losses[-50:]))}, state


def loadavg() -> list:
  """The machine's 1, 5 and 15 minute load averages, to 2 decimals."""
  return [round(v, 2) for v in os.getloadavg()]


def machine() -> str:
  """The CPU, its cores, the load at the time of the call, jax's version and platform."""
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "")
  except OSError:
    cpu = platform.processor()
  return (f"{cpu or platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} "
          f"(1 min) at start, jax {jax.__version__} on {jax.devices()[0].platform}")


# HLO opcodes -> the kinds a step's profile is grouped by; a fusion takes the kind of the first
# of KIND_ORDER its called computation contains, else "elementwise".
OP_KINDS = {"convolution": "convolution", "dot": "dot", "reduce": "reduce",
            "transpose": "transpose/copy", "copy": "transpose/copy"}
KIND_ORDER = ("convolution", "dot", "reduce", "transpose", "copy")


def hlo_op_kinds(hlo_text: str) -> dict:
  """{instruction name: kind} of the ops of a compiled module's HLO text (`compiled.as_text()`)
  whose opcode is a fusion or one of OP_KINDS (see KIND_ORDER for fusions)."""
  bodies, current = {}, None
  for line in hlo_text.splitlines():
    if line and not line[0].isspace() and line.rstrip().endswith("{"):
      current = line.split()[1 if line.startswith("ENTRY") else 0].lstrip("%")
      bodies[current] = []
    elif current is not None and " = " in line:
      name, rhs = line.split(" = ", 1)
      opcode = re.search(r"([a-z][\w\-]*)\(", rhs)           # after the (tuple) shape
      bodies[current].append((name.split()[-1].lstrip("%"), opcode and opcode.group(1), rhs))
  opcodes = {comp: {op for _, op, _ in ops} for comp, ops in bodies.items()}
  kinds = {}
  for ops in bodies.values():
    for name, op, rhs in ops:
      if op == "fusion" and "calls=" in rhs:
        called = opcodes.get(rhs.split("calls=")[1].split(",")[0].split()[0].lstrip("%"), set())
        found = next((k for k in KIND_ORDER if k in called), None)
        kinds[name] = OP_KINDS[found] if found else "elementwise"
      elif op in OP_KINDS:
        kinds[name] = OP_KINDS[op]
  return kinds


def op_profile(compiled, args, steps: int = 10, trace_dir: str = "") -> dict:
  """{kind: {"share", "ops_per_step"}} of `compiled(*args)` (an AOT-compiled function returning
  (state, metrics), called `steps` times, feeding its state back) under `jax.profiler.trace`:
  the device time of each op of the perfetto trace, grouped by `hlo_op_kinds`. Shares, not
  times, are the figure: they hold under a shared CPU. Returns the state last too."""
  import glob
  import gzip
  import json
  import tempfile
  kinds = hlo_op_kinds(compiled.as_text())
  trace_dir = trace_dir or tempfile.mkdtemp(prefix="gen_jax_profile_")
  state, rest = args[0], args[1:]
  with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
    for _ in range(steps):
      state, metrics = compiled(state, *rest)
      jax.block_until_ready(metrics)
  [path] = glob.glob(os.path.join(trace_dir, "plugins", "profile", "*", "perfetto_trace.json.gz"))
  with gzip.open(path) as f:
    events = json.load(f)
  events = events["traceEvents"] if isinstance(events, dict) else events
  micros, counts = {}, {}
  for e in events:
    kind = kinds.get(e.get("name")) if e.get("ph") == "X" else None
    if kind:
      micros[kind] = micros.get(kind, 0.0) + float(e.get("dur", 0.0))
      counts[kind] = counts.get(kind, 0) + 1
  total = sum(micros.values()) or 1.0
  return {"kinds": {k: {"share": micros[k] / total, "ops_per_step": counts[k] / steps}
                    for k in sorted(micros, key=micros.get, reverse=True)},
          "state": state}
