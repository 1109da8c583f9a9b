r"""Memory suite: the paper-scale plans' bytes per device under each dtype and remat setting.

  python -m experiments.benchmark --suite=memory                    # ddpm cifar10, gpt owt_124m
  python -m experiments.benchmark --suite=memory --smoke --out=/tmp/memory   # tiny models (a test)
  python -m experiments.benchmark --suite=memory --only=gpt_owt_124m --dtypes=float32

For each config of CONFIGS (--only: their names) x compute_dtype (float32, bfloat16) x remat
(none, blocks), `gen_jax.train.dry_run.plan` compiles the loop's train step abstractly on the
config's own mesh of simulated CPU devices (the `--dry_run` of experiments.train: nothing is
allocated), at its per-device batch b and at 2b. The plans of one device count run in one
child process (`python -m experiments.benchmarks.memory SPECS`, started with
XLA_FLAGS=--xla_force_host_platform_device_count=N before JAX starts). Per setting, GiB per
device:
* params, optimizer (state), EMA: their shardings' shard shapes (float32 in every setting);
* temporaries: the compiled step's `temp_size_in_bytes` (activations, gradients, gathered
  weights, XLA's scratch; dry_run's `activations_and_temporaries`);
* activations: the part of the temporaries that grows with the batch, temp(2b) - temp(b) =
  the batch-dependent bytes at b (what remat and the compute dtype act on; the gradients and
  gathered weights are the constant part);
* saved: the activations the step's forward pass keeps for its backward pass on one device's
  share of the batch, as JAX's autodiff leaves them before XLA compiles anything (dry_run's
  `saved_for_backward`: the residuals of the loss's VJP that grow with the examples; the
  weights and their compute-dtype copies, which do not, are `saved_weights_gib`);
* the largest per-device batch that fits 80 GiB (dry_run's affine fit through b and 2b).
Ratios per config, on each of activations, temporaries and saved: remat none / blocks in each
dtype (target >= 3x in float32) and, with remat=blocks, float32 / bfloat16 (target >= 1.7x).
XLA's CPU compiler assigns the buffers of the compiled figures, so they estimate an
accelerator's; its CPU pipeline drops remat's optimisation barriers, so its temporaries cannot
show remat (gen_jax.train.dry_run), which the saved residuals, taken before XLA, do not depend
on (`--suite=accelerator --parts=memory` compiles with an accelerator's own compiler).
Writes `<out>/memory.json` (meta, rows, ratios) and `<out>/memory.md`.
"""
from __future__ import annotations

import datetime
import importlib
import json
import math
import os
import subprocess
import sys

from gen_jax.eval import tables

DEFAULTS = {"out": "/tmp/gen_jax_memory"}
CONFIGS = {"ddpm_cifar10": ("ddpm", "cifar10"), "gpt_owt_124m": ("gpt", "owt_124m")}
DTYPES = ("float32", "bfloat16")
REMATS = ("none", "blocks")
TARGETS = {"remat": 3.0, "bf16": 1.7}
MEASURES = ("activations", "temporaries", "saved")   # the activation figures the ratios are of
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GIB = 2 ** 30
_MARK = "MEMORY_PLAN "
# --smoke: the same configs shrunk to compile in seconds, on 2 simulated devices.
SMOKE = {"ddpm_cifar10": {"model.channels": 16, "model.channel_mult": (1, 2), "model.num_res_blocks": 1,
                          "model.attn_resolutions": (16,), "model.groups": 8, "batch_size": 4,
                          "mesh": "data=2,fsdp=1"},
         "gpt_owt_124m": {"model.num_layers": 2, "model.num_heads": 2, "model.embed_dim": 64,
                          "seq_len": 64, "batch_size": 4, "mesh": "data=2,fsdp=1"}}


