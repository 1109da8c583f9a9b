"""The soak suite at 3 cycles: SIGKILL during a save, a bit flip in the newest checkpoint and a
torn metrics line, each in a real training process; the run ends bitwise equal to an
uninterrupted one. (The full soak: `python -m experiments.benchmark --suite=soak`.)"""
from experiments.benchmarks import soak


def test_three_faults_lose_nothing(tmp_path):
  result = soak.soak("vae", cycles=3, seed=0, root=str(tmp_path), log=lambda s: None,
                     faults=("sigkill_in_save", "bitflip", "torn_metrics"), steps=600)
  assert sum(result["faults"].values()) == 3, result["events"]
  assert result["mismatches"] == {"params": 0, "opt_state": 0, "ema_params": 0,
                                  "loss_curve": 0, "duplicate_steps": 0}, result
