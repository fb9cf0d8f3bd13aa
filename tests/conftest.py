import os
import sys

sys.path.insert(0, os.path.dirname(__file__))  # tests/reference.py
# the repository root, last: `benchmarks` (not an installed package) imports from here, while an
# installed ufm / solvers / theory_checks still come from site-packages
sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("MPLBACKEND", "Agg")        # figures and the explorer run headless

import ufm  # noqa: E402,F401  (float64 on before any test builds arrays)

import gc  # noqa: E402

import jax  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop JAX's compiled programs after each test module. XLA's CPU JIT keeps every executable's
    code mapped (three memory maps each); one process running the whole suite compiled thousands and
    crossed the kernel's vm.max_map_count (65530) on CI ("LLVM compilation error: Cannot allocate
    memory"). A later module that needs a program compiles it again."""
    yield
    jax.clear_caches()
    gc.collect()
