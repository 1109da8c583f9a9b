r"""Precision suite: bfloat16 compute against float32, on this CPU, in quality and step time.

  python -m experiments.benchmark --suite=precision                       # gpt, ddpm, vae; their steps
  python -m experiments.benchmark --suite=precision --only=vae --steps=3 --smoke --out=/tmp/precision

Each model of MODELS (--only: their names) is trained twice through the one training rule
(`benchmark.train`: `gen_jax.workdir.train`, workdirs `<workdir_root>/<dataset>/<name>_<dtype>`
+ `_<N>steps` under --steps=N), once with `config.compute_dtype=float32` and once with
`bfloat16` (parameters, optimizer state and EMA float32 in both: `gen_jax.policy`), the same
seed and batches. Its final checkpoint is evaluated in float32 on the whole split (the loop's
evaluation at its last step, --max_eval=0, or else `gen_jax.workdir.evaluate`: both run
outside the precision policy, in the float32 parameters' dtype): the GPT's validation loss in nats/token, the DDPM's and VAE's test
bits/dim (bounds: the DDPM's VLB with its config's stratified terms, the VAE's ELBO). Reported
per model: both figures, their ratio bf16 / f32, whether it is within 1% relative (the
issue's target), and the median step time in each dtype (`benchmark.probe`: the loop's jitted
step on real batches, --timed_steps steps after compilation and 5 warm-up steps, the two
dtypes probed back to back before training so that they see the same machine load).

The CPU's bfloat16 support is read from /proc/cpuinfo (avx512_bf16, amx_bf16) and both dtypes'
matmul rates are measured in the same run (`matmul_rates`): where the CPU has no native
bfloat16, XLA emulates it and a bfloat16 step is expected to be slower than a float32 one
(mixed precision pays on accelerators: `--suite=accelerator`). Writes `<out>/precision.json`
(meta, rows) and `<out>/precision.md`.
"""
from __future__ import annotations

import datetime
import importlib
import os

import jax
import jax.numpy as jnp

from experiments import benchmark
from gen_jax import workdir as workdir_lib
from gen_jax.eval import speed, tables
from gen_jax.train.metrics import read_metrics

DEFAULTS = {"out": "/tmp/gen_jax_precision", "workdir_root": "/tmp/gen_jax_precision/workdirs",
            "timed_steps": 50, "max_eval": 0}
# name -> (config module, arg, the figure compared: a key of the evaluation record, its label)
MODELS = {"gpt": ("gpt", "shakespeare_small", "nats_per_token", "validation nats/token"),
          "ddpm": ("ddpm", "digits", "bits_per_dim", "test bits/dim (VLB)"),
          "vae": ("vae", "digits", "bits_per_dim", "test bits/dim (ELBO)")}
DTYPES = ("float32", "bfloat16")
TOLERANCE = 0.01          # the target: bf16 within 1% relative of f32
WARMUP_STEPS = 5          # untimed probe steps after the compiled first
# --smoke: smaller nets of the same configs (a test in seconds).
SMOKE = {"gpt": {"num_layers": 1, "embed_dim": 32, "num_heads": 2},
         "ddpm": {"channels": 8, "channel_mult": (1,), "num_res_blocks": 1, "attn_resolutions": (),
                  "groups": 4, "vlb_num_steps": 2},
         "vae": {"channels": (8,), "latent_dim": 2}}


def config_of(name: str, dtype: str, smoke: bool = False):
  """The model's config with `compute_dtype=dtype` (everything else as its file says; its
  net shrunk with `smoke`)."""
  module, arg, _, _ = MODELS[name]
  config = importlib.import_module(f"experiments.configs.{module}").get_config(arg)
  config.compute_dtype = dtype
  if smoke:
    config.model.update(SMOKE[name])
  return config


def cpu_bf16_flags() -> list:
  """The bfloat16 instructions /proc/cpuinfo lists (avx512_bf16, amx_bf16), [] where none."""
  try:
    with open("/proc/cpuinfo") as f:
      flags = next((l.split(":", 1)[1].split() for l in f if l.startswith("flags")), [])
  except OSError:
    return []
  return sorted({"avx512_bf16", "amx_bf16", "amx_tile"} & set(flags))


def matmul_rates(n: int = 1024, iters: int = 10) -> dict:
  """{dtype: GFLOP/s} of a jitted n x n x n matmul (2 n^3 flops, median of `iters`) in each
  dtype: whether bfloat16 runs at float32's speed here."""
  out = {}
  for dtype in DTYPES:
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32).astype(dtype)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32).astype(dtype)
    f = jax.jit(jnp.dot)
    out[dtype] = 2 * n ** 3 / speed.time_call(lambda: f(a, b), iters) / 1e9
  return out


def evaluate_float32(workdir: str, steps: int) -> dict:
  """The float32 whole-split evaluation of the workdir's final checkpoint: the one the loop
  made at its last step where it scored the whole split (outside the precision policy, on the
  float32 parameters: the same function as `gen_jax.workdir.evaluate`), else
  `gen_jax.workdir.evaluate` of the newest checkpoint (kept in eval.json while its step holds)."""
  config = workdir_lib.load_config(workdir)
  if config.get("param_dtype", "float32") != "float32":
    raise SystemExit(f"{workdir}: param_dtype={config.param_dtype}; this suite compares float32 "
                     "parameters evaluated in float32.")
  logged = [r for r in read_metrics(workdir) if r["step"] == steps and "eval/bits_per_dim" in r]
  if logged and not config.get("eval_max_examples"):
    ev = {k.removeprefix("eval/"): v for k, v in logged[-1].items() if k.startswith("eval/")}
    return {**ev, "num_examples": int(ev["num_examples"]), "bound": bool(ev["bound"]),
            "source": "the loop's evaluation at the last step"}
  saved = benchmark._read(os.path.join(workdir, "eval.json"))
  if not (saved and saved.get("step") == steps):
    saved = workdir_lib.evaluate(workdir, split="test")
  return {**saved, "source": "gen_jax.workdir.evaluate"}


