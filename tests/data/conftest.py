"""Fixtures for the data tests: a session-wide TFDS data dir and tiny raw files in tmp dirs
(the tests never read ../shared/data)."""
from __future__ import annotations

import gzip
import string

import numpy as np
import pytest


def write_idx(path, array: np.ndarray, dtype_code: int = 0x08):
  """Writes `array` (uint8) as an IDX file; gzipped if path ends with .gz."""
  header = bytes([0, 0, dtype_code, array.ndim]) + b"".join(
      int(s).to_bytes(4, "big") for s in array.shape)
  payload = header + np.ascontiguousarray(array, np.uint8).tobytes()
  opener = gzip.open if str(path).endswith(".gz") else open
  with opener(path, "wb") as f:
    f.write(payload)


def fake_mnist(rng, n):
  """n random 28x28 uint8 images and labels 0..9."""
  return (rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8),
          rng.integers(0, 10, size=n, dtype=np.uint8))


def fake_text(rng, n):
  """n characters of pseudo-words over letters, space and newline."""
  alphabet = np.array(list(string.ascii_letters + "  \n,.'"))
  return "".join(alphabet[rng.integers(0, len(alphabet), size=n)])


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds"))


@pytest.fixture(scope="session")
def mnist10k_dir(tmp_path_factory):
  """The 10,000-image test files only (images gzipped, labels not: both forms must be read)."""
  d = tmp_path_factory.mktemp("mnist10k")
  images, labels = fake_mnist(np.random.default_rng(1), 10_000)
  write_idx(d / "t10k-images-idx3-ubyte.gz", images)
  write_idx(d / "t10k-labels-idx1-ubyte", labels)
  return str(d), images, labels


@pytest.fixture(scope="session")
def text_dir(tmp_path_factory):
  d = tmp_path_factory.mktemp("text")
  text = fake_text(np.random.default_rng(2), 3_001)
  (d / "input.txt").write_text(text, encoding="utf-8")
  return str(d), text