def config_of(name: str, dtype: str, remat: str, smoke: bool = False):
  """CONFIGS[name] with compute_dtype and remat set (and shrunk with `smoke`)."""
  module, arg = CONFIGS[name]
  config = importlib.import_module(f"experiments.configs.{module}").get_config(arg)
  for field, value in (SMOKE[name] if smoke else {}).items():
    *parents, leaf = field.split(".")
    node = config
    for p in parents:
      node = node[p]
    node[leaf] = value
  config.compute_dtype, config.remat = dtype, remat
  return config


def mesh_devices(mesh: str) -> int:
  """The devices a mesh string ("data=8,fsdp=8") names: the product of its sizes."""
  sizes = [int(part.split("=")[1]) for part in mesh.split(",") if part]
  if any(s < 1 for s in sizes):
    raise SystemExit(f"mesh {mesh!r}: the memory suite plans fixed meshes (no -1 sizes).")
  return math.prod(sizes)


def plan_row(spec: dict) -> dict:
  """One setting planned in this process (its devices already simulated): the plan's
  figures in GiB per device."""
  from gen_jax.train import dry_run
  config = config_of(spec["name"], spec["dtype"], spec["remat"], spec["smoke"])
  report = dry_run.plan(config)
  b = report["bytes_per_device"]
  fit = report.get("batch_fit", {})
  temps = fit.get("activations_and_temporaries", [b.get("activations_and_temporaries"), None])
  row = {**{k: spec[k] for k in ("name", "dtype", "remat")}, "parameters": report["parameters"],
         "mesh": report["mesh"], "devices": report["devices"], "per_device_batch": report["per_device_batch"],
         "params_gib": b["params"] / GIB, "optimizer_gib": b["optimizer"] / GIB, "ema_gib": b["ema"] / GIB,
         "temporaries_gib": temps[0] / GIB, "total_gib": b["total"] / GIB,
         "activations_gib": None if temps[1] is None else (temps[1] - temps[0]) / GIB,
         "saved_gib": report["saved_for_backward"]["activations"] / GIB,
         "saved_weights_gib": report["saved_for_backward"]["weights"] / GIB,
         "largest_per_device_batch": report.get("largest_per_device_batch"),
         "flops_per_step": report.get("flops_per_step"), "plan": report}
  return row


def plan_in_child(specs: list, devices: int) -> list:
  """`plan_row` of each spec in a child process with `devices` simulated CPU devices."""
  env = {**os.environ, "JAX_PLATFORMS": "cpu",
         "XLA_FLAGS": (os.environ.get("XLA_FLAGS", "") +
                       f" --xla_force_host_platform_device_count={devices}").strip()}
  proc = subprocess.run([sys.executable, "-m", "experiments.benchmarks.memory", json.dumps(specs)],
                        cwd=REPO, env=env, capture_output=True, text=True)
  if proc.returncode:
    raise SystemExit(f"memory suite: planning on {devices} simulated devices failed "
                     f"(exit {proc.returncode}):\n{proc.stderr[-3000:]}")
  return [json.loads(l[len(_MARK):]) for l in proc.stdout.splitlines() if l.startswith(_MARK)]


def _ratio(a, b):
  return a / b if a is not None and b else None


def ratios(rows: list) -> list:
  """Per config and measure (MEASURES): remat none / blocks in each dtype, float32 / bfloat16
  under remat=blocks, and whether both targets are met (None where a setting is missing)."""
  out = []
  for name in dict.fromkeys(r["name"] for r in rows):
    at = {(r["dtype"], r["remat"]): r for r in rows if r["name"] == name}
    entry = {"name": name}
    for what in MEASURES:
      gib = {key: row.get(f"{what}_gib") for key, row in at.items()}
      for dtype in DTYPES:
        entry[f"{what}_remat_{dtype}"] = _ratio(gib.get((dtype, "none")), gib.get((dtype, "blocks")))
      entry[f"{what}_bf16_blocks"] = _ratio(gib.get(("float32", "blocks")), gib.get(("bfloat16", "blocks")))
      remat, bf16 = entry[f"{what}_remat_float32"], entry[f"{what}_bf16_blocks"]
      entry[f"{what}_targets_met"] = (None if remat is None or bf16 is None else
                                      bool(remat >= TARGETS["remat"] and bf16 >= TARGETS["bf16"]))
    out.append(entry)
  return out


