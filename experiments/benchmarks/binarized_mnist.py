r"""Binarized-MNIST NLL: every likelihood family on one fixed binarization of mnist10k.

  python -m experiments.benchmarks.binarized_mnist --budget_minutes=6 --iwae_k=1000 \
      --out=results/binarized_mnist

The field's oldest common yardstick is the test negative log-likelihood of binarized
MNIST in nats per image (784 binary pixels; a uniform model scores 784 log 2 = 543.4
nats = 1 bit/dim). Here the data is `mnist_idx/binarized`: the 10k MNIST test images
split 8,000 train / 2,000 test ("mnist10k", gen_jax/data/builders.py) and binarized once
with a seeded stochastic draw (pixel = 1 with probability level / 255). Each model is its
family's `experiments/configs/<paradigm>.py:mnist_idx` config with the dataset switched
to the binarized one (and the VAE's decoder to Bernoulli), trained by the loop for the
same wall-clock budget (`experiments.benchmark.train_within_budget`: a probe times the
step, the run gets budget / step-time steps, a rerun resumes the workdir), then scored on
the whole test split:

* vae: the ELBO (k = 1) and the importance-weighted bound L_k (Burda et al. 2016,
  arXiv:1509.00519, Eq. 8) with k = --iwae_k: both lower bounds on log P(x), so the NLLs
  are upper bounds; L_k tightens with k (the published VAE/IWAE figures use k = 5000).
* pixel_ar: exact log P(x) of the raster-order transformer over 2 levels (tokens 0/1).
* realnvp, glow: the exact density of uniformly dequantized data y = (x + u) / 2 - 1/2,
  u ~ U[0, 1)^784: E_u log p(y) + 784 log 2 <= log P(x) (Theis et al. 2016, arXiv:1511.01844,
  Sec. 3.1), so on 2 levels their NLL is an upper bound, and a loose one: the flow must put
  its mass on 2^784 unit cubes.
* ddpm: the variational bound L_T + sum_n L_n + L_0 with the discretised decoder on the 2
  levels (Ho et al. 2020, arXiv:2006.11239, Eq. 5 and Sec. 3.3), estimated without bias from
  --vlb_steps stratified steps of T = 1000.

Published figures (full binarized MNIST: 60k training images, long runs) are listed
beside ours in the same table; ours are trained on 8,000 images for minutes on a CPU,
so they are not comparable as results, only as units. Writes <out>/table.md and
<out>/table.json; workdirs live in --workdir_root and are resumed on rerun.
"""
from __future__ import annotations

import argparse
import datetime
import functools
import importlib
import json
import math
import os
import sys
import time

NUM_DIMS = 28 * 28          # binary pixels per image
NUM_TRAIN_IMAGES = 8_000    # mnist10k's train split
DATASET = "mnist_idx/binarized"

# Published test NLLs on binarized MNIST (nats per image, full 60k training set), as
# quoted in gen_jax issue 9. (name, nats, exact?, source)
PUBLISHED = (
    ("NADE", 88.86, True, "Uria et al. 2016, arXiv:1605.02226"),
    ("MADE", 88.04, True, "Germain et al. 2015, arXiv:1502.03509"),
    ("VAE", 86.76, False, "Burda et al. 2016, arXiv:1509.00519 (k = 5000 estimate)"),
    ("IWAE", 84.78, False, "Burda et al. 2016, arXiv:1509.00519 (k = 5000 estimate)"),
    ("PixelCNN", 81.30, True, "van den Oord et al. 2016, arXiv:1601.06759"),
    ("Gated PixelCNN", 81.3, True, "as quoted in issue 9 (source not checked here)"),
    ("PixelSNAIL", 78.6, True, "as quoted in issue 9, approximate (the PixelSNAIL paper, "
                               "arXiv:1712.09763, reports CIFAR-10 / ImageNet only)"),
)

# name -> (config module, what the NLL is, exact?)
MODELS = {
    "vae": ("vae", "-ELBO, Bernoulli decoder", False),
    "pixel_ar": ("pixel_ar", "exact, 2-level softmax per pixel", True),
    "realnvp": ("realnvp", "dequantized density (uniform u): an upper bound", False),
    "glow": ("glow", "dequantized density (uniform u): an upper bound", False),
    "ddpm": ("ddpm", "VLB, discretised decoder on 2 levels", False),
}


# ------------------------------------------------------------ pure parts ---

def nats_to_bits_per_dim(nats_per_image: float, num_dims: int = NUM_DIMS) -> float:
  """nats per image -> bits per pixel: nats / (D log 2) (gen_jax.losses.nll.bits_per_dim)."""
  from gen_jax.losses.nll import bits_per_dim
  return float(bits_per_dim(nats_per_image, num_dims))


