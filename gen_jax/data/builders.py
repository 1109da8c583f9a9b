"""TFDS builders for the project's offline datasets (no download, ever).

* `digits`: scikit-learn's bundled 8x8 digits, 17 gray levels.
* `toy2d/<moons|eight_gaussians|checkerboard|swiss_roll>`: fixed samples of the
  distributions in `gen_jax.data.toy2d`.
* `mnist_idx` (and `mnist_idx/binarized`): MNIST from IDX files in the manual dir.
* `text_file`: a character-level token stream of `<manual_dir>/input.txt`.

Each is a `tfds.core.GeneratorBasedBuilder` prepared as `array_record` (see
`gen_jax.data.pipeline.load_builder`, which prepares on first use under a file
lock and reads through `tfds.data_source`). The builders set
`disable_shuffling = True` so stored order is generation order (the splits are
already seeded permutations; text chunks must stay in order).

`_info()` returns `tfds.core.DatasetInfo(builder=self, ...)`: the builders live
outside TFDS's package, where `dataset_info_from_configs` fails.
"""
from __future__ import annotations

from gen_jax.errors import UserError

import dataclasses
import gzip
import hashlib
import os
import zlib

import numpy as np
import tensorflow_datasets as tfds

from gen_jax.data import toy2d

_VERSION = tfds.core.Version("1.0.0")
_RELEASE_NOTES = {"1.0.0": "First release."}

# ----------------------------------------------------------------- digits ---

DIGITS_NUM_LEVELS = 17           # gray levels 0..16
DIGITS_SPLIT_SEED = 0
DIGITS_NUM_TRAIN = 1437          # of 1,797; the remaining 360 are the test split


def digits_arrays():
  """(images uint8 [1797, 8, 8, 1] levels 0..16, labels int64 [1797]) from scikit-learn."""
  from sklearn.datasets import load_digits
  d = load_digits()
  images = d.images.astype(np.uint8)[..., None]
  return images, d.target.astype(np.int64)


def digits_split_indices():
  """{'train': idx, 'test': idx}: default_rng(0).permutation(1797), first 1,437 train."""
  perm = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(1797)
  return {"train": perm[:DIGITS_NUM_TRAIN], "test": perm[DIGITS_NUM_TRAIN:]}


class Digits(tfds.core.GeneratorBasedBuilder):
  """scikit-learn's 8x8 handwritten digits (UCI optdigits test set), 17 gray levels."""

  VERSION = _VERSION
  RELEASE_NOTES = _RELEASE_NOTES

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        description="scikit-learn's bundled 8x8 digits: 1,797 images, levels 0..16.",
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(8, 8, 1), dtype=np.uint8),
            "label": tfds.features.ClassLabel(num_classes=10),
        }),
        supervised_keys=("image", "label"),
        disable_shuffling=True,
        homepage="https://scikit-learn.org/stable/modules/generated/sklearn.datasets.load_digits.html",
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    return {split: self._generate_examples(split) for split in ("train", "test")}

  def _generate_examples(self, split):
    images, labels = digits_arrays()
    # Keys are positions: with disable_shuffling TFDS stores examples in key order.
    for key, i in enumerate(digits_split_indices()[split]):
      yield key, {"image": images[i], "label": int(labels[i])}


# ------------------------------------------------------------------ toy2d ---

TOY2D_NUM_EXAMPLES = {"train": 20_000, "test": 5_000}


def toy2d_split_seed(name: str, split: str) -> int:
  """A fixed seed per (distribution, split): crc32 of 'name/split'."""
  return zlib.crc32(f"{name}/{split}".encode())


def toy2d_arrays(name: str, split: str) -> np.ndarray:
  """The stored samples of toy2d/<name> for `split`, float32 [n, 2]."""
  rng = np.random.default_rng(toy2d_split_seed(name, split))
  return toy2d.sample(name, rng, TOY2D_NUM_EXAMPLES[split])


class Toy2d(tfds.core.GeneratorBasedBuilder):
  """Fixed samples of 2-D toy densities (train 20,000 / test 5,000), feature 'x' float32 (2,)."""

  name = "toy2d"
  VERSION = _VERSION
  RELEASE_NOTES = _RELEASE_NOTES
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=n, description=n) for n in toy2d.NAMES]

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        description="2-D toy distributions of the flow literature; see gen_jax/data/toy2d.py.",
        features=tfds.features.FeaturesDict({"x": tfds.features.Tensor(shape=(2,), dtype=np.float32)}),
        disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    return {split: self._generate_examples(split) for split in TOY2D_NUM_EXAMPLES}

  def _generate_examples(self, split):
    for i, x in enumerate(toy2d_arrays(self.builder_config.name, split)):
      yield i, {"x": x}


# -------------------------------------------------------------- mnist_idx ---

MNIST_FILES = {
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
}
MNIST10K_SPLIT_SEED = 0          # default_rng(0).permutation(10000): first 8,000 train, last 2,000 test
MNIST10K_NUM_TRAIN = 8_000
MNIST_BINARIZE_SEED = 0          # seed of the one fixed stochastic binarization (mnist_idx/binarized)
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def find_idx_file(manual_dir: str, stem: str):
  """Path of `stem` or `stem.gz` in manual_dir, or None."""
  for candidate in (stem, stem + ".gz"):
    path = os.path.join(manual_dir, candidate)
    if os.path.isfile(path):
      return path
  return None


