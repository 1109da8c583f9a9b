r"""The README gallery: one PNG grid of samples per family, from trained workdirs.

  python -m experiments.gallery --out=results/gallery
  python -m experiments.gallery --out=/tmp/gallery --budget_minutes=0.5 --only=vae,gan
  python -m experiments.gallery --out=results/gallery --budget_overrides=ddpm:5

Paradigms are found as the benchmark finds them (`experiments.benchmark.discover_configs`:
every `experiments/configs/<name>.py` whose `get_config(--dataset)` returns a config), and
each is trained exactly as the quality suite trains it: in the benchmark's workdir
`<workdir_root>/<dataset>/<name>_<budget>min`, for `--budget_minutes` of wall clock
(`benchmark.train_once`), a two-stage config after its stage 1 (`benchmark.with_stage1`);
`--budget_overrides=NAME:MINUTES,...` gives some paradigms another budget (and so another
workdir, `<name>_<minutes>min`), e.g. DDPM, whose 1,000-step sampler needs more training.
So a gallery run after `python -m experiments.benchmark --suite=quality --budget_minutes=B`
with the same root and budget only samples: nothing is retrained. The paradigms of a family
(FAMILIES below; a paradigm not listed there is a family of its own) are drawn side by side in
`<out>/<family>.png`, each as a 10 x 10 grid of samples from its EMA parameters (class-
conditional models cycle through the classes, one class per column). Text paradigms
(`--text_config`, default nanoGPT's CPU recipe on Tiny Shakespeare, skipped when its text
file is missing) are written as samples to `<out>/<name>.txt`. `<out>/index.md` lists every
file with its paradigms, their training steps and the command.
"""
from __future__ import annotations

import argparse
import datetime
import os
import sys

import jax
import numpy as np

from experiments import benchmark

# Families in the order the gallery shows them; a paradigm module maps to one family.
FAMILIES = {
    "latent_variable": ("vae", "vqvae"),
    "autoregressive": ("gpt", "pixel_ar"),
    "flow": ("realnvp", "glow", "flow2d"),
    "diffusion": ("ddpm", "score_sde", "edm", "flow_matching"),
    "adversarial": ("gan", "cgan"),
    "hybrid": ("vq_gpt", "maskgit", "latent_diffusion", "text2image"),
}
NUM_SAMPLES, NUM_COLUMNS = 100, 10
# What a panel shows where it is not the model's own samples, written under its title.
NOTES = {"vqvae": "decoded uniformly random codes: a VQ-VAE has no prior of its own "
                  "(vq_gpt, maskgit and text2image learn one)"}
TEXT_SAMPLES, TEXT_TOKENS = 4, 400


def family_of(name: str) -> str:
  """The family of a paradigm (config name); a paradigm not in FAMILIES is its own family."""
  return next((family for family, names in FAMILIES.items() if name in names), name)


def group_by_family(names) -> dict:
  """{family: [names]} in FAMILIES' order (unlisted families after, by name); names keep
  their order within a family."""
  groups = {}
  for name in names:
    groups.setdefault(family_of(name), []).append(name)
  order = list(FAMILIES) + sorted(f for f in groups if f not in FAMILIES)
  return {family: groups[family] for family in order if family in groups}


def decode_text(tokens, vocab: str) -> str:
  """int tokens [T] -> the string of their characters."""
  return "".join(vocab[int(t)] for t in np.asarray(tokens).reshape(-1))


def family_figure(panels: dict, path: str, title: str) -> None:
  """One titled picture per paradigm ({label: uint8 [H, W, 3]}), side by side, as a PNG."""
  from matplotlib.figure import Figure          # no pyplot: leaves the caller's backend alone
  fig = Figure(figsize=(3.2 * len(panels), 3.6))
  axes = fig.subplots(1, len(panels), squeeze=False)[0]
  for ax, (label, picture) in zip(axes, panels.items()):
    ax.imshow(picture, interpolation="nearest")
    ax.set_title(label, fontsize=10)
    ax.axis("off")
  fig.suptitle(title, fontsize=11)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=110)


def picture(samples) -> np.ndarray:
  """Samples -> a picture: images as a grid NUM_COLUMNS wide, points as a scatter plot."""
  from gen_jax.utils import images
  samples = np.asarray(samples)
  if samples.ndim == 4:
    return images.image_grid(samples, ncols=NUM_COLUMNS)
  return images.to_picture(samples)


def parse_budgets(spec: str, default: float) -> dict:
  """"ddpm:5,edm:2" -> {"ddpm": 5.0, "edm": 2.0}; other paradigms take `default` (key None)."""
  budgets = {None: float(default)}
  for item in filter(None, (s.strip() for s in spec.split(","))):
    name, sep, minutes = item.partition(":")
    if not sep:
      raise SystemExit(f"--budget_overrides entry {item!r} is not NAME:MINUTES (e.g. ddpm:5).")
    budgets[name] = float(minutes)
  return budgets


def trained_run(name, config, workdir_root, dataset, budget_minutes, max_steps, trained, log):
  """(run, state, step, workdir) of `name` trained (or reused) in its benchmark workdir."""
  from gen_jax import workdir as workdir_lib
  workdir = os.path.join(workdir_root, dataset, name + benchmark.workdir_suffix(budget_minutes, max_steps))
  benchmark.with_stage1(config, workdir_root, budget_minutes, max_steps, log=log, trained=trained)
  benchmark.train_once(name, config, workdir, budget_minutes, max_steps, log=log, trained=trained)
  return (*workdir_lib.restore(workdir), workdir)


