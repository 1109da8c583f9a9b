r"""The cross-family benchmark: every paradigm scored on one scale, and a speed suite.

  python -m experiments.benchmark --suite=quality --dataset=digits   # defaults: 1 min each, 500 samples
  python -m experiments.benchmark --suite=quality --dataset=mnist_idx --budget_minutes=10
  python -m experiments.benchmark --suite=speed [--quick]

Quality suite. The paradigms are discovered, never listed: every
`experiments/configs/<name>.py` whose `get_config(dataset)` returns a config
(those that raise ValueError/KeyError for the dataset are skipped), plus
`--extra_configs=package.module:arg,...` (any module with `get_config(arg)`;
its `config.paradigm` may be a dotted module path). Each is trained by
`gen_jax.train.loop.train` under the same wall-clock budget: a probe compiles
the train step, times a few steps (seconds/step s), and the run gets
num_train_steps = budget / s (capped by --max_steps). The workdir is
`<workdir_root>/<dataset>/<name>_<budget>min[_max<N>]`; a rerun resumes it with
its recorded config.
Two-stage configs (a `config.stage1` naming the run they build on, e.g. a prior
over a tokenizer's codes) need their stage 1 trained first. Its config is found by
discovery too: the config file whose `get_config(stage1.dataset)` has every value
that `config.stage1` expects (its fields other than `workdir` and `step`: paradigm,
dataset, model.* ...). That config is trained under the same budget rule in its own
workdir, `<workdir_root>/<stage1.dataset>/<file>_<budget>min[_max<N>]` (so a stage 1
that is also a row of the table is trained once, and all stage-2 configs naming it
share it), `stage1.workdir` is pointed at it, and stage 2 is then trained and scored
as usual.
Then every model is scored on the same data with the same number of samples:
  * bits/dim on the whole test split (`loop.evaluate`), flagged exact or bound;
  * "FD (<dataset> classifier)" (Frechet distance of the project's classifier
    features, not an FID), precision and recall (k-NN manifolds,
    arXiv:1904.06991) of `--num_samples` samples against the whole test split
    (`gen_jax.eval.features.sample_metrics`, classifier from
    `experiments.train_classifier.load_or_train`);
  * sampling samples/s (after the sampler's compilation), NFE where the sampler
    reports it (`sample(..., return_info=True)`), and training examples/s
    (batch size / probe seconds per step).
It writes `<out>/table.md`, `table.json`, `samples.png` (a grid per paradigm,
side by side) and `bpd_vs_fd.png` (bits/dim vs FD, marker area ~ samples/s).

Speed suite: the family benchmarks' figures, measured in the same run:
the machine's float32 matmul rate, GPT tokens/s and ms/iter on nanoGPT's CPU
recipe and its model-FLOPs utilisation, the input pipeline's share of step time,
KV-cached vs naive decoding (experiments/benchmarks/autoregressive.py), every
one-stage digits paradigm's train step (examples/s, XLA-counted flops per step and its
utilisation of the measured matmul rate; `train_step_utilisation`), and,
given a trained DDPM workdir (`--nfe_workdir`), the NFE -> FD curve of its
samplers (experiments/benchmarks/diffusion.py). Writes `<out>/speed.txt`, `speed.json`.
"""
from __future__ import annotations

import argparse
import datetime
import functools
import glob
import importlib
import inspect
import json
import math
import os
import platform
import sys
import time

import jax
import numpy as np

CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")
NOT_PARADIGM_CONFIGS = ("common", "__init__")   # helpers in configs/, not paradigms


# ------------------------------------------------------------- discovery ---

def discover_configs(dataset: str, extra=(), only=None) -> list:
  """[(name, config)] of every config file accepting `dataset`, then the `extra` specs.

  extra: "module:arg" strings; the module's `get_config(arg)` gives the config, named
    after the module's last component (with "_<arg>" when arg is not `dataset`, so one
    module can give several configs).
  only: names to keep (None keeps all).
  """
  found = []
  for path in sorted(glob.glob(os.path.join(CONFIG_DIR, "*.py"))):
    name = os.path.splitext(os.path.basename(path))[0]
    if name in NOT_PARADIGM_CONFIGS or name.startswith("_"):
      continue
    module = importlib.import_module(f"experiments.configs.{name}")
    if not hasattr(module, "get_config"):
      continue
    try:
      config = module.get_config(dataset)
    except (ValueError, KeyError):
      continue
    found.append((name, config))
  for spec in extra:
    module_name, _, arg = spec.partition(":")
    config = importlib.import_module(module_name).get_config(arg or dataset)
    name = module_name.rsplit(".", 1)[-1]
    found.append((name if arg in ("", dataset) else f"{name}_{arg}", config))
  if only:
    found = [(n, c) for n, c in found if n in only]
  return found


