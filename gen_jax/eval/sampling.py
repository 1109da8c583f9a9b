"""Drawing samples from a run, timing the sampler, and writing samples where people look.

    samples = draw_samples(run, state, jax.random.fold_in(run.keys["sample"], step), num=64)
    write_samples(run.info, samples, os.path.join(workdir, "samples", f"step_{step}"))
    drawn = draw_run(run, state, jax.random.key(0), num=1000)   # in batches, with samples/s, NFE

`draw` is the one batched drawer behind the benchmarks: equal batches (one compiled
shape), batch i drawn with `fold_in(rng, i)`, the rate timed after the first batch
(the one that compiles), and the sampler's own count of network evaluations (NFE).
"""
from __future__ import annotations

import functools
import inspect
import math
import os
import time
from typing import Callable, NamedTuple, Optional

import jax
import numpy as np

from gen_jax.utils import images


def draw_samples(run, state, rng, num: int) -> np.ndarray:
  """`num` samples of a run's sampling params (EMA when it has EMA), jitted and
  replicated on every process, as host numpy."""
  sample = jax.jit(functools.partial(run.with_gathered_params(run.paradigm.sample), num=num),
                   out_shardings=run.replicated)
  return np.asarray(jax.device_get(sample(run.sampling_params(state), rng)))


class Drawn(NamedTuple):
  """Samples drawn in batches: the samples (host numpy), samples/s after compilation, and
  the network evaluations per sample where the sampler reports them (else None)."""
  samples: np.ndarray
  samples_per_s: float
  nfe: Optional[int]


def accepts(fn, name: str) -> bool:
  """Whether `fn` takes an argument `name` (False where its signature cannot be read)."""
  try:
    return name in inspect.signature(fn).parameters
  except (TypeError, ValueError):
    return False


def draw(sample_fn: Callable, rng, num: int, batch: int = 250) -> Drawn:
  """`num` samples of `sample_fn(rng, n)`, in equal batches of n = min(batch, ceil(num / 2)).

  `sample_fn` returns samples [n, ...], or (samples, info) with `info["nfe"]`. Batch i
  uses `fold_in(rng, i)`; there are at least two batches, so that samples/s is timed on
  those after the first (which compiles; on the first, compilation included, when num is 1).
  The last batch's extra samples are dropped.
  """
  batch = min(batch, max(1, math.ceil(num / 2)))
  outs, times, nfe = [], [], None
  for i in range(math.ceil(num / batch)):
    start = time.perf_counter()
    out = jax.block_until_ready(sample_fn(jax.random.fold_in(rng, i), batch))
    times.append(time.perf_counter() - start)
    if isinstance(out, tuple):
      out, info = out
      nfe = int(np.asarray(info["nfe"]))
    outs.append(np.asarray(out))
  timed = times[1:] or times
  return Drawn(np.concatenate(outs)[:num], batch * len(timed) / sum(timed), nfe)


def draw_run(run, state, rng, num: int, batch: int = 250, **options) -> Drawn:
  """`draw` of a run's sampler (`run.paradigm.sample`, jitted) at its sampling params,
  with `options` (temperature, label, prompt, ...) passed on, and NFE where the sampler
  reports it (`return_info`)."""
  if accepts(run.paradigm.sample, "return_info"):
    options = {**options, "return_info": True}
  sample = run.with_gathered_params(run.paradigm.sample)
  fn = jax.jit(lambda params, rng, n: sample(params, rng, n, **options), static_argnums=2,
               out_shardings=run.replicated)
  params = run.sampling_params(state)
  return draw(lambda rng, n: fn(params, rng, n), rng, num, batch)


def write_samples(info, samples, path: str) -> str:
  """`path`.png (a grid of images or a scatter of points), or `path`.txt for text
  (the first 8 samples decoded with `info.vocab`); returns the file written."""
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  if info.kind == "text":
    text = "\n\n---\n\n".join("".join(info.vocab[t] for t in row) for row in samples[:8])
    with open(path + ".txt", "w") as f:
      f.write(text)
    return path + ".txt"
  images.save_png(images.to_picture(samples), path + ".png")
  return path + ".png"
