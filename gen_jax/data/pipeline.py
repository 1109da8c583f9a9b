"""Input pipelines: TFDS builder -> `tfds.data_source` -> grain -> numpy batches.

`train_iterator` is an infinite, checkpointable grain `DatasetIterator`:
    MapDataset.source(data_source).shuffle(seed).repeat()    (reshuffled each epoch)
      -> this process's rows of each global batch -> map(to example, preprocess)
      -> batch(batch_size // process_count) -> to_iter_dataset()
Its state (`get_state()`/`set_state()`, or `grain.checkpoint.CheckpointSave/Restore`
inside an Orbax `CheckpointManager`) is the index of the next batch, so a restored
iterator yields exactly the batches the original would have yielded next.

`eval_batches` walks a split once in stored order, in fixed-size batches, the last
padded and flagged by `batch['mask']`.

Our builders (`gen_jax.data.builders`) are prepared on first use into `data_dir`
under an fcntl file lock, so concurrent processes (pytest-xdist workers, hosts of a
job sharing a file system) prepare once. Other names are looked up in the TFDS
catalog and must already be prepared (as array_record) in `data_dir`: nothing is
downloaded.
"""
from __future__ import annotations

import contextlib
import fcntl
import math
import os
import sys
from typing import Iterator, Optional

import grain
import numpy as np
import tensorflow_datasets as tfds

from gen_jax.data import builders
from gen_jax.data import preprocess as preprocess_lib
from gen_jax.data import toy2d
from gen_jax.data.info import DatasetInfo

from gen_jax.data import DATASETS as OUR_DATASETS
# Where the configs look for raw files when manual_dir is not given (relative to the cwd).
DEFAULT_MANUAL_DIRS = {
    "mnist_idx": "../shared/data/mnist",
    "mnist_idx/binarized": "../shared/data/mnist",
    "text_file": "../shared/data/tiny_shakespeare",
}
SPLIT_ALIASES = {"text": {"test": "validation"}}   # text_file has train / validation only
_READ_OPTIONS = dict(num_threads=2, prefetch_buffer_size=8)   # batches prefetched by threads


def default_data_dir() -> str:
  """$GEN_JAX_DATA_DIR, else ~/.cache/gen_jax/tensorflow_datasets."""
  return os.environ.get("GEN_JAX_DATA_DIR") or os.path.expanduser("~/.cache/gen_jax/tensorflow_datasets")


# --------------------------------------------------------------- builders ---

def _unknown_dataset_error(name: str, cause: str = "") -> ValueError:
  return ValueError(
      f"Unknown dataset {name!r}{cause}. gen_jax's offline datasets: {', '.join(OUR_DATASETS)}. "
      "Any other name is looked up in the TFDS catalog (e.g. 'mnist', 'cifar10'), which works "
      "only if it is already prepared as array_record in data_dir (this machine may have no "
      "internet): run `tfds build NAME --data_dir=DIR --file_format=array_record` where it has.")


def _make_builder(name: str, data_dir: str, manual_dir: Optional[str]):
  """An unprepared-or-prepared builder for `name` (no preparation here)."""
  if name == "digits":
    return builders.Digits(data_dir=data_dir)
  if name.startswith("toy2d/") or name == "toy2d":
    config = name.partition("/")[2]
    if config not in toy2d.NAMES:
      raise _unknown_dataset_error(name, f" (toy2d configs: {', '.join(toy2d.NAMES)})")
    return builders.Toy2d(config=config, data_dir=data_dir)
  if name in ("mnist_idx", "mnist_idx/binarized"):
    config = builders.mnist_idx_config(manual_dir, binarized=name.endswith("/binarized"))
    return builders.MnistIdx(config=config, data_dir=data_dir)
  if name == "text_file":
    return builders.TextFile(config=builders.text_file_config(manual_dir), data_dir=data_dir)
  if name.split("/")[0] in ("mnist_idx", "text_file"):
    raise _unknown_dataset_error(name)
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except Exception as e:  # DatasetNotFoundError, bad config names, ...
    raise _unknown_dataset_error(name, f" ({type(e).__name__}: {str(e).splitlines()[0]})") from None
  if not builder.is_prepared():
    raise ValueError(
        f"TFDS catalog dataset {name!r} is not prepared in data_dir {data_dir}, and gen_jax "
        "downloads nothing. On a machine with internet run `tfds build "
        f"{name} --data_dir={data_dir} --file_format=array_record`, or use one of gen_jax's "
        f"offline datasets: {', '.join(OUR_DATASETS)}.")
  return builder