STAGE1_LINK_FIELDS = ("workdir", "step")   # config.stage1 fields that are not expectations


def _flat(d) -> dict:
  """Nested dicts -> {"a.b": value}, values normalised as JSON (tuples become lists)."""
  from gen_jax.train.checkpoint import flat_dict
  return {k: json.loads(json.dumps(v, default=str)) for k, v in flat_dict(d).items()}


def stage1_expectations(config) -> dict | None:
  """The values a two-stage config expects of its stage-1 config ({"paradigm": "vae",
  "model.latent_dim": 16, ...}), or None for a one-stage config."""
  stage1 = config.get("stage1")
  if stage1 is None:
    return None
  return {k: v for k, v in _flat(stage1.to_dict()).items()
          if k.split(".")[0] not in STAGE1_LINK_FIELDS}


def find_stage1(config, extra=()) -> tuple:
  """(name, config) of the discovered config that a two-stage `config` builds on.

  The candidates are the configs accepting `stage1.dataset` (every configs/*.py, and the
  `extra` specs); the first whose values agree with every expectation of `config.stage1`.
  """
  expected = stage1_expectations(config)
  if "dataset" not in expected or "paradigm" not in expected:
    raise SystemExit(f"{config.paradigm}: config.stage1 must name the stage-1 paradigm and "
                     f"dataset to be found, it has {sorted(expected)}.")
  for name, candidate in discover_configs(expected["dataset"], extra):
    flat = _flat(candidate.to_dict())
    if all(k in flat and flat[k] == v for k, v in expected.items()):
      return name, candidate
  raise SystemExit(f"{config.paradigm}: no config in {CONFIG_DIR} (or --extra_configs) gives "
                   f"a stage 1 with {expected}; add one, or change config.stage1.")


# -------------------------------------------------------------- training ---

def probe_step(config, paradigm=None, steps: int = 3) -> dict:
  """The loop's jitted train step on real batches: the median wall seconds of one step
  (after compilation) and the compiled step's flops (XLA cost analysis,
  `gen_jax.train.dry_run.compiled_flops`; None where XLA reports none)."""
  from gen_jax import data as data_lib
  from gen_jax import workdir as workdir_lib
  from gen_jax.train import build as build_lib
  from gen_jax.train import loop, dry_run
  run = workdir_lib.build(config, paradigm=paradigm)
  it = data_lib.train_iterator(config.dataset, batch_size=config.batch_size, seed=config.seed,
                               **workdir_lib.data_kwargs(config))
  state = run.init_state(run.put_batch(build_lib.example_batch(run.info, config.batch_size)))
  key = run.keys["train"]
  batch = run.put_batch(next(it))
  step_fn = loop.jit_train_step(run).lower(state, batch, key).compile()
  state, metrics = step_fn(state, batch, key)
  jax.block_until_ready(metrics)
  times = []
  for _ in range(steps):
    batch = run.put_batch(next(it))
    t = time.perf_counter()
    state, metrics = step_fn(state, batch, key)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - t)
  return {"seconds_per_step": float(np.median(times)), "flops_per_step": dry_run.compiled_flops(step_fn)}


def probe_seconds_per_step(config, paradigm=None, steps: int = 3) -> float:
  """Median wall seconds of one train step (after compilation) through the loop's jitted step."""
  return probe_step(config, paradigm, steps)["seconds_per_step"]


def budget_steps(seconds_per_step: float, budget_minutes: float, max_steps: int = 0) -> int:
  """Steps that fit the budget: floor(60 * budget / seconds_per_step), at least 1, capped."""
  steps = max(1, int(60.0 * budget_minutes / max(seconds_per_step, 1e-9)))
  return min(steps, max_steps) if max_steps else steps


