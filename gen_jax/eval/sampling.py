"""Drawing samples from a run and writing them where people look at them.

    samples = draw_samples(run, state, jax.random.fold_in(run.keys["sample"], step), num=64)
    write_samples(run.info, samples, os.path.join(workdir, "samples", f"step_{step}"))
"""
from __future__ import annotations

import functools
import os

import jax
import numpy as np

from gen_jax.utils import images


def draw_samples(run, state, rng, num: int) -> np.ndarray:
  """`num` samples of a run's sampling params (EMA when it has EMA), jitted and
  replicated on every process, as host numpy."""
  sample = jax.jit(functools.partial(run.with_gathered_params(run.paradigm.sample), num=num),
                   out_shardings=run.replicated)
  return np.asarray(jax.device_get(sample(run.sampling_params(state), rng)))


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
