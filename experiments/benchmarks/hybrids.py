r"""Hybrid family benchmark: the tokenizers, the priors over their codes, text to image.

  python -m experiments.benchmarks.hybrids                        # digits -> results/hybrids/digits
  python -m experiments.benchmarks.hybrids --dataset=mnist_idx    # mnist10k (needs ../shared/data/mnist)
  python -m experiments.benchmarks.hybrids --steps=50 --num_samples=200 --out=/tmp/h   # a quick look

Every model is trained from its own config file with that file's defaults (or --steps),
through the loop, in `<workdir>/<dataset>/<name>` (a rerun resumes, and reuses finished
runs): the stage-2 configs `PRIORS` (vq_gpt, maskgit, latent_diffusion) and `TEXT2IMAGE`,
each after its stage 1, found and shared as the cross-family benchmark does
(`experiments.benchmark.find_stage1`: the config file whose values match every field of
`config.stage1`, here vqvae.py and vae.py), with `config.stage1.workdir` pointed at it.

Measured, on the test split of the dataset (and 1,000 samples by default):
  * tokenizers (vqvae, vae): reconstruction bits/dim, -log2 p(x | code(x)) per sub-pixel on
    the data's levels (the decoder's term of the two-stage bound), the mean squared error of
    E[x | code(x)] in [0, 1], and "FD (classifier)" of those reconstructions against the
    test images (what the stage-1 decoder loses: a floor for its priors' FD). For the VQ-VAE,
    code usage over the train split's codes: the perplexity exp(H(p)) of the code
    frequencies p (K when uniform) and the dead codes (never used), of K.
  * priors: test bits/dim where the paradigm has one (vq_gpt: -log p(x | z_q(x)) -
    log p(z_q(x)), a bound), FD, precision and recall of the samples, sampling samples/s
    measured in one run on the same machine with the same batch, after compilation
    (`experiments.benchmark.draw`), and the network evaluations per sample (NFE: the
    sampler's own count; vq_gpt, which reports none, makes one KV-cached call per code).
  * text2image: for each digit c and each caption template of gen_jax.data.captions, images
    drawn from the prompt; the share that the classifier labels c, per digit (over all
    templates) and overall (issue 8's target: >= 80% on digits), and their FD.
Writes `<out>/table.md`, `table.json` and `samples.png` (test images, reconstructions, the
priors' samples, and text2image's rows for "a handwritten <digit>").
Times are wall-clock on whatever machine runs it (state it with the numbers).
"""
from __future__ import annotations

import argparse
import datetime
import importlib
import json
import math
import os
import sys

import jax
import numpy as np

from experiments import benchmark
from experiments.benchmarks.common import timed_train, with_steps

PRIORS = ("vq_gpt", "maskgit", "latent_diffusion")
TEXT2IMAGE = "text2image"
SPEED_BATCH = 250


def _config(name, dataset, steps):
  return with_steps(importlib.import_module(f"experiments.configs.{name}").get_config(dataset), steps)


def ready_runs(dataset, root, steps=None, names=PRIORS + (TEXT2IMAGE,), given=None, log=print):
  """Every stage-2 config of `names` and its stage 1, trained (or resumed) in `root`, except
  the finished runs `given` ({name: workdir}, used as they are, with their saved configs).

  Returns ({name: (run, state, train seconds or None)}, {name: its stage-1 workdir}).
  """
  from gen_jax import workdir as workdir_lib
  given = dict(given or {})
  runs, stage1_dirs, trained = {}, {}, set()
  for name in names:
    if name in given:
      config, workdir = workdir_lib.load_config(given[name]), given[name]
    else:
      config, workdir = _config(name, dataset, steps), os.path.join(root, dataset, name)
      stage1, stage1_config = benchmark.find_stage1(config)
      config.stage1.workdir = given.get(stage1) or os.path.join(root, dataset, stage1)
      if stage1 not in given and stage1 not in trained:
        log(f"[{stage1}] training (stage 1) in {config.stage1.workdir}")
        timed_train(with_steps(stage1_config, steps), config.stage1.workdir)
        trained.add(stage1)
    log(f"[{name}] {'using' if name in given else 'training'} {workdir}")
    if name in given:                                   # read only: nothing written there
      run, state, _ = workdir_lib.restore(workdir)
      runs[name] = (run, state, None)
    else:
      runs[name] = timed_train(config, workdir)
    stage1_dirs[name] = config.stage1.workdir
  return runs, stage1_dirs


