r"""Binarized-MNIST suite: every likelihood family on one fixed binarization of mnist10k.

  python -m experiments.benchmark --suite=binarized_mnist --budget_minutes=6 --iwae_k=1000 \
      --out=results/binarized_mnist

The field's oldest common yardstick: the test NLL of binarized MNIST in nats per image (784
binary pixels; a uniform model scores 784 log 2 = 543.4 nats = 1 bit/dim). Here the data is
`mnist_idx/binarized`: the 10k MNIST test images split 8,000 train / 2,000 test ("mnist10k")
and binarized once with a seeded stochastic draw (pixel = 1 with probability level / 255).
Each of MODELS (or --only) is its family's `<paradigm>.py:mnist_idx` config on that data (the
VAE's decoder Bernoulli), trained for the same wall-clock budget by the driver's rule, then
scored on the whole test split:
* vae: the ELBO and the importance-weighted bound L_k (Burda et al. 2016, arXiv:1509.00519,
  Eq. 8), k = --iwae_k: lower bounds on log P(x), so the NLLs are upper bounds; L_k tightens
  with k (the published VAE/IWAE figures use k = 5000).
* pixel_ar: exact log P(x) of the raster-order transformer over 2 levels (tokens 0/1).
* realnvp, glow: the density of uniformly dequantized data y = (x + u) / 2 - 1/2, u ~ U[0,
  1)^784: E_u log p(y) + 784 log 2 <= log P(x) (Theis et al. 2016, arXiv:1511.01844, Sec.
  3.1), a loose upper bound on 2 levels: the flow must put its mass on 2^784 unit cubes.
* ddpm: the variational bound L_T + sum_n L_n + L_0 with the discretised decoder on the 2
  levels (Ho et al. 2020, arXiv:2006.11239, Eq. 5, Sec. 3.3), estimated without bias from
  --vlb_steps stratified steps of T = 1000.
Published figures (full binarized MNIST: 60k training images, long runs) stand beside ours
in <out>/table.{md,json}: the units are comparable, the results are not.
"""
from __future__ import annotations

import datetime
import importlib
import math

from experiments import benchmark
from gen_jax.eval import evaluators, likelihood, speed, tables

DEFAULTS = {"budget_minutes": 6.0, "out": "results/binarized_mnist",
            "workdir_root": "/tmp/gen_jax_binarized_mnist"}
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


def published_rows() -> list:
  """PUBLISHED as table rows."""
  return [{"model": name, "what": "published, full MNIST", "exact": exact,
           "nats_per_image": nats, "bits_per_dim": likelihood.nats_to_bits_per_dim(nats, NUM_DIMS),
           "trained_on": 60_000, "source": source}
          for name, nats, exact, source in PUBLISHED]


def our_row(model: str, what: str, exact: bool, nats: float, steps=None, train_minutes=None,
            load_avg=None, **extra) -> dict:
  return {"model": model, "what": what, "exact": exact, "nats_per_image": nats,
          "bits_per_dim": likelihood.nats_to_bits_per_dim(nats, NUM_DIMS), "trained_on": NUM_TRAIN_IMAGES,
          "steps": steps, "train_minutes": train_minutes, "load_avg": load_avg,
          "source": "this run", **extra}


def table_markdown(ours: list, meta: dict) -> str:
  """Our rows, then the published ones, as one markdown table with its caption."""
  caption = [
      f"Binarized MNIST, test NLL in nats per image (784 binary pixels; uniform = {NUM_DIMS * math.log(2.0):.1f} "
      f"nats = 1 bit/dim). Ours: `{DATASET}` (mnist10k: trained on {NUM_TRAIN_IMAGES:,} images, tested on the "
      f"{meta['num_test']:,} held-out ones; one seeded stochastic binarization), {meta['budget_minutes']:g} min of "
      f"training per model under the benchmark's budget rule, measured {meta['date']} on {meta['machine']}. "
      "Published: full binarized MNIST (60,000 training images, 10,000 test), as quoted in gen_jax issue 9 "
      "(source: their paper); they give the scale, not a like-for-like comparison. A bound is an upper bound on "
      "the NLL. train min: the loop's wall-clock after the budget probe, compilation and its end-of-run grid "
      "included; load avg: the 1/5/15-minute load averages, mean of before and after training.",
      *([f"VAE: IWAE bound with k = {meta['iwae_k']} (published: k = 5000). DDPM: VLB estimated without bias "
         f"from {meta['vlb_steps']} stratified steps of T = 1000 per image."] if "iwae_k" in meta else []),
      f"Command: `{meta['command']}`" + (f" ({meta['ran_as']})" if meta.get("ran_as") else ""),
      *([meta["note"]] if meta.get("note") else [])]
  columns = [("model", "model", ""), ("what the NLL is", "what", ""),
             ("exact/bound", lambda r: "exact" if r["exact"] else "bound", ""),
             ("test NLL (nats/image)", "nats_per_image", ".2f"), ("bits/dim", "bits_per_dim", ".4f"),
             ("train images", "trained_on", ","), ("steps", "steps", "d"),
             ("train min", "train_minutes", ".1f"),
             ("load avg", lambda r: r.get("load_avg") and "/".join(f"{v:.1f}" for v in r["load_avg"]), ""),
             ("source", lambda r: r.get("source", "this run"), "")]
  return tables.markdown(columns, list(ours) + published_rows(), caption)


def binarized_config(name: str, vlb_steps: int = 100):
  """`<paradigm>.py:mnist_idx` switched to mnist_idx/binarized (the VAE's decoder to Bernoulli)."""
  config = importlib.import_module(f"experiments.configs.{MODELS[name][0]}").get_config("mnist_idx")
  config.dataset = DATASET          # manual_dir stays the mnist_idx one (the same IDX files)
  if name == "vae":
    config.model.decoder = "bernoulli"
  if name == "ddpm":
    config.model.vlb_num_steps = vlb_steps
  return config


def run(args) -> list:
  meta = {"date": datetime.date.today().isoformat(), "machine": speed.machine(), "command": args.command,
          "budget_minutes": args.budget_minutes, "iwae_k": args.iwae_k, "vlb_steps": args.vlb_steps,
          "dataset": DATASET}
  load, ours = (lambda run, state: {"eval_load_avg": speed.loadavg()}), []
  for name in args.only or MODELS:
    iwae = ([evaluators.Likelihood(iwae_k=args.iwae_k, batch_size=args.iwae_batch, suffix="_iwae")]
            if name == "vae" and args.iwae_k > 1 else [])
    row, _ = benchmark.train_and_evaluate(name, binarized_config(name, args.vlb_steps), args, [*iwae, load],
                                          log=args.log)
    meta.setdefault("num_test", row["num_examples"])
    common = {"train_minutes": row["train_wall_s"] / 60,
              **{k: row[k] for k in ("steps", "load_avg", "eval_s", "eval_load_avg")}}
    ours.append(our_row(name, *MODELS[name][1:], row["nll_nats_per_example"], **common))
    if iwae:
      ours.append(our_row(f"vae (IWAE k={args.iwae_k})", f"-L_k, k = {args.iwae_k}, same VAE", False,
                          row["nll_nats_per_example_iwae"], **{**common, "eval_s": row["eval_s_iwae"]}))
    tables.write(args.out, {"table.json": {"meta": meta, "ours": ours, "published": published_rows()},
                            "table.md": table_markdown(ours, meta)})   # a stopped run keeps its rows
  return ours