def _without_likelihood(config):
  """The config's paradigm with log_likelihood=None: the loop then skips its own
  end-of-training evaluation (the benchmark evaluates once, afterwards)."""
  from gen_jax import data as data_lib
  from gen_jax.paradigms import load_paradigm
  from gen_jax import workdir as workdir_lib
  info = data_lib.get_info(config.dataset, **workdir_lib.data_kwargs(config))
  return load_paradigm(config, info)._replace(log_likelihood=None)


def train_within_budget(name, config, workdir, budget_minutes, max_steps=0, log=print) -> dict:
  """Trains (or resumes) one paradigm in `workdir`; returns its training record."""
  from gen_jax import workdir as workdir_lib
  record_path = os.path.join(workdir, "benchmark_train.json")
  if os.path.exists(os.path.join(workdir, "config.json")):
    config = workdir_lib.load_config(workdir)       # resume with the recorded config
    record = {}
    if os.path.exists(record_path):
      with open(record_path) as f:
        record = json.load(f)
    log(f"[{name}] resuming {workdir} ({config.num_train_steps} steps)")
    if "probe_seconds_per_step" not in record:    # stopped before its record was written
      record["probe_seconds_per_step"] = probe_seconds_per_step(config, paradigm=_without_likelihood(config))
  else:
    sps = probe_seconds_per_step(config, paradigm=_without_likelihood(config))
    config.num_train_steps = budget_steps(sps, budget_minutes, max_steps)
    record = {"probe_seconds_per_step": sps}
    log(f"[{name}] {sps * 1e3:.1f} ms/step -> {config.num_train_steps} steps")
  steps = config.num_train_steps
  config.eval_every_steps = steps          # relaunch fields: no effect on resuming
  config.sample_every_steps = steps
  config.num_samples = min(config.num_samples, 16)   # the loop's own end-of-run grid: keep it cheap
  config.checkpoint_every_steps = min(config.checkpoint_every_steps, steps)
  t0 = time.perf_counter()
  workdir_lib.train(config, workdir, paradigm=_without_likelihood(config), progress=False)
  wall = time.perf_counter() - t0
  record["train_wall_s"] = record.get("train_wall_s", 0.0) + wall   # summed over resumes
  record.update(num_train_steps=steps, batch_size=config.batch_size)
  if "probe_seconds_per_step" in record:
    record["train_examples_per_s"] = config.batch_size / record["probe_seconds_per_step"]
  with open(record_path, "w") as f:
    json.dump(record, f, indent=1)
  return record


def workdir_suffix(budget_minutes, max_steps=0) -> str:
  """The end of every benchmark workdir's name: `_<budget>min[_max<N>]`."""
  return f"_{budget_minutes:g}min" + (f"_max{max_steps}" if max_steps else "")


def train_once(name, config, workdir, budget_minutes, max_steps=0, log=print, trained=None) -> dict:
  """`train_within_budget`, once per workdir while `trained` ({workdir: record}) is shared."""
  trained = {} if trained is None else trained
  if workdir not in trained:
    trained[workdir] = train_within_budget(name, config, workdir, budget_minutes, max_steps, log=log)
  return trained[workdir]


def with_stage1(config, workdir_root, budget_minutes, max_steps=0, extra=(), log=print,
                trained=None):
  """Readies the stage 1 of a two-stage `config`; returns its name (None for one stage).

  The stage-1 config (`find_stage1`) is trained (or resumed) under the same budget rule in
  `<workdir_root>/<stage1.dataset>/<name><workdir_suffix>`, once per `trained` dict, and
  `config.stage1.workdir` is set to that workdir.
  """
  if stage1_expectations(config) is None:
    return None
  name, stage1_config = find_stage1(config, extra)
  workdir = os.path.join(workdir_root, config.stage1.dataset,
                         name + workdir_suffix(budget_minutes, max_steps))
  train_once(name, stage1_config, workdir, budget_minutes, max_steps, log, trained)
  config.stage1.workdir = workdir
  return name


# ------------------------------------------------------------ evaluation ---

def _accepts(fn, name) -> bool:
  try:
    return name in inspect.signature(fn).parameters
  except (TypeError, ValueError):
    return False


