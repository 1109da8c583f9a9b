"""The offline TFDS builders: shapes, dtypes, levels, exact split contents, deterministic
preparation, and errors that name the cause and the fix."""
from __future__ import annotations

import os

import numpy as np
import pytest

from gen_jax import data
from gen_jax.data import builders, pipeline, toy2d

from conftest import write_idx, fake_mnist


def _all(name, split, **kw):
  """Every example of `split` in stored order, as one dict of arrays (via eval_batches)."""
  batches = list(data.eval_batches(name, split=split, batch_size=512, **kw))
  mask = np.concatenate([b["mask"] for b in batches])
  return {k: np.concatenate([b[k] for b in batches])[mask] for k in batches[0] if k != "mask"}


def test_digits(data_dir):
  info = data.get_info("digits", data_dir=data_dir)
  assert info == data.DatasetInfo(name="digits", kind="image", shape=(8, 8, 1), num_levels=17,
                                  num_classes=10, num_examples={"train": 1437, "test": 360})
  images, labels = builders.digits_arrays()
  perm = np.random.default_rng(0).permutation(1797)
  for split, idx in (("train", perm[:1437]), ("test", perm[1437:])):
    got = _all("digits", split, data_dir=data_dir)
    assert got["image"].dtype == np.uint8 and got["label"].dtype == np.int32
    np.testing.assert_array_equal(got["image"], images[idx])
    np.testing.assert_array_equal(got["label"], labels[idx])
  assert images.max() == 16 and images.min() == 0


def test_two_preparations_give_identical_data(data_dir, tmp_path):
  """Prepared again from scratch in another data_dir, digits and toy2d are byte-identical."""
  for name in ("digits", "toy2d/moons"):
    a = _all(name, "test", data_dir=data_dir)
    b = _all(name, "test", data_dir=str(tmp_path))
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])


@pytest.mark.parametrize("name", toy2d.NAMES)
def test_toy2d(data_dir, name):
  info = data.get_info(f"toy2d/{name}", data_dir=data_dir)
  assert (info.kind, info.shape, info.data_key) == ("points", (2,), "x")
  assert info.num_examples == {"train": 20_000, "test": 5_000}
  test = _all(f"toy2d/{name}", "test", data_dir=data_dir)
  assert test["x"].dtype == np.float32 and test["x"].shape == (5_000, 2)
  np.testing.assert_array_equal(test["x"], builders.toy2d_arrays(name, "test"))
  train = builders.toy2d_arrays(name, "train")
  assert not np.array_equal(train[:5_000], test["x"])       # splits are independent draws
  if name in toy2d.LOG_PROBS:
    assert np.all(np.isfinite(np.asarray(toy2d.LOG_PROBS[name](test["x"]))))


def test_mnist10k_splits_from_test_files(data_dir, mnist10k_dir):
  manual, images, labels = mnist10k_dir
  info = data.get_info("mnist_idx", data_dir=data_dir, manual_dir=manual)
  assert (info.shape, info.num_levels, info.num_classes) == ((28, 28, 1), 256, 10)
  assert info.num_examples == {"train": 8_000, "test": 2_000}
  perm = np.random.default_rng(0).permutation(10_000)
  test = _all("mnist_idx", "test", data_dir=data_dir, manual_dir=manual)
  np.testing.assert_array_equal(test["image"][..., 0], images[perm[8_000:]])
  np.testing.assert_array_equal(test["label"], labels[perm[8_000:]])


def test_mnist_binarized_is_a_fixed_stochastic_binarization(data_dir, mnist10k_dir):
  manual, images, _ = mnist10k_dir
  info = data.get_info("mnist_idx/binarized", data_dir=data_dir, manual_dir=manual)
  assert info.num_levels == 2 and info.shape == (28, 28, 1)
  a = _all("mnist_idx/binarized", "test", data_dir=data_dir, manual_dir=manual)["image"]
  assert set(np.unique(a)) <= {0, 1}
  perm = np.random.default_rng(0).permutation(10_000)
  grey = images[perm[8_000:]] / 255.0
  # Bernoulli(level / 255): pixels at 0 stay 0, at 255 become 1, the mean matches.
  assert np.all(a[..., 0][grey == 0] == 0) and np.all(a[..., 0][grey == 1] == 1)
  np.testing.assert_allclose(a.mean(), grey.mean(), atol=3e-3)
  # Stored once, seeded: the stored bits are those of a fresh draw of the same seeded binarization.
  fresh = builders.mnist_idx_arrays(manual, "mnist10k", binarized=True)["test"][0]
  np.testing.assert_array_equal(a, fresh)


