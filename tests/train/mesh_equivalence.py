"""Run in a subprocess with 8 fake CPU devices (XLA_FLAGS set by the caller).

  python -m tests.train.mesh_equivalence WORKDIR [ONE_DEVICE_WORKDIR]

Trains a tiny VAE and a tiny GAN for a few steps on meshes data=1, data=8 and
data=4,fsdp=2 (with FSDP splitting every parameter of >= 64 elements), and
prints one JSON object: {family: {mesh: [loss per step]}} plus the param
checksums of the data=4,fsdp=2 VAE run, whose workdir the caller restores on 1
device. ONE_DEVICE_WORKDIR, a run the caller trained on 1 device, is restored
here on data=4,fsdp=2 and its params written to WORKDIR/restored_on_8.npz.
"""
import json
import os
import sys

import jax
import numpy as np

from experiments.configs import gan
from gen_jax import workdir as workdir_lib
from gen_jax.train import sharding
from gen_jax.train.metrics import read_metrics
from tests.train.conftest import tiny_vae_config

MESHES = ("data=1", "data=8", "data=4,fsdp=2")


def tiny_gan_config():
  config = gan.get_config("digits")
  config.model.g_channels, config.model.d_channels, config.model.latent_dim = 8, 8, 4
  config.model.d_feature_dim = 8
  config.batch_size, config.num_train_steps = 16, 4
  config.log_every_steps = 1
  config.eval_every_steps = config.sample_every_steps = 1000
  config.checkpoint_every_steps = 4
  return config


def main(root, one_device_workdir=None):
  assert jax.device_count() == 8, jax.devices()
  sharding.FSDP_MIN_SIZE = 64
  if one_device_workdir:
    _, state, _ = workdir_lib.restore(one_device_workdir, mesh="data=4,fsdp=2")
    assert any(not x.sharding.is_fully_replicated for x in jax.tree.leaves(state.params))
    np.savez(os.path.join(root, "restored_on_8.npz"),
             *[np.asarray(x) for x in jax.tree.leaves(state.params)])
  losses, sharded_leaves = {}, 0
  for family, make_config in (("vae", lambda: tiny_vae_config(num_train_steps=4,
                                                               eval_every_steps=4)),
                              ("gan", tiny_gan_config)):
    losses[family] = {}
    for mesh in MESHES:
      config = make_config()
      config.mesh = mesh
      workdir = os.path.join(root, f"{family}_{mesh.replace(',', '_').replace('=', '')}")
      state = workdir_lib.train(config, workdir, progress=False)
      losses[family][mesh] = [r["loss"] for r in read_metrics(workdir) if "loss" in r]
      if mesh == "data=4,fsdp=2":
        sharded_leaves += sum(1 for x in jax.tree.leaves(state.params)
                              if not x.sharding.is_fully_replicated)
        if family == "vae":
          np.savez(os.path.join(root, "vae_fsdp_params.npz"),
                   *[np.asarray(x) for x in jax.tree.leaves(state.params)])
  print(json.dumps({"losses": losses, "sharded_leaves": sharded_leaves}))


if __name__ == "__main__":
  main(*sys.argv[1:])
