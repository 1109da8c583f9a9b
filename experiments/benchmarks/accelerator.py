r"""Accelerator suite: step time, throughput, FLOPs and MFU of the paper-scale configs, one device.

  python -m experiments.benchmark --suite=accelerator --out=/tmp/accelerator      # ~8 min on one GPU
  python -m experiments.benchmark --suite=accelerator --smoke --out=/tmp/acc       # tiny shapes, a CPU test
  python -m experiments.benchmark --suite=accelerator --only=gpt_owt_124m --dtypes=bfloat16 --batch=32
  python -m experiments.benchmark --suite=accelerator --parts=memory       # compiled bytes, remat none/blocks

For each config of MODELS (--only: their names) and compute dtype (--dtypes), the config is
trained on synthetic data (`--config.dataset=synthetic`: random batches of its dataset's
shapes made on device, no input pipeline) on one device (mesh data=1), at a per-device batch
that fits one 80 GB device (BATCH, or --batch for every model). The loop's jitted train step
(`loop.jit_train_step`, parameters, optimizer state and EMA float32 in both dtypes) is
compiled, run for 3 warm-up steps and then --timed_steps (>= 50) steps, each waited for; its
batch is made before its clock starts. Reported per (model, dtype):
* seconds_per_step: the median step time; tokens/s (GPT: batch x seq_len) or images/s;
* xla_flops_per_step: XLA's cost analysis of the compiled step (`dry_run.compiled_flops`:
  every op it counts; custom calls such as cuDNN's attention count 0);
* model_flops_per_step: the GPT's analytic count (PaLM, arXiv:2204.02311 App. B; nanoGPT's
  `estimate_mfu`) 6 N + 12 L T C per token, N its parameters but the position embeddings,
  L layers, T = seq_len, C the width (`gpt_flops_per_token`); the others: XLA's count;
* mfu = model_flops_per_step / seconds_per_step / peak, and mfu_xla with XLA's count, where
  peak is the device's dense peak for the dtype (`device_peak`): NVIDIA H100 SXM / H200
  989 TFLOP/s bfloat16, 495 TF32, 67 float32 without tensor cores (H100 PCIe 756 / 378 / 51;
  A100 312 / 156 / 19.5). A float32 step's peak is TF32's when its matmuls run on the tensor
  cores (JAX's default precision on such GPUs: seen as a float32 matmul rate above the
  non-tensor peak), else the non-tensor one; both MFUs are given. On a CPU or an unknown
  device the peak is a jitted n x n matmul's rate in that dtype measured in the same run
  (`matmul_rate`, also measured on GPUs, beside the datasheet's).
The GPT runs its attention through cuDNN's fused kernel on a GPU in bfloat16
(model.attention_impl=cudnn; float32 attention is XLA's either way). Targets (issue 21, one
H100): GPT-124M bfloat16 MFU >= 35% and >= 2x its float32 tokens/s; the DDPM U-Net bfloat16
>= 2x its float32 images/s. A (model, dtype) that fails (e.g. out of memory) is recorded with
its error and the suite goes on. `<out>/accelerator.json` (and .md) is rewritten after each
measurement, so a run cut short keeps what it measured.

--parts=memory (alone, or beside the default `throughput`) compiles each (model, dtype, remat
none / blocks) step for the device without running it and records its `memory_analysis()`:
the device compiler's own bytes, beside the memory suite's simulated-CPU plans.
"""
from __future__ import annotations

import datetime
import importlib
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from gen_jax import workdir as workdir_lib
from gen_jax.eval import speed, tables
from gen_jax.train import dry_run, loop

DEFAULTS = {"out": "/tmp/gen_jax_accelerator", "timed_steps": 50, "parts": ["throughput"]}
# name -> (config module, arg, throughput unit)
MODELS = {"gpt_owt_124m": ("gpt", "owt_124m", "tokens"), "ddpm_cifar10": ("ddpm", "cifar10", "images"),
          "glow_cifar10": ("glow", "cifar10", "images")}
