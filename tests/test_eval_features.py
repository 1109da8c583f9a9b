"""The feature classifier (gen_jax.eval.classifier): trains to >= 97% on digits, round-trips
through Orbax, and its features give sane sample metrics (FD 0 for a set against itself,
noise far); a Reference scores samples against a split with them."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax.eval import classifier as classifier_lib
from gen_jax.eval import features as features_lib
from gen_jax.nets.classifier import Classifier

# Its module-scoped fixture is costly: one xdist worker runs the module (make test: --dist loadgroup).
pytestmark = pytest.mark.xdist_group("test_eval_features")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("classifier"))
  meta = classifier_lib.train("digits", workdir, num_steps=300, log=lambda s: None)
  return workdir, meta


@pytest.fixture(scope="module")
def digits_test():
  images, labels, info = classifier_lib.load_split("digits", "test")
  return features_lib.levels_to_unit(images, info.num_levels), labels


def test_classifier_reaches_97_percent_on_digits_test_split(trained):
  workdir, meta = trained
  assert meta["num_test"] == 360 and meta["num_train"] == 1437
  assert meta["test_accuracy"] >= 0.97
  with open(os.path.join(workdir, features_lib.META_FILE)) as f:
    assert json.load(f)["test_accuracy"] == meta["test_accuracy"]


def test_reload_reproduces_the_reported_accuracy(trained, digits_test):
  workdir, meta = trained
  net = features_lib.load_classifier(workdir)
  images, labels = digits_test
  assert np.mean(net.predict(images) == labels) == meta["test_accuracy"]
  feats = net.features(images)
  assert feats.shape == (360, 128) and feats.dtype == np.float32
  np.testing.assert_allclose(net.features(images[:50], batch_size=7), feats[:50], rtol=1e-5, atol=1e-5)


def test_sample_metrics_separate_real_from_noise(trained, digits_test):
  net = features_lib.load_classifier(trained[0])
  images, _ = digits_test
  train_images, _, info = classifier_lib.load_split("digits", "train")
  same = features_lib.sample_metrics(net, images, images)
  assert same["FD (digits classifier)"] == pytest.approx(0.0, abs=1e-6)
  assert (same["precision"], same["recall"]) == (1.0, 1.0)
  held_out = features_lib.sample_metrics(net, images, features_lib.levels_to_unit(train_images[:360], info.num_levels))
  noise = np.random.default_rng(0).uniform(size=images.shape).astype(np.float32)
  bad = features_lib.sample_metrics(net, images, noise)
  assert bad["FD (digits classifier)"] > 5 * held_out["FD (digits classifier)"]
  assert bad["recall"] < 0.2 < 0.6 < held_out["recall"]
  assert bad["precision"] < held_out["precision"]
  nan_samples = np.full_like(images, np.nan)
  diverged = features_lib.sample_metrics(net, images, nan_samples)
  assert np.isnan(diverged["FD (digits classifier)"]) and np.isnan(diverged["recall"])


def test_inputs_are_checked(trained, tmp_path):
  net = features_lib.load_classifier(trained[0])
  with pytest.raises(ValueError, match="levels_to_unit"):
    net.features(np.zeros((2, 8, 8, 1), np.uint8))
  with pytest.raises(ValueError, match="train_classifier"):
    net.features(np.zeros((2, 28, 28, 1), np.float32))
  with pytest.raises(FileNotFoundError, match="train_classifier"):
    features_lib.load_classifier(str(tmp_path))


def test_levels_to_unit_maps_levels_onto_0_1():
  np.testing.assert_allclose(features_lib.levels_to_unit(np.array([0, 8, 16], np.uint8), 17), [0.0, 0.5, 1.0])
  np.testing.assert_allclose(features_lib.levels_to_unit(np.array([0, 255]), 256), [0.0, 1.0])


@pytest.mark.parametrize("shape", [(8, 8, 1), (28, 28, 1)])
def test_classifier_shapes(shape):
  module = Classifier(channels=(8, 16), feature_dim=12)
  x = jnp.zeros((3, *shape))
  params = module.init(jax.random.key(0), x)
  assert module.apply(params, x).shape == (3, 10)
  feats = module.apply(params, x, method=Classifier.embed)
  assert feats.shape == (3, 12) and bool(jnp.all(feats >= 0))


def test_command_line_entry_point(tmp_path):
  out = subprocess.run(
      [sys.executable, "-m", "experiments.train_classifier", "--dataset=digits", f"--workdir={tmp_path}",
       "--num_steps=5"], cwd=REPO, capture_output=True, text=True, timeout=300, check=True)
  meta = json.loads(out.stdout.strip().splitlines()[-1])
  assert meta["num_steps"] == 5 and "test accuracy" in out.stdout
  assert os.path.isdir(tmp_path / "params")
  features_lib.load_classifier(str(tmp_path))


def test_load_or_train_reuses_a_trained_classifier(trained):
  workdir, meta = trained
  net = classifier_lib.load_or_train("digits", workdir)   # no training: the folder has one
  assert net.meta == meta
  with pytest.raises(ValueError, match="holds a classifier for 'digits'"):
    classifier_lib.load_or_train("mnist_idx", workdir)


def test_a_classifier_saved_on_another_topology_loads_here(trained, digits_test, tmp_path):
  """A classifier saved by a process with two devices (its params placed on a 2-device mesh, as
  on a multi-device machine; a GPU-saved one differs the same way) loads in this process and
  predicts as the original does: Orbax would otherwise refuse it ('Topology mismatch')."""
  workdir, meta = trained
  moved = str(tmp_path / "two_devices")
  script = (
      "import sys, jax, numpy as np\n"
      "from jax.sharding import Mesh, NamedSharding, PartitionSpec as P\n"
      "from gen_jax.eval import features\n"
      "net = features.load_classifier(sys.argv[1])\n"
      "assert len(jax.devices()) == 2\n"
      "mesh = Mesh(np.array(jax.devices()), ('data',))\n"
      "params = jax.tree.map(lambda a: jax.device_put(a, NamedSharding(mesh, P())), net.params)\n"
      "features.save_classifier(sys.argv[2], params, net.meta)\n")
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
  subprocess.run([sys.executable, "-c", script, workdir, moved], cwd=REPO, env=env,
                 capture_output=True, text=True, timeout=300, check=True)
  images, labels = digits_test
  net = features_lib.load_classifier(moved)
  assert np.mean(net.predict(images) == labels) == meta["test_accuracy"]


def test_a_reference_scores_samples_against_its_split(trained, digits_test):
  """The split against itself: FD 0, precision = recall = 1; labels and the confident share
  are the classifier's own (a softmax by hand)."""
  net = features_lib.load_classifier(trained[0])
  images, labels = digits_test
  ref = classifier_lib.Reference(net, images)
  scores = ref.scores(images)
  assert ref.fd_name == "FD (digits classifier)"
  assert scores[ref.fd_name] == pytest.approx(0.0, abs=1e-6)
  assert (scores["precision"], scores["recall"], scores["num_fake"]) == (1.0, 1.0, 360)
  np.testing.assert_array_equal(ref.labels(images), net.predict(images))
  p = np.asarray(jax.nn.softmax(net.logits(images[:40])))
  assert ref.confident_share(images[:40]) == pytest.approx(np.mean(p.max(-1) >= 0.9))


def test_reference_and_real_scores_use_the_default_classifier_dir(trained, tmp_path, monkeypatch):
  """`reference(dataset)` loads the classifier of $GEN_JAX_CLASSIFIER_DIR/<dataset> (no
  training when one is there) with the test split in [0, 1]; `real_scores` scores the first
  train images against it: far from 0, not far from what the samples of a good model score."""
  import shutil
  shutil.copytree(trained[0], tmp_path / "digits")
  monkeypatch.setenv("GEN_JAX_CLASSIFIER_DIR", str(tmp_path))
  classifier_lib.reference.cache_clear()
  try:
    ref = classifier_lib.reference("digits")
    assert ref.images.shape == (360, 8, 8, 1) and ref.images.max() == 1.0
    real = classifier_lib.real_scores("digits", 100)
    assert real["num_fake"] == 100 and 0 < real[ref.fd_name] < 100 and real["precision"] > 0.5
  finally:
    classifier_lib.reference.cache_clear()
