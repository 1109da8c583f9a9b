"""Input pipelines: TFDS builder -> `tfds.data_source` -> grain -> numpy batches.

`train_iterator` is an infinite, checkpointable grain `DatasetIterator` over a grain
`MapDataset` whose element k is this process's rows of global batch k:
    split in memory (read once per process from `builder.as_data_source`)
      -> element k = rows [p b, (p + 1) b) of global batch k of the shuffled stream
         (a fresh permutation each epoch; text: windows at seeded random offsets)
      -> map(preprocess) -> to_iter_dataset() (thread prefetch)
Batches are gathered in one vectorised step rather than example by example: a TFDS data
source decodes an example in ~0.1-0.4 ms on this CPU and grain adds ~0.1 ms per element,
which made a 128-image batch cost 45 ms; gathered from memory it costs well under 1 ms.
The iterator's state (`get_state()`/`set_state()`, or `grain.checkpoint.CheckpointSave/
Restore` inside an Orbax `CheckpointManager`) is the index of the next batch, so a restored
iterator yields exactly the batches the original would have yielded next.

`eval_batches` walks a split once in stored order, in fixed-size batches, the last
padded and flagged by `batch['mask']`.

Our builders (`gen_jax.data.builders`) are prepared on first use into `data_dir`
under an fcntl file lock, so concurrent processes (pytest-xdist workers, hosts of a
job sharing a file system) prepare once. Other names are looked up in the TFDS
catalog and must already be prepared (as array_record) in `data_dir`: nothing is
downloaded.

The dataset "encoded" is a stage-1 tokenizer's codes or latents of its own
dataset (`gen_jax.data.encoded`): every function here then takes `stage1=`, the
loaded stage-1 run (`gen_jax.workdir.Stage1`: its `encode` function, its
`fingerprint` that keys the cache, its config and image info), prepares the
cache on first use like any builder, and serves batches {"codes" | "z",
"image", "label"} the same way. The data layer never loads a run itself.
"""
from __future__ import annotations

from gen_jax.errors import UserError

import contextlib
import dataclasses
import fcntl
import math
import os
import sys
from typing import Iterator, Optional

import grain
import numpy as np
import tensorflow_datasets as tfds

from gen_jax.data import DATASETS as OUR_DATASETS
from gen_jax.data import builders
from gen_jax.data import encoded
from gen_jax.data import preprocess as preprocess_lib
from gen_jax.data import toy2d
from gen_jax.data.info import DatasetInfo

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

def _unknown_dataset_error(name: str, cause: str = "") -> UserError:
  return UserError(
      f"Unknown dataset {name!r}{cause}. gen_jax's offline datasets: {', '.join(OUR_DATASETS)}. "
      "Any other name is looked up in the TFDS catalog (e.g. 'mnist', 'cifar10'), which works "
      "only if it is already prepared as array_record in data_dir (this machine may have no "
      "internet): run `tfds build NAME --data_dir=DIR --file_format=array_record` where it has.")


def _check_stage1(stage1):
  """The loaded stage-1 run a caller passes for "encoded" (anything with the `encode`,
  `fingerprint`, `config`, `info`, `workdir` and `step` of `gen_jax.workdir.Stage1`)."""
  if stage1 is None or not hasattr(stage1, "fingerprint"):
    raise UserError("Dataset 'encoded' is a stage-1 run's codes: it needs config.stage1.workdir, "
                    "the stage-1 run loaded and passed as stage1= (gen_jax.workdir.stage1_of(config) "
                    "does it). Set --config.stage1.workdir to a trained vqvae or vae workdir.")
  return stage1


def _stage1_image_batches(stage1, data_dir: str):
  """split -> the stage-1 run's own dataset split in stored order, with its preprocessing."""
  cfg = stage1.config
  return lambda split: eval_batches(
      cfg.dataset, split=split, batch_size=encoded.ENCODE_BATCH_SIZE,
      data_dir=cfg.data_dir or data_dir, manual_dir=cfg.manual_dir or None,
      preprocess=cfg.preprocess, seq_len=cfg.seq_len)