# ------------------------------------------------------------------ scores ---

def tokenizer_scores(stage1, images, train_images, net, real01) -> tuple:
  """Reconstruction bits/dim, MSE and FD of a stage-1 run (`gen_jax.train.stages.Stage1`) on
  `images` (levels); for codes also their usage over `train_images`.
  Returns (row, reconstructions of the first 64)."""
  from gen_jax.eval import features, frechet
  encode, decode = jax.jit(stage1.encode), jax.jit(stage1.decode)
  ll_fn = jax.jit(stage1.decoder_log_likelihood)
  recon, ll = [], []
  for i in range(0, len(images), 500):
    x = images[i:i + 500]
    code = encode(x)
    recon.append(np.asarray(decode(code)))
    ll.append(np.asarray(ll_fn(code, x)))
  recon, ll = np.concatenate(recon), np.concatenate(ll)
  info = stage1.info
  x01 = features.levels_to_unit(images, info.num_levels)
  fd = frechet.fd_name(net.dataset)
  row = {"workdir": stage1.workdir, "paradigm": stage1.config.paradigm, "step": stage1.step,
         "recon_bits_per_dim": float(-ll.mean() / (info.num_dims * math.log(2.0))),
         "recon_mse": float(np.mean((recon - x01) ** 2)),
         "recon " + fd: features.sample_metrics(net, real01, recon)[fd]}
  codes = np.concatenate([np.asarray(encode(train_images[i:i + 500]))
                          for i in range(0, len(train_images), 500)])
  if np.issubdtype(codes.dtype, np.integer):
    k = int(stage1.config.model.num_codes)
    counts = np.bincount(codes.reshape(-1), minlength=k)
    freq = counts[counts > 0] / counts.sum()
    row.update(num_codes=k, code_perplexity=float(np.exp(-np.sum(freq * np.log(freq)))),
               dead_codes=int(np.sum(counts == 0)))
  return row, recon[:64]


def prior_scores(run, state, net, real01, num_samples, seed=0) -> tuple:
  """bits/dim (or None), FD / precision / recall, samples/s and NFE; and 64 samples."""
  from gen_jax.eval import features
  from gen_jax.eval import likelihood as likelihood_lib
  result = likelihood_lib.evaluate(run, state, split="test")
  row = {"bits_per_dim": None if result is None else float(result["bits_per_dim"]),
         "bound": None if result is None else bool(result["bound"]),
         "parameters": int(sum(np.size(p) for p in jax.tree.leaves(state.params)))}
  fake, rate, nfe = benchmark.draw(run.paradigm, run.sampling_params(state),
                                   jax.random.key(seed), num_samples, batch=SPEED_BATCH)
  if nfe is None and run.info.kind == "codes":   # autoregressive: one KV-cached call per code
    nfe = math.prod(run.info.shape)
  row.update(features.sample_metrics(net, real01, fake.astype(np.float32)))
  row.update(samples_per_s=rate, nfe=nfe)
  return row, fake[:64]


def prompt_accuracy(run, state, net, real01, per_prompt, seed=0) -> tuple:
  """text2image: per digit c, the share of images drawn from every caption template of c
  that the classifier labels c; FD of all of them. Returns (row, [10, 8] grid of template 0)."""
  from gen_jax.data import captions
  from gen_jax.eval import features
  params = run.sampling_params(state)
  per_digit, images, grid = {}, [], []
  for c in range(captions.NUM_DIGITS):
    hits = total = 0
    for t in range(len(captions.TEMPLATES)):
      key = jax.random.fold_in(jax.random.key(seed), 100 * c + t)
      x = np.asarray(run.paradigm.sample(params, key, per_prompt, prompt=captions.caption(c, t)))
      hits += int(np.sum(net.predict(x) == c))
      total += len(x)
      images.append(x)
      if t == 0:
        grid.append(x[:8])
    per_digit[c] = hits / total
  row = {"prompt_accuracy_per_digit": per_digit,
         "prompt_accuracy": float(np.mean(list(per_digit.values()))),
         "num_per_digit": per_prompt * len(captions.TEMPLATES),
         "templates": list(captions.TEMPLATES)}
  row.update(features.sample_metrics(net, real01, np.concatenate(images).astype(np.float32)))
  return row, np.concatenate(grid)