def test_mnist_full_files_give_standard_splits(data_dir, tmp_path):
  rng = np.random.default_rng(7)
  (tr_x, tr_y), (te_x, te_y) = fake_mnist(rng, 30), fake_mnist(rng, 20)
  write_idx(tmp_path / "train-images-idx3-ubyte", tr_x)
  write_idx(tmp_path / "train-labels-idx1-ubyte.gz", tr_y)
  write_idx(tmp_path / "t10k-images-idx3-ubyte", te_x)
  write_idx(tmp_path / "t10k-labels-idx1-ubyte", te_y)
  info = data.get_info("mnist_idx", data_dir=data_dir, manual_dir=str(tmp_path))
  assert info.num_examples == {"train": 30, "test": 20}
  train = _all("mnist_idx", "train", data_dir=data_dir, manual_dir=str(tmp_path))
  np.testing.assert_array_equal(train["image"][..., 0], tr_x)
  np.testing.assert_array_equal(train["label"], tr_y)


def test_mnist_missing_files_name_the_files_and_directory(data_dir, tmp_path):
  write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((3, 28, 28), np.uint8))
  with pytest.raises(FileNotFoundError) as e:
    data.get_info("mnist_idx", data_dir=data_dir, manual_dir=str(tmp_path))
  msg = str(e.value)
  assert "t10k-labels-idx1-ubyte" in msg and str(tmp_path) in msg
  assert "['t10k-images" not in msg      # the present file is not reported missing


def test_idx_reader_rejects_bad_files(tmp_path):
  path = tmp_path / "bad"
  path.write_bytes(b"\x12\x34\x08\x01" + b"\x00" * 8)
  with pytest.raises(ValueError, match="not an IDX file"):
    builders.read_idx(str(path))
  write_idx(tmp_path / "ok", np.arange(24, dtype=np.uint8).reshape(2, 3, 4))
  np.testing.assert_array_equal(builders.read_idx(str(tmp_path / "ok")),
                                np.arange(24).reshape(2, 3, 4))


def test_text_file(data_dir, text_dir):
  manual, text = text_dir
  info = data.get_info("text_file", data_dir=data_dir, manual_dir=manual, seq_len=16)
  assert info.vocab == "".join(sorted(set(text)))
  assert (info.kind, info.shape, info.num_dims, info.data_key) == ("text", (17,), 16, "tokens")
  n_train = int(0.9 * len(text))
  builder = pipeline.load_builder("text_file", data_dir=data_dir, manual_dir=manual)
  for split, part in (("train", text[:n_train]), ("validation", text[n_train:])):
    tokens = pipeline._text_tokens(builder, split)
    assert "".join(info.vocab[t] for t in tokens) == part
  assert info.num_examples["validation"] == info.num_examples["test"] == -(-(len(text) - n_train - 1) // 16)


def test_text_cache_is_keyed_on_the_file(data_dir, tmp_path):
  (tmp_path / "input.txt").write_text("abcabcabcabcabcabcabcabc")
  a = data.get_info("text_file", data_dir=data_dir, manual_dir=str(tmp_path))
  (tmp_path / "input.txt").write_text("xyzxyzxyzxyzxyzxyzxyzxyz")   # same length, other content
  b = data.get_info("text_file", data_dir=data_dir, manual_dir=str(tmp_path))
  assert (a.vocab, b.vocab) == ("abc", "xyz")


def test_text_missing_file(data_dir, tmp_path):
  with pytest.raises(FileNotFoundError, match="input.txt") as e:
    data.get_info("text_file", data_dir=data_dir, manual_dir=str(tmp_path))
  assert str(tmp_path) in str(e.value)


@pytest.mark.parametrize("name", ["digitz", "toy2d/spirals", "mnist_idx/foo"])
def test_unknown_dataset_lists_the_available_ones(data_dir, name):
  with pytest.raises(ValueError) as e:
    data.get_info(name, data_dir=data_dir)
  for known in data.DATASETS:
    assert known in str(e.value)
  assert "catalog" in str(e.value)


def test_catalog_dataset_not_prepared_says_so(tmp_path):
  with pytest.raises(ValueError, match="not prepared") as e:
    data.get_info("mnist", data_dir=str(tmp_path))
  assert "tfds build mnist" in str(e.value)
  assert not os.path.exists(tmp_path / "downloads")       # nothing was downloaded


def test_unknown_preprocess_and_wrong_kind(data_dir):
  with pytest.raises(ValueError, match="binarize"):
    data.get_info("digits", data_dir=data_dir, preprocess="sharpen")
  with pytest.raises(ValueError, match="images"):
    data.get_info("toy2d/moons", data_dir=data_dir, preprocess="binarize")


def test_default_data_dir_from_environment(monkeypatch, tmp_path):
  monkeypatch.setenv("GEN_JAX_DATA_DIR", str(tmp_path))
  assert data.default_data_dir() == str(tmp_path)
  monkeypatch.delenv("GEN_JAX_DATA_DIR")
  assert data.default_data_dir().endswith(os.path.join(".cache", "gen_jax", "tensorflow_datasets"))
