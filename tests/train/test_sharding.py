"""1 device vs 8 devices (data=8) vs data=4,fsdp=2: the same losses; checkpoints move between meshes."""
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from gen_jax.errors import UserError
from gen_jax import workdir as workdir_lib
from gen_jax.train import sharding
from tests.train.conftest import tiny_vae_config

# Its module-scoped fixture is costly: one xdist worker runs the module (make test: --dist loadgroup).
pytestmark = pytest.mark.xdist_group("test_sharding")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_parse_mesh():
  assert sharding.parse_mesh("data=-1,fsdp=2", 8) == {"data": 4, "fsdp": 2}
  assert sharding.parse_mesh("data=1", 8) == {"data": 1, "fsdp": 1}
  for bad in ("data=3,fsdp=-1", "model=2", "data=16", "data=-1,fsdp=-1", "data=x"):
    with pytest.raises(UserError):
      sharding.parse_mesh(bad, 8)


@pytest.fixture(scope="module")
def eight_device_run(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("mesh"))
  one_device = os.path.join(root, "one_device_vae")
  workdir_lib.train(tiny_vae_config(num_train_steps=4), one_device, progress=False)
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
         "JAX_PLATFORMS": "cpu"}
  proc = subprocess.run([sys.executable, "-m", "tests.train.mesh_equivalence", root, one_device], cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return root, json.loads(proc.stdout.strip().splitlines()[-1])


def test_losses_match_across_meshes(eight_device_run):
  _, result = eight_device_run
  assert result["sharded_leaves"] > 0          # fsdp really split some parameters
  for family, by_mesh in result["losses"].items():
    reference = by_mesh["data=1"]
    assert len(reference) == 4, family
    for mesh, curve in by_mesh.items():
      np.testing.assert_allclose(curve, reference, rtol=1e-5, atol=1e-5, err_msg=f"{family} {mesh}")


def test_a_checkpoint_saved_on_8_devices_restores_on_1(eight_device_run):
  root, _ = eight_device_run
  assert jax.device_count() == 1
  _, state, step = workdir_lib.restore(os.path.join(root, "vae_data4_fsdp2"))
  assert step == 4
  saved = np.load(os.path.join(root, "vae_fsdp_params.npz"))
  restored = jax.tree.leaves(state.params)
  assert len(saved.files) == len(restored)
  for i, leaf in enumerate(restored):
    np.testing.assert_array_equal(np.asarray(leaf), saved[f"arr_{i}"])


def test_a_checkpoint_saved_on_1_device_restores_on_8(eight_device_run):
  root, _ = eight_device_run
  _, state, _ = workdir_lib.restore(os.path.join(root, "one_device_vae"))
  on_8 = np.load(os.path.join(root, "restored_on_8.npz"))
  leaves = jax.tree.leaves(state.params)
  assert len(on_8.files) == len(leaves)
  for i, leaf in enumerate(leaves):
    np.testing.assert_array_equal(on_8[f"arr_{i}"], np.asarray(leaf))
