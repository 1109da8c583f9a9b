r"""Hybrids suite: the tokenizers, the priors over their codes, text to image.

  python -m experiments.benchmark --suite=hybrids                       # digits -> results/hybrids/digits
  python -m experiments.benchmark --suite=hybrids --dataset=mnist_idx   # mnist10k (needs ../shared/data/mnist)
  python -m experiments.benchmark --suite=hybrids --steps=50 --num_samples=200 --out=/tmp/h   # a quick look
  python -m experiments.benchmark --suite=hybrids --only=vq_gpt,var --out=results/emerging/var_hybrids
      # next-scale (var on msvq) against raster-order (vq_gpt on vqvae): FD, bound, samples/s

The stage-2 configs PRIORS and TEXT2IMAGE (or --only), each after its stage 1 (found and
shared as the quality suite does: here vqvae.py, msvq.py and vae.py), trained from their own config
files (or --steps, --budget_minutes) by the driver's rule; --workdir=NAME=DIR,... gives
finished runs (stage 2 or stage 1) scored as they are. On the test split:
  * tokenizers: reconstruction bits/dim, MSE and FD, a VQ-VAE's code usage
    (`gen_jax.eval.reconstruction.stage1_scores`);
  * priors: test bits/dim where the paradigm has one (vq_gpt: -log p(x | z_q(x)) -
    log p(z_q(x)), a bound; var the same over its msvq token maps), FD, precision, recall,
    samples/s after compilation in one run and batch size, NFE (the sampler's count: var's K
    scales; vq_gpt, which reports none: a KV-cached call a code);
  * text2image: for each digit and caption template (gen_jax.data.captions) images drawn from
    the prompt, the share the classifier labels as that digit (issue 8's target: >= 80%), FD.
Writes `<out>/table.{md,json}` and `samples.png` (test images, reconstructions, samples).
"""
from __future__ import annotations

import datetime
import importlib
import math
import os

import jax
import numpy as np

from experiments import benchmark
from gen_jax import workdir as workdir_lib
from gen_jax.eval import classifier, conditional, evaluators, reconstruction, speed, tables

PRIORS = ("vq_gpt", "maskgit", "latent_diffusion", "var")
TEXT2IMAGE = "text2image"
SPEED_BATCH = 250


def ready(name, args, given, trained) -> tuple:
  """(run, state, train seconds or None, workdir) of a stage-2 model: `given[name]` as it is,
  else trained (or resumed) after its stage 1 (`given`, or trained once per `trained`)."""
  if name in given:
    return (*workdir_lib.restore(given[name])[:2], None, given[name])
  config = importlib.import_module(f"experiments.configs.{name}").get_config(args.dataset)
  stage1, _ = benchmark.find_stage1(config)
  if stage1 in given:
    config.stage1.workdir = given[stage1]
  else:
    benchmark.with_stage1(config, args, trained, args.log)
  workdir = benchmark.workdir_of(args, args.dataset, name)
  record = benchmark.train(name, config, workdir, args, args.log, trained)
  return (*workdir_lib.restore(workdir)[:2], record["train_wall_s"], workdir)


def table_markdown(result) -> str:
  meta, t2i = result["meta"], result["text2image"]
  fd = meta["fd_name"]
  rows = lambda d: [{"name": k, **v} for k, v in d.items()]
  usage = lambda key, fmt: lambda r: None if key not in r else f"{format(r[key], fmt)} of {r['num_codes']}"
  caption = [f"Measured {meta['date']} on {meta['machine']}; command: `{meta['command']}`.",
             f"Test split: {meta['num_real']} images; {fd} of {meta['num_samples']} samples "
             f"(reconstructions: of the test split) against it; samples/s after compilation, "
             f"batches of {SPEED_BATCH}, all in this run. Steps: each config's default"
             f"{'' if not meta['steps'] else ' overridden to ' + str(meta['steps'])}"
             + (f"; finished runs scored as they are: {', '.join(f'{k} = {v}' for k, v in meta['given'].items())}"
                if meta.get("given") else "") + ".", "", "Tokenizers (stage 1), on the test split:"]
  md = tables.markdown([("stage 1", "name", ""), ("steps", "step", ""),
                        ("recon bits/dim", "recon_bits_per_dim", ".3f"), ("recon MSE", "recon_mse", ".4f"),
                        ("recon " + fd, "recon " + fd, ".1f"),
                        ("code perplexity", usage("code_perplexity", ".1f"), ""),
                        ("dead codes", usage("dead_codes", ""), "")], rows(result["tokenizers"]), caption)
  md += "\n" + tables.markdown(
      [("model", "name", ""), ("on", "stage1", ""), ("parameters", "parameters", ","), ("steps", "step", ""),
       *tables.score_columns(fd)], rows(result["priors"]),
      ["Priors over the codes (stage 2; parameters: the prior's own, the frozen stage 1 "
       "not counted; NFE: network calls per sample batch):"])
  if t2i:
    acc = t2i["prompt_accuracy_per_digit"]
    md += "\n" + tables.markdown(
        [("digit", lambda r: "accuracy", ""), *((str(c), lambda r, c=c: acc[c], ".2f") for c in acc),
         ("mean", "prompt_accuracy", ".3f")], [t2i],
        [f"text2image (on {t2i['stage1']}, {t2i['step']} steps): share of images drawn from a caption "
         f"of digit c that the classifier labels c ({t2i['num_per_digit']} images per digit over "
         f"{len(t2i['templates'])} caption templates); {fd} {tables.cell(t2i.get(fd), '.1f')} of all of them."])
  return md