# Per-device batch on one 80 GB device, the same in both dtypes. The float32 step is the
# largest: the activations its forward pass saves for the backward pass (gen_jax.train.dry_run.
# saved_for_backward) are 33 GiB for the GPT at 12 x 1024 tokens (nanoGPT's batch; XLA
# attention, whose [B, H, T, T] probabilities dominate), 12 GiB for the DDPM at 128 (the paper's
# batch) and 6 GiB for Glow at 64 (the paper's per-device batch), under the 60 GiB JAX's
# allocator takes of an 80 GB GPU by default.
BATCH = {"gpt_owt_124m": 12, "ddpm_cifar10": 128, "glow_cifar10": 64}
DTYPES = ("float32", "bfloat16")
WARMUP_STEPS = 3
# --smoke: tiny shapes of the same configs (a CPU test in seconds).
SMOKE = {"gpt_owt_124m": {"model.num_layers": 2, "model.num_heads": 2, "model.embed_dim": 32, "seq_len": 32},
         "ddpm_cifar10": {"model.channels": 8, "model.channel_mult": (1,), "model.num_res_blocks": 1,
                          "model.attn_resolutions": (), "model.groups": 4},
         "glow_cifar10": {"model.num_scales": 2, "model.steps_per_scale": 1, "model.hidden": 8}}
SMOKE_BATCH, SMOKE_STEPS = 2, 3
# device_kind substring -> dense peak FLOP/s (NVIDIA datasheets); the first match counts.
PEAKS = (("H100 PCIe", {"bfloat16": 756e12, "tf32": 378e12, "float32": 51e12}),
         ("H100", {"bfloat16": 989e12, "tf32": 495e12, "float32": 67e12}),
         ("H200", {"bfloat16": 989e12, "tf32": 495e12, "float32": 67e12}),
         ("A100", {"bfloat16": 312e12, "tf32": 156e12, "float32": 19.5e12}))
TARGETS = {"gpt_bf16_mfu": 0.35, "gpt_bf16_speedup": 2.0, "ddpm_bf16_speedup": 2.0}


def config_of(name: str, dtype: str, batch: int = 0, smoke: bool = False, attention: str = "xla"):
  """MODELS[name] on synthetic data, one device, per-device batch `batch` (0: BATCH's), in
  compute dtype `dtype` (shrunk with `smoke`); the GPT's attention kernel `attention`."""
  module, arg, _ = MODELS[name]
  config = importlib.import_module(f"experiments.configs.{module}").get_config(arg)
  for field, value in (SMOKE[name] if smoke else {}).items():
    *parents, leaf = field.split(".")
    node = config
    for p in parents:
      node = node[p]
    node[leaf] = value
  config.dataset = "synthetic"            # config.synthetic_like: the config's own dataset
  config.mesh = "data=1,fsdp=1"
  config.batch_size = batch or (SMOKE_BATCH if smoke else BATCH[name])
  config.compute_dtype = dtype
  if module == "gpt":
    config.model.attention_impl = attention
  return config


def gpt_flops_per_token(num_params: int, num_layers: int, seq_len: int, embed_dim: int) -> float:
  """Training FLOPs per token of a decoder-only transformer, forward and backward:
  6 N + 12 L T C (PaLM, arXiv:2204.02311, App. B; nanoGPT's estimate_mfu), N its parameters
  but the position embeddings (6 N: a multiply-add per parameter per token, times 3 for the
  backward), 12 L T C the attention scores and their weighted sum (2 matmuls of T x C per
  token and layer, forward and backward)."""
  return 6 * num_params + 12 * num_layers * seq_len * embed_dim


def gpt_num_params(params) -> int:
  """N of `gpt_flops_per_token`: every parameter but the position embeddings ('wpe')."""
  leaves = jax.tree_util.tree_flatten_with_path(params)[0]
  return int(sum(math.prod(x.shape) for path, x in leaves
                 if "wpe" not in jax.tree_util.keystr(path)))


def matmul_rate(dtype: str, n: int, iters: int = 10) -> float:
  """FLOP/s of a jitted n x n x n matmul in `dtype` (2 n^3 flops, median of `iters` calls)."""
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32).astype(dtype)
  b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32).astype(dtype)
  f = jax.jit(jnp.dot)
  return 2 * n ** 3 / speed.time_call(lambda: f(a, b), iters)


