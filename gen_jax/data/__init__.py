"""gen_jax data: offline TFDS builders, grain pipelines, preprocessing.

    from gen_jax.data import DatasetInfo, get_info, train_iterator, eval_batches, DATASETS

`DATASETS` names the project's offline datasets; any other name is looked up in
the TFDS catalog (it must already be prepared in data_dir: `python -m experiments.prepare
--dataset=NAME [--data_dir=DIR] [--manual_dir=DIR]` does it where the machine has internet). The dataset
"encoded" is a stage-1 tokenizer's codes or latents of its own dataset
(`gen_jax.data.encoded`; every function then takes `stage1=`, the loaded stage-1 run of `gen_jax.workdir.stage1_of(config)`).
The dataset "synthetic" has no files: random batches made on device, shaped like another
dataset, for throughput (`gen_jax.data.synthetic`). The pipeline
functions are imported lazily, so `import gen_jax.data.toy2d` (true densities
for tests) pulls in neither TFDS nor grain.
"""
from __future__ import annotations

from gen_jax.data.info import DatasetInfo

DATASETS = (
    "digits",
    "toy2d/moons",
    "toy2d/eight_gaussians",
    "toy2d/checkerboard",
    "toy2d/swiss_roll",
    "mnist_idx",
    "mnist_idx/binarized",
    "text_file",
)

_LAZY = ("get_info", "train_iterator", "eval_batches", "train_dataset", "split_arrays", "load_builder",
         "default_data_dir")

__all__ = ["DatasetInfo", "DATASETS", *_LAZY]


def __getattr__(name):
  if name in _LAZY:
    from gen_jax.data import pipeline
    return getattr(pipeline, name)
  raise AttributeError(f"module 'gen_jax.data' has no attribute {name!r}")
