r"""GAN suite: each adversarial loss trained by the loop and scored from its samples.

  python -m experiments.benchmark --suite=gan                        # digits: reference, 8 variants, cgan, toy
  python -m experiments.benchmark --suite=gan --parts=images --only=hinge,hinge+r1 --steps=3000
  python -m experiments.benchmark --suite=gan --parts=reference,images --dataset=mnist_idx \
      --only=non_saturating+r1
  python -m experiments.benchmark --suite=gan --parts=losses --dataset=mnist_idx --out=results/gan_mnist10k
  python -m experiments.benchmark --suite=gan --parts=toy

* reference: 1,000 train images scored against the test split, the floor of the scores.
* images: `gan.py:<dataset>` with each variant of VARIANTS (or --only; a loss, plain or with R1)
  trained by the driver's rule, --num_samples EMA samples scored against the test split
  (`gen_jax.eval.classifier.Reference`: FD on the classifier's features, k-NN precision,
  recall), the times and a grid (`<out>/gan_<dataset>_<variant>.png`).
* cgan: `cgan.py:<dataset>`, the same scores and the share of samples drawn for class c that
  the classifier labels c (`evaluators.ClassAccuracy`), a grid with a row per class.
* losses: issue 7's four losses (LOSSES) as in `images`, with the reference: table.{md,json}.
* toy: `gan.py:eight_gaussians` per TOY_VARIANTS at its own steps: the share of 2,000 samples
  within 3 sigma of some centre and the smallest share of one mode (the test's criteria:
  >= 0.80 and >= 0.05), the time and a scatter plot.

Measured 2026-11-26 on the 2-core CPU at load 10-13 (times 3-5x idle), digits, 3,000 steps,
batch 64, 1,000 samples vs the 360 test images (FD / precision / recall / train s): reference
14.6 / 0.939 / 0.875; non_saturating 150.0 / 0.734 / 0.686 / 140; +r1 (the default) 66.3 /
0.701 / 0.878 / 169; hinge 908.4 / 0.992 / 0.000 / 116 (collapsed); +r1 61.2 / 0.690 / 0.858 /
224; least_squares 274.0 / 0.752 / 0.644 / 221; +r1 81.9 / 0.731 / 0.847 / 261; wgan_gp 57.2 /
0.708 / 0.869 / 467; hinge+sn 411.9 / 0.712 / 0.003 / 252 (collapsed, untuned); cgan 17.6 /
0.903 / 0.761 / 201, class accuracy 0.975. mnist_idx: reference 21.4 / 0.887 / 0.881; the former
DCGAN nets 591.6 / 0.677 / 0.600 / 1575 (now MLP nets: results/gan_mnist10k). eight_gaussians,
2,000 steps: 8/8 modes, 0.86-0.90 within 3 sigma, smallest mode 0.07-0.10, 23-34 s each.
"""
from __future__ import annotations

import datetime
import importlib
import os
import types

import numpy as np

from experiments import benchmark
from gen_jax.data import toy2d
from gen_jax.eval import classifier, evaluators, modes, speed, tables
from gen_jax.utils import images

DEFAULTS = {"parts": ["reference", "images", "cgan", "toy"], "out": "/tmp/gen_jax_gan_benchmark"}
# (loss, model fields): each loss plain and with the R1 penalty (γ = 1); WGAN-GP with its own
# penalty (λ = 10) and 3 critic steps per generator step; hinge with a spectrally normalised
# D (Miyato et al. 2018, SN-GAN's pairing).
VARIANTS = {**{loss + tag: (loss, {"r1_gamma": gamma}) for loss in ("non_saturating", "hinge", "least_squares")
               for tag, gamma in (("", 0.0), ("+r1", 1.0))},
            "wgan_gp": ("wgan_gp", {"r1_gamma": 0.0, "n_critic": 3}),
            "hinge+sn": ("hinge", {"r1_gamma": 0.0, "spectral_norm": True})}
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


def _config(paradigm, dataset, variant, variants=VARIANTS):
  config = importlib.import_module(f"experiments.configs.{paradigm}").get_config(dataset)
  config.model.update({"loss": variants[variant][0], **variants[variant][1]})
  return config


def images_part(args, variants, paradigm="gan") -> list:
  """Each variant trained and scored (cgan: and its class accuracy, with a grid a row a class)."""
  reference, results = classifier.reference(args.dataset), []
  for name in variants:
    grid = os.path.join(args.out, f"{paradigm}_{args.dataset}_{name}.png")
    scores = ([evaluators.Samples(args.num_samples, reference), evaluators.ClassAccuracy(reference, grid=grid)]
              if paradigm == "cgan" else [evaluators.Samples(args.num_samples, reference, grid=grid)])
    config = _config(paradigm, args.dataset, name)
    row, _ = benchmark.train_and_evaluate(f"{paradigm}_{name}", config, args, scores, log=args.log)
    results.append(benchmark.renamed({
        "part": "images" if paradigm == "gan" else paradigm, "dataset": args.dataset, "variant": name,
        "fields": VARIANTS[name][1], "n_critic": config.model.n_critic, **row,
        "classifier_test_accuracy": reference.net.meta.get("test_accuracy")}))
  return results


