import pytest

from experiments.configs import vae


def tiny_vae_config(**overrides):
  config = vae.get_config("digits")
  config.model.channels = (8,)
  config.model.latent_dim = 2
  config.batch_size = 8
  config.eval_batch_size = 64
  config.num_train_steps = 12
  config.log_every_steps = 1
  config.eval_every_steps = 12
  config.checkpoint_every_steps = 4
  config.sample_every_steps = 12
  config.num_samples = 4
  config.optimizer.warmup_steps = 2
  config.update_from_flattened_dict(overrides)   # keys may be dotted: "model.beta"
  return config


@pytest.fixture
def tiny_config():
  return tiny_vae_config
