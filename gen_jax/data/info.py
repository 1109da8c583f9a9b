"""What a paradigm needs to know about a dataset, independent of how it is stored."""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional, Sequence


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """Static description of a dataset.

  Attributes:
    name: the dataset name as configs spell it ("digits", "toy2d/eight_gaussians",
      "mnist_idx", "text_file", ...).
    kind: "image" (batch key "image", uint8 levels [B, H, W, C] + "label"),
      "points" (batch key "x", float32 [B, D]), "text" (batch key "tokens",
      int32 [B, seq_len + 1]), or the stage-1 encodings of images (dataset
      "encoded", `gen_jax.data.encoded`): "codes" (batch key "codes", int32
      [B, h, w] codebook indices) or "latents" (batch key "z", float32
      [B, ...]); both also carry the stage-1 "image" (uint8 levels) and
      "label" when the images have labels.
    shape: the shape of one example's modelled array ("image": (H, W, C);
      "points": (D,); "text": (seq_len + 1,); "codes": (h, w); "latents": the
      latent shape).
    num_levels: number of discrete levels of an image sub-pixel (17 for digits,
      256 for MNIST, 2 when binarized); None for points and text.
    num_classes: number of labels, or None.
    vocab: for text, the token strings in order (token i is vocab[i]): a str of
      characters for char-level text.
    num_examples: examples per split, e.g. {"train": 1437, "test": 360}.
    num_codes: "codes": the codebook size K (indices 0..K-1).
    image_shape: "codes" / "latents": (H, W, C) of the encoded images;
      num_levels and num_classes are then the images'.
    stage1: "codes" / "latents": the `gen_jax.workdir.Stage1` that
      encoded them (its `decode`, `decoder_log_likelihood`, image `info`).
    latent_mean, latent_std: "latents": the per-dimension mean and std
      (ddof = 0) of the train split's latents, nested tuples of the latent
      shape; None for other kinds.
  """
  name: str
  kind: str
  shape: tuple
  num_levels: Optional[int] = None
  num_classes: Optional[int] = None
  vocab: Optional[Sequence[str]] = None
  num_examples: Optional[dict] = None
  num_codes: Optional[int] = None
  image_shape: Optional[tuple] = None
  stage1: Any = dataclasses.field(default=None, compare=False, repr=False)
  latent_mean: Optional[tuple] = dataclasses.field(default=None, compare=False, repr=False)
  latent_std: Optional[tuple] = dataclasses.field(default=None, compare=False, repr=False)

  @property
  def num_dims(self) -> int:
    """Dimensions that bits/dim divides by (sub-pixels, coordinates or tokens).

    For "codes" and "latents" it is the encoded image's sub-pixels: their
    paradigms report log-likelihoods of the images, so bits/dim is per image
    sub-pixel on the images' levels, comparable with image paradigms.
    """
    if self.kind == "text":
      return self.shape[0] - 1
    if self.kind in ("codes", "latents"):
      return math.prod(self.image_shape)
    return math.prod(self.shape)

  @property
  def vocab_size(self) -> Optional[int]:
    return None if self.vocab is None else len(self.vocab)

  @property
  def data_key(self) -> str:
    return {"image": "image", "points": "x", "text": "tokens", "codes": "codes",
            "latents": "z"}[self.kind]


# Shapes of catalog datasets this machine cannot prepare (no internet), so that
# paper-scale runs can be planned abstractly (`experiments.train --dry_run`).
# Text sets are GPT-2 BPE token streams (50,257 tokens; the vocabulary holds
# placeholder strings, as only its size matters for planning).
PLANNING_INFO = {
    "cifar10": DatasetInfo(name="cifar10", kind="image", shape=(32, 32, 3), num_levels=256,
                           num_classes=10, num_examples={"train": 50_000, "test": 10_000}),
    "openwebtext": DatasetInfo(name="openwebtext", kind="text", shape=(1025,),
                               vocab=tuple(f"<{i}>" for i in range(50_257))),
}


def planning_info(name: str, seq_len: int, preprocess: str = "none") -> Optional[DatasetInfo]:
  """PLANNING_INFO[name] as the pipelines would deliver it (text: `seq_len + 1` tokens a
  window; images with `preprocess="binarize"`: 2 levels), or None for a name it lacks."""
  info = PLANNING_INFO.get(name)
  if info is None:
    return None
  if info.kind == "text":
    info = dataclasses.replace(info, shape=(seq_len + 1,))
  if info.kind == "image" and preprocess == "binarize":
    info = dataclasses.replace(info, num_levels=2)
  return info
