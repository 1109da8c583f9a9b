"""Plumbing shared by the family benchmarks."""
from __future__ import annotations

import time

import numpy as np


def timed_train(config, workdir):
  """Trains (or resumes) `config` in `workdir` through the loop; returns (run, state, seconds)."""
  from gen_jax import workdir as workdir_lib
  start = time.perf_counter()
  workdir_lib.train(config, workdir, progress=False)
  seconds = time.perf_counter() - start
  run, state, _ = workdir_lib.restore(workdir)
  return run, state, seconds


def budget_config(config, budget_minutes):
  """`config` with the steps that fit `budget_minutes` of training (probed on this machine),
  and the probed seconds per step."""
  from experiments import benchmark
  seconds_per_step = benchmark.probe_seconds_per_step(config)
  return with_steps(config, benchmark.budget_steps(seconds_per_step, budget_minutes)), seconds_per_step


def device_kind() -> str:
  """What the numbers were measured on, e.g. 'cpu' or 'NVIDIA H100 80GB HBM3'."""
  import jax
  return jax.devices()[0].device_kind


def with_steps(config, steps: int):
  """Shortens a config to `steps` training steps, sampling/saving/evaluating once at the end."""
  if steps:
    config.num_train_steps = steps
    config.sample_every_steps = steps
    config.checkpoint_every_steps = steps
    config.eval_every_steps = steps
  return config


def classifier_and_test_images(dataset: str):
  """The feature classifier of `dataset` (trained first if none is saved) and its test split
  as float images in [0, 1]: what generated samples are scored against."""
  from experiments import train_classifier
  from gen_jax.eval import features
  net = train_classifier.load_or_train(dataset)
  images, _, info = train_classifier.load_split(dataset, "test")
  return net, features.levels_to_unit(images, info.num_levels)


def sample_scorer(dataset: str):
  """fake images -> FD / precision / recall against `dataset`'s test split."""
  from gen_jax.eval import features
  net, real = classifier_and_test_images(dataset)
  return lambda fake: features.sample_metrics(net, real, np.asarray(fake))


def sample_batched(fn, num, batch=500, seed=0):
  """fn(key, n) -> [n, ...]; draws num samples in batches (bounded memory) from `seed`:
  batch i uses fold_in(key(seed), i), so the first batch of two calls shares its noise."""
  import jax
  out = [np.asarray(fn(jax.random.fold_in(jax.random.key(seed), i), min(batch, num - i * batch)))
         for i in range((num + batch - 1) // batch)]
  return np.concatenate(out)[:num]