def run(args) -> dict:
  out = args.out or os.path.join("results", "hybrids", args.dataset)
  given = dict(kv.split("=", 1) for kv in args.workdir.split(",") if kv)
  reference = classifier.reference(args.dataset)
  test_levels, train_levels = (classifier.load_split(args.dataset, s)[0] for s in ("test", "train"))
  trained = {}
  runs = {name: ready(name, args, given, trained) for name in args.only or PRIORS + (TEXT2IMAGE,)}
  meta = {"date": datetime.date.today().isoformat(), "machine": speed.machine(), "command": args.command,
          "dataset": args.dataset, "steps": args.steps or None, "num_samples": args.num_samples,
          "num_real": len(reference.images), "fd_name": reference.fd_name,
          "classifier_test_accuracy": reference.net.meta.get("test_accuracy"), "given": given}
  result = {"meta": meta, "tokenizers": {}, "priors": {}, "text2image": None}
  panels = {"test images": reference.images[:64]}
  tokenizer_of, seen = {}, {}
  for name, (run_, *_) in runs.items():
    stage1 = workdir_lib.load_stage1(run_.config.stage1.workdir)
    if stage1.fingerprint not in seen:     # one row per distinct stage 1 (a fingerprint: a model)
      label = stage1.config.paradigm + (f" ({stage1.workdir})" if stage1.config.paradigm in seen.values() else "")
      result["tokenizers"][label], panels[f"{label} recon"] = reconstruction.stage1_scores(
          stage1, test_levels, train_levels, reference)
      seen[stage1.fingerprint] = label
    tokenizer_of[name] = seen[stage1.fingerprint]
  samples = evaluators.Samples(args.num_samples, reference, seed=int(args.seeds[0]), batch=SPEED_BATCH)
  for name, (run_, state, seconds, workdir) in runs.items():
    common = {"stage1": tokenizer_of[name], "step": int(run_.config.num_train_steps),
              "workdir": given.get(name), "train_s": seconds}
    if name == TEXT2IMAGE:
      params = run_.sampling_params(state)
      row, panels["text2image: 'a handwritten c'"] = conditional.caption_accuracy(
          lambda rng, n, prompt: run_.paradigm.sample(params, rng, n, prompt=prompt), reference,
          jax.random.key(int(args.seeds[0])), args.per_prompt)
      result["text2image"] = {**common, **row}
    else:
      ev = benchmark.final_eval(workdir, run_, state, args.max_eval)
      row = {"bits_per_dim": ev["bits_per_dim"], "bound": ev["bound"],
             "parameters": int(sum(np.size(p) for p in jax.tree.leaves(state.params))),
             **evaluators.evaluate(run_, state, [samples])}
      panels[name] = row.pop("samples")
      if row["nfe"] is None and run_.info.kind == "codes":   # autoregressive: a KV-cached call a code
        row["nfe"] = math.prod(run_.info.shape)
      result["priors"][name] = {**common, **row}
  tables.write(out, {"table.json": result, "table.md": table_markdown(result)})
  tables.panels_figure(panels, os.path.join(out, "samples.png"), size=(2.3, 3.4), dpi=140, fontsize=8)
  args.log(table_markdown(result))
  return result
