"""Two-stage runs: the cached "encoded" dataset equals the stage-1 encoder's codes and
decodes to its reconstructions; a mismatched, missing or unfinished stage 1 is refused."""
import os
import shutil

import jax
import numpy as np
import pytest

from gen_jax import data
from gen_jax.errors import UserError
from gen_jax import workdir as workdir_lib
from experiments.configs.common import stage1_config
from test_vq import tiny_vqvae_config

# Its module-scoped fixture is costly: one xdist worker runs the module (make test: --dist loadgroup).
pytestmark = pytest.mark.xdist_group("test_two_stage")


def train_tiny_vqvae(root) -> tuple[str, str]:
  """(stage-1 workdir, data_dir): a 4-step VQ-VAE on digits (checkpoints at 2 and 4).

  Trained once per test session under `root` (the session's base temp dir): a second
  call finds the finished run and only restores it."""
  data_dir, workdir = os.path.join(root, "data"), os.path.join(root, "vqvae")
  workdir_lib.train(tiny_vqvae_config(data_dir=data_dir), workdir, progress=False)
  return workdir, data_dir


def expect(workdir, **kw):
  fields = dict(paradigm="vqvae", dataset="digits", model=dict(num_codes=8)) | kw
  return stage1_config(workdir, **fields)


def loaded(spec):
  """The stage-1 run a config.stage1 names, loaded and checked as gen_jax.workdir does."""
  return workdir_lib.load_stage1(spec.workdir, spec.step, expect=spec)


@pytest.fixture(scope="module")
def stage1(tmp_path_factory):
  return train_tiny_vqvae(str(tmp_path_factory.getbasetemp() / "tiny_stage1"))


def test_cached_codes_are_the_encoder_codes_and_decode_to_reconstructions(stage1):
  workdir, data_dir = stage1
  info = data.get_info("encoded", data_dir=data_dir, stage1=loaded(expect(workdir)))
  assert (info.kind, info.shape, info.num_codes, info.image_shape) == ("codes", (4, 4), 8, (8, 8, 1))
  assert info.num_dims == 64 and info.num_examples == {"train": 1437, "test": 360}
  s1 = info.stage1
  for split in ("train", "test"):
    cached = data.split_arrays("encoded", split, data_dir=data_dir, stage1=loaded(expect(workdir)))
    images = data.split_arrays("digits", split, data_dir=data_dir)
    np.testing.assert_array_equal(cached["image"], images["image"])
    np.testing.assert_array_equal(cached["label"], images["label"])
    codes = np.asarray(jax.jit(s1.paradigm.encode)(s1.params, images["image"]))
    np.testing.assert_array_equal(cached["codes"], codes)
  # decode(cached codes) = the VQ-VAE's reconstruction decode(encode(x)).
  decode = jax.jit(s1.paradigm.decode)
  recon = np.asarray(decode(s1.params, jax.jit(s1.paradigm.encode)(s1.params, images["image"])))
  np.testing.assert_allclose(np.asarray(decode(s1.params, cached["codes"])), recon, atol=1e-6)
  assert recon.shape == (360, 8, 8, 1) and recon.min() >= 0 and recon.max() <= 1


def test_encoded_train_iterator_resumes_exactly(stage1):
  workdir, data_dir = stage1
  kwargs = dict(batch_size=8, seed=3, data_dir=data_dir, stage1=loaded(expect(workdir)))
  it = data.train_iterator("encoded", **kwargs)
  first = next(it)
  assert first["codes"].shape == (8, 4, 4) and first["codes"].dtype == np.int32
  assert set(first) == {"codes", "image", "label"}
  state = it.get_state()
  expected = next(it)
  fresh = data.train_iterator("encoded", **kwargs)
  fresh.set_state(state)
  got = next(fresh)
  for k in expected:
    np.testing.assert_array_equal(got[k], expected[k])


def test_a_mismatched_stage1_is_refused_naming_the_field(stage1):
  workdir, data_dir = stage1
  with pytest.raises(UserError) as e:
    data.get_info("encoded", data_dir=data_dir, stage1=loaded(expect(workdir, model=dict(num_codes=64))))
  msg = str(e.value)
  for needle in ("model.num_codes=8", "config.stage1.model.num_codes=64", "--config.stage1.workdir",
                 workdir):
    assert needle in msg, msg
  with pytest.raises(UserError, match="paradigm='vqvae'"):
    data.get_info("encoded", data_dir=data_dir, stage1=loaded(expect(workdir, paradigm="vae")))


def test_a_missing_or_unfinished_stage1_is_refused(stage1, tmp_path):
  workdir, data_dir = stage1
  with pytest.raises(UserError, match="no stage-1 run.*experiments.train --config=experiments/configs/vqvae.py:digits"):
    data.get_info("encoded", data_dir=data_dir, stage1=loaded(expect(str(tmp_path / "nothing"))))
  with pytest.raises(UserError, match="needs config.stage1.workdir"):
    data.get_info("encoded", data_dir=data_dir)
  unfinished = str(tmp_path / "unfinished")
  shutil.copytree(workdir, unfinished)
  shutil.rmtree(os.path.join(unfinished, "checkpoints", "4"))
  with pytest.raises(UserError, match="unfinished: its newest checkpoint is step 2 of num_train_steps=4"):
    data.get_info("encoded", data_dir=data_dir, stage1=loaded(expect(unfinished)))
  # Asking for step 2 explicitly is allowed, and its codes are cached apart from step 4's.
  at_2 = data.load_builder("encoded", data_dir=data_dir, stage1=loaded(expect(unfinished, step=2)))
  at_4 = data.load_builder("encoded", data_dir=data_dir, stage1=loaded(expect(workdir)))
  assert at_2.data_path != at_4.data_path