def device_peak(device_kind: str, dtype: str, measured: dict) -> tuple:
  """(peak FLOP/s, its basis) of `dtype` on the device: the datasheet's dense peak where
  PEAKS knows the device (float32: TF32's where the measured float32 matmul rate exceeds the
  non-tensor peak, i.e. the matmuls run on the tensor cores), else the matmul rate `measured`
  ({dtype: FLOP/s}) in this run."""
  for kind, peaks in PEAKS:
    if kind.lower() in device_kind.lower():
      if dtype == "bfloat16":
        return peaks["bfloat16"], f"{kind} bf16 dense datasheet"
      if measured.get("float32", 0.0) > peaks["float32"]:
        return peaks["tf32"], f"{kind} TF32 dense datasheet (float32 matmuls on tensor cores)"
      return peaks["float32"], f"{kind} fp32 non-tensor datasheet"
  return measured[dtype], f"measured {dtype} matmul rate"


def attention_impl(name: str, dtype: str) -> str:
  """The GPT's attention kernel here: cuDNN's fused one on a GPU in bfloat16, else XLA's."""
  gpu = jax.devices()[0].platform == "gpu"
  return "cudnn" if MODELS[name][0] == "gpt" and gpu and dtype == "bfloat16" else "xla"


def measure(name: str, dtype: str, args, rates: dict, log=print, attention: str = "xla") -> dict:
  """One (model, dtype): compile, warm up, time the loop's train step (see the docstring)."""
  module, _, unit = MODELS[name]
  device = jax.devices()[0]
  config = config_of(name, dtype, args.batch, args.smoke, attention)
  run = workdir_lib.build(config)
  batches = workdir_lib.train_batches(run)
  state = run.init_state(run.put_batch(next(batches)))
  key = run.keys["train"]
  batch = next(batches)
  start = time.perf_counter()
  compiled = loop.jit_train_step(run).lower(state, batch, key).compile()
  compile_s = time.perf_counter() - start
  xla_flops = dry_run.compiled_flops(compiled)
  memory = compiled.memory_analysis()
  steps = SMOKE_STEPS if args.smoke else args.timed_steps
  times, losses = [], []
  for i in range(WARMUP_STEPS + steps):
    batch = jax.block_until_ready(next(batches))
    t0 = time.perf_counter()
    state, metrics = compiled(state, batch, key)
    jax.block_until_ready((state, metrics))
    if i >= WARMUP_STEPS:
      times.append(time.perf_counter() - t0)
    losses.append(float(metrics["loss"]))
  step_s = float(np.median(times))
  per_step = config.batch_size * (config.seq_len if unit == "tokens" else 1)
  row = {"model": name, "config": f"{module}.py:{MODELS[name][1]}", "dtype": dtype,
         "device": device.device_kind, "platform": device.platform, "batch_per_device": config.batch_size,
         "attention_impl": attention if module == "gpt" else None, "compile_s": compile_s,
         "timed_steps": len(times), "seconds_per_step": step_s,
         "seconds_per_step_min": float(np.min(times)), f"{unit}_per_s": per_step / step_s,
         "throughput_unit": f"{unit}/s", "xla_flops_per_step": xla_flops,
         "temp_bytes": None if memory is None else int(memory.temp_size_in_bytes),
         "parameters": int(sum(math.prod(x.shape) for x in jax.tree.leaves(state.params))),
         "first_loss": losses[0], "last_loss": losses[-1], "loss_finite": bool(np.all(np.isfinite(losses)))}
  if module == "gpt":
    m = config.model
    n = gpt_num_params(state.params)
    row.update(gpt_params_n=n, analytic_flops_per_token=gpt_flops_per_token(n, m.num_layers, config.seq_len,
                                                                            m.embed_dim))
    row["model_flops_per_step"] = row["analytic_flops_per_token"] * per_step
    row["model_flops_basis"] = "analytic 6N + 12LTC"
  else:
    row["model_flops_per_step"], row["model_flops_basis"] = xla_flops, "XLA cost analysis"
  peak, basis = device_peak(device.device_kind, dtype, rates)
  row.update(peak_flops=peak, peak_basis=basis, measured_matmul_flops=rates[dtype])
  row["mfu"] = row["model_flops_per_step"] / step_s / peak if row["model_flops_per_step"] else None
  row["mfu_xla"] = xla_flops / step_s / peak if xla_flops else None
  for kind, peaks in PEAKS:                  # float32 against the non-tensor peak, beside TF32's
    if dtype == "float32" and kind.lower() in device.device_kind.lower():
      row["mfu_vs_fp32_nontensor"] = row["model_flops_per_step"] / step_s / peaks["float32"]
      break
  try:
    stats = device.memory_stats() or {}
    row["process_peak_bytes_in_use"] = stats.get("peak_bytes_in_use")   # so far in this process
  except Exception:   # a backend without memory stats (the CPU)
    row["process_peak_bytes_in_use"] = None
  log(f"[accelerator] {name} {dtype}: {1e3 * step_s:.2f} ms/step, {row[f'{unit}_per_s']:,.0f} {unit}/s, "
      f"MFU {100 * (row['mfu'] or float('nan')):.1f}% of {peak / 1e12:.3g} TFLOP/s ({basis})")
  return row