def compare(name: str, args, trained: dict) -> dict:
  """One row: both dtypes probed, trained and evaluated in float32."""
  module, arg, key, label = MODELS[name]
  row = {"model": name, "config": f"{module}.py:{arg}", "figure": label}
  for dtype in DTYPES:             # probes first, back to back: the same machine load
    t = benchmark.probe(config_of(name, dtype, args.smoke), args.timed_steps + WARMUP_STEPS, WARMUP_STEPS)[0]
    row[f"ms_per_step_{dtype}"] = 1e3 * t["seconds_per_step"]
    row[f"probe_load_{dtype}"] = [round(t["load_avg_1min_before"], 2), round(t["load_avg_1min_after"], 2)]
  for dtype in DTYPES:
    config = config_of(name, dtype, args.smoke)
    workdir = benchmark.workdir_of(args, config.dataset, f"{name}_{dtype}" + ("_smoke" if args.smoke else ""))
    record = benchmark.train(f"{name}_{dtype}", config, workdir, args, args.log, trained)
    ev = evaluate_float32(workdir, record["num_train_steps"])
    row.update({f"value_{dtype}": ev[key], f"eval_examples_{dtype}": ev["num_examples"],
                f"bound_{dtype}": ev["bound"], f"eval_source_{dtype}": ev["source"], f"steps_{dtype}": record["num_train_steps"],
                f"workdir_{dtype}": workdir, f"train_wall_s_{dtype}": record["train_wall_s"]})
  row["ratio"] = row["value_bfloat16"] / row["value_float32"]
  row["within_1pct"] = bool(abs(row["ratio"] - 1.0) <= TOLERANCE)
  row["time_ratio"] = row["ms_per_step_bfloat16"] / row["ms_per_step_float32"]
  return row


def markdown(rows, meta) -> str:
  caption = [f"Measured {meta['date']} on {meta['machine']}; command: `{meta['command']}`.",
             "Each model trained twice (same seed and batches), compute_dtype float32 and bfloat16 "
             "(parameters, optimizer state, EMA float32); both evaluated in float32 on the whole "
             "split. ratio = bf16 / f32; target |ratio - 1| <= 1%. ms/step: median of "
             f"{meta['timed_steps']} steps of the loop's jitted step after compilation.",
             meta["bf16_note"]]
  columns = [("model", "config", ""), ("steps", "steps_float32", ""), ("figure", "figure", ""),
             ("float32", "value_float32", ".4f"), ("bfloat16", "value_bfloat16", ".4f"),
             ("ratio", "ratio", ".4f"), ("within 1%", lambda r: "yes" if r["within_1pct"] else "no", ""),
             ("f32 ms/step", "ms_per_step_float32", ".2f"), ("bf16 ms/step", "ms_per_step_bfloat16", ".2f"),
             ("bf16 / f32 time", "time_ratio", ".2f")]
  return tables.markdown(columns, rows, caption)


def bf16_note(flags: list, rates: dict) -> str:
  """What this CPU does with bfloat16, from its flags and the measured matmul rates."""
  measured = (f"measured matmul rates: float32 {rates['float32']:.1f}, bfloat16 "
              f"{rates['bfloat16']:.1f} GFLOP/s")
  if not flags:
    return (f"This CPU has no native bfloat16 (no avx512_bf16 / amx_bf16 in /proc/cpuinfo): XLA "
            f"emulates it, so a bfloat16 step is expected to be slower than a float32 one ({measured}).")
  return (f"This CPU lists {', '.join(flags)} in /proc/cpuinfo; whether XLA's CPU backend gains from "
          f"them is what the step times show ({measured}). Mixed precision is for accelerators "
          f"(--suite=accelerator): on a CPU a bfloat16 step is not expected to be faster.")


def run(args) -> dict:
  names = list(args.only) or list(MODELS)
  unknown = sorted(set(names) - set(MODELS))
  if unknown:
    raise SystemExit(f"--only={','.join(unknown)}: the precision suite's models are {', '.join(MODELS)}.")
  flags, rates = cpu_bf16_flags(), matmul_rates(256 if args.smoke else 1024, 3 if args.smoke else 10)
  meta = {"date": datetime.date.today().isoformat(), "machine": speed.machine(), "command": args.command,
          "device": jax.devices()[0].device_kind, "timed_steps": args.timed_steps, "cpu_bf16_flags": flags,
          "matmul_gflops": rates, "bf16_note": bf16_note(flags, rates), "tolerance": TOLERANCE}
  rows, trained = [], {}
  result = {"meta": meta, "rows": rows}
  for name in names:
    rows.append(compare(name, args, trained))
    args.log(f"[precision] {rows[-1]['config']}: f32 {rows[-1]['value_float32']:.4f}, bf16 "
             f"{rows[-1]['value_bfloat16']:.4f} ({rows[-1]['figure']}), ratio {rows[-1]['ratio']:.4f}; "
             f"{rows[-1]['ms_per_step_float32']:.2f} / {rows[-1]['ms_per_step_bfloat16']:.2f} ms/step")
    tables.write(args.out, {"precision.json": result, "precision.md": markdown(rows, meta)})
  result["all_within_1pct"] = all(r["within_1pct"] for r in rows)
  tables.write(args.out, {"precision.json": result, "precision.md": markdown(rows, meta)})
  args.log(markdown(rows, meta))
  return result