def markdown(rows, summary, meta) -> str:
  caption = [f"Planned {meta['date']} on simulated CPU devices (XLA's CPU compiler); command: "
             f"`{meta['command']}`.",
             "GiB per device; activations = temp(2b) - temp(b), the bytes that grow with the "
             "per-device batch b; temporaries = the compiled step's temp buffers (activations, "
             "gradients, gathered weights, scratch); saved = the activations among the residuals "
             "JAX's autodiff keeps from the forward for the backward pass (before XLA); largest "
             "batch: per device, in 80 GiB."]
  columns = [("config", "name", ""), ("dtype", "dtype", ""), ("remat", "remat", ""),
             ("batch/device", "per_device_batch", ""), ("params", "params_gib", ".3f"),
             ("optimizer", "optimizer_gib", ".3f"), ("EMA", "ema_gib", ".3f"),
             ("activations", "activations_gib", ".3f"), ("temporaries", "temporaries_gib", ".3f"),
             ("saved", "saved_gib", ".3f"),
             ("total", "total_gib", ".3f"), ("largest batch in 80 GiB", "largest_per_device_batch", "")]
  text = tables.markdown(columns, rows, caption)
  summary_rows = [{"name": r["name"], "measure": what,
                   **{k: r[f"{what}_{k}"] for k in ("remat_float32", "remat_bfloat16", "bf16_blocks",
                                                    "targets_met")}}
                  for r in summary for what in MEASURES]
  columns = [("config", "name", ""), ("measure", "measure", ""),
             (f"none / blocks, f32 (>= {TARGETS['remat']:g})", "remat_float32", ".2f"),
             ("none / blocks, bf16", "remat_bfloat16", ".2f"),
             (f"f32 / bf16, blocks (>= {TARGETS['bf16']:g})", "bf16_blocks", ".2f"),
             ("targets met", lambda r: {None: "—", True: "yes", False: "no"}[r["targets_met"]], "")]
  return text + "\n" + tables.markdown(columns, summary_rows)


def run(args) -> dict:
  names = list(args.only) or list(CONFIGS)
  unknown = sorted(set(names) - set(CONFIGS))
  if unknown:
    raise SystemExit(f"--only={','.join(unknown)}: the memory suite's configs are {', '.join(CONFIGS)}.")
  dtypes = [d for d in DTYPES if d in args.dtypes]
  specs = {}
  for name in names:
    devices = mesh_devices(config_of(name, "float32", "none", args.smoke).mesh)
    specs.setdefault(devices, []).extend({"name": name, "dtype": d, "remat": m, "smoke": args.smoke}
                                         for d in dtypes for m in REMATS)
  rows = []
  for devices, group in specs.items():
    args.log(f"[memory] planning {len(group)} settings on {devices} simulated devices")
    rows += plan_in_child(group, devices)
  rows.sort(key=lambda r: (names.index(r["name"]), DTYPES.index(r["dtype"]), REMATS.index(r["remat"])))
  meta = {"date": datetime.date.today().isoformat(), "command": args.command, "smoke": args.smoke,
          "targets": TARGETS, "fit_gib": 80}
  summary = ratios(rows)
  result = {"meta": meta, "rows": rows, "ratios": summary}
  text = markdown(rows, summary, meta)
  tables.write(args.out, {"memory.json": result, "memory.md": text})
  args.log(text)
  return result


def _child(specs_json: str) -> None:
  for spec in json.loads(specs_json):
    print(_MARK + json.dumps(plan_row(spec), default=str), flush=True)


if __name__ == "__main__":
  _child(sys.argv[1])
