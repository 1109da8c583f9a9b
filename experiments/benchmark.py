r"""The one benchmark driver: `python -m experiments.benchmark --suite=NAME [flags]`.

A suite (SUITES) is a description in `experiments/benchmarks/<module>.py`: its docstring says
what it measures and its commands, `DEFAULTS` its flag values, `run(args)` which configs it
trains, with which evaluators (`gen_jax.eval`) and tables. This module holds what the suites
share: config discovery, the stage 1 of a two-stage config, and one training rule: every
model trains through `gen_jax.workdir.train` in `workdir_of(...)` = `<workdir_root>/<dataset>/
<name>` + `_<B>min[_max<N>]` under --budget_minutes=B (a probe times the train step: the run
gets floor(60 B / seconds per step) steps, at most --max_steps), `_<N>steps` under --steps=N,
or nothing (the configs' steps); a rerun resumes it with the steps it recorded. The loop
evaluates at the last step, on --max_eval test examples (0: all): that is the benchmark's
evaluation (`final_eval`).
"""
from __future__ import annotations

import glob
import importlib
import json
import os
import sys
import time
import types

import jax
import numpy as np
from absl import app, flags, logging

from gen_jax import data as data_lib, workdir as workdir_lib
from gen_jax.errors import UserError
from gen_jax.eval import evaluators as evaluators_lib, speed, tables
from gen_jax.train import build as build_lib, loop
from gen_jax.train.metrics import read_metrics

CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")

# suite -> (module in experiments/benchmarks, flag values beside the module's DEFAULTS)
SUITES = {**{name: (name, {}) for name in ("quality", "speed", "binarized_mnist", "diffusion", "flows", "gan",
                                           "hybrids", "soak", "precision", "memory", "accelerator",
                                           "peers", "multimodal")},
          "autoregressive": ("speed", {"parts": ["matmul", "gpt_train", "kv_cache"], "num_iters": 2000,
                                       "gpt_eval": True, "out": "/tmp/gen_jax_autoregressive"})}
# flag -> (default, help); the default's type is the flag's (a list: comma-separated).
FLAGS = {
    "suite": ("quality", f"one of {', '.join(SUITES)}"),
    "parts": ([], "parts of the suite to run (default: the suite's)"),
    "dataset": ("digits", "the configs' dataset argument (flows: comma-separated datasets)"),
    "only": ([], "names to keep: configs, paradigms (diffusion, flows), variants (gan), models"),
    "budget_minutes": (0.0, "training wall clock per model, made steps by a probe (0: --steps)"),
    "max_steps": (0, "cap on budgeted training steps (0: none)"),
    "steps": (0, "training steps of every model when there is no budget (0: the configs')"),
    "max_eval": (0, "test examples of the loop's final evaluation (0: the whole split)"),
    "workdir_root": ("/tmp/gen_jax_benchmark", "where the benchmark's workdirs live"),
    "workdir": ("", "a trained workdir to score (nfe, temperature); hybrids: NAME=DIR,... as they are"),
    "out": ("", "folder of the tables and figures (default: the suite's)"),
    "json": ("", "also write the suite's result to this JSON file"),
    "num_samples": (1000, "samples behind each sample metric"),
    "seeds": (["0"], "sampling seeds (diffusion nfe: one curve each; others: the first)"),
    "extra_configs": ([], "quality: module:arg configs beyond experiments/configs/"),
    "quick": (False, "speed: tiny sizes (a test)"),
    "text_dir": ("", "speed: folder with input.txt (default: the gpt config's)"),
    "num_iters": (1010, "speed: GPT training iterations"),
    "against": ("", "speed: a git revision whose GPT recipe ms/iter the against part compares with"),
    "rounds": (3, "speed against: alternating rounds (a fresh process each)"),
    "gpt_eval": (False, "speed: the GPT's loss on the whole validation split after training"),
    "iwae_k": (1000, "binarized_mnist: k of the VAE's IWAE bound (1: ELBO only)"),
    "iwae_batch": (8, "binarized_mnist: test images per IWAE batch"),
    "vlb_steps": (100, "binarized_mnist: ddpm's stratified VLB steps (0: all T)"),
    "nfes": (["10", "20", "35", "50", "100"], "diffusion nfe: the few-step budgets"),
    "toy_steps": (20_000, "flows toy: training steps"),
    "toy_names": (["eight_gaussians", "checkerboard"], "flows toy: toy2d densities"),
    "toy_data": ("fresh", "flows toy: 'fresh' samples every step or the 'stored' split"),
    "dequantization": (["uniform"], "flows images: one model per entry (uniform, variational)"),
    "model": ("", "flows images: config.model overrides, e.g. hidden=256,num_scales=2"),
    "temperatures": (["1.0", "0.9", "0.8", "0.7", "0.6", "0.5"], "flows temperature part"),
    "per_prompt": (20, "hybrids: text2image images per (digit, caption template)"),
    "cycles": (20, "soak: faulted launches of each model"),
    "smoke": (False, "precision, memory, accelerator, peers: tiny shapes and few steps (a test)"),
    "timed_steps": (50, "precision, accelerator: timed train steps after compilation (median)"),
    "dtypes": (["float32", "bfloat16"], "memory, accelerator: compute dtypes measured"),
    "batch": (0, "accelerator: per-device batch of every model (0: each model's default)"),
}


