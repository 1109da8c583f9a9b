"""Evaluators: what a benchmark measures of a trained run, behind one interface.

As big_vision's `evaluators/`: an evaluator is built once with its settings (split,
number of samples, the images to score against) and then called on trained runs:

    evaluators = (Likelihood(), Samples(1000, reference=classifier.reference("digits")))
    row = evaluate(run, state, evaluators)     # one dict holding every evaluator's metrics

An evaluator is any callable `(run, state) -> dict`. `run` is duck-typed as everywhere in
gen_jax.eval (run.paradigm, run.config, run.info, run.keys, run.replicated,
run.with_gathered_params, run.sampling_params: a `gen_jax.train.build.Run`), `state` its
train state. Values are JSON numbers, strings or None, except "samples" (an array: take it
out of the row before writing JSON). A `suffix` goes after every key an evaluator returns,
so that one evaluator can run twice in a row under two settings.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import time
from typing import Any, Optional, Protocol, Sequence

import jax
import numpy as np

from gen_jax.eval import likelihood, sampling
from gen_jax.utils import images


class Evaluator(Protocol):
  def __call__(self, run, state) -> dict: ...


def evaluate(run, state, evaluators: Sequence[Evaluator]) -> dict:
  """The evaluators' dicts merged, in their order."""
  row = {}
  for evaluator in evaluators:
    row.update(evaluator(run, state))
  return row


@dataclasses.dataclass(frozen=True)
class Likelihood:
  """bits/dim (nats/token for text) on a split (`likelihood.evaluate`), flagged bound or
  exact, `num_examples`, `nll_nats_per_example` and the wall seconds `eval_s`; bits_per_dim
  and bound None for a paradigm without a likelihood.

  iwae_k > 0 evaluates the paradigm's log_likelihood with num_samples=iwae_k: for the VAE
  the importance-weighted bound L_k (Burda et al. 2016, arXiv:1509.00519, Eq. 8), which
  tightens with k. batch_size > 0 replaces config.eval_batch_size (IWAE decodes k x batch
  images at once).
  """
  split: str = "test"
  max_examples: Optional[int] = None
  iwae_k: int = 0
  batch_size: int = 0
  suffix: str = ""

  def __call__(self, run, state) -> dict:
    if self.iwae_k or self.batch_size:
      run = copy.copy(run)
      if self.iwae_k:
        ll = functools.partial(run.paradigm.log_likelihood, num_samples=self.iwae_k)
        run.paradigm = run.paradigm._replace(log_likelihood=ll)
      if self.batch_size:
        run.config = run.config.copy_and_resolve_references()
        run.config.eval_batch_size = self.batch_size
    start = time.perf_counter()
    result = likelihood.evaluate(run, state, self.split, self.max_examples)
    if result is None:
      result = {"bits_per_dim": None, "bound": None}
    else:
      result["eval_s"] = time.perf_counter() - start
    return {k + self.suffix: v for k, v in result.items()}


@dataclasses.dataclass(frozen=True)
class Samples:
  """`num` samples of the run (`sampling.draw_run` from key(seed), `options` passed to its
  sampler): `samples_per_s` after compilation, `nfe` where the sampler reports it,
  `sample_s` (wall seconds, compilation included); with a `reference`
  (`gen_jax.eval.classifier.Reference`) FD / precision / recall against its split; the
  first `keep` samples under "samples", and a PNG grid of them at `grid` when given
  (its path under "grid").
  """
  num: int
  reference: Any = None
  seed: int = 0
  batch: int = 250
  keep: int = 64
  options: tuple = ()          # (name, value) pairs, e.g. (("temperature", 0.7),)
  grid: str = ""
  suffix: str = ""

  def __call__(self, run, state) -> dict:
    start = time.perf_counter()
    drawn = sampling.draw_run(run, state, jax.random.key(self.seed), self.num, self.batch,
                              **dict(self.options))
    row = {"samples_per_s": drawn.samples_per_s, "nfe": drawn.nfe,
           "sample_s": time.perf_counter() - start}
    if self.reference is not None:
      row.update(self.reference.scores(drawn.samples))
    row["samples"] = drawn.samples[:self.keep]
    if self.grid:
      images.save_png(images.to_picture(row["samples"]), self.grid)
      row["grid"] = self.grid
    return {k + self.suffix: v for k, v in row.items()}


@dataclasses.dataclass(frozen=True)
class ClassAccuracy:
  """Of a class-conditional run: the share of samples drawn for class c (`label=c`) that the
  `reference`'s classifier labels c (`conditional.conditional_accuracy`, `num_per_class` a
  class from key(seed)), overall and per class; with `grid`, a PNG of `columns` samples of
  each class, a row a class (its path under "grid")."""
  reference: Any
  num_per_class: int = 100
  seed: int = 2
  grid: str = ""
  columns: int = 10

  def __call__(self, run, state) -> dict:
    from gen_jax.eval import conditional
    params = run.sampling_params(state)
    sample = lambda rng, n, label: run.paradigm.sample(params, rng, n, label=label)
    accuracy = conditional.conditional_accuracy(sample, self.reference.labels, jax.random.key(self.seed),
                                                run.info.num_classes, self.num_per_class)
    row = {"class_accuracy": accuracy["accuracy"],
           "class_accuracy_per_class": [round(a, 3) for a in accuracy["per_class"]]}
    if self.grid:
      rows = [np.asarray(sample(jax.random.key(self.seed + 1 + c), self.columns, c))
              for c in range(run.info.num_classes)]
      images.save_png(images.image_grid(np.concatenate(rows), ncols=self.columns), self.grid)
      row["grid"] = self.grid
    return row