def _make_builder(name: str, data_dir: str, manual_dir: Optional[str], stage1=None):
  """An unprepared-or-prepared builder for `name` (no preparation here)."""
  if name == "encoded":
    stage1 = _check_stage1(stage1)
    return encoded.Encoded(stage1=stage1, image_batches=_stage1_image_batches(stage1, data_dir),
                           data_dir=data_dir)
  if name == "synthetic":
    raise UserError("Dataset 'synthetic' has no files to read: its batches are made on device "
                    "(gen_jax.data.synthetic; a run's are gen_jax.workdir.train_batches(run)), "
                    "shaped like config.synthetic_like, and it has no test split.")
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
    raise UserError(
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


@contextlib.contextmanager
def _quiet_progress_bars():
  """TFDS's per-split tqdm bars off while preparing (a few seconds), the user's setting after."""
  from tensorflow_datasets.core.utils import tqdm_utils
  active = getattr(tqdm_utils, "_active", True)
  tfds.display_progress_bar(False)
  try:
    yield
  finally:
    tfds.display_progress_bar(active)


def load_builder(name: str, *, data_dir: Optional[str] = None, manual_dir: Optional[str] = None,
                 stage1=None):
  """The prepared TFDS builder of dataset `name`, preparing ours on first use.

  Args:
    name: one of OUR_DATASETS, or a TFDS catalog name already prepared in data_dir.
    data_dir: TFDS data dir (None or "" -> `default_data_dir()`).
    manual_dir: raw files of mnist_idx / text_file (None or "" -> DEFAULT_MANUAL_DIRS[name],
      relative to the current directory).
    stage1: for "encoded", the loaded stage-1 run (`gen_jax.workdir.stage1_of(config)`).
  """
  data_dir = os.path.abspath(os.path.expanduser(data_dir or default_data_dir()))
  manual_dir = manual_dir or DEFAULT_MANUAL_DIRS.get(name)
  manual_dir = os.path.abspath(os.path.expanduser(manual_dir)) if manual_dir else None
  builder = _make_builder(name, data_dir, manual_dir, stage1)
  if builder.is_prepared():
    return builder
  os.makedirs(data_dir, exist_ok=True)
  config_name = builder.builder_config.name if builder.builder_config else "default"
  lock = os.path.join(data_dir, f".gen_jax-{builder.name}-{config_name}.lock")
  with _file_lock(lock):
    builder = _make_builder(name, data_dir, manual_dir, stage1)   # another process may have prepared it
    if not builder.is_prepared():
      with _quiet_progress_bars():
        builder.download_and_prepare(
            file_format="array_record",
            download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  return _make_builder(name, data_dir, manual_dir, stage1)


def _kind(builder) -> str:
  if isinstance(builder, encoded.Encoded):
    return builder.info.metadata["kind"]
  features = builder.info.features
  if "image" in features:
    return "image"
  if isinstance(builder, builders.Toy2d):
    return "points"
  if isinstance(builder, builders.TextFile):
    return "text"
  raise UserError(
      f"Dataset {builder.info.full_name!r} has features {list(features)}; gen_jax's pipelines "
      "read image datasets (an 'image' feature), toy2d points and text_file.")


def _num_levels(builder) -> int:
  if isinstance(builder, builders.Digits):
    return builders.DIGITS_NUM_LEVELS
  if isinstance(builder, builders.MnistIdx) and builder.builder_config.binarized:
    return 2
  dtype = np.dtype(builder.info.features["image"].np_dtype)
  if dtype != np.uint8:
    raise UserError(f"Dataset {builder.info.full_name!r} has {dtype} images; gen_jax reads uint8 levels.")
  return 256


def _resolve_split(kind: str, builder, split: str) -> str:
  split = SPLIT_ALIASES.get(kind, {}).get(split, split)
  if split not in builder.info.splits:
    raise UserError(f"Dataset {builder.info.full_name!r} has splits {list(builder.info.splits)}, "
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


def _nested_tuple(value):
  """Nested lists (JSON metadata) -> nested tuples (hashable, immutable DatasetInfo fields)."""
  return tuple(_nested_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


def _info_from_builder(name, builder, preprocess, seq_len) -> DatasetInfo:
  preprocess_lib.check_preprocess(preprocess)
  kind = _kind(builder)
  if preprocess == "binarize" and kind != "image":
    raise UserError(f"preprocess='binarize' applies to images; dataset {name!r} is {kind}. Use 'none'.")
  splits = {k: v.num_examples for k, v in builder.info.splits.items()}
  if kind in ("codes", "latents"):
    if preprocess != "none":
      raise UserError(f"preprocess={preprocess!r} on dataset 'encoded': the stage-1 run's "
                      "preprocessing is already applied to its images. Set --config.preprocess=none.")
    s1 = builder.stage1
    shape = tuple(builder.info.features["codes" if kind == "codes" else "z"].shape)
    num_codes = s1.config.model.get("num_codes") if kind == "codes" else None
    stats = {}
    if kind == "latents":
      stats = {k: _nested_tuple(builder.info.metadata[k]) for k in ("latent_mean", "latent_std")}
    return DatasetInfo(name=name, kind=kind, shape=shape, num_levels=s1.info.num_levels,
                       num_classes=s1.info.num_classes, num_examples=splits, num_codes=num_codes,
                       image_shape=tuple(s1.info.shape), stage1=s1, **stats)
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
    raise UserError(f"seq_len must be >= 1, got {seq_len}.")
  num_tokens = builder.info.metadata["num_tokens"]
  windows = {k: _num_eval_windows(n, seq_len) for k, n in num_tokens.items()}
  windows["test"] = windows["validation"]       # 'test' is an alias of 'validation' for text
  return DatasetInfo(name=name, kind="text", shape=(seq_len + 1,), vocab=builder.info.metadata["vocab"],
                     num_examples=windows)


def get_info(name: str, *, data_dir: Optional[str] = None, manual_dir: Optional[str] = None,
             preprocess: str = "none", seq_len: int = 64, stage1=None) -> DatasetInfo:
  """The DatasetInfo of `name` as the pipelines deliver it (after `preprocess`).

  For text, `shape = (seq_len + 1,)`, `vocab` holds the characters in token order, and
  `num_examples[split]` counts the evaluation windows of `eval_batches` ('test' = 'validation').
  A `stage1` given with a dataset other than "encoded" (a teacher, e.g. consistency
  distillation's edm run) is carried in `info.stage1` for the paradigm; the data are untouched.
  """
  preprocess_lib.check_preprocess(preprocess)
  builder = load_builder(name, data_dir=data_dir, manual_dir=manual_dir, stage1=stage1)
  info = _info_from_builder(name, builder, preprocess, seq_len)
  if stage1 is not None and info.stage1 is None:
    info = dataclasses.replace(info, stage1=stage1)
  return info


# ------------------------------------------------------------ split arrays ---

_SPLIT_CACHE: dict = {}           # (where the prepared data lives, split) -> arrays
_SPLIT_CACHE_SIZE = 16


def _split_arrays_cached(builder, name: str, split: str):
  key = (os.fspath(builder.data_path), split)
  if key not in _SPLIT_CACHE:
    if len(_SPLIT_CACHE) >= _SPLIT_CACHE_SIZE:
      _SPLIT_CACHE.pop(next(iter(_SPLIT_CACHE)))
    _SPLIT_CACHE[key] = _read_split(builder, name, split)
  return _SPLIT_CACHE[key]


def _read_split(builder, name: str, split: str):
  if _kind(builder) == "text":
    return {"tokens": _text_tokens(builder, split)}
  try:
    source = builder.as_data_source(split=split)
  except Exception as e:  # e.g. a catalog dataset prepared as tfrecord
    raise UserError(
        f"Cannot read {name!r} ({builder.data_path}) as a random-access data source: {e}. "
        f"Prepare it with `tfds build {name} --file_format=array_record`.") from e
  records = [source[i] for i in range(len(source))]
  if not records:
    raise UserError(f"Dataset {name!r} has an empty {split!r} split.")
  if "x" in records[0]:
    return {"x": np.stack([np.asarray(r["x"], np.float32) for r in records])}
  arrays = {"image": np.stack([np.asarray(r["image"], np.uint8) for r in records])}
  for key, dtype in (("codes", np.int32), ("z", np.float32)):
    if key in records[0]:
      arrays[key] = np.stack([np.asarray(r[key], dtype) for r in records])
  if "label" in records[0]:
    arrays["label"] = np.asarray([r["label"] for r in records], np.int32)
  return arrays


def split_arrays(name: str, split: str, *, data_dir: Optional[str] = None,
                 manual_dir: Optional[str] = None, stage1=None) -> dict:
  """A whole split in memory, in stored order, cached per process (read once per split):
  images {'image': uint8 [N, H, W, C], 'label': int32 [N]}, points {'x': float32 [N, 2]},
  text {'tokens': int32 [n]} (the split's token stream), encoded {'codes' int32 [N, h, w] or
  'z' float32 [N, ...], 'image', 'label'}. Arrays are shared: do not write."""
  builder = load_builder(name, data_dir=data_dir, manual_dir=manual_dir, stage1=stage1)
  split = _resolve_split(_kind(builder), builder, split)
  arrays = _split_arrays_cached(builder, name, split)
  for v in arrays.values():
    v.flags.writeable = False
  return arrays


# ------------------------------------------------------------- transforms ---

class _ShuffledBatches(grain.MapDataset):
  """Infinite MapDataset of this process's rows of each global batch of a shuffled split.

  The global example stream is s_j = x[pi_e(j mod N)] with e = j // N and
  pi_e = default_rng([seed, e]).permutation(N): every epoch is a fresh permutation, and
  batches run across epoch boundaries. Global batch k is s_{kB}..s_{kB+B-1}; element k here
  is its rows [p b, (p + 1) b) (b = B / P), gathered in one vectorised step.
  """

  def __init__(self, arrays: dict, global_batch: int, process_index: int, process_count: int,
               seed: int):
    super().__init__()
    self._arrays, self._seed = arrays, seed
    self._n = len(next(iter(arrays.values())))
    self._global, self._per = global_batch, global_batch // process_count
    self._offset = process_index * self._per
    self._perms = {}

  def __len__(self):
    return sys.maxsize

  def _permutation(self, epoch: int) -> np.ndarray:
    perm = self._perms.get(epoch)
    if perm is None:
      perm = np.random.default_rng([self._seed, epoch]).permutation(self._n)
      if len(self._perms) > 4:
        self._perms.clear()
      self._perms[epoch] = perm
    return perm

  def __getitem__(self, index):
    if isinstance(index, slice):
      return self.slice(index)
    positions = index * self._global + self._offset + np.arange(self._per)
    epochs, within = np.divmod(positions, self._n)
    rows = np.empty(self._per, np.int64)
    for epoch in np.unique(epochs):
      sel = epochs == epoch
      rows[sel] = self._permutation(int(epoch))[within[sel]]
    return {k: v[rows] for k, v in self._arrays.items()}

  def __str__(self):
    return f"_ShuffledBatches(n={self._n}, global={self._global}, rows=[{self._offset}:+{self._per}])"


class _RandomWindowBatches(grain.MapDataset):
  """Infinite MapDataset of this process's rows of global batch k of text windows:
  o = default_rng([seed, k]).integers(0, n - T, size=B) (uniform start offsets, nanoGPT's
  get_batch), row i = tokens[o_i : o_i + T + 1]; this process takes rows [p b, (p + 1) b)."""

  def __init__(self, tokens: np.ndarray, seq_len: int, global_batch: int, process_index: int,
               process_count: int, seed: int):
    super().__init__()
    if len(tokens) < seq_len + 1:
      raise UserError(f"The text split has {len(tokens)} tokens, fewer than seq_len + 1 = {seq_len + 1}; "
                       "use a longer text file or a smaller seq_len.")
    self._tokens, self._seq_len, self._seed = tokens, seq_len, seed
    self._global, self._per = global_batch, global_batch // process_count
    self._offset = process_index * self._per

  def __len__(self):
    return sys.maxsize

  def __getitem__(self, index):
    if isinstance(index, slice):
      return self.slice(index)
    starts = np.random.default_rng([self._seed, index]).integers(
        0, len(self._tokens) - self._seq_len, size=self._global)
    starts = starts[self._offset:self._offset + self._per]
    return {"tokens": self._tokens[starts[:, None] + np.arange(self._seq_len + 1)]}

  def __str__(self):
    return f"_RandomWindowBatches(seq_len={self._seq_len}, seed={self._seed})"


def _preprocess_fn(builder, kind: str, preprocess: str):
  """Batch (or example) -> the same with `preprocess` applied to its image. The preprocessing
  functions are elementwise, so applying them to a batch applies them to each example."""
  if kind != "image" or preprocess == "none":
    return None
  num_levels = _num_levels(builder)          # the stored levels, before preprocessing

  def apply(batch):
    return {**batch, "image": preprocess_lib.binarize(batch["image"], num_levels)}
  return apply


def _check_sharding(batch_size: int, process_index: int, process_count: int) -> int:
  if batch_size < 1 or process_count < 1 or batch_size % process_count:
    raise UserError(f"batch_size={batch_size} must be a positive multiple of process_count={process_count}.")
  if not 0 <= process_index < process_count:
    raise UserError(f"process_index={process_index} is not in [0, process_count={process_count}).")
  return batch_size // process_count


# ------------------------------------------------------------------ train ---

def train_dataset(name: str, *, batch_size: int, seed: int, data_dir: Optional[str] = None,
                  manual_dir: Optional[str] = None, preprocess: str = "none", seq_len: int = 64,
                  process_index: int = 0, process_count: int = 1,
                  stage1=None) -> grain.MapDataset:
  """The infinite grain MapDataset whose element k is this process's rows of global batch k."""
  _check_sharding(batch_size, process_index, process_count)
  preprocess_lib.check_preprocess(preprocess)
  if not 0 <= seed < 2**32:
    raise UserError(f"seed must be in [0, 2**32), got {seed}.")
  builder = load_builder(name, data_dir=data_dir, manual_dir=manual_dir, stage1=stage1)
  info = _info_from_builder(name, builder, preprocess, seq_len)
  arrays = split_arrays(name, "train", data_dir=data_dir, manual_dir=manual_dir, stage1=stage1)
  if info.kind == "text":
    dataset = _RandomWindowBatches(arrays["tokens"], seq_len, batch_size, process_index, process_count, seed)
  else:
    dataset = _ShuffledBatches(arrays, batch_size, process_index, process_count, seed)
  fn = _preprocess_fn(builder, info.kind, preprocess)
  return dataset.map(fn) if fn else dataset


def train_iterator(name: str, *, batch_size: int, seed: int, data_dir: Optional[str] = None,
                   manual_dir: Optional[str] = None, preprocess: str = "none", seq_len: int = 64,
                   process_index: int = 0, process_count: int = 1,
                   stage1=None) -> grain.DatasetIterator:
  """Infinite iterator of this process's rows of each global training batch.

  Images: {'image': uint8 [b, H, W, C], 'label': int32 [b]}; points: {'x': float32 [b, 2]};
  text: {'tokens': int32 [b, seq_len + 1]} (windows at seeded uniform random offsets of the
  train stream); encoded (with `stage1`): {'codes' | 'z', 'image', 'label'}; with
  b = batch_size // process_count. Examples are shuffled with `seed` and
  reshuffled every epoch (epoch e: default_rng([seed, e]).permutation(N)); batches run across
  epoch boundaries. Concatenating the process shards in process order gives the
  process_count=1 batch. The split is read into memory once per process (see `split_arrays`).

  Checkpointing: the state is the index of the next batch. `it.get_state()` /
  `it.set_state(state)`, or inside an Orbax CheckpointManager
  `grain.checkpoint.CheckpointSave(it)` / `grain.checkpoint.CheckpointRestore(fresh_it)`
  with `fresh_it` built with the same arguments.
  """
  dataset = train_dataset(name, batch_size=batch_size, seed=seed, data_dir=data_dir,
                          manual_dir=manual_dir, preprocess=preprocess, seq_len=seq_len,
                          process_index=process_index, process_count=process_count,
                          stage1=stage1)
  return iter(dataset.to_iter_dataset(grain.ReadOptions(**_READ_OPTIONS)))


# ------------------------------------------------------------------- eval ---

def _eval_examples(kind: str, arrays: dict, seq_len: int):
  """(number of examples, get(rows) -> dict of arrays) of the evaluation examples."""
  if kind != "text":
    return len(next(iter(arrays.values()))), lambda rows: {k: v[rows] for k, v in arrays.items()}
  tokens = arrays["tokens"]
  padded = np.concatenate([tokens, np.zeros(seq_len + 1, np.int32)])

  def get(rows):
    starts = rows * seq_len
    window = starts[:, None] + np.arange(seq_len + 1)
    return {"tokens": padded[window], "token_mask": window[:, 1:] < len(tokens)}
  return _num_eval_windows(len(tokens), seq_len), get


def eval_batches(name: str, *, split: str = "test", batch_size: int, data_dir: Optional[str] = None,
                 manual_dir: Optional[str] = None, preprocess: str = "none", seq_len: int = 64,
                 process_index: int = 0, process_count: int = 1,
                 max_examples: Optional[int] = None, stage1=None) -> Iterator[dict]:
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
  builder = load_builder(name, data_dir=data_dir, manual_dir=manual_dir, stage1=stage1)
  info = _info_from_builder(name, builder, preprocess, seq_len)
  arrays = split_arrays(name, split, data_dir=data_dir, manual_dir=manual_dir, stage1=stage1)
  num, get = _eval_examples(info.kind, arrays, seq_len)
  if max_examples is not None:
    num = min(num, max_examples)
  fn = _preprocess_fn(builder, info.kind, preprocess) or (lambda batch: batch)
  for first in range(0, num, batch_size):
    positions = first + process_index * per_process + np.arange(per_process)
    mask = positions < num
    batch = fn(get(np.where(mask, positions, 0)))
    batch = {k: np.where(mask.reshape((-1,) + (1,) * (v.ndim - 1)), v, np.zeros((), v.dtype))
             for k, v in batch.items()}
    batch["mask"] = mask
    yield batch