def discover_configs(dataset: str, extra=(), only=None) -> list:
  """[(name, config)] of every experiments/configs/<name>.py whose `get_config(dataset)`
  returns a config (those raising ValueError/KeyError are skipped), then the `extra`
  "module:arg" specs (named after the module, with "_<arg>" when arg is not `dataset`);
  `only`: the names to keep (None: all)."""
  found, names = [], sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(CONFIG_DIR, "[!_]*.py")))
  for module in (importlib.import_module(f"experiments.configs.{n}") for n in names if n != "common"):
    try:
      if hasattr(module, "get_config"):
        found.append((module.__name__.rsplit(".", 1)[-1], module.get_config(dataset)))
    except (ValueError, KeyError):     # the config refuses the dataset
      continue
  for spec in extra:
    module_name, _, arg = spec.partition(":")
    name = module_name.rsplit(".", 1)[-1]
    found.append((name if arg in ("", dataset) else f"{name}_{arg}",
                  importlib.import_module(module_name).get_config(arg or dataset)))
  return [(n, c) for n, c in found if not only or n in only]


def find_stage1(config, extra=()) -> tuple:
  """(name, config) of the first discovered config of `stage1.dataset` that has every value
  `config.stage1` expects (`gen_jax.workdir.check_expected`: its fields but workdir and step)."""
  for name, candidate in discover_configs(config.stage1.get("dataset", ""), extra):
    try:
      workdir_lib.check_expected(candidate, config.stage1, name)
      return name, candidate
    except UserError:
      continue
  raise SystemExit(f"{config.paradigm}: no config in {CONFIG_DIR} (or --extra_configs) gives a stage 1 "
                   f"with {workdir_lib.normalized(config.stage1)}; add one, or change config.stage1.")


def with_stage1(config, args, trained, log=print):
  """Readies the stage 1 of a two-stage `config` (`find_stage1`, trained once per `trained`
  dict under the same rule) and points config.stage1.workdir at it; returns its name (None
  for one stage)."""
  if config.get("stage1") is None:
    return None
  name, stage1 = find_stage1(config, args.extra_configs)
  config.stage1.workdir = workdir_of(args, config.stage1.dataset, name)
  train(name, stage1, config.stage1.workdir, args, log, trained)
  return name


def workdir_of(args, dataset: str, name: str) -> str:
  """`<workdir_root>/<dataset>/<name>` + `_<B>min[_max<N>]` (budget) or `_<N>steps`."""
  suffix = (f"_{args.budget_minutes:g}min" + (f"_max{args.max_steps}" if args.max_steps else "")
            if args.budget_minutes else f"_{args.steps}steps" if args.steps else "")
  return os.path.join(args.workdir_root, dataset, name + suffix)