def image_gallery(dataset, out, workdir_root, budgets, max_steps=0, only=None, seed=0,
                  log=print) -> list:
  """Writes <out>/<family>.png for every discovered paradigm of `dataset`; returns index rows.

  budgets: {name: minutes}, None -> the default. A paradigm that fails to build, train or
  sample is left out of its picture, and its row in the index says why.
  """
  configs = dict(benchmark.discover_configs(dataset, only=only))
  trained, rows = {}, []
  for family, names in group_by_family(configs).items():
    panels = {}
    for i, name in enumerate(names):
      row = {"family": family, "paradigm": name, "file": f"{family}.png"}
      rows.append(row)
      try:
        run, state, step, workdir = trained_run(name, configs[name], workdir_root, dataset,
                                                budgets.get(name, budgets[None]), max_steps,
                                                trained, log)
        rng = jax.random.fold_in(jax.random.key(seed), len(rows))
        samples, _, _ = benchmark.draw(run.paradigm, run.sampling_params(state), rng, NUM_SAMPLES)
      except Exception as e:        # one broken paradigm must not cost the others' pictures
        row.update(step=None, note=f"not drawn: {type(e).__name__}: {e}")
        log(f"[gallery] {family}: {name} NOT DRAWN: {type(e).__name__}: {e}")
        continue
      panels[f"{name} ({step:,} steps)"] = picture(samples)
      row.update(step=int(step), workdir=workdir, note=NOTES.get(name, ""),
                 minutes=budgets.get(name, budgets[None]))
      log(f"[gallery] {family}: {name} at step {step} from {workdir}")
    if panels:
      family_figure(panels, os.path.join(out, f"{family}.png"),
                    f"{family.replace('_', ' ')} on {dataset}")
  return rows


def text_gallery(text_configs, out, workdir_root, budgets, max_steps=0, seed=0,
                 log=print) -> list:
  """Writes <out>/<name>.txt samples for each "file.py:arg" text config; skips missing text."""
  import importlib
  from gen_jax.errors import UserError
  rows = []
  for spec in text_configs:
    file, _, arg = spec.partition(":")
    name = os.path.splitext(os.path.basename(file))[0]
    config = importlib.import_module(f"experiments.configs.{name}").get_config(arg)
    try:
      run, state, step, workdir = trained_run(name, config, workdir_root, config.dataset,
                                              budgets.get(name, budgets[None]), max_steps, {},
                                              log)
    except (FileNotFoundError, UserError) as e:
      log(f"[gallery] skipping {spec}: {e}")
      continue
    tokens = run.paradigm.sample(run.sampling_params(state), jax.random.key(seed), TEXT_SAMPLES,
                                 num_tokens=TEXT_TOKENS)
    text = "\n\n-----\n\n".join(decode_text(t, run.info.vocab) for t in np.asarray(tokens))
    path = os.path.join(out, f"{name}.txt")
    os.makedirs(out, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
      f.write(text + "\n")
    rows.append({"family": family_of(name), "paradigm": f"{name} ({spec})", "step": int(step),
                 "workdir": workdir, "file": f"{name}.txt", "note": "",
                 "minutes": budgets.get(name, budgets[None])})
    log(f"[gallery] {name}: {TEXT_SAMPLES} samples at step {step} -> {path}")
  return rows


def write_index(rows, out, command) -> str:
  """<out>/index.md: the files, their paradigms and steps, the date and the command."""
  lines = [f"Gallery written {datetime.date.today().isoformat()} by `{command}`; "
           "samples from each paradigm's EMA parameters after the steps shown.", "",
           "| file | family | paradigm | training budget (min) | steps | note |",
           "|---|---|---|---|---|---|"]
  lines += [f"| {r['file']} | {r['family']} | {r['paradigm']} | {r.get('minutes', '—')} | "
            f"{'—' if r.get('step') is None else format(r['step'], ',')} | {r.get('note', '')} |"
            for r in rows]
  path = os.path.join(out, "index.md")
  with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")
  return path


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", default="results/gallery")
  parser.add_argument("--dataset", default="digits")
  parser.add_argument("--budget_minutes", type=float, default=1.0,
                      help="training wall clock per paradigm (the benchmark's rule and workdirs)")
  parser.add_argument("--budget_overrides", default="",
                      help="NAME:MINUTES,... other budgets for some paradigms (e.g. ddpm:5); "
                           "their workdirs are <name>_<minutes>min")
  parser.add_argument("--max_steps", type=int, default=0, help="cap on training steps (0: none)")
  parser.add_argument("--workdir_root", default="/tmp/gen_jax_benchmark")
  parser.add_argument("--only", default="", help="comma-separated config names to keep")
  parser.add_argument("--text_config", default="gpt.py:shakespeare_small",
                      help="comma-separated text configs (file.py:arg); '' for none")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  only = [s for s in args.only.split(",") if s] or None
  budgets = parse_budgets(args.budget_overrides, args.budget_minutes)
  rows = image_gallery(args.dataset, args.out, args.workdir_root, budgets, args.max_steps, only,
                       args.seed)
  text = [s for s in args.text_config.split(",") if s]
  if only is not None:
    text = [s for s in text if os.path.splitext(s.partition(":")[0])[0] in only]
  rows += text_gallery(text, args.out, args.workdir_root, budgets, args.max_steps, args.seed)
  command = "python -m experiments.gallery " + " ".join(sys.argv[1:] if argv is None else argv)
  print(f"wrote {write_index(rows, args.out, command.strip())}: "
        f"{sum(r.get('step') is not None for r in rows)} of {len(rows)} paradigms drawn in {args.out}")


if __name__ == "__main__":
  main()
