"""The flop count behind the speed suite's MFU figures, against the matmul formula."""
import jax
import jax.numpy as jnp
import pytest

from gen_jax.train import dry_run


@pytest.mark.parametrize("m, k, n", [(8, 16, 4), (32, 32, 32)])
def test_compiled_flops_of_a_matmul_is_2_m_k_n(m, k, n):
  """XLA's count for one [m, k] x [k, n] matmul: m n multiply-adds of length k, 2 m k n flops."""
  a, b = jnp.ones((m, k)), jnp.ones((k, n))
  compiled = jax.jit(jnp.matmul).lower(a, b).compile()
  assert dry_run.compiled_flops(compiled) == 2 * m * k * n
