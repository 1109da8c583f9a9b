r"""The README gallery: one PNG grid of samples per family, from trained workdirs.

  python -m experiments.gallery --out=results/gallery
  python -m experiments.gallery --out=/tmp/gallery --budget_minutes=0.5 --only=vae,gan
  python -m experiments.gallery --out=results/gallery --budget_overrides=ddpm:5

Paradigms are found as the benchmark finds them (`experiments.benchmark.discover_configs`:
every `experiments/configs/<name>.py` whose `get_config(--dataset)` returns a config), and
each is trained exactly as the quality suite trains it: in the benchmark's workdir
`<workdir_root>/<dataset>/<name>_<budget>min`, for `--budget_minutes` of wall clock
(`benchmark.train`), a two-stage config after its stage 1 (`benchmark.with_stage1`);
`--budget_overrides=NAME:MINUTES,...` gives some paradigms another budget (and so another
workdir, `<name>_<minutes>min`), e.g. DDPM, whose 1,000-step sampler needs more training.
So a gallery run after `python -m experiments.benchmark --suite=quality --budget_minutes=B`
with the same root and budget only samples: nothing is retrained. The paradigms of a family
(FAMILIES below; a paradigm not listed there is a family of its own) are drawn side by side in
`<out>/<family>.png`, each as a 10 x 10 grid of samples from its EMA parameters (class-
conditional models cycle through the classes, one class per column). Text paradigms
(`--text_config`, default nanoGPT's CPU recipe on Tiny Shakespeare, skipped when its text
file is missing) are written as samples to `<out>/<name>.txt`. A paradigm that also reads
images (its `sample` takes `question`: any2any, lmm) gets `<out>/<name>_questions.png` besides:
test images, each with every question of gen_jax.data.captions.QUESTIONS asked and the answer
it gave. `<out>/index.md` lists every file with its paradigms, their training steps and the
command.
"""
from __future__ import annotations

import datetime
import functools
import os
import sys

import jax
import numpy as np

from experiments import benchmark
from gen_jax.errors import UserError
from gen_jax.eval import tables

# Families in the order the gallery shows them; a paradigm module maps to one family.
FAMILIES = {
    "latent_variable": ("vae", "vqvae", "msvq"),
    "autoregressive": ("gpt", "pixel_ar"),
    "flow": ("realnvp", "glow", "flow2d"),
    "diffusion": ("ddpm", "score_sde", "edm", "flow_matching", "dit", "consistency"),
    "adversarial": ("gan", "cgan"),
    "hybrid": ("vq_gpt", "var", "maskgit", "latent_diffusion", "text2image"),
    "multimodal": ("any2any", "lmm"),
}
NUM_SAMPLES, NUM_COLUMNS = 100, 10
# What a panel shows where it is not the model's own samples, written under its title.
NOTES = {"vqvae": "decoded uniformly random codes: a VQ-VAE has no prior of its own "
                  "(vq_gpt, maskgit and text2image learn one)",
         "msvq": "decoded uniformly random token maps: var learns their prior"}
TEXT_SAMPLES, TEXT_TOKENS = 4, 400
# One titled picture per paradigm ({label: uint8 [H, W, 3]}), side by side, as a PNG.
family_figure = functools.partial(tables.panels_figure, size=(3.2, 3.6), dpi=110, fontsize=10)


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


def trained_run(name, config, dataset, args, trained) -> tuple:
  """(run, state, step, workdir) of `name` trained (or reused) in its benchmark workdir."""
  from gen_jax import workdir as workdir_lib
  workdir = benchmark.workdir_of(args, dataset, name)
  benchmark.with_stage1(config, args, trained, args.log)
  benchmark.train(name, config, workdir, args, args.log, trained)
  return (*workdir_lib.restore(workdir), workdir)


def image_gallery(dataset, out, workdir_root, budgets, max_steps=0, only=None, seed=0,
                  log=print) -> list:
  """Writes <out>/<family>.png for every discovered paradigm of `dataset`; returns index rows.

  budgets: {name: minutes}, None -> the default. A paradigm that fails to build, train or
  sample is left out of its picture, and its row in the index says why.
  """
  from gen_jax.eval import sampling
  configs = dict(benchmark.discover_configs(dataset, only=only))
  trained, rows = {}, []
  for family, names in group_by_family(configs).items():
    panels = {}
    for name in names:
      row = {"family": family, "paradigm": name, "file": f"{family}.png"}
      rows.append(row)
      minutes = budgets.get(name, budgets[None])
      args = benchmark.arguments(budget_minutes=minutes, max_steps=max_steps,
                                 workdir_root=workdir_root, log=log)
      try:
        run, state, step, workdir = trained_run(name, configs[name], dataset, args, trained)
        rng = jax.random.fold_in(jax.random.key(seed), len(rows))
        reads_images = sampling.accepts(run.paradigm.sample, "question")
        try:
          samples = sampling.draw_run(run, state, rng, NUM_SAMPLES).samples
        except UserError:
          if not reads_images:
            raise
          samples = None     # an image-to-text model (lmm) draws no images: its questions only
      except Exception as e:        # one broken paradigm must not cost the others' pictures
        row.update(step=None, note=f"not drawn: {type(e).__name__}: {e}")
        log(f"[gallery] {family}: {name} NOT DRAWN: {type(e).__name__}: {e}")
        continue
      row.update(step=int(step), workdir=workdir, note=NOTES.get(name, ""), minutes=minutes)
      if samples is None:
        rows.pop()
      else:
        panels[f"{name} ({step:,} steps)"] = picture(samples)
      log(f"[gallery] {family}: {name} at step {step} from {workdir}")
      if reads_images:                                      # it reads images too: ask it
        qa_file = f"{name}_questions.png"
        questions_gallery(run, state, rng, os.path.join(out, qa_file), f"{name} ({step:,} steps)")
        rows.append({**row, "file": qa_file, "note": "test images, the question asked and the answer given"})
    if panels:
      family_figure(panels, os.path.join(out, f"{family}.png"), f"{family.replace('_', ' ')} on {dataset}")
  return rows


