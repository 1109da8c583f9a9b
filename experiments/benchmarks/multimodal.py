r"""Multimodal suite: image -> text (lmm) and both directions of one model (any2any) in one table.

  python -m experiments.benchmark --suite=multimodal                       # digits, both parts
  python -m experiments.benchmark --suite=multimodal --parts=lmm --dataset=mnist_idx

Part "lmm": experiments/configs/lmm.py:<dataset> (the ViT trained jointly) and
lmm.py:<dataset>_classifier (the frozen classifier encoder) trained (or resumed) through
gen_jax.workdir.train under the benchmark's rule (benchmark.train), then, on the WHOLE test
split, for each question kind k of gen_jax.data.captions.QUESTIONS:
  * accuracy_<k>: the share of test images whose greedy answer is captions.answer(label, k)
    of the TRUE label;
  * classifier_ceiling_<k>: the same share for the project's digit classifier
    (gen_jax.eval.classifier, the FD/label classifier) read as an answerer: answer(predicted
    label, k). Not a bound on the lmm, the reference a pretrained vision model sets;
  * accuracy_noise_<k>: the lmm's accuracy with every image replaced by uniform noise levels,
    beside chance_<k> = captions.chance_accuracy(k, test label counts) (the most frequent
    answer's share): it must fall to chance, or the model answers without looking.
Part "any2any": experiments/benchmarks/multimodal_any2any.py's `rows(args, log)`, when that
module exists. All rows go to one table, <out>/multimodal.md and multimodal.json (out: --out,
default results/multimodal; a run of other --dataset or --parts keeps the rows of the others),
and <out>/<dataset>/lmm_questions.png (lmm_classifier_questions.png) shows test images with every question and the answer.
"""
from __future__ import annotations

import datetime
import importlib
import importlib.util
import json
import os

import jax
import numpy as np

from experiments import benchmark, gallery
from gen_jax import data as data_lib, workdir as workdir_lib
from gen_jax.data import captions
from gen_jax.eval import classifier, features, speed, tables

DEFAULTS = {"out": "results/multimodal", "workdir_root": "/tmp/gen_jax_multimodal",
            "parts": ["lmm", "any2any"]}
ANSWER_BATCH = 500
PICTURES = 10           # test images in the questions figure
KINDS = captions.QA_KINDS
DIRECTIONS = ("image->text", "text->image")


def answers(run, params, inputs, question, seed=0) -> list:
  """The model's greedy answers (strings) to `question` about each input: images (levels
  [N, H, W, C]) for lmm, stage-1 code grids ([N, h, w]) for any2any (`sample(codes=...)`)."""
  given = "codes" if run.info.kind == "codes" else "image"
  text_of = importlib.import_module(f"gen_jax.paradigms.{run.config.paradigm}").text_of
  said = []
  for start in range(0, len(inputs), ANSWER_BATCH):
    chunk = inputs[start:start + ANSWER_BATCH]
    ids = run.paradigm.sample(params, jax.random.key(seed), len(chunk), question=question,
                              temperature=0.0, **{given: chunk})
    said += text_of(run.config.model, ids)
  return said


def share_right(said, labels, kind) -> float:
  """The share of `said` equal to captions.answer(label, kind) of the true labels."""
  return float(np.mean([a == captions.answer(c, kind) for a, c in zip(said, labels)]))


def question_row(run, params, inputs, noise, labels, predicted=None, seed=0) -> tuple:
  """(the image -> text metrics, {question: answers of the first PICTURES inputs}): for each
  question kind, the accuracy on `inputs`, on `noise` in their place, chance, and (given the
  classifier's `predicted` labels) the classifier's answers' accuracy."""
  counts = np.bincount(labels, minlength=captions.NUM_DIGITS)
  row, shown = {"num_test": int(len(labels))}, {}
  for kind, question in captions.QUESTIONS.items():
    said = answers(run, params, inputs, question, seed)
    row[f"accuracy_{kind}"] = share_right(said, labels, kind)
    if predicted is not None:
      row[f"classifier_ceiling_{kind}"] = share_right(
          [captions.answer(c, kind) for c in predicted], labels, kind)
    row[f"accuracy_noise_{kind}"] = share_right(answers(run, params, noise, question, seed), labels, kind)
    row[f"chance_{kind}"] = captions.chance_accuracy(kind, counts)
    shown[question] = said[:PICTURES]
  return row, shown


def lmm_rows(args, log=print) -> list:
  """The lmm rows of --dataset, one an encoder (see the module docstring)."""
  dataset = args.dataset
  ref = classifier.reference(dataset)      # trains the project's classifier first if absent:
  return [lmm_row_of(args, dataset + suffix, ref, log)   # the frozen encoder reads it
          for suffix in ("", "_classifier")]