def read_idx(path: str) -> np.ndarray:
  """Reads an IDX file (LeCun's MNIST format; gzipped if the name ends in .gz).

  Header: two zero bytes, a dtype code (0x08 = uint8), the number of dimensions n,
  then n big-endian uint32 sizes; the data follow in C order.
  """
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "rb") as f:
    raw = f.read()
  if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
    raise UserError(f"{path} is not an IDX file (bad magic number {raw[:4]!r}).")
  ndim = raw[3]
  shape = tuple(int(s) for s in np.frombuffer(raw, ">u4", count=ndim, offset=4))
  data = np.frombuffer(raw, _IDX_DTYPES[raw[2]], offset=4 + 4 * ndim)
  if data.size != int(np.prod(shape)):
    raise UserError(f"{path}: header says shape {shape} but holds {data.size} values (truncated?).")
  return data.reshape(shape)


def mnist_manual_files(manual_dir: str) -> dict:
  """{'test_images': path, ...} of the IDX files present; raises naming the missing ones.

  The 10,000-image test files are required; the 60,000-image train files are used
  when both are present (else the "mnist10k" splits are built from the test files).
  """
  manual_dir = os.path.abspath(os.path.expanduser(manual_dir))
  found = {key: find_idx_file(manual_dir, stem) for key, stem in MNIST_FILES.items()}
  missing = [MNIST_FILES[k] for k in ("test_images", "test_labels") if found[k] is None]
  if missing:
    raise FileNotFoundError(
        f"mnist_idx needs the MNIST IDX files {missing} (each optionally gzipped, '.gz') in "
        f"the manual directory {manual_dir} (set config.manual_dir / manual_dir=). Put "
        "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz there for the 'mnist10k' "
        "splits (8,000 train / 2,000 test); add train-images-idx3-ubyte.gz and "
        "train-labels-idx1-ubyte.gz for the standard 60,000 / 10,000 splits.")
  if found["train_images"] is None or found["train_labels"] is None:
    found["train_images"] = found["train_labels"] = None
  return {k: v for k, v in found.items() if v is not None}


def files_md5(paths) -> str:
  """md5 hex digest of the files' bytes, in the given order."""
  h = hashlib.md5()
  for path in paths:
    with open(path, "rb") as f:
      for block in iter(lambda: f.read(1 << 20), b""):
        h.update(block)
  return h.hexdigest()


@dataclasses.dataclass(eq=False)
class MnistIdxConfig(tfds.core.BuilderConfig):
  """variant: 'mnist10k' (test files only) or 'mnist60k' (train + test files); binarized:
  store one fixed Bernoulli(level / 255) draw per pixel. The name carries the files' md5."""
  variant: str = "mnist10k"
  binarized: bool = False


def mnist_idx_config(manual_dir: str, binarized: bool) -> MnistIdxConfig:
  """The config for the IDX files in manual_dir, named '<variant>[_binarized]_<md5 prefix>'."""
  files = mnist_manual_files(manual_dir)
  variant = "mnist60k" if "train_images" in files else "mnist10k"
  digest = files_md5([files[k] for k in sorted(files)])[:12]
  name = f"{variant}{'_binarized' if binarized else ''}_{digest}"
  return MnistIdxConfig(name=name, variant=variant, binarized=binarized,
                        description=f"MNIST IDX files ({variant}), md5 {digest}")


def mnist_idx_arrays(manual_dir: str, variant: str, binarized: bool) -> dict:
  """{'train': (images uint8 [N,28,28,1], labels int64 [N]), 'test': ...} from the IDX files.

  mnist10k: the test files' 10,000 images split by default_rng(0).permutation(10000),
  first 8,000 train, last 2,000 test. mnist60k: the standard 60,000 / 10,000.
  binarized: level -> 1{u < level / 255}, u ~ U[0,1) from default_rng([MNIST_BINARIZE_SEED, f])
  with f = 0 for the test file and 1 for the train file (drawn once, in file order).
  """
  files = mnist_manual_files(manual_dir)

  def load(prefix, file_index):
    images, labels = read_idx(files[prefix + "_images"]), read_idx(files[prefix + "_labels"])
    if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.shape != images.shape[:1]:
      raise UserError(f"Unexpected IDX shapes {images.shape}, {labels.shape} in {manual_dir}.")
    images = images.astype(np.uint8)[..., None]
    if binarized:
      u = np.random.default_rng([MNIST_BINARIZE_SEED, file_index]).random(images.shape)
      images = (u < images / 255.0).astype(np.uint8)
    return images, labels.astype(np.int64)

  test = load("test", 0)
  if variant == "mnist60k":
    return {"train": load("train", 1), "test": test}
  if len(test[0]) != 10_000:
    raise UserError(f"mnist10k expects 10,000 test images, found {len(test[0])} in {manual_dir}.")
  perm = np.random.default_rng(MNIST10K_SPLIT_SEED).permutation(10_000)
  tr, te = perm[:MNIST10K_NUM_TRAIN], perm[MNIST10K_NUM_TRAIN:]
  return {"train": (test[0][tr], test[1][tr]), "test": (test[0][te], test[1][te])}