def answer_strings(run, said) -> list:
  """What a paradigm's sample(..., question=q) returned -> one string an image: strings as they
  are, text ids through its module's `text_of(model_config, ids)` (any2any)."""
  if all(isinstance(a, str) for a in said):
    return list(said)
  import importlib
  module = importlib.import_module(f"gen_jax.paradigms.{run.config.paradigm}")
  return module.text_of(run.config.model, said)


def questions_figure(images01, labels, answers: dict, path: str, title: str) -> None:
  """Images (float [N, H, W, C] in [0, 1]), each titled with its label and every question of
  `answers` ({question: [N] answers}) with the answer given, side by side, as a PNG."""
  panels = {}
  for i, (image, c) in enumerate(zip(np.asarray(images01), labels)):
    big = np.repeat(np.repeat((np.clip(image, 0, 1) * 255).astype(np.uint8), 8, 0), 8, 1)
    qa = "\n".join(f"{q} {said[i]}" for q, said in answers.items())
    panels[f"test image {i} (label {c})\n{qa}"] = np.repeat(big, 3 // big.shape[-1], axis=-1)
  tables.panels_figure(panels, path, title, size=(1.9, 2.9), dpi=110, fontsize=7)


def questions_gallery(run, state, rng, path: str, title: str, num: int = 8) -> None:
  """`path`: the first `num` test images of the run's image dataset with each of
  gen_jax.data.captions.QUESTIONS asked (`sample(params, rng, num, image=levels, question=q)`)."""
  from gen_jax.data import captions
  from gen_jax.eval import classifier
  stage1 = getattr(run.info, "stage1", None)
  config = stage1.config if stage1 is not None else run.config     # the images' own run
  images, labels, info = classifier.load_split(config.dataset, "test", config.data_dir,
                                               config.manual_dir)
  images, labels = images[:num], labels[:num]
  params = run.sampling_params(state)
  answers = {q: answer_strings(run, run.paradigm.sample(params, rng, num, image=images, question=q))
             for q in captions.QUESTIONS.values()}
  questions_figure(images / (info.num_levels - 1), labels, answers, path, title)


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
    minutes = budgets.get(name, budgets[None])
    args = benchmark.arguments(budget_minutes=minutes, max_steps=max_steps,
                               workdir_root=workdir_root, log=log)
    try:
      run, state, step, workdir = trained_run(name, config, config.dataset, args, {})
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
                 "workdir": workdir, "file": f"{name}.txt", "note": "", "minutes": minutes})
    log(f"[gallery] {name}: {TEXT_SAMPLES} samples at step {step} -> {path}")
  return rows


def write_index(rows, out, command) -> str:
  """<out>/index.md: the files, their paradigms and steps, the date and the command."""
  caption = [f"Gallery written {datetime.date.today().isoformat()} by `{command}`; "
             "samples from each paradigm's EMA parameters after the steps shown."]
  columns = [("file", "file", ""), ("family", "family", ""), ("paradigm", "paradigm", ""),
             ("training budget (min)", "minutes", ""), ("steps", "step", ","), ("note", "note", "")]
  tables.write(out, {"index.md": tables.markdown(columns, rows, caption)})
  return os.path.join(out, "index.md")


def main(argv):
  from absl import flags, logging
  del argv
  f = flags.FLAGS
  logging.set_verbosity(logging.WARNING)
  only = f.only or None
  budgets = parse_budgets(",".join(f.budget_overrides), f.budget_minutes)
  rows = image_gallery(f.dataset, f.out, f.workdir_root, budgets, f.max_steps, only, f.seed)
  text = [s for s in f.text_config if only is None or os.path.splitext(s.partition(":")[0])[0] in only]
  rows += text_gallery(text, f.out, f.workdir_root, budgets, f.max_steps, f.seed)
  command = "python -m experiments.gallery " + " ".join(sys.argv[1:])
  print(f"wrote {write_index(rows, f.out, command.strip())}: "
        f"{sum(r.get('step') is not None for r in rows)} of {len(rows)} paradigms drawn in {f.out}")


if __name__ == "__main__":
  from absl import app, flags
  # Flags are defined only when this file is the program (no clash with other entry points).
  flags.DEFINE_string("out", "results/gallery", "Folder of the PNGs, text samples and index.md.")
  flags.DEFINE_string("dataset", "digits", "The configs' dataset argument.")
  flags.DEFINE_float("budget_minutes", 1.0, "Training wall clock per paradigm (the benchmark's "
                     "rule and workdirs).")
  flags.DEFINE_list("budget_overrides", [], "NAME:MINUTES,... other budgets for some paradigms "
                    "(e.g. ddpm:5); their workdirs are <name>_<minutes>min.")
  flags.DEFINE_integer("max_steps", 0, "Cap on training steps (0: none).")
  flags.DEFINE_string("workdir_root", "/tmp/gen_jax_benchmark", "The benchmark's workdirs.")
  flags.DEFINE_list("only", [], "Config names to keep.")
  flags.DEFINE_list("text_config", ["gpt.py:shakespeare_small"], "Text configs (file.py:arg); '' for none.")
  flags.DEFINE_integer("seed", 0, "Sampling seed.")
  app.run(main)
