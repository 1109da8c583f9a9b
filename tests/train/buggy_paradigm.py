"""A paradigm module with a bug in its make(), as a user's own module might have."""


def make(model_config, info):
  return len(3)