def compiled_memory(name: str, dtype: str, remat: str, args) -> dict:
  """The train step of (model, dtype, remat) compiled for this device, not run: its
  `memory_analysis()` (temporaries, arguments, outputs) in GiB; with the device's own
  compiler, unlike the memory suite's simulated CPU devices."""
  config = config_of(name, dtype, args.batch, args.smoke, attention_impl(name, dtype))
  config.remat = remat
  run = workdir_lib.build(config)
  start = time.perf_counter()
  compiled, _ = dry_run.compile_train_step(run, config.batch_size)
  m = compiled.memory_analysis()
  gib = lambda b: None if m is None else b / 2 ** 30
  return {"model": name, "dtype": dtype, "remat": remat, "batch_per_device": config.batch_size,
          "device": jax.devices()[0].device_kind, "compile_s": time.perf_counter() - start,
          "temp_gib": gib(m and m.temp_size_in_bytes), "argument_gib": gib(m and m.argument_size_in_bytes),
          "output_gib": gib(m and m.output_size_in_bytes)}


def targets(rows: list) -> dict:
  """The issue's targets, from the rows that exist (None where a row is missing)."""
  at = {(r["model"], r["dtype"]): r for r in rows if "error" not in r}
  def speedup(name):
    f32, bf16 = at.get((name, "float32")), at.get((name, "bfloat16"))
    return f32["seconds_per_step"] / bf16["seconds_per_step"] if f32 and bf16 else None
  gpt = at.get(("gpt_owt_124m", "bfloat16"))
  out = {"gpt_bf16_mfu": gpt and gpt["mfu"], "gpt_bf16_speedup": speedup("gpt_owt_124m"),
         "ddpm_bf16_speedup": speedup("ddpm_cifar10"), "glow_bf16_speedup": speedup("glow_cifar10")}
  out["met"] = {k: None if out[k] is None else bool(out[k] >= v) for k, v in TARGETS.items()}
  return out