@contextlib.contextmanager
def _file_lock(path: str):
  with open(path, "a") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def load_builder(name: str, *, data_dir: Optional[str] = None, manual_dir: Optional[str] = None):
  """The prepared TFDS builder of dataset `name`, preparing ours on first use.

  Args:
    name: one of OUR_DATASETS, or a TFDS catalog name already prepared in data_dir.
    data_dir: TFDS data dir (None or "" -> `default_data_dir()`).
    manual_dir: raw files of mnist_idx / text_file (None or "" -> DEFAULT_MANUAL_DIRS[name],
      relative to the current directory).
  """
  data_dir = os.path.abspath(os.path.expanduser(data_dir or default_data_dir()))
  manual_dir = manual_dir or DEFAULT_MANUAL_DIRS.get(name)
  manual_dir = os.path.abspath(os.path.expanduser(manual_dir)) if manual_dir else None
  builder = _make_builder(name, data_dir, manual_dir)
  if builder.is_prepared():
    return builder
  os.makedirs(data_dir, exist_ok=True)
  lock = os.path.join(data_dir, f".gen_jax-{builder.name}-{builder.builder_config.name if builder.builder_config else 'default'}.lock")
  with _file_lock(lock):
    builder = _make_builder(name, data_dir, manual_dir)   # another process may have prepared it
    if not builder.is_prepared():
      builder.download_and_prepare(
          file_format="array_record",
          download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  return _make_builder(name, data_dir, manual_dir)


def _kind(builder) -> str:
  features = builder.info.features
  if "image" in features:
    return "image"
  if isinstance(builder, builders.Toy2d):
    return "points"
  if isinstance(builder, builders.TextFile):
    return "text"
  raise ValueError(
      f"Dataset {builder.info.full_name!r} has features {list(features)}; gen_jax's pipelines "
      "read image datasets (an 'image' feature), toy2d points and text_file.")


def _num_levels(builder) -> int:
  if isinstance(builder, builders.Digits):
    return builders.DIGITS_NUM_LEVELS
  if isinstance(builder, builders.MnistIdx) and builder.builder_config.binarized:
    return 2
  dtype = np.dtype(builder.info.features["image"].np_dtype)
  if dtype != np.uint8:
    raise ValueError(f"Dataset {builder.info.full_name!r} has {dtype} images; gen_jax reads uint8 levels.")
  return 256


def _resolve_split(kind: str, builder, split: str) -> str:
  split = SPLIT_ALIASES.get(kind, {}).get(split, split)
  if split not in builder.info.splits:
    raise ValueError(f"Dataset {builder.info.full_name!r} has splits {list(builder.info.splits)}, "
                     f"not {split!r}.")
  return split


# ------------------------------------------------------------------- info ---

def _text_tokens(builder, split: str) -> np.ndarray:
  """The split's token stream (int32), from its chunks in index order."""
  source = builder.as_data_source(split=split)
  chunks = sorted((source[i] for i in range(len(source))), key=lambda r: int(r["index"]))
  return np.concatenate([np.asarray(c["tokens"], np.int32) for c in chunks] or [np.zeros(0, np.int32)])


def _num_eval_windows(num_tokens: int, seq_len: int) -> int:
  """Windows of seq_len + 1 tokens at stride seq_len predicting tokens 1..n-1 once each."""
  return max(0, math.ceil((num_tokens - 1) / seq_len))


def _info_from_builder(name, builder, preprocess, seq_len) -> DatasetInfo:
  preprocess_lib.check_preprocess(preprocess)
  kind = _kind(builder)
  if preprocess == "binarize" and kind != "image":
    raise ValueError(f"preprocess='binarize' applies to images; dataset {name!r} is {kind}. Use 'none'.")
  splits = {k: v.num_examples for k, v in builder.info.splits.items()}
  if kind == "image":
    features = builder.info.features
    num_levels = _num_levels(builder)
    if preprocess == "binarize":
      num_levels = preprocess_lib.binarized_levels(num_levels)
    num_classes = features["label"].num_classes if "label" in features else None
    return DatasetInfo(name=name, kind="image", shape=tuple(features["image"].shape),
                       num_levels=num_levels, num_classes=num_classes, num_examples=splits)
  if kind == "points":
    return DatasetInfo(name=name, kind="points", shape=(2,), num_examples=splits)
  if seq_len < 1:
    raise ValueError(f"seq_len must be >= 1, got {seq_len}.")
  num_tokens = builder.info.metadata["num_tokens"]
  windows = {k: _num_eval_windows(n, seq_len) for k, n in num_tokens.items()}
  windows["test"] = windows["validation"]       # 'test' is an alias of 'validation' for text
  return DatasetInfo(name=name, kind="text", shape=(seq_len + 1,), vocab=builder.info.metadata["vocab"],
                     num_examples=windows)


def get_info(name: str, *, data_dir: Optional[str] = None, manual_dir: Optional[str] = None,
             preprocess: str = "none", seq_len: int = 64) -> DatasetInfo:
  """The DatasetInfo of `name` as the pipelines deliver it (after `preprocess`).

  For text, `shape = (seq_len + 1,)`, `vocab` holds the characters in token order, and
  `num_examples[split]` counts the evaluation windows of `eval_batches` ('test' = 'validation').
  """
  preprocess_lib.check_preprocess(preprocess)
  return _info_from_builder(name, load_builder(name, data_dir=data_dir, manual_dir=manual_dir),
                            preprocess, seq_len)


# ------------------------------------------------------------- transforms ---

class _ProcessRows(grain.MapDataset):
  """Element j of this process's stream = element (j // b) * B + p * b + j % b of the global stream,
  with B = global batch, b = B / P: batching by b gives rows [p b, (p + 1) b) of each global batch."""

  def __init__(self, parent, global_batch: int, process_index: int, process_count: int):
    super().__init__(parent)
    self._global, self._per = global_batch, global_batch // process_count
    self._offset = process_index * self._per

  def __len__(self):
    return (len(self._parent) // self._global) * self._per

  def _parent_index(self, j: int) -> int:
    batch, row = divmod(j, self._per)
    return batch * self._global + self._offset + row

  def __getitem__(self, index):
    if isinstance(index, slice):
      return self.slice(index)
    return self._parent[self._parent_index(index)]

  def __str__(self):
    return f"_ProcessRows(global={self._global}, per_process={self._per}, offset={self._offset})"


class _RandomTextWindows(grain.MapDataset):
  """Infinite: element i = tokens[o_i : o_i + seq_len + 1], o_i ~ U{0..n-seq_len-1} drawn from
  default_rng([seed, i]) (a pure function of (seed, i), hence deterministic and checkpointable)."""

  def __init__(self, tokens: np.ndarray, seq_len: int, seed: int):
    super().__init__()
    if len(tokens) < seq_len + 1:
      raise ValueError(f"The text split has {len(tokens)} tokens, fewer than seq_len + 1 = {seq_len + 1}; "
                       "use a longer text file or a smaller seq_len.")
    self._tokens, self._seq_len, self._seed = tokens, seq_len, seed

  def __len__(self):
    return sys.maxsize

  def __getitem__(self, index):
    if isinstance(index, slice):
      return self.slice(index)
    start = int(np.random.default_rng([self._seed, index]).integers(0, len(self._tokens) - self._seq_len))
    return {"tokens": self._tokens[start:start + self._seq_len + 1]}

  def __str__(self):
    return f"_RandomTextWindows(seq_len={self._seq_len}, seed={self._seed})"


def _example_fn(builder, kind: str, preprocess: str):
  """Record of the data source -> example dict of numpy arrays (the batch keys of DatasetInfo)."""
  num_levels = _num_levels(builder) if kind == "image" else None   # stored levels, before preprocess

  def to_example(record):
    if kind == "points":
      return {"x": np.asarray(record["x"], np.float32)}
    if kind == "text":
      return {"tokens": np.asarray(record["tokens"], np.int32)}
    image = np.asarray(record["image"], np.uint8)
    if preprocess == "binarize":
      image = preprocess_lib.binarize(image, num_levels)
    example = {"image": image}
    if "label" in record:
      example["label"] = np.int32(record["label"])
    return example
  return to_example


def _check_sharding(batch_size: int, process_index: int, process_count: int) -> int:
  if batch_size < 1 or process_count < 1 or batch_size % process_count:
    raise ValueError(f"batch_size={batch_size} must be a positive multiple of process_count={process_count}.")
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index={process_index} is not in [0, process_count={process_count}).")
  return batch_size // process_count


# ------------------------------------------------------------------ train ---

def train_dataset(name: str, *, batch_size: int, seed: int, data_dir: Optional[str] = None,
                  manual_dir: Optional[str] = None, preprocess: str = "none", seq_len: int = 64,
                  process_index: int = 0, process_count: int = 1) -> grain.MapDataset:
  """The (infinite) grain MapDataset of this process's training batches; see `train_iterator`."""
  per_process = _check_sharding(batch_size, process_index, process_count)
  preprocess_lib.check_preprocess(preprocess)
  if not 0 <= seed < 2**32:
    raise ValueError(f"seed must be in [0, 2**32), got {seed}.")
  builder = load_builder(name, data_dir=data_dir, manual_dir=manual_dir)
  info = _info_from_builder(name, builder, preprocess, seq_len)
  if info.kind == "text":
    stream = _RandomTextWindows(_text_tokens(builder, "train"), seq_len, seed)
  else:
    source = builder.as_data_source(split="train")
    if len(source) == 0:
      raise ValueError(f"Dataset {name!r} has an empty train split.")
    stream = grain.MapDataset.source(source).shuffle(seed).repeat()
  stream = _ProcessRows(stream, batch_size, process_index, process_count)
  stream = stream.map(_example_fn(builder, info.kind, preprocess))
  return stream.batch(per_process, drop_remainder=True)


def train_iterator(name: str, *, batch_size: int, seed: int, data_dir: Optional[str] = None,
                   manual_dir: Optional[str] = None, preprocess: str = "none", seq_len: int = 64,
                   process_index: int = 0, process_count: int = 1) -> grain.DatasetIterator:
  """Infinite iterator of this process's rows of each global training batch.

  Images: {'image': uint8 [b, H, W, C], 'label': int32 [b]}; points: {'x': float32 [b, 2]};
  text: {'tokens': int32 [b, seq_len + 1]} (windows at seeded random offsets of the train
  stream), with b = batch_size // process_count. Examples are shuffled with `seed` and
  reshuffled every epoch (epoch e uses seed + e); batches run across epoch boundaries.
  Concatenating the process shards in process order gives the process_count=1 batch.

  Checkpointing: `it.get_state()` / `it.set_state(state)`, or inside an Orbax
  CheckpointManager `grain.checkpoint.CheckpointSave(it)` / `CheckpointRestore(fresh_it)`
  where `fresh_it` is built with the same arguments.
  """
  dataset = train_dataset(name, batch_size=batch_size, seed=seed, data_dir=data_dir,
                          manual_dir=manual_dir, preprocess=preprocess, seq_len=seq_len,
                          process_index=process_index, process_count=process_count)
  return iter(dataset.to_iter_dataset(grain.ReadOptions(**_READ_OPTIONS)))


# ------------------------------------------------------------------- eval ---

def _pad_rows(rows: list, size: int) -> tuple[dict, np.ndarray]:
  """Stacks example dicts, padding with zero rows up to `size`; returns (batch, mask)."""
  batch = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
  pad = size - len(rows)
  batch = {k: np.concatenate([v, np.zeros((pad,) + v.shape[1:], v.dtype)]) for k, v in batch.items()}
  return batch, np.arange(size) < len(rows)


def eval_batches(name: str, *, split: str = "test", batch_size: int, data_dir: Optional[str] = None,
                 manual_dir: Optional[str] = None, preprocess: str = "none", seq_len: int = 64,
                 process_index: int = 0, process_count: int = 1,
                 max_examples: Optional[int] = None) -> Iterator[dict]:
  """One deterministic pass over `split`, in batches of batch_size // process_count rows.

  Global batch k holds examples [k B, (k + 1) B) in stored order (the last zero-padded);
  this process gets rows [p b, (p + 1) b) of it. Every process yields the same number of
  batches, ceil(n / B), with n = the split's examples (at most max_examples).
  batch['mask']: bool [b], False on padding.

  Text ('test' is an alias of the text split 'validation'): example k is the window
  tokens[k T : k T + T + 1] (T = seq_len) of the split's stream, k = 0..ceil((n - 1) / T) - 1,
  so each token 1..n-1 is a prediction target exactly once (token 0 has no context).
  batch['tokens'] int32 [b, T + 1] (zero-padded past the end) and batch['token_mask'] bool
  [b, T]: token_mask[i, j] is True iff target tokens[i, j + 1] is a real token.
  """
  per_process = _check_sharding(batch_size, process_index, process_count)
  preprocess_lib.check_preprocess(preprocess)
  builder = load_builder(name, data_dir=data_dir, manual_dir=manual_dir)
  info = _info_from_builder(name, builder, preprocess, seq_len)
  split = _resolve_split(info.kind, builder, split)
  if info.kind == "text":
    tokens = _text_tokens(builder, split)
    num = _num_eval_windows(len(tokens), seq_len)

    def get(k):
      window = tokens[k * seq_len:k * seq_len + seq_len + 1]
      real = len(window)
      window = np.concatenate([window, np.zeros(seq_len + 1 - real, np.int32)])
      return {"tokens": window, "token_mask": np.arange(seq_len) < real - 1}
  else:
    source = builder.as_data_source(split=split)
    num = len(source)
    to_example = _example_fn(builder, info.kind, preprocess)

    def get(k):
      return to_example(source[k])
  if max_examples is not None:
    num = min(num, max_examples)
  start = process_index * per_process
  for first in range(0, num, batch_size):
    rows = [get(k) for k in range(first + start, min(first + start + per_process, num))]
    if not rows:                        # this process's rows are all padding
      rows_spec = get(first)
      batch, mask = _pad_rows([rows_spec], per_process)
      mask[:] = False
      batch = {k: np.zeros_like(v) for k, v in batch.items()}
    else:
      batch, mask = _pad_rows(rows, per_process)
    batch["mask"] = mask
    yield batch
