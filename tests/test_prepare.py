"""experiments.prepare: a TFDS builder on local files is prepared as array_record and read
back; without internet it stops at once in one line (the connectivity check monkeypatched
in-process, and the real check of this offline machine through the CLI); unknown names are one
line saying how to list them."""
from __future__ import annotations

import os
import time

import numpy as np
import pytest
import tensorflow_datasets as tfds

from experiments import prepare as prepare_lib
from gen_jax.errors import UserError


class TinyLocalImages(tfds.core.GeneratorBasedBuilder):
  """Four 4x4 images read from `<manual_dir>/images.npy` (a TFDS manual-download dataset)."""
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "test"}
  MANUAL_DOWNLOAD_INSTRUCTIONS = "Put images.npy in the manual dir."

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(4, 4, 1), dtype=np.uint8),
        "label": tfds.features.ClassLabel(num_classes=2)}), disable_shuffling=True)

  def _split_generators(self, dl_manager):
    images = np.load(os.path.join(dl_manager.manual_dir, "images.npy"))
    return {"train": self._generate_examples(images[:3]), "test": self._generate_examples(images[3:])}

  def _generate_examples(self, images):
    for i, image in enumerate(images):
      yield i, {"image": image, "label": i % 2}


def test_a_local_builder_is_prepared_as_array_record(tmp_path):
  manual = tmp_path / "manual"
  manual.mkdir()
  images = np.random.default_rng(0).integers(0, 256, (4, 4, 4, 1), dtype=np.uint8)
  np.save(manual / "images.npy", images)
  line = prepare_lib.prepare("tiny_local_images", str(tmp_path / "data"), str(manual))
  assert "prepared as array_record" in line and "train 3" in line and "test 1" in line
  files = list((tmp_path / "data").rglob("*.array_record*"))
  assert files, list((tmp_path / "data").rglob("*"))
  source = tfds.data_source("tiny_local_images", data_dir=str(tmp_path / "data"), split="train")
  np.testing.assert_array_equal(np.stack([source[i]["image"] for i in range(3)]), images[:3])
  again = prepare_lib.prepare("tiny_local_images", str(tmp_path / "data"), str(manual))
  assert "already prepared" in again


def test_without_internet_it_stops_at_once_in_one_line(tmp_path, monkeypatch):
  monkeypatch.setattr(prepare_lib, "has_internet", lambda *a, **k: False)
  start = time.monotonic()
  with pytest.raises(UserError) as e:
    prepare_lib.prepare("cifar10", str(tmp_path))
  assert time.monotonic() - start < 5
  assert "No internet" in str(e.value) and "\n" not in str(e.value)
  assert not any(tmp_path.rglob("*.array_record*"))


def test_unknown_dataset_is_one_line_saying_how_to_list_names(tmp_path):
  with pytest.raises(UserError, match="list_builders") as e:
    prepare_lib.prepare("no_such_dataset_xyz", str(tmp_path))
  assert "\n" not in str(e.value)


def test_the_cli_on_this_offline_machine(cli, tmp_path):
  """This machine reaches only package registries: the real check says so in one line."""
  if prepare_lib.has_internet():
    pytest.skip("this machine has internet")
  start = time.monotonic()
  out = cli("experiments.prepare", "--dataset=mnist", f"--data_dir={tmp_path}", check=False, timeout=120)
  assert out.returncode == 2 and time.monotonic() - start < 60
  assert out.stderr.strip().count("\n") == 0 and "No internet" in out.stderr, out.stderr