def markdown(result) -> str:
  meta = result["meta"]
  caption = [f"Measured {meta['date']} on {meta['device']} ({meta['machine']}); command: `{meta['command']}`.",
             f"Synthetic data, one device; median of {meta['timed_steps']} train steps after compilation and "
             f"{WARMUP_STEPS} warm-up steps. MFU = model FLOPs per step / step time / peak (GPT: analytic "
             "6N + 12LTC; others: XLA's count); peak: " + "; ".join(
                 sorted({f"{r['dtype']}: {r['peak_flops'] / 1e12:.4g} TFLOP/s ({r['peak_basis']})"
                         for r in result["rows"] if "error" not in r}))]
  columns = [("model", "model", ""), ("dtype", "dtype", ""), ("batch", "batch_per_device", ""),
             ("ms/step", lambda r: r.get("seconds_per_step") and 1e3 * r["seconds_per_step"], ".2f"),
             ("throughput", lambda r: r.get("tokens_per_s") or r.get("images_per_s"), tables.rate),
             ("unit", "throughput_unit", ""),
             ("model GFLOP/step", lambda r: r.get("model_flops_per_step") and r["model_flops_per_step"] / 1e9, ".4g"),
             ("XLA GFLOP/step", lambda r: r.get("xla_flops_per_step") and r["xla_flops_per_step"] / 1e9, ".4g"),
             ("MFU", lambda r: r.get("mfu") and 100 * r["mfu"], ".1f"),
             ("MFU (XLA flops)", lambda r: r.get("mfu_xla") and 100 * r["mfu_xla"], ".1f"),
             ("error", "error", "")]
  t = result["targets"]
  lines = [f"* {k}: {'—' if t[k] is None else format(t[k], '.3f')} (target >= {v:g}: "
           f"{ {None: 'not measured', True: 'met', False: 'not met'}[t['met'][k]] })" for k, v in TARGETS.items()]
  return tables.markdown(columns, result["rows"], caption) + "\nTargets (one H100):\n" + "\n".join(lines) + "\n"


def run(args) -> dict:
  names = list(args.only) or list(MODELS)
  unknown = sorted(set(names) - set(MODELS)) + sorted(set(args.dtypes) - set(DTYPES))
  if unknown:
    raise SystemExit(f"{', '.join(unknown)}: the accelerator suite measures {', '.join(MODELS)} in "
                     f"{', '.join(DTYPES)}.")
  device = jax.devices()[0]
  n = 256 if args.smoke else 8192 if device.platform == "gpu" else 1024
  rates = {d: matmul_rate(d, n, 3 if args.smoke else 10) for d in DTYPES}
  meta = {"date": datetime.date.today().isoformat(), "machine": speed.machine(), "command": args.command,
          "device": device.device_kind, "platform": device.platform, "device_count": jax.device_count(),
          "smoke": args.smoke, "timed_steps": SMOKE_STEPS if args.smoke else args.timed_steps,
          "warmup_steps": WARMUP_STEPS, "matmul_n": n, "measured_matmul_flops": rates,
          "jax_default_matmul_precision": jax.config.jax_default_matmul_precision}
  rows = []
  result = {"meta": meta, "rows": rows, "targets": targets(rows)}
  start = time.perf_counter()
  dtypes = [d for d in DTYPES if d in args.dtypes]
  if "memory" in args.parts:
    result["memory"] = []
    for name, dtype, remat in ((a, d, m) for a in names for d in dtypes for m in ("none", "blocks")):
      try:
        result["memory"].append(compiled_memory(name, dtype, remat, args))
      except Exception as e:
        if args.smoke:
          raise
        result["memory"].append({"model": name, "dtype": dtype, "remat": remat,
                                 "error": f"{type(e).__name__}: {str(e)[:500]}"})
      args.log(f"[accelerator] memory {result['memory'][-1]}")
      tables.write(args.out, {"accelerator.json": result})
  for name in names if "throughput" in args.parts else ():
    for dtype in dtypes:
      attention, failed = attention_impl(name, dtype), None
      for impl in dict.fromkeys((attention, "xla")):   # cuDNN's kernel refused: XLA's
        try:
          rows.append({**measure(name, dtype, args, rates, args.log, impl),
                       **({"cudnn_error": failed} if failed else {})})
          break
        except Exception as e:     # e.g. out of memory: recorded, and the next one runs
          if args.smoke:
            raise
          failed = f"{type(e).__name__}: {str(e)[:500]}"
          args.log(f"[accelerator] {name} {dtype} (attention {impl}) failed: {failed}")
      else:
        rows.append({"model": name, "dtype": dtype, "error": failed})
      result.update(targets=targets(rows), wall_s=time.perf_counter() - start)
      tables.write(args.out, {"accelerator.json": result, "accelerator.md": markdown(result)})
  args.log(markdown(result))
  return result
