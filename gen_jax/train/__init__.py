"""The training loop, train state, sharding, checkpointing and metric writers."""
