r"""Quality suite: every paradigm trained under one budget and scored on one scale.

  python -m experiments.benchmark --suite=quality --dataset=digits   # 1 min each, 500 samples
  python -m experiments.benchmark --suite=quality --dataset=mnist_idx --budget_minutes=10

The paradigms are discovered, never listed (`benchmark.discover_configs`, and
--extra_configs=package.module:arg,...), each trained under the budget rule, a two-stage one
after its stage 1 (trained once, shared: `benchmark.with_stage1`). All are scored on the same
data: bits/dim on the whole test split (exact or a bound); FD on the dataset's classifier
(not an FID), precision and recall (k-NN, arXiv:1904.06991) of --num_samples samples against
that split; samples/s after compilation, NFE, training examples/s (batch / probe step time).
Writes `<out>/table.{md,json}`, `samples.png`, `bpd_vs_fd.png` (marker area ~ samples/s);
scores are cached in each workdir while its step, --num_samples and the seed hold.
"""
from __future__ import annotations

import datetime
import os

from experiments import benchmark
from gen_jax.eval import classifier, evaluators, speed, tables

DEFAULTS = {"budget_minutes": 1.0, "num_samples": 500}


def table_markdown(rows, meta) -> str:
  """The table as markdown, with its date, machine and command above it."""
  fd = tables.fd_key(rows)
  columns = [("paradigm", lambda r: r["paradigm"] + (f" (on {r['stage1']})" if r.get("stage1") else ""), ""),
             ("steps", "step", ""), *tables.score_columns(fd), ("train ex/s", "train_examples_per_s", tables.rate)]
  caption = [f"Measured {meta['date']} on {meta['machine']}; command: `{meta['command']}`.",
             f"Budget {meta['budget_minutes']} min of training per paradigm; bits/dim on the whole "
             f"{meta['split']} split ({meta['num_real']} images); {fd}, precision and recall of "
             f"{meta['num_samples']} samples against it; samples/s timed after the sampler's compilation "
             f"(the second of >= 2 batches on); train ex/s = batch size / median step time of the budget probe."
             + (" 'A (on B)': stage 2 of a two-stage model, trained on the codes of the row B's run "
                "(its own budget; A's numbers exclude B's training)." if any(r.get("stage1") for r in rows)
                else "")]
  return tables.markdown(columns, rows, caption)


def run(args) -> list:
  """Trains and scores every discovered paradigm, rewriting the outputs after each."""
  out = args.out or os.path.join("results", args.dataset)
  configs = benchmark.discover_configs(args.dataset, args.extra_configs, args.only)
  if not configs:
    raise SystemExit(f"No config accepts dataset {args.dataset!r} (with --only={args.only}).")
  reference = classifier.reference(args.dataset)
  meta = {"date": datetime.date.today().isoformat(), "machine": speed.machine(),
          "command": args.command, "dataset": args.dataset, "budget_minutes": args.budget_minutes,
          "max_steps": args.max_steps, "num_samples": args.num_samples, "split": "test",
          "num_real": len(reference.images),
          "classifier_test_accuracy": reference.net.meta.get("test_accuracy")}
  seed = int(args.seeds[0])
  scores = evaluators.Samples(args.num_samples, reference=reference, seed=seed)
  rows, grids, trained = [], {}, {}     # trained: workdir -> record (each trained once)
  for name, config in configs:
    stage1 = benchmark.with_stage1(config, args, trained, args.log)
    row, grids[name] = benchmark.train_and_evaluate(
        name, config, args, [scores], dataset=args.dataset, log=args.log, trained=trained,
        cache_key={"num_samples": args.num_samples, "seed": seed})
    rows.append({"paradigm": name, "module": config.paradigm, **row,
                 **({"stage1": stage1} if stage1 else {})})
    tables.write(out, {"table.json": {"meta": meta, "rows": rows}, "table.md": table_markdown(rows, meta)})
    tables.panels_figure(grids, os.path.join(out, "samples.png"), size=(2.2, 2.6), dpi=130, fontsize=9)
    tables.likelihood_vs_fd_figure(rows, os.path.join(out, "bpd_vs_fd.png"))   # rewritten after each row
  return rows