def probe(config, steps: int = 3, timed_from: int = 0, batches=None):
  """(timings, run, state): the loop's jitted train step of `config` built, compiled and run
  for 1 + `steps` steps, those after the first `1 + timed_from` timed (`speed.time_steps`), and
  the run and its state after them. On the config's data from a state initialised on a zero
  batch, or on `batches` (host batches) from one initialised on their first (data-dependent
  init, e.g. ActNorm, then sees data)."""
  run = workdir_lib.build(config)
  init = next(batches) if batches else build_lib.example_batch(run.info, config.batch_size)
  batches = batches or data_lib.train_iterator(config.dataset, batch_size=config.batch_size,
                                               seed=config.seed, **run.data_kwargs)
  state = run.init_state(run.put_batch(init))
  timings, state = speed.time_steps(loop.jit_train_step(run), state, map(run.put_batch, batches),
                                    run.keys["train"], steps + 1, timed_from + 1)
  return timings, run, state


def train(name, config, workdir, args, log=print, trained=None, adjust=None) -> dict:
  """Trains (or resumes) `config` in `workdir` under the training rule (once per `trained`
  dict, {workdir: record}); `adjust(config)` edits the config once its steps are known.
  Returns the record kept in benchmark_train.json: probe_seconds_per_step (budget),
  num_train_steps, batch_size, train_wall_s (summed over resumes), train_examples_per_s,
  load_avg (the mean of the 1/5/15-minute load before and after)."""
  trained = {} if trained is None else trained
  if workdir in trained:
    return trained[workdir]
  path = os.path.join(workdir, "benchmark_train.json")
  record = _read(path) or {}
  if args.budget_minutes and "probe_seconds_per_step" not in record:
    record["probe_seconds_per_step"] = probe(config)[0]["seconds_per_step"]
  if os.path.exists(os.path.join(workdir, "config.json")):
    steps = workdir_lib.load_config(workdir).num_train_steps
    log(f"[{name}] resuming {workdir} ({steps} steps)")
  elif args.budget_minutes:
    steps = speed.budget_steps(record["probe_seconds_per_step"], args.budget_minutes, args.max_steps)
    log(f"[{name}] {record['probe_seconds_per_step'] * 1e3:.1f} ms/step -> {steps} steps")
  else:
    steps = args.steps or config.num_train_steps
  speed.with_steps(config, steps)
  if adjust:
    adjust(config)
  config.num_samples = min(config.num_samples, 16)   # the loop's own end-of-run grid: cheap
  config.eval_max_examples = args.max_eval
  load, start = speed.loadavg(), time.perf_counter()
  workdir_lib.train(config, workdir, progress=False)
  record["train_wall_s"] = record.get("train_wall_s", 0.0) + time.perf_counter() - start
  record.update(num_train_steps=steps, batch_size=config.batch_size,
                load_avg=[round((a + b) / 2, 1) for a, b in zip(load, speed.loadavg())])
  if "probe_seconds_per_step" in record:
    record["train_examples_per_s"] = config.batch_size / record["probe_seconds_per_step"]
  _write(path, record)
  trained[workdir] = record
  return record


def final_eval(workdir, run, state, max_examples: int = 0) -> dict:
  """The loop's evaluation at the run's last step (metrics.jsonl) where it was made on
  `max_examples` test examples (0: all), else a new one (`evaluators.Likelihood`)."""
  logged = [r for r in read_metrics(workdir)
            if r["step"] == int(state.step) and "eval/bits_per_dim" in r]
  if logged and (workdir_lib.load_config(workdir).get("eval_max_examples") or 0) == max_examples:
    ev = {"eval_s" if k == "eval/seconds" else k.removeprefix("eval/"): v
          for k, v in logged[-1].items() if k.startswith("eval/")}
    return {**ev, "bound": bool(ev["bound"]), "num_examples": int(ev["num_examples"])}
  return evaluators_lib.Likelihood(max_examples=max_examples or None)(run, state)


