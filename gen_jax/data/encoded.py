"""The "encoded" dataset: a stage-1 tokenizer's codes (or latents) of its own dataset.

A stage-2 run (`config.dataset = "encoded"`, `config.stage1.workdir = ...`, see
`gen_jax.workdir`) reads its data from here. On first use the stage-1
dataset's train and test splits are encoded once, in stored order (with the
stage-1 preprocessing), by `Stage1.encode`, and stored as the TFDS
array_record dataset `encoded/<fingerprint>` in data_dir; the fingerprint
hashes the stage-1 config, checkpoint step and params, so a changed stage 1
gets a new cache and never stale codes. `gen_jax.data.pipeline.load_builder`
prepares it under the same file lock as the other builders, and the grain
pipelines then serve it like any dataset. Examples:

    codes:   {"codes": int32 [h, w], "image": uint8 [H, W, C], "label": int}
    latents: {"z": float32 [...], "image": uint8 [H, W, C], "label": int}

("label" only when the stage-1 dataset has labels). For latents the metadata also holds
the train split's per-dimension mean and std (`latent_statistics`).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

ENCODE_BATCH_SIZE = 256


@dataclasses.dataclass(eq=False)
class EncodedConfig(tfds.core.BuilderConfig):
  """name: the stage-1 fingerprint's prefix; stage1_workdir / stage1_step say where it came from."""
  stage1_workdir: str = ""
  stage1_step: int = 0


def encoded_config(stage1) -> EncodedConfig:
  return EncodedConfig(name=f"fp_{stage1.fingerprint[:16]}", stage1_workdir=stage1.workdir,
                       stage1_step=stage1.step,
                       description=f"{stage1.config.paradigm} step {stage1.step} of {stage1.workdir} "
                                   f"on {stage1.config.dataset} (sha256 {stage1.fingerprint})")


def encode_split(stage1, image_batches) -> dict:
  """A split of the stage-1 dataset with its encodings: {"codes"|"z", "image", "label"?}.

  `image_batches` are that split's batches in stored order ({"image", "label"?,
  "mask"}, the last padded and masked), as `gen_jax.data.pipeline.eval_batches` gives.
  """
  import jax
  encode = jax.jit(stage1.paradigm.encode)
  parts = []
  for batch in image_batches:
    keep = np.asarray(batch.pop("mask"))
    code = np.asarray(encode(stage1.params, batch["image"]))
    parts.append({"code": code[keep], **{k: np.asarray(v)[keep] for k, v in batch.items()}})
  arrays = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
  code = arrays.pop("code")
  arrays[code_key(code)] = code
  return arrays


def latent_statistics(z: np.ndarray) -> dict:
  """Per-dimension mean and (population, ddof = 0) std of the train split's latents z
  [N, ...], summed in float64, as nested lists (stored in the dataset's metadata; the
  DatasetInfo's latent_mean / latent_std; latent_diffusion standardises with them)."""
  z = np.asarray(z, np.float64)
  return {"latent_mean": z.mean(0).tolist(), "latent_std": z.std(0).tolist()}


def code_key(code: np.ndarray) -> str:
  """'codes' for integer codebook indices, 'z' for real latents."""
  return "codes" if np.issubdtype(code.dtype, np.integer) else "z"


class Encoded(tfds.core.GeneratorBasedBuilder):
  """A stage-1 run's encodings of its dataset (see the module docstring)."""

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {"1.0.0": "First release.",
                   "1.1.0": "Latents: the train split's latent_mean / latent_std in the metadata."}

  def __init__(self, *, stage1, image_batches, data_dir: str, **kwargs):
    """stage1: the loaded stage-1 run (its `paradigm.encode`, `params`, `fingerprint`,
    `info`); image_batches: split -> that split's stage-1 image batches in stored order."""
    self._stage1, self._image_batches = stage1, image_batches
    super().__init__(config=encoded_config(stage1), data_dir=data_dir, **kwargs)

  @property
  def stage1(self):
    """The stage-1 run (a `gen_jax.workdir.Stage1`) whose encodings this builder holds."""
    return self._stage1

  def _info(self):
    import jax
    s1 = self._stage1
    abstract = jax.eval_shape(s1.paradigm.encode, s1.params,
                              jax.ShapeDtypeStruct((1, *s1.info.shape), np.uint8))
    kind = "codes" if np.issubdtype(abstract.dtype, np.integer) else "latents"
    features = {
        code_key(np.zeros((), abstract.dtype)): tfds.features.Tensor(
            shape=abstract.shape[1:], dtype=np.int32 if kind == "codes" else np.float32),
        "image": tfds.features.Tensor(shape=tuple(s1.info.shape), dtype=np.uint8),
    }
    if s1.info.num_classes:
      features["label"] = tfds.features.ClassLabel(num_classes=s1.info.num_classes)
    metadata = tfds.core.MetadataDict(kind=kind, stage1_fingerprint=s1.fingerprint)
    return tfds.core.DatasetInfo(
        builder=self, description="Stage-1 encodings (gen_jax.data.encoded).",
        features=tfds.features.FeaturesDict(features), metadata=metadata,
        disable_shuffling=True)

  def _split_generators(self, dl_manager):
    del dl_manager
    splits = {split: encode_split(self._stage1, self._image_batches(split))
              for split in ("train", "test")}
    if "z" in splits["train"]:
      self.info.metadata.update(latent_statistics(splits["train"]["z"]))
    return {split: self._generate_examples(arrays) for split, arrays in splits.items()}

  def _generate_examples(self, arrays):
    names = list(arrays)
    for i in range(len(arrays["image"])):
      # Keys are positions: with disable_shuffling TFDS stores examples in key order.
      yield i, {k: arrays[k][i] for k in names}