def draw(paradigm, params, rng, num: int, batch: int = 250):
  """(samples [num, ...] numpy, samples/s after compilation, nfe or None), in batches.

  The first batch compiles the sampler; the rate is timed on the others (on the
  first, compilation included, when num is 1).
  """
  batch = min(batch, max(1, math.ceil(num / 2)))    # >= 2 batches: one to compile, one to time
  with_info = _accepts(paradigm.sample, "return_info")
  kwargs = {"return_info": True} if with_info else {}
  fn = jax.jit(functools.partial(paradigm.sample, num=batch, **kwargs))
  outs, nfe, times = [], None, []
  for i in range(math.ceil(num / batch)):
    t = time.perf_counter()
    out = jax.block_until_ready(fn(params, jax.random.fold_in(rng, i)))
    times.append(time.perf_counter() - t)
    if with_info:
      out, info = out
      nfe = int(np.asarray(info["nfe"]))
    outs.append(np.asarray(out))
  timed = times[1:] or times
  rate = batch * len(timed) / sum(timed)
  return np.concatenate(outs)[:num], rate, nfe


EVAL_FILE, GRID_FILE = "benchmark_eval.json", "benchmark_samples.npy"


def evaluate_workdir(name, workdir, net, real01, num_samples, seed=0) -> dict:
  """bits/dim, sample metrics and sampling speed of one trained workdir, and 64 samples.

  Both are cached in the workdir (benchmark_eval.json, benchmark_samples.npy) and
  reused while the checkpoint step, number of samples and seed are unchanged.
  """
  from gen_jax import workdir as workdir_lib
  config = workdir_lib.load_config(workdir)
  key = {"num_samples": num_samples, "seed": seed, "step": config.num_train_steps}
  eval_path, grid_path = os.path.join(workdir, EVAL_FILE), os.path.join(workdir, GRID_FILE)
  if os.path.exists(eval_path) and os.path.exists(grid_path):
    with open(eval_path) as f:
      cached = json.load(f)
    if cached.get("cache_key") == key:
      row = cached["row"]
      row["paradigm"] = name
      return row, np.load(grid_path)
  row, grid = _evaluate(name, workdir, net, real01, num_samples, seed)
  np.save(grid_path, grid)
  with open(eval_path, "w") as f:
    json.dump({"cache_key": key, "row": row}, f, indent=1, default=str)
  return row, grid


def _evaluate(name, workdir, net, real01, num_samples, seed):
  from gen_jax.eval import features
  from gen_jax import workdir as workdir_lib
  from gen_jax.eval import likelihood as likelihood_lib
  run, state, step = workdir_lib.restore(workdir)
  row = {"paradigm": name, "module": run.config.paradigm, "step": int(step)}
  result = likelihood_lib.evaluate(run, state, split="test")
  if result is None:
    row.update(bits_per_dim=None, bound=None)
  else:
    row.update(bits_per_dim=float(result["bits_per_dim"]), bound=bool(result["bound"]))
  params = run.sampling_params(state)
  fake, rate, nfe = draw(run.paradigm, params, jax.random.fold_in(jax.random.key(seed), 7), num_samples)
  row.update(features.sample_metrics(net, real01, fake.astype(np.float32)))
  row.update(samples_per_s=rate, nfe=nfe)
  return row, fake[:64]


# --------------------------------------------------------------- outputs ---

def fd_key(rows) -> str:
  return next((k for r in rows for k in r if k.startswith("FD (")), "FD")


def _fmt(v, decimals=3):
  """A table cell: — for None, `decimals` places for floats."""
  if v is None:
    return "—"
  if isinstance(v, float):
    return "nan" if math.isnan(v) else f"{v:.{decimals}f}"
  return str(v)


def _rate(v):
  """A rate cell: whole numbers from 100 up, 3 significant digits below."""
  if v is None or (isinstance(v, float) and math.isnan(v)):
    return "—"
  return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"