def train_and_evaluate(name, config, args, evaluators=(), dataset=None, log=print,
                       trained=None, adjust=None, cache_key=None) -> tuple:
  """Trains (`train`) and evaluates one model: (row, samples or None). The row holds the
  training record, `step` (and `steps`), `planned_steps`, `budget_minutes`, `device`,
  `workdir`, the final evaluation (`final_eval`), the `evaluators`' metrics, `eval_wall_s`.
  With a `cache_key`, row and samples are cached in the workdir (benchmark_eval.json,
  benchmark_samples.npy) while key and step hold."""
  workdir = workdir_of(args, dataset or config.dataset, name)
  record = train(name, config, workdir, args, log, trained, adjust)
  cache, grid = os.path.join(workdir, "benchmark_eval.json"), os.path.join(workdir, "benchmark_samples.npy")
  key = cache_key and {**cache_key, "step": record["num_train_steps"]}
  if key and (_read(cache) or {}).get("cache_key") == key and os.path.exists(grid):
    return {**_read(cache)["row"], **record}, np.load(grid)
  start = time.perf_counter()
  run, state, step = workdir_lib.restore(workdir)
  row = {**record, "step": int(step), "steps": int(step), "planned_steps": record["num_train_steps"],
         "budget_minutes": args.budget_minutes or None, "device": jax.devices()[0].device_kind,
         "workdir": workdir, **final_eval(workdir, run, state, args.max_eval),
         **evaluators_lib.evaluate(run, state, evaluators)}
  samples, row["eval_wall_s"] = row.pop("samples", None), time.perf_counter() - start
  log(json.dumps({"name": name, **row}, default=str))
  if key:
    np.save(grid, samples)
    _write(cache, {"cache_key": key, "row": row})
  return row, samples


def _read(path):
  if os.path.exists(path):
    with open(path) as f:
      return json.load(f)


def _write(path, value):
  tables.write(os.path.dirname(os.path.abspath(path)), {os.path.basename(path): value})


# The names the family suites' result files (results/*/rows.jsonl, *.json) have used.
RENAMED = {"bits_per_dim": "test_bits_per_dim", "num_examples": "test_examples", "eval_s": "eval_seconds",
           "train_wall_s": "train_seconds"}


def renamed(row: dict, names=RENAMED) -> dict:
  """`row` with some keys renamed ({old: new})."""
  return {names.get(k, k): v for k, v in row.items()}


def arguments(**values) -> types.SimpleNamespace:
  """The flag values of a run: FLAGS' defaults, `log` (print) and `command`, then `values`."""
  return types.SimpleNamespace(**{**{k: v for k, (v, _) in FLAGS.items()}, "log": print,
                                  "command": "python -m experiments.benchmark", **values})


def run(suite: str = "quality", **values):
  """Runs a suite with flag `values` (the rest: the suite's defaults, then FLAGS'), and
  `command` (what its tables say ran them) and `log` (a print function) if given."""
  module_name, extra = SUITES[suite]
  module = importlib.import_module(f"experiments.benchmarks.{module_name}")
  args = arguments(**{"command": f"python -m experiments.benchmark --suite={suite}",
                      **getattr(module, "DEFAULTS", {}), **extra, **values, "suite": suite})
  result = module.run(args)
  if args.json:
    _write(args.json, result)
  return result


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)      # Orbax logs every file it writes at INFO
  given = {k: flags.FLAGS[k].value for k in FLAGS if flags.FLAGS[k].present}
  command = "python -m experiments.benchmark " + " ".join(sys.argv[1:])
  run(**{**given, "suite": flags.FLAGS.suite, "command": command})


if __name__ == "__main__":
  define = {bool: flags.DEFINE_bool, int: flags.DEFINE_integer, float: flags.DEFINE_float,
            str: flags.DEFINE_string, list: flags.DEFINE_list}
  for flag, (default, help_) in FLAGS.items():   # defined here only: no clash with other mains
    define[type(default)](flag, default, help_)
  app.run(main)
