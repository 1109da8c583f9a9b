"""Synthetic data (`--config.dataset=synthetic`): random batches with the copied dataset's
keys, shapes, dtypes and ranges, made on device with the run's batch sharding, one key per
batch (fold_in(key, k)) so that batches differ and a restored iterator draws what an
uninterrupted one would."""
import jax
import numpy as np
import pytest

from gen_jax.data import synthetic
from gen_jax.data.info import DatasetInfo
from gen_jax.errors import UserError
from gen_jax.train import sharding as shard_lib

KEY = jax.random.key(3)


def host(batch):
  return {k: np.asarray(v) for k, v in batch.items()}


def test_images_copy_cifar10s_shapes_levels_and_classes():
  info = synthetic.synthetic_info("cifar10")
  assert info.name == "synthetic/cifar10" and info.kind == "image"
  batch = host(synthetic.make_batch(KEY, info, 64))
  assert set(batch) == {"image", "label"}
  assert batch["image"].shape == (64, 32, 32, 3) and batch["image"].dtype == np.uint8
  assert batch["label"].shape == (64,) and batch["label"].dtype == np.int32
  assert batch["image"].min() == 0 and batch["image"].max() == 255   # every level reachable
  assert set(np.unique(batch["label"])) <= set(range(10)) and len(np.unique(batch["label"])) > 5


def test_binarized_images_take_two_levels():
  info = synthetic.synthetic_info("cifar10", preprocess="binarize")
  assert info.num_levels == 2
  assert set(np.unique(host(synthetic.make_batch(KEY, info, 8))["image"])) == {0, 1}


def test_text_copies_openwebtexts_vocabulary_with_the_configs_window():
  info = synthetic.synthetic_info("openwebtext", seq_len=128)
  tokens = host(synthetic.make_batch(KEY, info, 16))["tokens"]
  assert tokens.shape == (16, 129) and tokens.dtype == np.int32
  assert tokens.min() >= 0 and tokens.max() < 50_257 and tokens.max() > 50_000


def test_points_and_images_without_labels():
  points = DatasetInfo("toy2d/moons", "points", (2,))
  x = host(synthetic.make_batch(KEY, points, 256))["x"]
  assert x.shape == (256, 2) and x.dtype == np.float32
  assert abs(x.mean()) < 0.2 and 0.8 < x.std() < 1.2
  unlabelled = DatasetInfo("faces", "image", (4, 4, 1), num_levels=17)
  batch = host(synthetic.make_batch(KEY, unlabelled, 8))
  assert set(batch) == {"image"} and batch["image"].max() <= 16


def test_a_dataset_outside_the_planning_infos_gives_its_own_shapes(tmp_path):
  info = synthetic.synthetic_info("digits", data_dir=str(tmp_path))
  assert (info.kind, info.shape, info.num_levels, info.num_classes) == ("image", (8, 8, 1), 17, 10)


@pytest.mark.parametrize("like, match", [("encoded", "stage-1"), ("", "synthetic_like"),
                                         ("synthetic", "synthetic_like")])
def test_refused_in_one_line(like, match):
  with pytest.raises(UserError, match=match) as error:
    synthetic.synthetic_info(like)
  assert "\n" not in str(error.value) and "--config." in str(error.value)


def test_batches_differ_per_step_and_a_restored_iterator_draws_the_same_ones():
  info = synthetic.synthetic_info("cifar10")
  batches = synthetic.SyntheticBatches(info, 8, KEY)
  first, second = host(next(batches)), host(next(batches))
  assert not np.array_equal(first["image"], second["image"])
  state = batches.get_state()
  third = host(next(batches))
  # Batch k is made from fold_in(key, k): the same on a fresh iterator and after a restore.
  np.testing.assert_array_equal(
      third["image"], np.asarray(synthetic.make_batch(jax.random.fold_in(KEY, 2), info, 8)["image"]))
  restored = synthetic.SyntheticBatches(info, 8, KEY)
  restored.set_state(state)
  again = host(next(restored))
  for key in third:
    np.testing.assert_array_equal(again[key], third[key])
  np.testing.assert_array_equal(host(next(synthetic.SyntheticBatches(info, 8, KEY)))["image"],
                                first["image"])
  assert not np.array_equal(host(next(synthetic.SyntheticBatches(info, 8, jax.random.key(4))))
                            ["image"], first["image"])


def test_batches_are_laid_out_on_the_mesh_and_put_batch_passes_them_through():
  mesh = shard_lib.make_mesh("data=-1,fsdp=1")
  sharding = shard_lib.batch_sharding(mesh)
  batch = next(synthetic.SyntheticBatches(synthetic.synthetic_info("cifar10"), 8, KEY, sharding))
  for value in batch.values():
    assert value.sharding.is_equivalent_to(sharding, value.ndim)
  put = shard_lib.put_batch(batch, mesh)
  assert all(put[k] is batch[k] for k in batch)              # no copy, no host round trip