def toy_part(args) -> list:
  """TOY_VARIANTS on eight_gaussians at the config's steps: mode coverage of 2,000 samples."""
  own_steps, results = types.SimpleNamespace(**{**vars(args), "steps": 0, "budget_minutes": 0.0}), []
  for name in TOY_VARIANTS:
    row, x = benchmark.train_and_evaluate(f"gan_{name}", _config("gan", "eight_gaussians", name, TOY_VARIANTS),
                                          own_steps, [evaluators.Samples(2000, keep=2000)], log=args.log)
    near, per_mode = modes.mode_coverage(x, toy2d.EIGHT_GAUSSIANS_CENTRES, 3 * toy2d.EIGHT_GAUSSIANS_SIGMA)
    path = os.path.join(args.out, f"gan_eight_gaussians_{name}.png")
    real = toy2d.sample_eight_gaussians(np.random.default_rng(0), 2000)
    images.save_png(images.points_figure(x, lim=3.0, reference=real), path)
    results.append({"part": "toy", "variant": name, "steps": row["step"], "fields": TOY_VARIANTS[name][1],
                    "train_seconds": round(row["train_wall_s"], 1), "within_3_sigma": near,
                    "min_mode_share": float(per_mode.min()), "modes_covered": int(np.sum(per_mode >= 0.05)),
                    "grid": path})
  return results


def reference_part(dataset, num=1000) -> dict:
  return {"part": "reference", "dataset": dataset, "what": f"{num} train images vs test",
          **classifier.real_scores(dataset, num)}


def losses_table(reference: dict, rows: list, meta: dict) -> str:
  """The per-loss scores as markdown: the real-data reference first, then one row a loss."""
  fd = tables.fd_key([reference])
  length = (f"{meta['budget_minutes']:g} min of training each" if meta.get("budget_minutes")
            else "the same number of steps each")
  caption = [f"GAN losses on {meta['dataset']}, {length} (`gan.py:{meta['dataset']}`), 1,000 EMA samples "
             f"against the {reference['num_real']:,} test images; measured {meta['date']} on {meta['machine']}. "
             "train s: the loop's wall-clock, compilation and the end-of-run grid included; load avg: the "
             "1/5/15-minute load averages, mean of before and after training.", f"Command: `{meta['command']}`",
             *([meta["note"]] if meta.get("note") else [])]
  joined = lambda key, fn: lambda r: r.get(key) and fn(r[key])
  columns = [("loss", lambda r: r.get("variant") or f"reference: {r['what']}", ""),
             ("fields", joined("fields", lambda f: ", ".join(f"{k}={v}" for k, v in f.items())), ""),
             ("steps", "steps", ""), ("train s", "train_seconds", ".0f"),
             ("load avg", joined("load_avg", lambda l: "/".join(f"{v:.1f}" for v in l)), ""),
             (fd, fd, ".1f"), ("precision", "precision", ".3f"), ("recall", "recall", ".3f"),
             ("grid", joined("grid", os.path.basename), "")]
  return tables.markdown(columns, [reference, *rows], caption)


def run(args) -> dict:
  parts, results = args.parts, {}
  if "losses" in parts:        # the table is rewritten after each loss: a stopped run keeps its rows
    meta = {"date": datetime.date.today().isoformat(), "machine": speed.machine(), "dataset": args.dataset,
            "budget_minutes": args.budget_minutes or None, "command": args.command}
    reference, results["losses"] = reference_part(args.dataset), []
    for name in LOSSES:
      results["losses"] += images_part(args, (name,))
      tables.write(args.out, {"table.json": {"meta": meta, "reference": reference, "rows": results["losses"]},
                              "table.md": losses_table(reference, results["losses"], meta)})
  if "reference" in parts:
    results["reference"] = [reference_part(args.dataset)]
    args.log(results["reference"][0])
  if "images" in parts:
    results["images"] = images_part(args, args.only or tuple(VARIANTS))
  if "cgan" in parts:         # at the config's (or --steps) steps
    results["cgan"] = images_part(types.SimpleNamespace(**{**vars(args), "budget_minutes": 0.0}),
                                  ("non_saturating+r1",), paradigm="cgan")
  if "toy" in parts:
    results["toy"] = toy_part(args)
  return results