class MnistIdx(tfds.core.GeneratorBasedBuilder):
  """MNIST read from local IDX files (TFDS manual dir): 28x28x1 uint8, 256 levels (2 if binarized)."""

  VERSION = _VERSION
  RELEASE_NOTES = _RELEASE_NOTES
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Put t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz (and optionally "
      "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz) in the manual dir.")

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        description="MNIST from local IDX files ('mnist10k': the test set split 8,000/2,000).",
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(28, 28, 1), dtype=np.uint8),
            "label": tfds.features.ClassLabel(num_classes=10),
        }),
        supervised_keys=("image", "label"),
        disable_shuffling=True,
        homepage="http://yann.lecun.com/exdb/mnist/",
    )

  def _split_generators(self, dl_manager):
    cfg = self.builder_config
    arrays = mnist_idx_arrays(os.fspath(dl_manager.manual_dir), cfg.variant, cfg.binarized)
    return {split: self._generate_examples(*arrays[split]) for split in ("train", "test")}

  def _generate_examples(self, images, labels):
    for i, (image, label) in enumerate(zip(images, labels)):
      yield i, {"image": image, "label": int(label)}


# -------------------------------------------------------------- text_file ---

TEXT_FILE_NAME = "input.txt"
TEXT_TRAIN_FRACTION = 0.9        # nanoGPT's shakespeare_char: first 90% train, last 10% validation
TEXT_CHUNK_TOKENS = 1 << 14      # tokens per stored example


def text_path(manual_dir: str) -> str:
  """`<manual_dir>/input.txt`, checked to exist (else an error saying where to put it)."""
  path = os.path.join(os.path.abspath(os.path.expanduser(manual_dir)), TEXT_FILE_NAME)
  if not os.path.isfile(path):
    raise FileNotFoundError(
        f"text_file needs the text file {path}: put a UTF-8 text file named {TEXT_FILE_NAME} in "
        f"the manual directory {os.path.dirname(path)} (set config.manual_dir / manual_dir=), "
        "e.g. Tiny Shakespeare's input.txt.")
  return path


def tokenize_text(text: str):
  """(vocab, tokens): vocab = the sorted unique characters; token i <-> vocab[i] (int32)."""
  vocab = "".join(sorted(set(text)))
  lookup = {c: i for i, c in enumerate(vocab)}
  return vocab, np.fromiter((lookup[c] for c in text), dtype=np.int32, count=len(text))


def text_split_tokens(tokens: np.ndarray) -> dict:
  """{'train': first int(0.9 n) tokens, 'validation': the rest} (nanoGPT's split)."""
  n_train = int(len(tokens) * TEXT_TRAIN_FRACTION)
  return {"train": tokens[:n_train], "validation": tokens[n_train:]}


def text_file_config(manual_dir: str) -> tfds.core.BuilderConfig:
  """A config named 'md5_<first 12 hex of md5(input.txt)>': the cache is keyed on the file."""
  digest = files_md5([text_path(manual_dir)])[:12]
  return tfds.core.BuilderConfig(name=f"md5_{digest}", description=f"{TEXT_FILE_NAME} with md5 {digest}...")


class TextFile(tfds.core.GeneratorBasedBuilder):
  """Character-level tokens of `<manual_dir>/input.txt`, stored as ordered chunks of the stream.

  Example: {'index': chunk number, 'tokens': int32 [<= TEXT_CHUNK_TOKENS]}; concatenating a
  split's chunks by index gives its token stream. metadata: 'vocab' (characters in token order).
  """

  VERSION = _VERSION
  RELEASE_NOTES = _RELEASE_NOTES
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"Put a UTF-8 text file named {TEXT_FILE_NAME} in the manual dir."

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        description="Character-level token stream of a local text file (90% train / 10% validation).",
        features=tfds.features.FeaturesDict({
            "index": np.int64,
            "tokens": tfds.features.Tensor(shape=(None,), dtype=np.int32),
        }),
        metadata=tfds.core.MetadataDict(),
        disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    path = text_path(os.fspath(dl_manager.manual_dir))
    with open(path, encoding="utf-8") as f:
      text = f.read()
    if len(text) < 2:
      raise UserError(f"{path} holds {len(text)} characters; text_file needs at least 2.")
    vocab, tokens = tokenize_text(text)
    self.info.metadata["vocab"] = vocab
    splits = text_split_tokens(tokens)
    self.info.metadata["num_tokens"] = {k: int(len(v)) for k, v in splits.items()}
    return {split: self._generate_examples(t) for split, t in splits.items()}

  def _generate_examples(self, tokens):
    for index, start in enumerate(range(0, max(len(tokens), 1), TEXT_CHUNK_TOKENS)):
      yield index, {"index": index, "tokens": tokens[start:start + TEXT_CHUNK_TOKENS]}