# ----------------------------------------------------------------- outputs ---

def _cell(v, digits=3):
  if v is None:
    return "—"
  if isinstance(v, float):
    return f"{v:,.0f}" if digits == 0 else f"{v:.{digits}f}"
  return str(v)


def table_markdown(result) -> str:
  meta, tok, pri, t2i = result["meta"], result["tokenizers"], result["priors"], result["text2image"]
  fd = meta["fd_name"]
  lines = [f"Measured {meta['date']} on {meta['machine']}; command: `{meta['command']}`.",
           f"Test split: {meta['num_real']} images; {fd} of {meta['num_samples']} samples "
           f"(reconstructions: of the test split) against it; samples/s after compilation, "
           f"batches of {SPEED_BATCH}, all in this run. Steps: each config's default"
           f"{'' if not meta['steps'] else ' overridden to ' + str(meta['steps'])}"
           + (f"; finished runs scored as they are: {', '.join(f'{k} = {v}' for k, v in meta['given'].items())}"
              if meta.get("given") else "") + ".", "",
           "Tokenizers (stage 1), on the test split:", "",
           "| stage 1 | steps | recon bits/dim | recon MSE | recon " + fd + " | code perplexity | dead codes |",
           "|---|---|---|---|---|---|---|"]
  for name, r in tok.items():
    usage = (f"{r['code_perplexity']:.1f} of {r['num_codes']}" if "code_perplexity" in r else "—")
    dead = f"{r['dead_codes']} of {r['num_codes']}" if "dead_codes" in r else "—"
    lines.append(f"| {name} | {r['step']} | {_cell(r['recon_bits_per_dim'])} | "
                 f"{_cell(r['recon_mse'], 4)} | {_cell(r['recon ' + fd], 1)} | {usage} | {dead} |")
  lines += ["", "Priors over the codes (stage 2; parameters: the prior's own, the frozen stage 1 "
            "not counted; NFE: network calls per sample batch):", "",
            f"| model | on | parameters | steps | bits/dim | exact/bound | {fd} | precision | recall | samples/s | NFE |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
  for name, r in pri.items():
    flag = "—" if r.get("bound") is None else ("bound" if r["bound"] else "exact")
    lines.append(f"| {name} | {r['stage1']} | {r['parameters']:,} | {r['step']} | "
                 f"{_cell(r['bits_per_dim'])} | {flag} | "
                 f"{_cell(r.get(fd), 1)} | {_cell(r['precision'])} | {_cell(r['recall'])} | "
                 f"{benchmark._rate(r['samples_per_s'])} | {_cell(r['nfe'])} |")
  if t2i:
    acc = t2i["prompt_accuracy_per_digit"]
    lines += ["", f"text2image (on {t2i['stage1']}, {t2i['step']} steps): share of images drawn "
              f"from a caption of digit c that the classifier labels c ({t2i['num_per_digit']} "
              f"images per digit over {len(t2i['templates'])} caption templates); "
              f"{fd} {_cell(t2i.get(fd), 1)} of all of them.", "",
              "| digit | " + " | ".join(str(c) for c in acc) + " | mean |",
              "|---" * (len(acc) + 2) + "|",
              "| accuracy | " + " | ".join(f"{v:.2f}" for v in acc.values())
              + f" | {t2i['prompt_accuracy']:.3f} |"]
  return "\n".join(lines) + "\n"


def plot(panels: dict, path: str) -> None:
  """One titled grid per panel, side by side (text2image: one row per digit)."""
  from matplotlib.figure import Figure
  from gen_jax.utils import images
  fig = Figure(figsize=(2.3 * len(panels), 3.4))
  axes = fig.subplots(1, len(panels), squeeze=False)
  for ax, (title, x) in zip(axes[0], panels.items()):
    ax.imshow(images.image_grid(x, ncols=8, upscale=1), interpolation="nearest")
    ax.set_title(title, fontsize=8)
    ax.axis("off")
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=140)


# --------------------------------------------------------------------- run ---