def bits_per_dim_to_nats(bits_per_dim: float, num_dims: int = NUM_DIMS) -> float:
  """bits per pixel -> nats per image: bpd * D * log 2 (the inverse of nats_to_bits_per_dim)."""
  return bits_per_dim * num_dims * math.log(2.0)


def published_rows() -> list:
  return [{"model": name, "what": "published, full MNIST", "exact": exact,
           "nats_per_image": nats, "bits_per_dim": nats_to_bits_per_dim(nats),
           "trained_on": 60_000, "source": source}
          for name, nats, exact, source in PUBLISHED]


def _cell(v, fmt):
  return "—" if v is None else format(v, fmt)


def table_markdown(ours: list, meta: dict) -> str:
  """Our rows, then the published ones, as one markdown table with its caption."""
  head = ["model", "what the NLL is", "exact/bound", "test NLL (nats/image)", "bits/dim",
          "train images", "steps", "train min", "load avg", "source"]
  lines = [
      f"Binarized MNIST, test NLL in nats per image (784 binary pixels; uniform = "
      f"{NUM_DIMS * math.log(2.0):.1f} nats = 1 bit/dim). Ours: `{DATASET}` (mnist10k: "
      f"trained on {NUM_TRAIN_IMAGES:,} images, tested on the {meta['num_test']:,} held-out ones; "
      f"one seeded stochastic binarization), {meta['budget_minutes']:g} min of training per "
      f"model under `experiments.benchmark.train_within_budget`, measured {meta['date']} on "
      f"{meta['machine']}. Published: full binarized MNIST (60,000 training images, 10,000 test), "
      "the figures as quoted in gen_jax issue 9 (source: the paper they come from). "
      "A bound is an upper bound on the NLL. Ours are trained on 8,000 images for minutes on a "
      "CPU: the published rows give the scale, not a like-for-like comparison. train min: "
      "the loop's wall-clock after the budget probe, compilation and its end-of-run grid of 16 "
      "samples included (784 sequential steps for pixel_ar, 1000 for ddpm); load avg: the machine's 1/5/15-minute "
      "load averages, mean of before and after training (2 cores shared with other jobs).",
      *([f"VAE: IWAE bound with k = {meta['iwae_k']} (published: k = 5000). DDPM: VLB estimated "
         f"without bias from {meta['vlb_steps']} stratified steps of T = 1000 per image."]
        if "iwae_k" in meta else []),
      f"Command: `{meta['command']}`" + (f" ({meta['ran_as']})" if meta.get("ran_as") else ""),
      *([meta["note"]] if meta.get("note") else []), "",
      "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for r in list(ours) + published_rows():
    load = r.get("load_avg")
    cells = [r["model"], r["what"], "exact" if r["exact"] else "bound",
             _cell(r["nats_per_image"], ".2f"), _cell(r["bits_per_dim"], ".4f"),
             f"{r['trained_on']:,}", _cell(r.get("steps"), "d"),
             _cell(r.get("train_minutes"), ".1f"),
             "—" if load is None else "/".join(f"{v:.1f}" for v in load),
             r.get("source", "this run")]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def our_row(model: str, what: str, exact: bool, nats: float, steps=None, train_minutes=None,
            load_avg=None, **extra) -> dict:
  return {"model": model, "what": what, "exact": exact, "nats_per_image": nats,
          "bits_per_dim": nats_to_bits_per_dim(nats), "trained_on": NUM_TRAIN_IMAGES,
          "steps": steps, "train_minutes": train_minutes, "load_avg": load_avg,
          "source": "this run", **extra}


# ---------------------------------------------------------------- configs ---

def binarized_config(name: str, vlb_steps: int = 100):
  """`<paradigm>.py:mnist_idx` switched to mnist_idx/binarized (the VAE's decoder to Bernoulli)."""
  module = importlib.import_module(f"experiments.configs.{MODELS[name][0]}")
  config = module.get_config("mnist_idx")
  config.dataset = DATASET          # manual_dir stays the mnist_idx one (the same IDX files)
  if name == "vae":
    config.model.decoder = "bernoulli"
  if name == "ddpm":
    config.model.vlb_num_steps = vlb_steps
  return config


# ------------------------------------------------------------ evaluation ---

def _loadavg():
  return [round(v, 2) for v in os.getloadavg()]


def evaluate(name: str, workdir: str, iwae_k: int, iwae_batch: int) -> dict:
  """{'nll': nats/image on the test split, 'eval_s'; for the VAE also 'iwae_nll', 'iwae_s'}."""
  from gen_jax import workdir as workdir_lib
  from gen_jax.eval import likelihood as likelihood_lib
  run, state, step = workdir_lib.restore(workdir)
  t = time.perf_counter()
  result = {"step": int(step), "nll": likelihood_lib.evaluate(run, state)["nll_nats_per_example"]}
  result["eval_s"] = time.perf_counter() - t
  if name == "vae" and iwae_k > 1:
    run.config.eval_batch_size = iwae_batch          # k x batch decodes at once
    ll = functools.partial(run.paradigm.log_likelihood, num_samples=iwae_k)
    run.paradigm = run.paradigm._replace(log_likelihood=ll)
    t = time.perf_counter()
    result["iwae_nll"] = likelihood_lib.evaluate(run, state)["nll_nats_per_example"]
    result["iwae_s"] = time.perf_counter() - t
  result["eval_load_avg"] = _loadavg()
  return result


def rows_for(name: str, record: dict, ev: dict, iwae_k: int) -> list:
  _, what, exact = MODELS[name]
  common = dict(steps=ev["step"], train_minutes=record["train_wall_s"] / 60,
                load_avg=record["load_avg"], eval_s=ev["eval_s"], eval_load_avg=ev["eval_load_avg"])
  rows = [our_row(name, what, exact, ev["nll"], **common)]
  if "iwae_nll" in ev:
    rows.append(our_row(f"vae (IWAE k={iwae_k})", f"-L_k, k = {iwae_k}, same VAE", False,
                        ev["iwae_nll"], **{**common, "eval_s": ev["iwae_s"]}))
  return rows


def run(models=tuple(MODELS), budget_minutes=6.0, iwae_k=1000, iwae_batch=8, vlb_steps=100,
        workdir_root="/tmp/gen_jax_binarized_mnist", out="results/binarized_mnist", command="",
        log=print) -> list:
  from experiments import benchmark
  from gen_jax import data as data_lib
  from gen_jax import workdir as workdir_lib
  meta = {"date": datetime.date.today().isoformat(), "machine": benchmark.machine(),
          "command": command, "budget_minutes": budget_minutes, "iwae_k": iwae_k,
          "vlb_steps": vlb_steps, "dataset": DATASET}
  ours = []
  for name in models:
    config = binarized_config(name, vlb_steps)
    if "num_test" not in meta:
      info = data_lib.get_info(DATASET, **workdir_lib.data_kwargs(config))
      meta["num_test"] = int(info.num_examples["test"])
    workdir = os.path.join(workdir_root, f"{name}_{budget_minutes:g}min")
    load_before = _loadavg()
    record = benchmark.train_within_budget(name, config, workdir, budget_minutes, log=log)
    record["load_avg"] = [round((a + b) / 2, 1) for a, b in zip(load_before, _loadavg())]
    ev = evaluate(name, workdir, iwae_k, iwae_batch)
    rows = rows_for(name, record, ev, iwae_k)
    for r in rows:
      log(json.dumps(r))
    ours += rows
    write(ours, meta, out)        # after each model: a stopped run keeps its rows
  return ours


def write(ours, meta, out):
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, "table.json"), "w") as f:
    json.dump({"meta": meta, "ours": ours, "published": published_rows()}, f, indent=1)
  with open(os.path.join(out, "table.md"), "w") as f:
    f.write(table_markdown(ours, meta))


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--models", default=",".join(MODELS), help=f"of {tuple(MODELS)}")
  parser.add_argument("--budget_minutes", type=float, default=6.0, help="training wall-clock per model")
  parser.add_argument("--iwae_k", type=int, default=1000,
                      help="k of the VAE's IWAE bound (1 = ELBO only); published: 5000")
  parser.add_argument("--iwae_batch", type=int, default=8, help="test images per IWAE batch")
  parser.add_argument("--vlb_steps", type=int, default=100,
                      help="ddpm: stratified steps of the VLB estimate (0 = all T)")
  parser.add_argument("--workdir_root", default="/tmp/gen_jax_binarized_mnist")
  parser.add_argument("--out", default="results/binarized_mnist")
  args = parser.parse_args(argv)
  from absl import logging
  logging.set_verbosity(logging.WARNING)
  command = "python -m experiments.benchmarks.binarized_mnist " + " ".join(
      argv if argv is not None else sys.argv[1:])
  run(tuple(args.models.split(",")), args.budget_minutes, args.iwae_k, args.iwae_batch,
      args.vlb_steps, args.workdir_root, args.out, command)


if __name__ == "__main__":
  main()