def table_markdown(rows, meta) -> str:
  """The table as markdown, with its date, machine and command above it."""
  fd = fd_key(rows)
  head = ["paradigm", "steps", "bits/dim", "exact/bound", fd, "precision", "recall",
          "samples/s", "NFE", "train ex/s"]
  lines = [f"Measured {meta['date']} on {meta['machine']}; command: `{meta['command']}`.",
           f"Budget {meta['budget_minutes']} min of training per paradigm; bits/dim on the whole "
           f"{meta['split']} split ({meta['num_real']} images); {fd}, precision and recall of "
           f"{meta['num_samples']} samples against it; samples/s timed after the sampler's compilation "
           f"(the second of >= 2 batches on); train ex/s = batch size / median step time of the budget probe."
           + (" 'A (on B)': stage 2 of a two-stage model, trained on the codes of the row B's run "
              "(its own budget; A's numbers exclude B's training)." if any(r.get("stage1") for r in rows)
              else ""), "",
           "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for r in rows:
    flag = "—" if r.get("bound") is None else ("bound" if r["bound"] else "exact")
    label = r["paradigm"] + (f" (on {r['stage1']})" if r.get("stage1") else "")
    cells = [label, str(r.get("step", "")), _fmt(r.get("bits_per_dim")), flag,
             _fmt(r.get(fd), 1), _fmt(r.get("precision")), _fmt(r.get("recall")),
             _rate(r.get("samples_per_s")), _fmt(r.get("nfe")), _rate(r.get("train_examples_per_s"))]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def plot_samples(grids: dict, path: str) -> None:
  """One grid of samples per paradigm, side by side, titled."""
  from matplotlib.figure import Figure
  from gen_jax.utils import images
  names = list(grids)
  fig = Figure(figsize=(2.2 * len(names), 2.6))
  axes = fig.subplots(1, len(names), squeeze=False)
  for ax, name in zip(axes[0], names):
    ax.imshow(images.image_grid(grids[name][:64], ncols=8, upscale=1), interpolation="nearest")
    ax.set_title(name, fontsize=9)
    ax.axis("off")
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=130)


def plot_scatter(rows, path: str) -> None:
  """bits/dim (x) vs FD (y); marker area ~ log10(1 + samples/s); o exact, ^ bound; models without
  a likelihood are drawn at the right edge ("no likelihood")."""
  from matplotlib.figure import Figure
  fd = fd_key(rows)
  ok = [r for r in rows if r.get(fd) is not None and np.isfinite(r[fd])]
  bpds = [r["bits_per_dim"] for r in ok if r.get("bits_per_dim") is not None]
  lo, hi = (min(bpds), max(bpds)) if bpds else (0.0, 1.0)
  span = max(hi - lo, 0.5)
  has_none = any(r.get("bits_per_dim") is None for r in ok)
  none_x = hi + 0.3 * span
  fig = Figure(figsize=(7, 4.8))
  ax = fig.subplots()
  for r in ok:
    x = r["bits_per_dim"] if r.get("bits_per_dim") is not None else none_x
    marker = "x" if r.get("bound") is None else ("^" if r["bound"] else "o")
    size = 30 + 70 * math.log10(1 + max(r.get("samples_per_s") or 0.0, 0.0))
    ax.scatter([x], [r[fd]], s=size, marker=marker, alpha=0.7)
    ax.annotate(r["paradigm"], (x, r[fd]), fontsize=8, xytext=(5, 5), textcoords="offset points")
  ax.set_xlim(lo - 0.15 * span, (none_x if has_none else hi) + 0.2 * span)
  if has_none:
    ticks = [t for t in ax.get_xticks() if lo - 0.15 * span <= t <= hi + 0.1 * span]
    ax.set_xticks(ticks)
    ax.axvline(hi + 0.15 * span, color="0.8", lw=0.8)
    ax.text(none_x, 0.98, "no likelihood", fontsize=7, ha="center", va="top", color="0.4",
            transform=ax.get_xaxis_transform())
  ax.set_xlabel("bits/dim (test; o exact, ^ bound)")
  ax.set_ylabel(fd)
  ax.set_yscale("log")
  ax.set_title("lower-left is better; marker area ~ log(1 + samples/s)", fontsize=9)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=130)


def machine() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "")
  except OSError:
    cpu = platform.processor()
  dev = jax.devices()[0]
  return (f"{cpu or platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} "
          f"(1 min) at start, jax {jax.__version__} on {dev.platform}")


# --------------------------------------------------------------- suites ---