def lmm_row_of(args, arg, ref, log=print) -> dict:
  """lmm.py:<arg> trained (or resumed) and scored on --dataset's whole test split."""
  dataset = args.dataset
  config = importlib.import_module("experiments.configs.lmm").get_config(arg)
  name = "lmm" if arg == dataset else "lmm" + arg[len(dataset):]
  workdir = benchmark.workdir_of(args, dataset, name)
  record = benchmark.train(name, config, workdir, args, log)
  run, state, step = workdir_lib.restore(workdir)
  params = run.sampling_params(state)
  split = data_lib.split_arrays(dataset, "test", data_dir=run.config.data_dir or None,
                                manual_dir=run.config.manual_dir or None)
  levels, labels = np.asarray(split["image"]), np.asarray(split["label"])
  predicted = ref.labels(features.levels_to_unit(levels, run.info.num_levels))
  seed = int(args.seeds[0])
  noise = np.asarray(jax.random.randint(jax.random.key(seed + 1), levels.shape, 0,
                                        run.info.num_levels), levels.dtype)
  metrics, shown = question_row(run, params, levels, noise, labels, predicted, seed)
  encoder = run.config.model.vision_encoder
  row = {"model": "lmm" if encoder == "vit" else f"lmm ({encoder} encoder)", "dataset": dataset,
         "direction": "image->text", "steps": int(step), "vision_encoder": encoder,
         "workdir": workdir, "train_s": record.get("train_wall_s"), **metrics}
  gallery.questions_figure(levels[:PICTURES] / (run.info.num_levels - 1), labels[:PICTURES], shown,
                           os.path.join(args.out, dataset, f"{name}_questions.png"),
                           f"{name} ({int(step):,} steps, {encoder} encoder): test images, the "
                           "question asked and the answer given")
  log(f"[multimodal] {name} {dataset}: {json.dumps(row)}")
  return row


def any2any_rows(args, log=print) -> list:
  """The any2any part's rows, where experiments/benchmarks/multimodal_any2any.py exists."""
  if importlib.util.find_spec("experiments.benchmarks.multimodal_any2any") is None:
    log("[multimodal] experiments/benchmarks/multimodal_any2any.py is absent: no any2any rows")
    return []
  return importlib.import_module("experiments.benchmarks.multimodal_any2any").rows(args, log)


PARTS = {"lmm": lmm_rows, "any2any": any2any_rows}

COLUMNS = [("model", "model", ""), ("dataset", "dataset", ""), ("direction", "direction", ""),
           ("steps", "steps", "d"),
           *[(f"acc {k}", f"accuracy_{k}", ".1%") for k in KINDS],
           *[(f"classifier {k}", f"classifier_ceiling_{k}", ".1%") for k in KINDS],
           *[(f"noise {k}", f"accuracy_noise_{k}", ".1%") for k in KINDS],
           *[(f"chance {k}", f"chance_{k}", ".1%") for k in KINDS],
           ("prompt accuracy", "prompt_accuracy", ".1%"), ("FD", "FD", ".2f")]


def table_markdown(rows, meta) -> str:
  caption = [
      "Multimodal models on the test split. image->text: acc <kind> = share of test images whose "
      "greedy answer to captions.QUESTIONS[kind] is the true label's answer; classifier <kind> = the "
      "project's digit classifier's predicted label turned into that answer (the pretrained-vision "
      "reference); noise <kind> = the model's accuracy with every image replaced by uniform noise, to "
      "be compared with chance <kind> (the most frequent answer's share of the test labels). "
      "text->image: prompt accuracy = share of generated images the classifier labels as the asked "
      "digit; FD on the classifier's features.",
      f"Measured {meta['date']} on {meta['machine']}. Command: `{meta['command']}`"]
  return tables.markdown(COLUMNS, rows, caption)


def run(args) -> list:
  out_json = os.path.join(args.out, "multimodal.json")
  kept = []
  if os.path.exists(out_json):
    with open(out_json) as f:
      kept = json.load(f)["rows"]
  parts = list(args.parts)
  unknown = [p for p in parts if p not in PARTS]
  if unknown:
    raise ValueError(f"Unknown multimodal parts {unknown}; use some of {tuple(PARTS)}.")
  new = [row for part in parts for row in PARTS[part](args, args.log)]
  done = {(r["model"], r["dataset"], r["direction"]) for r in new}
  rows = [r for r in kept if (r["model"], r["dataset"], r["direction"]) not in done] + new
  meta = {"date": datetime.date.today().isoformat(), "machine": speed.machine(),
          "command": args.command}
  tables.write(args.out, {"multimodal.json": {"meta": meta, "rows": rows},
                          "multimodal.md": table_markdown(rows, meta)})
  return rows
