import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))  # tests/reference.py
# the repository root, last: `benchmarks` (not an installed package) imports from here, while an
# installed ufm / solvers / theory_checks still come from site-packages
sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("MPLBACKEND", "Agg")        # figures and the explorer run headless

import ufm  # noqa: E402,F401  (float64 on before any test builds arrays)
from ufm import compile_cache  # noqa: E402

#: The suite's compile cache: one directory for the whole run, shared by every worker process (the
#: controller makes it before the workers start, and they inherit the variable) and by the ``ufm``
#: processes the tests start; removed at the end. A run starts from an empty cache, so it compiles
#: what it needs once, whatever an earlier run left. UFM_TEST_CACHE_DIR keeps one across runs instead.
SUITE_CACHE_VARIABLE = "UFM_SUITE_CACHE_DIR"


def pytest_configure(config):
    if os.environ.get(SUITE_CACHE_VARIABLE) is None:            # the controller (or a run without workers)
        kept = os.environ.get("UFM_TEST_CACHE_DIR")
        os.environ[SUITE_CACHE_VARIABLE] = kept or tempfile.mkdtemp(prefix="ufm-suite-cache-")
        config._ufm_remove_cache = kept is None
    os.environ[compile_cache.CACHE_DIR_VARIABLE] = os.environ[SUITE_CACHE_VARIABLE]
    os.environ.pop(compile_cache.NO_CACHE_VARIABLE, None)
    compile_cache.enable_compile_cache(os.environ[SUITE_CACHE_VARIABLE])


def pytest_unconfigure(config):
    if getattr(config, "_ufm_remove_cache", False):
        shutil.rmtree(os.environ.pop(SUITE_CACHE_VARIABLE), ignore_errors=True)


import gc  # noqa: E402

import jax  # noqa: E402
import pytest  # noqa: E402

from ufm import programs  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop the compiled programs held in memory after each test module. XLA's CPU JIT keeps every
    executable's code mapped (three memory maps each); one process running the whole suite compiled
    thousands and crossed the kernel's vm.max_map_count (65530) on CI ("LLVM compilation error: Cannot
    allocate memory"). A later module that needs a program loads it from the suite's compile cache
    (conftest's pytest_configure) instead of compiling it again."""
    yield
    jax.clear_caches()
    programs.clear()
    gc.collect()