def run(dataset="digits", steps=None, root="/tmp/gen_jax_hybrids", out=None, num_samples=1000,
        per_prompt=20, names=PRIORS + (TEXT2IMAGE,), given=None, command="", log=print) -> dict:
  from experiments import train_classifier
  from gen_jax.eval import features, frechet
  from gen_jax import workdir as workdir_lib
  out = out or os.path.join("results", "hybrids", dataset)
  net = train_classifier.load_or_train(dataset)
  test_levels, _, info = train_classifier.load_split(dataset, "test")
  train_levels, _, _ = train_classifier.load_split(dataset, "train")
  real01 = features.levels_to_unit(test_levels, info.num_levels)
  runs, stage1_dirs = ready_runs(dataset, root, steps, names, given, log)
  meta = {"date": datetime.date.today().isoformat(), "machine": benchmark.machine(),
          "command": command, "dataset": dataset, "steps": steps, "num_samples": num_samples,
          "num_real": int(real01.shape[0]), "fd_name": frechet.fd_name(net.dataset),
          "classifier_test_accuracy": net.meta.get("test_accuracy"), "given": given or {}}
  result = {"meta": meta, "tokenizers": {}, "priors": {}, "text2image": None}
  panels = {"test images": real01[:64]}
  # Stage-1 runs, one row per distinct tokenizer (runs with one fingerprint are the same model).
  tokenizer_of, seen = {}, {}
  for name in names:
    stage1 = workdir_lib.load_stage1(stage1_dirs[name])
    if stage1.fingerprint not in seen:
      label = stage1.config.paradigm
      label = label if label not in result["tokenizers"] else f"{label} ({stage1.workdir})"
      row, recon = tokenizer_scores(stage1, test_levels, train_levels, net, real01)
      result["tokenizers"][label] = row
      panels[f"{label} recon"] = recon
      seen[stage1.fingerprint] = label
      log(json.dumps({label: row}))
    tokenizer_of[name] = seen[stage1.fingerprint]
  for name in names:
    run_, state, seconds = runs[name]
    common = {"stage1": tokenizer_of[name], "step": int(run_.config.num_train_steps),
              "workdir": given.get(name) if given else None, "train_s": seconds}
    if name == TEXT2IMAGE:
      row, grid = prompt_accuracy(run_, state, net, real01, per_prompt)
      result["text2image"] = {**common, **row}
      panels["text2image: 'a handwritten c'"] = grid
    else:
      row, fake = prior_scores(run_, state, net, real01, num_samples)
      result["priors"][name] = {**common, **row}
      panels[name] = fake
    log(json.dumps({name: row}, default=str))
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, "table.json"), "w") as f:
    json.dump(result, f, indent=1, default=str)
  with open(os.path.join(out, "table.md"), "w") as f:
    f.write(table_markdown(result))
  plot(panels, os.path.join(out, "samples.png"))
  log(table_markdown(result))
  return result


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--dataset", default="digits", choices=("digits", "mnist_idx"))
  parser.add_argument("--steps", type=int, default=0, help="training steps of every model (0: each config's)")
  parser.add_argument("--workdir", default="/tmp/gen_jax_hybrids")
  parser.add_argument("--out", default=None, help="default results/hybrids/<dataset>")
  parser.add_argument("--num_samples", type=int, default=1000)
  parser.add_argument("--per_prompt", type=int, default=20,
                      help="text2image images per (digit, caption template)")
  parser.add_argument("--only", default="", help="comma-separated stage-2 names (default: all)")
  parser.add_argument("--workdirs", default="",
                      help="name=DIR,...: finished runs to score as they are instead of training "
                           "(stage 2: vq_gpt, maskgit, latent_diffusion, text2image; stage 1: vqvae, vae)")
  args = parser.parse_args(argv)
  command = "python -m experiments.benchmarks.hybrids " + " ".join(argv if argv is not None else sys.argv[1:])
  names = tuple(s for s in args.only.split(",") if s) or PRIORS + (TEXT2IMAGE,)
  given = dict(kv.split("=", 1) for kv in args.workdirs.split(",") if kv)
  return run(args.dataset, args.steps or None, args.workdir, args.out, args.num_samples,
             args.per_prompt, names, given, command)


if __name__ == "__main__":
  main()
