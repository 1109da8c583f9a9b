r"""Prepares a TFDS catalog dataset as array_record, where the machine has internet.

  python -m experiments.prepare --dataset=cifar10 [--data_dir=DIR] [--manual_dir=DIR]

`tfds.builder(NAME).download_and_prepare(file_format="array_record")` into `--data_dir`
(default `gen_jax.data.default_data_dir()`: $GEN_JAX_DATA_DIR or
~/.cache/gen_jax/tensorflow_datasets, where the configs read it), so that
`--config.dataset=NAME` then works offline. Any TFDS catalog name (`mnist`, `cifar10`,
`fashion_mnist`, `celeb_a`, ...); gen_jax's own offline datasets (`digits`, `mnist_idx`, ...)
are prepared on first use and need no command, but are accepted. `--manual_dir` is TFDS's
manual-download folder, for datasets whose files the user already has (or must fetch by hand).

Without internet it stops at once with one line: before any download it checks that
`CHECK_HOST` answers within `CHECK_TIMEOUT_S` seconds (DNS included, in a thread), and a
download that fails anyway is reported in one line too. An unknown name is one line saying how
to list the names. With --manual_dir the check is skipped (the files are local).
"""
from __future__ import annotations

import socket
import threading

from absl import app, flags, logging

from experiments import common
from gen_jax.errors import UserError

CHECK_HOST = ("storage.googleapis.com", 443)    # where TFDS's checksummed downloads come from
CHECK_TIMEOUT_S = 5.0

flags.DEFINE_string("dataset", None, "A TFDS catalog name, e.g. cifar10, mnist, fashion_mnist.")
flags.DEFINE_string("data_dir", "", "TFDS data dir (default: gen_jax.data.default_data_dir()).")
flags.DEFINE_string("manual_dir", "", "Folder holding files the user already has (TFDS manual dir).")
FLAGS = flags.FLAGS


def has_internet(host=CHECK_HOST, timeout: float = CHECK_TIMEOUT_S) -> bool:
  """Whether a TCP connection to `host` opens within `timeout` seconds (name lookup included:
  it runs in a daemon thread, since getaddrinfo ignores socket timeouts)."""
  result = []

  def probe():
    try:
      socket.create_connection(host, timeout=timeout).close()
      result.append(True)
    except OSError:
      result.append(False)

  thread = threading.Thread(target=probe, daemon=True)
  thread.start()
  thread.join(timeout)
  return bool(result and result[0])


def prepare(name: str, data_dir: str = "", manual_dir: str = "") -> str:
  """Prepares `name` as array_record in `data_dir`; returns a one-line summary."""
  import tensorflow_datasets as tfds
  from gen_jax import data as data_lib
  data_dir = data_dir or data_lib.default_data_dir()
  if name in data_lib.DATASETS:
    data_lib.load_builder(name, data_dir=data_dir, manual_dir=manual_dir or None)
    return f"{name}: gen_jax's offline dataset, prepared in {data_dir}"
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except Exception as e:   # DatasetNotFoundError, or a bad config / version in the name
    raise UserError(f"Unknown TFDS dataset {name!r} ({type(e).__name__}); list the names with "
                    "`python -c \"import tensorflow_datasets as tfds; print(tfds.list_builders())\"` "
                    "or see tensorflow.org/datasets/catalog.") from None
  where = f"{builder.info.full_name} in {data_dir}"
  if builder.is_prepared():
    return f"{name}: already prepared ({where})"
  if not manual_dir and not has_internet():
    raise UserError(f"No internet on this machine ({CHECK_HOST[0]} did not answer in "
                    f"{CHECK_TIMEOUT_S:g} s): prepare {name!r} where there is, then copy "
                    f"{data_dir} here (or pass --manual_dir=DIR with its files).")
  try:
    builder.download_and_prepare(
        file_format="array_record",
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir or None))
  except Exception as e:
    first = (str(e).strip().splitlines() or [""])[0][:300]
    raise UserError(f"Preparing {name!r} failed ({type(e).__name__}: {first}); check the "
                    "network, or put the files in --manual_dir=DIR.") from None
  splits = ", ".join(f"{k} {v.num_examples:,}" for k, v in sorted(builder.info.splits.items()))
  return f"{name}: prepared as array_record ({where}; {splits})"


def main(argv):
  del argv
  if not FLAGS["verbosity"].present:     # TFDS warns about the empty folder it makes first
    logging.set_verbosity(logging.ERROR)
  print(prepare(FLAGS.dataset, FLAGS.data_dir, FLAGS.manual_dir))


if __name__ == "__main__":
  flags.mark_flags_as_required(["dataset"])
  app.run(common.run_main(main), flags_parser=common.parse_flags)