def quality_suite(dataset="digits", budget_minutes=1.0, workdir_root="/tmp/gen_jax_benchmark",
                  out=None, extra_configs=(), only=None, max_steps=0, num_samples=500,
                  command="", progress=True, log=print) -> list:
  """Trains and scores every discovered paradigm; writes the table and plots; returns the rows."""
  import tqdm
  from experiments import train_classifier
  from gen_jax.eval import features
  out = out or os.path.join("results", dataset)
  meta = {"date": datetime.date.today().isoformat(), "machine": machine(), "command": command,
          "dataset": dataset, "budget_minutes": budget_minutes, "max_steps": max_steps,
          "num_samples": num_samples, "split": "test"}
  configs = discover_configs(dataset, extra_configs, only)
  if not configs:
    raise SystemExit(f"No config accepts dataset {dataset!r} (with --only={only}).")
  net = train_classifier.load_or_train(dataset)
  real_levels, _, info = train_classifier.load_split(dataset, "test")
  real01 = features.levels_to_unit(real_levels, info.num_levels)
  meta.update(num_real=int(real01.shape[0]), classifier_test_accuracy=net.meta.get("test_accuracy"))
  suffix = workdir_suffix(budget_minutes, max_steps)
  rows, grids, trained = [], {}, {}     # trained: workdir -> record (each trained once)
  bar = tqdm.tqdm(configs, desc="benchmark", disable=not progress, dynamic_ncols=True)
  for name, config in bar:
    workdir = os.path.join(workdir_root, dataset, name + suffix)
    bar.set_description(f"{name}: train")
    stage1 = with_stage1(config, workdir_root, budget_minutes, max_steps, extra_configs, log,
                         trained)
    record = train_once(name, config, workdir, budget_minutes, max_steps, log, trained)
    bar.set_description(f"{name}: evaluate")
    t0 = time.perf_counter()
    row, grid = evaluate_workdir(name, workdir, net, real01, num_samples)
    row.update({k: record.get(k) for k in ("train_examples_per_s", "train_wall_s",
                                            "probe_seconds_per_step", "batch_size")})
    row["eval_wall_s"] = time.perf_counter() - t0
    row["workdir"] = workdir
    if stage1 is not None:
      row["stage1"] = stage1
    rows.append(row)
    grids[name] = grid
    log(json.dumps(row, default=str))
    write_outputs(rows, grids, meta, out)    # after each paradigm: a stopped run keeps its rows
  bar.close()
  return rows


def write_outputs(rows, grids, meta, out) -> None:
  """table.json, table.md, samples.png and bpd_vs_fd.png in `out`."""
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, "table.json"), "w") as f:
    json.dump({"meta": meta, "rows": rows}, f, indent=1, default=str)
  with open(os.path.join(out, "table.md"), "w") as f:
    f.write(table_markdown(rows, meta))
  plot_samples(grids, os.path.join(out, "samples.png"))
  plot_scatter(rows, os.path.join(out, "bpd_vs_fd.png"))


def speed_suite(quick=False, out="results/speed", nfe_workdir=None, log=print,
                text_dir=None) -> dict:
  """The family benchmarks' speed figures, measured in one run; writes speed.txt/json."""
  from experiments.benchmarks import autoregressive as ar
  res = {"date": datetime.date.today().isoformat(), "machine": machine(), "quick": quick}
  res["matmul"] = ar.matmul_rate(n=256 if quick else 1024, iters=5 if quick else 30)
  log(json.dumps(res["matmul"]))
  train = ar.train(num_iters=15 if quick else 1_010, timed_from=5 if quick else 10,
                   evaluate=False, matmul_gflops=res["matmul"]["matmul_gflops"],
                   manual_dir=text_dir)
  train["input_pipeline_share"] = 1.0 - train["ms_per_iter"] / train["ms_per_iter_with_data"]
  res["gpt_train"] = train
  log(json.dumps(train))
  res["kv_cache"] = (ar.sampling(lengths=(16, 32), iters=1) if quick else ar.sampling())
  log(json.dumps(res["kv_cache"]))
  res["train_steps"] = train_step_utilisation(res["matmul"]["matmul_gflops"],
                                              only=("vae", "gan") if quick else None, log=log)
  if nfe_workdir and not quick:
    from experiments.benchmarks import diffusion
    from gen_jax import workdir as workdir_lib
    cfg = workdir_lib.load_config(nfe_workdir)
    res["nfe_vs_quality"] = diffusion.nfe_part(cfg.dataset, nfe_workdir, cfg.num_train_steps,
                                               out=os.path.join(out, "nfe"))["summary"]
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, "speed.json"), "w") as f:
    json.dump(res, f, indent=1, default=str)
  kv = res["kv_cache"]
  speedup = next(v for k, v in kv.items() if k.startswith("speedup_"))
  lines = [f"gen_jax speed suite, {res['date']}, {res['machine']}{' (quick)' if quick else ''}",
           f"float32 matmul ({res['matmul']['matmul_n']}^3): {res['matmul']['matmul_gflops']:.1f} GFLOP/s",
           f"GPT nanoGPT CPU recipe: {train['ms_per_iter']:.1f} ms/iter, {train['tokens_per_s']:.0f} tokens/s "
           f"({train['timed_iters']} timed iters), MFU {100 * train.get('mfu', float('nan')):.1f}% "
           f"of the measured matmul rate",
           f"input pipeline share of step time: {100 * train['input_pipeline_share']:.1f}%",
           f"KV-cache vs naive decoding ({max(int(k.split('_')[-1]) for k in kv if k.startswith('naive_s_'))}"
           f" tokens): {speedup:.1f}x, tokens identical: "
           f"{all(v for k, v in kv.items() if k.startswith('identical_'))}"]
  lines.append("train steps on digits (XLA-counted flops; MFU = flops/s over the matmul rate):")
  for r in res["train_steps"]:
    lines.append(f"  {r['name']:<16} {r['examples_per_s']:>10,.0f} ex/s  {1e3 * r['seconds_per_step']:7.2f} ms/step  "
                 f"{r['flops_per_step'] / 1e9:8.3f} GFLOP/step  MFU {100 * r['mfu']:5.1f}%")
  if "nfe_vs_quality" in res:
    lines.append("sampler NFE vs FD: " + json.dumps(res["nfe_vs_quality"]))
  with open(os.path.join(out, "speed.txt"), "w") as f:
    f.write("\n".join(lines) + "\n")
  log("\n".join(lines))
  return res


