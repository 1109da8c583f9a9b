r"""The any2any part of the multimodal suite: both directions of one set of weights, beside
text2image at the same training budget.

  python -m experiments.benchmark --suite=multimodal --only=any2any       # digits
  python -c "from experiments import benchmark; from experiments.benchmarks import multimodal_any2any as m; \
      print(m.rows(benchmark.arguments(), print))"                         # these rows alone

`rows(args, log)` trains (or resumes) any2any (experiments/configs/any2any.py) after its stage 1
(the VQ-VAE config text2image shares, found and trained once under the benchmark's rule:
`benchmark.with_stage1`), then text2image on the same stage 1 at the same budget: the same
--budget_minutes of wall clock, or the same steps (--steps, else any2any's config steps, in
`<root>/<dataset>/text2image_<N>steps`). On the test split of --dataset:

  * image -> text (any2any): for each question of gen_jax.data.captions.QUESTIONS, the share
    of test images whose greedy answer, from their stage-1 codes, is captions.answer of the
    TRUE label (`accuracy_<kind>`); the same with each image's codes replaced by codes drawn
    uniformly from the K (`accuracy_noise_<kind>`), which must fall to chance: the most frequent
    answer's share on the split (`chance_<kind>`, captions.chance_accuracy).
  * text -> image (any2any, text2image): --per_prompt images for every digit and caption
    template (`gen_jax.eval.conditional.caption_accuracy`, as the hybrids suite scores
    text2image), the share the project's classifier labels as the asked digit
    (`prompt_accuracy`) and FD on the classifier's features against the test split (`FD`).
    any2any's row also holds its test bound on -log p(x | caption) (`bits_per_dim`).

Rows: one dict per model x dataset x direction with the multimodal suite's keys (a key a
direction does not measure is absent). PNGs in `<out>/<dataset>/` (out: --out, else
results/multimodal): `any2any_image_to_text.png` (test images with the question asked and the
answer given), `text_to_image.png` (8 images of each digit's caption "a handwritten c", a row a
digit, both models).
"""
from __future__ import annotations

import importlib
import os

import jax
import numpy as np

from experiments import benchmark, gallery
from experiments.benchmarks import multimodal
from gen_jax import data as data_lib, workdir as workdir_lib
from gen_jax.eval import classifier, conditional, tables

PICTURES = multimodal.PICTURES       # test images in the image -> text figure


def _config(name, dataset):
  return importlib.import_module(f"experiments.configs.{name}").get_config(dataset)


def train_pair(args, log, trained=None) -> dict:
  """{name: (run, state, record, workdir)} of any2any and text2image at the same budget."""
  trained = {} if trained is None else trained
  out = {}
  config = _config("any2any", args.dataset)
  benchmark.with_stage1(config, args, trained, log)
  workdir = benchmark.workdir_of(args, args.dataset, "any2any")
  record = benchmark.train("any2any", config, workdir, args, log, trained)
  out["any2any"] = (*workdir_lib.restore(workdir)[:2], record, workdir)
  baseline = _config("text2image", args.dataset)
  baseline.stage1.workdir = config.stage1.workdir            # the same stage-1 run
  same = args
  if not args.budget_minutes and not args.steps:              # any2any's config steps
    same = benchmark.arguments(**{**vars(args), "steps": record["num_train_steps"]})
  workdir = benchmark.workdir_of(same, args.dataset, "text2image")
  record_t2i = benchmark.train("text2image", baseline, workdir, same, log, trained)
  out["text2image"] = (*workdir_lib.restore(workdir)[:2], record_t2i, workdir)
  return out


def test_codes(run) -> tuple:
  """(codes int32 [N, h, w], labels int32 [N], images uint8 [N, H, W, C]) of the test split."""
  kwargs = {k: run.data_kwargs.get(k) for k in ("data_dir", "manual_dir", "stage1")}
  split = data_lib.split_arrays("encoded", "test", **kwargs)
  return np.asarray(split["codes"]), np.asarray(split["label"]), np.asarray(split["image"])


def image_to_text_row(run, params, seed=0) -> tuple:
  """(the image -> text metrics, {question: answers of the first PICTURES test images}), the
  noise being code grids drawn uniformly from the K codes."""
  codes, labels, _ = test_codes(run)
  noise = np.asarray(jax.random.randint(jax.random.key(seed + 1), codes.shape, 0,
                                        int(run.info.num_codes)))
  return multimodal.question_row(run, params, codes, noise, labels, seed=seed)


def rows(args, log=print) -> list:
  """The any2any rows of the multimodal table (see the module docstring)."""
  dataset = args.dataset
  out = os.path.join(args.out or os.path.join("results", "multimodal"), dataset)
  reference = classifier.reference(dataset)
  runs = train_pair(args, log)
  seed = int(args.seeds[0])
  result, pictures = [], {}
  for name, (run, state, record, workdir) in runs.items():
    params = run.sampling_params(state)
    common = {"model": name, "dataset": dataset, "steps": int(record["num_train_steps"]),
              "workdir": workdir, "train_s": record.get("train_wall_s")}
    if name == "any2any":
      row, shown = image_to_text_row(run, params, seed)
      result.append({**common, "direction": "image->text", **row})
      _, labels, images = test_codes(run)
      gallery.questions_figure(
          images[:PICTURES] / (run.info.num_levels - 1), labels[:PICTURES],
          shown,
          os.path.join(out, "any2any_image_to_text.png"),
          f"any2any ({common['steps']} steps): test images, the question asked and the answer given")
    scores, pictures[f"{name} ({common['steps']} steps)"] = conditional.caption_accuracy(
        lambda rng, n, prompt: run.paradigm.sample(params, rng, n, prompt=prompt), reference,
        jax.random.key(seed), args.per_prompt)
    row = {**common, "direction": "text->image", "prompt_accuracy": scores["prompt_accuracy"],
           "FD": scores[reference.fd_name], "fd_name": reference.fd_name,
           "prompt_accuracy_per_digit": scores["prompt_accuracy_per_digit"],
           "num_per_digit": scores["num_per_digit"]}
    if name == "any2any":
      ev = benchmark.final_eval(workdir, run, state, args.max_eval)
      row.update(bits_per_dim=ev["bits_per_dim"], bound=ev["bound"])
    result.append(row)
    log(f"[any2any rows] {name}: {row}")
  tables.panels_figure(pictures, os.path.join(out, "text_to_image.png"),
                       "'a handwritten c': a row a digit c", size=(2.6, 3.2), dpi=130, fontsize=8)
  return result
