r"""Adversarial family benchmark: each loss trained by the loop, scored from samples.

  python -m experiments.benchmarks.gan                        # digits: reference, 8 variants, cgan, toy
  python -m experiments.benchmarks.gan --parts=images --variants=hinge,hinge+r1 --steps=3000
  python -m experiments.benchmarks.gan --parts=reference,images --dataset=mnist_idx \
      --variants=non_saturating+r1
  python -m experiments.benchmarks.gan --parts=losses --dataset=mnist_idx --out=results/gan_mnist10k
  python -m experiments.benchmarks.gan --parts=toy

Parts (each returns a list of dicts, one a trained model; `run()` returns them all):
* reference: 1,000 train images scored against the test split, the floor of the scores.
* images: `experiments/configs/gan.py:<dataset>` trained with each variant of VARIANTS (a
  loss, plain or with R1) through the training loop (`gen_jax.train.loop.train`), then
  1,000 samples from the EMA parameters scored against the test split with the project's
  classifier features (`gen_jax.eval.features.sample_metrics`: Fréchet distance on the
  classifier's penultimate features, k-NN precision and recall), the training time, and a
  PNG grid of 64 samples per variant (`<out>/gan_<dataset>_<variant>.png`).
* cgan: `experiments/configs/cgan.py:<dataset>`, the same scores, plus the share of samples
  drawn for class c that the classifier labels c (`gen_jax.eval.conditional`) and a grid
  with one row per class.
* losses: issue 7's four losses as `gan.py:<dataset>` trains them (LOSSES: non-saturating,
  hinge and least squares with the config's R1, γ = 1; WGAN-GP with its own penalty, λ = 10,
  3 critic steps), each for the config's steps (or --steps), or for the same wall-clock
  budget (--budget_minutes: a probe times the train step, `experiments.benchmark.budget_steps`
  turns the budget into steps), scored as in `images`, with the real-data reference; writes
  <out>/table.md and table.json beside the grids. The mnist10k figures: `--parts=losses
  --dataset=mnist_idx --out=results/gan_mnist10k` (results/gan_mnist10k/table.md).
* toy: `experiments/configs/gan.py:eight_gaussians` per variant of TOY_VARIANTS: the share of
  2,000 samples within 3 sigma of some centre and the smallest share of one mode (the test's
  criteria: >= 0.80 and >= 0.05), the training time and a scatter plot.
Times are wall-clock on whatever machine runs it (state it with the numbers).

Measured (2026-11-26, the 2-core CPU shared with ~6 other jobs, load average 10-13, so
times are 3-5x an idle machine's; 1,000 samples vs the 360 digits / 2,000 mnist10k test
images; classifier test accuracy 0.994 digits, 0.996 mnist10k):

  digits, 3,000 steps, batch 64       FD     precision  recall  train s
  reference: 1,000 train images       14.6   0.939      0.875   -
  non_saturating                      150.0  0.734      0.686   140
  non_saturating+r1 (the default)     66.3   0.701      0.878   169
  hinge                               908.4  0.992      0.000   116   collapsed to one image
  hinge+r1                            61.2   0.690      0.858   224
  least_squares                       274.0  0.752      0.644   221
  least_squares+r1                    81.9   0.731      0.847   261
  wgan_gp (λ 10, n_critic 3)          57.2   0.708      0.869   467
  hinge+sn                            411.9  0.712      0.003   252   collapsed (untuned)
  cgan non_saturating+r1              17.6   0.903      0.761   201   class accuracy 0.975
  mnist_idx reference                 21.4   0.887      0.881   -
  mnist_idx non_saturating+r1         591.6  0.677      0.600   1575  strokes, few clear digits
                                                                     (the former 16-channel DCGAN
                                                                     nets; the MLP nets now in
                                                                     gan.py:mnist_idx: see
                                                                     results/gan_mnist10k/table.md)

  eight_gaussians, 2,000 steps: every variant of TOY_VARIANTS covered 8/8 modes, 0.86-0.90 of
  samples within 3 sigma, smallest mode 0.07-0.10, 23-34 s each.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import jax
import numpy as np
from experiments.benchmarks.common import budget_config, timed_train as train, with_steps

# (name, loss, model fields): each loss plain and with the R1 penalty (γ = 1);
# WGAN-GP with its own penalty (λ = 10) and 3 critic steps per generator step;
# hinge with a spectrally normalised D (Miyato et al. 2018).
VARIANTS = {
    "non_saturating": ("non_saturating", {"r1_gamma": 0.0}),
    "non_saturating+r1": ("non_saturating", {"r1_gamma": 1.0}),
    "hinge": ("hinge", {"r1_gamma": 0.0}),
    "hinge+r1": ("hinge", {"r1_gamma": 1.0}),
    "least_squares": ("least_squares", {"r1_gamma": 0.0}),
    "least_squares+r1": ("least_squares", {"r1_gamma": 1.0}),
    "wgan_gp": ("wgan_gp", {"r1_gamma": 0.0, "n_critic": 3}),
    "hinge+sn": ("hinge", {"r1_gamma": 0.0, "spectral_norm": True}),   # SN-GAN's pairing
}
# Issue 7's four losses, each as the image configs use it (R1 on, except for WGAN-GP).
LOSSES = ("non_saturating+r1", "hinge+r1", "least_squares+r1", "wgan_gp")
# On eight_gaussians (the test's settings): R1 with γ = 0.1; WGAN-GP with λ = 1, 3 critic steps.
TOY_VARIANTS = {
    "non_saturating": ("non_saturating", {"r1_gamma": 0.0}),
    "non_saturating+r1": ("non_saturating", {"r1_gamma": 0.1}),
    "hinge+r1": ("hinge", {"r1_gamma": 0.1}),
    "least_squares+r1": ("least_squares", {"r1_gamma": 0.1}),
    "wgan_gp": ("wgan_gp", {"n_critic": 3, "gp_weight": 1.0, "r1_gamma": 0.0}),
}


def _config(paradigm, dataset, loss, steps, fields):
  from experiments.configs import cgan as cgan_config
  from experiments.configs import gan as gan_config
  config = (gan_config if paradigm == "gan" else cgan_config).get_config(dataset)
  config.model.loss = loss
  for k, v in fields.items():
    config.model[k] = v
  return with_steps(config, steps)


def _samples(run, state, num, seed=0, **options):
  params = run.sampling_params(state)
  return np.asarray(run.paradigm.sample(params, jax.random.key(seed), num, **options))


def image_scores(run, state, dataset, num=1000):
  """Sample metrics of `num` samples against the whole test split."""
  from experiments import train_classifier
  from gen_jax.eval import features
  net = train_classifier.load_or_train(dataset)
  images, _, info = train_classifier.load_split(dataset, "test")
  real = features.levels_to_unit(images, info.num_levels)
  fake = _samples(run, state, num)
  return {**features.sample_metrics(net, real, fake),
          "classifier_test_accuracy": net.meta.get("test_accuracy")}, net


def images_part(dataset="digits", variants=tuple(VARIANTS), steps=None,
                out="/tmp/gen_jax_gan_benchmark", budget_minutes=None):
  from gen_jax.utils import images as images_lib
  results = []
  for name in variants:
    loss, fields = VARIANTS[name]
    config = _config("gan", dataset, loss, steps, fields)
    extra = {}
    if budget_minutes:
      config, seconds_per_step = budget_config(config, budget_minutes)
      extra = {"budget_minutes": budget_minutes, "probe_seconds_per_step": seconds_per_step}
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as workdir:
      run, state, seconds = train(config, workdir)
      load = [round((a + b) / 2, 1) for a, b in zip(load, os.getloadavg())]
      scores, _ = image_scores(run, state, dataset)
      path = os.path.join(out, f"gan_{dataset}_{name}.png")
      images_lib.save_png(images_lib.image_grid(_samples(run, state, 64, seed=1)), path)
    results.append({"part": "images", "dataset": dataset, "variant": name, "fields": fields,
                    "steps": config.num_train_steps, "n_critic": config.model.n_critic,
                    "train_seconds": round(seconds, 1), "load_avg": load, "grid": path,
                    **extra, **scores})
    print(json.dumps(results[-1]), flush=True)
  return results


def cgan_part(dataset="digits", variant="non_saturating+r1", steps=None,
              out="/tmp/gen_jax_gan_benchmark", num_per_class=100):
  from gen_jax.eval import conditional
  from gen_jax.utils import images as images_lib
  loss, fields = VARIANTS[variant]
  config = _config("cgan", dataset, loss, steps, fields)
  with tempfile.TemporaryDirectory() as workdir:
    run, state, seconds = train(config, workdir)
    scores, net = image_scores(run, state, dataset)
    params = run.sampling_params(state)
    accuracy = conditional.conditional_accuracy(
        lambda rng, n, label: run.paradigm.sample(params, rng, n, label=label), net.predict,
        jax.random.key(2), run.info.num_classes, num_per_class)
    k = run.info.num_classes
    rows = [_samples(run, state, 10, seed=3 + c, label=c) for c in range(k)]
    path = os.path.join(out, f"cgan_{dataset}_{variant}.png")
    images_lib.save_png(images_lib.image_grid(np.concatenate(rows), ncols=10), path)
  result = {"part": "cgan", "dataset": dataset, "variant": variant, "steps": config.num_train_steps,
            "train_seconds": round(seconds, 1), "grid": path,
            "class_accuracy": accuracy["accuracy"],
            "class_accuracy_per_class": [round(a, 3) for a in accuracy["per_class"]], **scores}
  print(json.dumps(result), flush=True)
  return [result]


def mode_coverage(x):
  """(share within 3 sigma of some centre, [8] share within 3 sigma of each centre)."""
  from gen_jax.data import toy2d
  dist = np.linalg.norm(x[:, None, :] - toy2d.EIGHT_GAUSSIANS_CENTRES[None], axis=-1)
  near = dist.min(axis=1) < 3 * toy2d.EIGHT_GAUSSIANS_SIGMA
  per_mode = np.array([np.mean(near & (dist.argmin(axis=1) == c)) for c in range(8)])
  return float(near.mean()), per_mode


def toy_part(variants=tuple(TOY_VARIANTS), steps=None, out="/tmp/gen_jax_gan_benchmark"):
  from gen_jax.data import toy2d
  from gen_jax.utils import images as images_lib
  results = []
  for name in variants:
    loss, fields = TOY_VARIANTS[name]
    config = _config("gan", "eight_gaussians", loss, steps, fields)
    with tempfile.TemporaryDirectory() as workdir:
      run, state, seconds = train(config, workdir)
      x = _samples(run, state, 2000)
    near, per_mode = mode_coverage(x)
    path = os.path.join(out, f"gan_eight_gaussians_{name}.png")
    reference = toy2d.sample_eight_gaussians(np.random.default_rng(0), 2000)
    images_lib.save_png(images_lib.points_figure(x, lim=3.0, reference=reference), path)
    results.append({"part": "toy", "variant": name, "steps": config.num_train_steps,
                    "fields": fields, "train_seconds": round(seconds, 1),
                    "within_3_sigma": near, "min_mode_share": float(per_mode.min()),
                    "modes_covered": int(np.sum(per_mode >= 0.05)), "grid": path})
    print(json.dumps(results[-1]), flush=True)
  return results


def reference_part(dataset="digits", num=1000):
  """The scores of real data: `num` train images against the test split (the floor of FD)."""
  from experiments import train_classifier
  from gen_jax.eval import features
  net = train_classifier.load_or_train(dataset)
  test, _, info = train_classifier.load_split(dataset, "test")
  train_images, _, _ = train_classifier.load_split(dataset, "train")
  scores = features.sample_metrics(net, features.levels_to_unit(test, info.num_levels),
                                   features.levels_to_unit(train_images[:num], info.num_levels))
  result = {"part": "reference", "dataset": dataset, "what": f"{num} train images vs test", **scores}
  print(json.dumps(result), flush=True)
  return [result]


def losses_table(reference: dict, rows: list, meta: dict) -> str:
  """The per-loss scores as markdown: the real-data reference first, then one row a loss."""
  fd = next(k for k in reference if k.startswith("FD ("))
  head = ["loss", "fields", "steps", "train s", "load avg", fd, "precision", "recall", "grid"]
  length = (f"{meta['budget_minutes']:g} min of training each" if meta.get("budget_minutes")
            else "the same number of steps each")
  lines = [f"GAN losses on {meta['dataset']}, {length} "
           f"(`gan.py:{meta['dataset']}`), 1,000 EMA samples against the "
           f"{reference['num_real']:,} test images; measured {meta['date']} on {meta['machine']}. "
           "train s: the loop's wall-clock, compilation and the end-of-run grid included; "
           "load avg: the 1/5/15-minute load averages, mean of before and after training.",
           f"Command: `{meta['command']}`", *([meta["note"]] if meta.get("note") else []), "",
           "| " + " | ".join(head) + " |", "|" + "---|" * len(head),
           f"| reference: {reference['what']} | — | — | — | — | {reference[fd]:.1f} | "
           f"{reference['precision']:.3f} | {reference['recall']:.3f} | — |"]
  for r in rows:
    fields = ", ".join(f"{k}={v}" for k, v in r["fields"].items())
    lines.append(f"| {r['variant']} | {fields} | {r['steps']} | {r['train_seconds']:.0f} | "
                 f"{'/'.join(f'{v:.1f}' for v in r['load_avg'])} | {r[fd]:.1f} | "
                 f"{r['precision']:.3f} | {r['recall']:.3f} | {os.path.basename(r['grid'])} |")
  return "\n".join(lines) + "\n"


def losses_part(dataset="mnist_idx", budget_minutes=None, steps=None,
                out="/tmp/gen_jax_gan_benchmark", command="") -> list:
  """LOSSES, each for `steps` (default: the config's) or for one wall-clock budget
  (`budget_minutes`, which wins); writes <out>/table.md and table.json."""
  import datetime
  from experiments import benchmark
  meta = {"date": datetime.date.today().isoformat(), "machine": benchmark.machine(),
          "dataset": dataset, "budget_minutes": budget_minutes, "command": command}
  reference = reference_part(dataset)[0]
  rows = []
  for name in LOSSES:      # the table is rewritten after each loss: a stopped run keeps its rows
    rows += images_part(dataset, (name,), steps, out=out, budget_minutes=budget_minutes)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "table.json"), "w") as f:
      json.dump({"meta": meta, "reference": reference, "rows": rows}, f, indent=1)
    with open(os.path.join(out, "table.md"), "w") as f:
      f.write(losses_table(reference, rows, meta))
  return rows


def run(parts=("reference", "images", "cgan", "toy"), dataset="digits", variants=tuple(VARIANTS),
        steps=None, out="/tmp/gen_jax_gan_benchmark", budget_minutes=None, command="") -> dict:
  results = {}
  if "losses" in parts:
    results["losses"] = losses_part(dataset, budget_minutes, steps, out, command)
  if "reference" in parts:
    results["reference"] = reference_part(dataset)
  if "images" in parts:
    results["images"] = images_part(dataset, variants, steps, out, budget_minutes)
  if "cgan" in parts:
    results["cgan"] = cgan_part(dataset, steps=steps, out=out)
  if "toy" in parts:
    results["toy"] = toy_part(out=out)
  return results


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--parts", default="reference,images,cgan,toy")
  parser.add_argument("--dataset", default="digits", help="digits | mnist_idx")
  parser.add_argument("--variants", default=",".join(VARIANTS), help=f"of {tuple(VARIANTS)}")
  parser.add_argument("--steps", type=int, default=None, help="training steps (default: the config's)")
  parser.add_argument("--budget_minutes", type=float, default=None,
                      help="images/losses: train each for this wall-clock (overrides --steps)")
  parser.add_argument("--out", default="/tmp/gen_jax_gan_benchmark", help="folder for the PNG grids")
  args = parser.parse_args()
  from absl import logging
  logging.set_verbosity(logging.WARNING)
  command = "python -m experiments.benchmarks.gan " + " ".join(sys.argv[1:])
  results = run(tuple(args.parts.split(",")), args.dataset, tuple(args.variants.split(",")),
                args.steps, args.out, args.budget_minutes, command)
  print(json.dumps(results))


if __name__ == "__main__":
  main()