def train_step_utilisation(matmul_gflops: float, dataset: str = "digits", only=None,
                           log=print) -> list:
  """Every discovered one-stage config of `dataset` (two-stage ones need a trained stage 1):
  its train step probed on real batches (`probe_step`), examples/s, and the model-FLOPs
  utilisation = XLA-counted flops per second / the measured float32 matmul rate."""
  rows = []
  for name, config in discover_configs(dataset, only=only):
    if config.get("stage1") is not None:
      continue
    probe = probe_step(config, paradigm=_without_likelihood(config))
    flops = probe["flops_per_step"] or float("nan")
    rows.append({"name": name, "batch_size": config.batch_size, **probe,
                 "examples_per_s": config.batch_size / probe["seconds_per_step"],
                 "mfu": flops / probe["seconds_per_step"] / (matmul_gflops * 1e9)})
    log(json.dumps(rows[-1]))
  return rows


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--suite", choices=("quality", "speed"), default="quality")
  parser.add_argument("--dataset", default="digits")
  parser.add_argument("--budget_minutes", type=float, default=1.0,
                      help="training wall-clock per paradigm (the defaults fit the digits "
                           "suite, 15 paradigms, in under 30 min on 2 CPU cores)")
  parser.add_argument("--workdir_root", default="/tmp/gen_jax_benchmark")
  parser.add_argument("--out", default=None, help="default results/<dataset> (speed: results/speed)")
  parser.add_argument("--extra_configs", default="", help="module:arg,... configs beyond experiments/configs/")
  parser.add_argument("--only", default="", help="comma-separated names to keep (e.g. vae,gan)")
  parser.add_argument("--max_steps", type=int, default=0, help="cap on training steps (0: none)")
  parser.add_argument("--num_samples", type=int, default=500, help="samples per paradigm for the metrics")
  parser.add_argument("--quick", action="store_true", help="speed suite: tiny sizes (a test)")
  parser.add_argument("--nfe_workdir", default=None, help="speed suite: a trained ddpm workdir")
  parser.add_argument("--no_progress", action="store_true")
  parser.add_argument("--text_dir", default=None,
                      help="speed suite: folder with input.txt (default: the gpt config's, "
                           "../shared/data/tiny_shakespeare)")
  args = parser.parse_args(argv)
  command = "python -m experiments.benchmark " + " ".join(argv if argv is not None else sys.argv[1:])
  if args.suite == "quality":
    extra = tuple(s for s in args.extra_configs.split(",") if s)
    only = tuple(s for s in args.only.split(",") if s) or None
    return quality_suite(args.dataset, args.budget_minutes, args.workdir_root, args.out, extra, only,
                         args.max_steps, args.num_samples, command, progress=not args.no_progress)
  return speed_suite(args.quick, args.out or "results/speed", args.nfe_workdir,
                     text_dir=args.text_dir)


if __name__ == "__main__":
  main()
