"""Compiled programs kept across processes (ufm/programs.py, ufm/compile_cache.py): a kept program gives
the same numbers as a fresh compile, its key sees every static argument and shape, a cache that
cannot be read or written is one warning and never a wrong or failed run, and the command's time is
the wall time of the call, split into phases that add up to it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from ufm import compile_cache, programs
from ufm.compile_cache import CompileCacheWarning
from ufm.constraint_sets import _GAUSSIAN


def _double_plus(x, shift, *, times: int):
    return x * times + shift


#: A test's own program: kept in memory only (its source is not the toolkit's, so no key could see it
#: change); the disk tests use a toolkit program, the random draw of ufm.constraint_sets.
KEPT = programs.program(_double_plus, static_argnames=("times",), cost=lambda x, shift, **k: x.size)
DRAW = _GAUSSIAN
KEY = np.array([0, 7], dtype=np.uint32)


def _draw(size: int = 256, dtype: str = "float64") -> np.ndarray:
    return np.asarray(DRAW(KEY, size=size, dtype=dtype))


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    """A cache directory of the test's own, and a fresh warning state; the suite's cache afterwards."""
    suite = compile_cache.cache_dir()
    monkeypatch.setitem(compile_cache._state, "warned", False)
    assert compile_cache.enable_compile_cache(tmp_path) == tmp_path
    DRAW.clear()
    yield tmp_path / "programs"
    DRAW.clear()
    compile_cache.enable_compile_cache(suite.parent)


def test_a_program_is_saved_and_a_fresh_process_state_loads_it(own_cache):
    import jax

    # JAX's own draw (its default compile; the program's fast compile rounds erf_inv's last bit apart)
    want = np.asarray(jax.random.normal(jax.numpy.asarray(KEY), (256,), dtype="float64"))
    before = programs.counts()
    built = _draw()
    np.testing.assert_allclose(built, want, rtol=1e-15, atol=1e-15)
    assert programs.counts()["built"] == before["built"] + 1
    assert len(list(own_cache.glob("*.jaxexport"))) == 1
    DRAW.clear()                                       # as a new process: nothing in memory
    np.testing.assert_array_equal(_draw(), built)     # the kept program: the same numbers exactly
    assert programs.counts()["loaded"] == before["loaded"] + 1


def test_the_key_sees_static_arguments_shapes_and_dtypes(own_cache):
    a, b, c = _draw(256), _draw(512), _draw(256, "float32")
    assert c.dtype == np.float32 and len(b) == 512
    assert len(list(own_cache.glob("*.jaxexport"))) == 3
    DRAW.clear()
    np.testing.assert_array_equal(_draw(512), b)      # each loads its own entry
    np.testing.assert_array_equal(_draw(256, "float32"), c)
    np.testing.assert_array_equal(_draw(256), a)
    assert np.array_equal(b[:256], a)                 # the partitionable draw: the first entries agree


def test_a_program_kept_in_memory_only_when_its_source_is_not_the_toolkits(own_cache):
    np.testing.assert_array_equal(KEPT(np.ones(3), 1.0, times=2), 3 * np.ones(3))
    assert not list(own_cache.glob("*.jaxexport"))


def test_a_corrupt_entry_is_one_warning_then_a_fresh_compile(own_cache):
    good = _draw()
    for entry in own_cache.glob("*.jaxexport"):
        entry.write_bytes(b"not a program")
    DRAW.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        np.testing.assert_array_equal(_draw(), good)
        DRAW.clear()
        np.testing.assert_array_equal(_draw(), good)  # the entry was written again: no second warning
    cache_warnings = [w for w in caught if issubclass(w.category, CompileCacheWarning)]
    assert len(cache_warnings) == 1 and "could not be read" in str(cache_warnings[0].message)


def test_an_unwritable_cache_directory_is_one_warning_and_no_cache(tmp_path, monkeypatch):
    monkeypatch.setitem(compile_cache._state, "warned", False)
    blocked = tmp_path / "file"
    blocked.write_text("a file, not a directory")
    suite = compile_cache.cache_dir()
    try:
        with pytest.warns(CompileCacheWarning, match="cannot be written"):
            assert compile_cache.enable_compile_cache(blocked / "cache") is None
    finally:
        compile_cache.enable_compile_cache(suite.parent)


def test_bucket_rounds_up_to_a_power_of_two():
    assert [programs.bucket(n, 8) for n in (1, 8, 9, 16, 17, 100)] == [8, 8, 16, 16, 32, 128]
    assert programs.bucket(0) == 1


def test_fast_options_only_for_small_programs(monkeypatch):
    import jax

    if jax.default_backend() != "cpu":
        pytest.skip("the fast options are a CPU setting")
    small, large = np.ones((16, 16)), np.ones((300, 300))
    assert KEPT._options((small, 0.0), {}, {"times": 1}) == programs.FAST_COMPILE_OPTIONS
    assert KEPT._options((large, 0.0), {}, {"times": 1}) == {}


def test_a_program_inside_jit_and_grad_is_plain_jit():
    import jax

    f = lambda x: KEPT(x, 1.0, times=3).sum()      # noqa: E731
    assert float(jax.jit(f)(np.ones(3))) == 12.0
    np.testing.assert_array_equal(np.asarray(jax.grad(f)(np.ones(3))), 3 * np.ones(3))


def test_static_names_must_be_plain_data_to_reach_the_disk(own_cache):
    class Opaque:
        pass
    assert programs._static_name({"times": 2, "mode": ("a", 1.5)}) is not None
    assert programs._static_name({"f": Opaque()}) is None
    assert programs._static_name({"f": len}) is None


def test_the_cache_directory_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("UFM_CACHE_DIR", str(tmp_path / "mine"))
    assert compile_cache.default_cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("UFM_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert compile_cache.default_cache_dir() == tmp_path / "xdg" / "ufm-scl"
    for value, off in (("1", True), ("yes", True), ("0", False), ("", False)):
        monkeypatch.setenv("UFM_NO_CACHE", value)
        assert compile_cache.cache_disabled_by_environment() is off


# ---------------------------------------------------------------- the command, as whole processes
def _ufm(args: list[str], cache: Path | None, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("UFM_CACHE_DIR", "UFM_NO_CACHE")}
    if cache is not None:
        env["UFM_CACHE_DIR"] = str(cache)
    env.update(extra_env or {})
    return subprocess.run([sys.executable, "-m", "ufm", *args], capture_output=True, text=True, env=env,
                          timeout=600)


def test_a_second_call_loads_what_the_first_compiled_and_reports_its_time(tmp_path):
    args = ["solve", "--counts", "5,4,3", "--tau", "0.5", "--json", "--no-progress"]
    first, second = _ufm(args, tmp_path), _ufm(args, tmp_path)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    a, b = json.loads(first.stdout), json.loads(second.stdout)
    assert a["loss"] == b["loss"] and a["iterations"] == b["iterations"] and a["status"] == b["status"]
    assert list((tmp_path / "programs").glob("*.jaxexport")) and list((tmp_path / "xla").iterdir())
    for report in (a, b):
        timings = report["timings"]
        assert set(timings) == {"startup", "compile", "solve", "certificate", "report"}
        assert all(v >= 0 for v in timings.values())
        assert sum(timings.values()) == pytest.approx(report["seconds"], rel=1e-9, abs=1e-9)
    assert b["timings"]["compile"] < a["timings"]["compile"]      # loaded, not compiled again


def test_no_cache_keeps_nothing(tmp_path):
    done = _ufm(["solve", "--counts", "3,3", "--no-progress", "--no-cache"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "programs").exists()
    done = _ufm(["solve", "--counts", "3,3", "--no-progress"], tmp_path, {"UFM_NO_CACHE": "1"})
    assert done.returncode == 0 and not (tmp_path / "programs").exists()


def test_a_broken_cache_never_breaks_the_command(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("a file where the cache directory should be")
    done = _ufm(["solve", "--counts", "3,3", "--no-progress"], blocked)
    assert done.returncode == 0
    assert done.stderr.count("ufm: warning:") == 1 and "cannot be written" in done.stderr
    # every kept file corrupted: one warning line, the same result
    cache = tmp_path / "cache"
    good = _ufm(["solve", "--counts", "3,3", "--no-progress", "--json"], cache)
    for entry in list((cache / "programs").iterdir()) + list((cache / "xla").iterdir()):
        if entry.is_file():
            entry.write_bytes(b"\0garbage")
    again = _ufm(["solve", "--counts", "3,3", "--no-progress", "--json"], cache)
    assert again.returncode == 0
    assert json.loads(again.stdout)["loss"] == json.loads(good.stdout)["loss"]
    assert again.stderr.count("ufm: warning:") == 1


AGE = "from ufm.app.timings import process_age; print(process_age())"
BUSY = "import time; t = time.perf_counter()\nwhile time.perf_counter() - t < 1: pass"


def test_seconds_count_from_the_programs_own_start_not_the_shells():
    """A program exec'd by a shell that first waited 1 s for another command (``a && b`` execs ``b`` in
    the shell's own process; ``a`` works, as ``pip install`` does) is not 1 s old; a program started
    directly is as old as its process."""
    direct = subprocess.run([sys.executable, "-c", f"import time; time.sleep(0.5); {AGE}"],
                            capture_output=True, text=True, check=True)
    assert 0.45 <= float(direct.stdout) < 3.0
    after_wait = subprocess.run(["bash", "-c", f"{sys.executable} -c '{BUSY}' && exec {sys.executable} -c '{AGE}'"],
                                capture_output=True, text=True, check=True)
    assert float(after_wait.stdout) < 0.9        # its own CPU time: the interpreter's start, not the 1 s


def test_seconds_of_a_call_from_python_start_at_the_call(capsys):
    """``main`` called in a process that has been running a while, and has compiled programs before,
    counts its own call only: its wall time, its compile."""
    import json
    import time

    from ufm.app.cli import main
    from ufm.app.timings import process_age

    while process_age() < 1.0:                # this test process is at least a second old
        time.sleep(0.1)
    for _ in range(2):      # the second call: what the first compiled is not this call's compile
        started = time.perf_counter()
        assert main(["solve", "--counts", "3,3", "--json", "--no-progress"]) == 0
        took = time.perf_counter() - started
        report = json.loads(capsys.readouterr().out)
        assert 0 < report["seconds"] <= took
        assert sum(report["timings"].values()) == pytest.approx(report["seconds"], rel=1e-9)
        assert report["timings"]["compile"] <= report["seconds"]


def test_a_large_draw_is_fully_optimised_and_equals_jax_bit_for_bit():
    """Above 4096 entries (ufm.constraint_sets.GAUSSIAN_COST_PER_ENTRY) the draw is compiled with the
    full optimisation: JAX's own draw exactly (the fast compile rounds erf_inv's last bit apart)."""
    import jax

    size = 16384                                       # n = 1000, d = 10: a start of the peers problem
    assert DRAW._options((KEY,), {}, {"size": size, "dtype": "float64"}) == {}
    assert DRAW._options((KEY,), {}, {"size": 4096, "dtype": "float64"}) == programs.FAST_COMPILE_OPTIONS
    want = np.asarray(jax.random.normal(jax.numpy.asarray(KEY), (size,), dtype="float64"))
    np.testing.assert_array_equal(_draw(size), want)
