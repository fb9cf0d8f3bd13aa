"""What a user waits for: whole ``ufm`` processes, from the shell's start to its exit
(``python -m benchmarks --only startup``).

- ``ufm --help`` and a rejected option (``ufm solve --tau 0``): nothing heavy may load first;
- ``ufm solve`` (the default problem, n = 40): cold (an empty compile cache: every program traced,
  lowered and compiled) and warm (a second run: programs loaded from the cache);
- ``ufm verify --quick``: cold and warm, the same way.

Each row is the median of ``reps`` processes; a cold process gets a fresh cache directory of its own
(``UFM_CACHE_DIR``), and the warm ones share the directory a first, untimed run filled. The section
also measures the trade behind :data:`ufm.programs.FAST_COMPILE_OPTIONS`: gradient descent's whole
loop compiled with XLA's defaults and with the fast options, its compile and its run, at several n.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def _command() -> list[str]:
    """The ``ufm`` console command if installed, else ``python -m ufm`` (the same entry point)."""
    found = shutil.which("ufm")
    return [found] if found else [sys.executable, "-m", "ufm"]


def _process(args: list[str], cache: str) -> tuple[float, int]:
    """Wall seconds of one ``ufm`` process and its exit code, with its compile cache in ``cache``."""
    env = dict(os.environ)
    env.pop("UFM_NO_CACHE", None)
    env["UFM_CACHE_DIR"] = cache
    t0 = time.perf_counter()
    done = subprocess.run(_command() + args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0, done.returncode


def _row(label: str, args: list[str], reps: int, cold: bool | None) -> dict:
    """Median of ``reps`` processes: ``cold`` True (each in an empty cache), False (a cache filled by a
    first, untimed run), None (no compile involved: help, bad input)."""
    times, codes = [], set()
    warm_dir = tempfile.mkdtemp(prefix="ufm-bench-warm-")
    try:
        if cold is False:
            _process(args, warm_dir)
        for _ in range(reps):
            if cold:
                fresh = tempfile.mkdtemp(prefix="ufm-bench-cold-")
                seconds, code = _process(args, fresh)
                shutil.rmtree(fresh, ignore_errors=True)
            else:
                seconds, code = _process(args, warm_dir)
            times.append(seconds)
            codes.add(code)
    finally:
        shutil.rmtree(warm_dir, ignore_errors=True)
    row = {"label": label, "command": "ufm " + " ".join(args), "cache": {True: "cold", False: "warm", None: "-"}[cold],
           "median_seconds": statistics.median(times), "seconds": times, "exit_codes": sorted(codes)}
    print(f"  {row['command']} ({row['cache']}): median {row['median_seconds']:.2f} s of {reps} "
          f"({', '.join(f'{t:.2f}' for t in times)})", flush=True)
    return row


def compile_trade(sizes: tuple[int, ...] = (40, 256, 1000)) -> list[dict]:
    """Gradient descent's whole loop (balanced k = 10 at n = 40 .. 1000, tau 0.5, float64; k = 4 at
    n = 40) compiled with XLA's defaults and with ufm.programs.FAST_COMPILE_OPTIONS: compile seconds
    and the fastest of 3 runs of the compiled loop (to its own stop)."""
    import jax
    import jax.numpy as jnp

    from solvers import gd
    from ufm import Problem
    from ufm.programs import FAST_COMPILE_OPTIONS

    rows = []
    for n in sizes:
        problem = Problem.balanced(4, 10, tau=0.5) if n == 40 else Problem.balanced(10, n // 10, tau=0.5)
        steps, lr, tol, cfg = gd._prepare(problem, None, None, "bb", jnp.float64, None)
        data = gd._data(problem, gd._start(problem, 0, jnp.float64), steps, lr, tol, jnp.float64)
        row = {"n": problem.n}
        for label, options in (("default", None), ("fast", FAST_COMPILE_OPTIONS)):
            lowered = jax.jit(lambda d: gd._runs(d, cfg=cfg, batched=None, lanes=None)).lower(data)
            t0 = time.perf_counter()
            compiled = lowered.compile(compiler_options=options)
            row[f"{label}_compile_seconds"] = time.perf_counter() - t0
            jax.block_until_ready(compiled(data))
            runs = []
            for _ in range(3):
                t0 = time.perf_counter()
                jax.block_until_ready(compiled(data))
                runs.append(time.perf_counter() - t0)
            row[f"{label}_run_seconds"] = min(runs)
        print(f"  compile trade n={row['n']}: default compile {row['default_compile_seconds']:.2f} s / run "
              f"{row['default_run_seconds']:.4f} s; fast compile {row['fast_compile_seconds']:.2f} s / run "
              f"{row['fast_run_seconds']:.4f} s", flush=True)
        rows.append(row)
    return rows


def bench_startup(reps: int = 3, verify_reps: int = 3) -> dict:
    """Every row of the module docstring, as whole processes."""
    rows = [_row("help", ["--help"], reps, None),
            _row("bad input", ["solve", "--tau", "0"], reps, None),
            _row("solve", ["solve", "--no-progress"], reps, True),
            _row("solve", ["solve", "--no-progress"], reps, False),
            _row("verify --quick", ["verify", "--quick", "--no-progress"], verify_reps, True),
            _row("verify --quick", ["verify", "--quick", "--no-progress"], verify_reps, False)]
    return {"command": " ".join(_command()), "rows": rows, "compile_trade": compile_trade()}


def startup_table(s: dict) -> list[str]:
    """Markdown rows of :func:`bench_startup`."""
    if "rows" not in s:
        return []
    L = ["| whole process (start to exit) | compile cache | median s | runs |", "|---|---|---|---|"]
    for r in s["rows"]:
        L.append(f"| `{r['command']}` | {r['cache']} | {r['median_seconds']:.2f} | "
                 f"{', '.join(f'{t:.2f}' for t in r['seconds'])} |")
    L += ["", "| GD loop compiled with | n | compile s | run s |", "|---|---|---|---|"]
    for r in s.get("compile_trade", []):
        L.append(f"| XLA defaults | {r['n']} | {r['default_compile_seconds']:.2f} | {r['default_run_seconds']:.4f} |")
        L.append(f"| fast options | {r['n']} | {r['fast_compile_seconds']:.2f} | {r['fast_run_seconds']:.4f} |")
    return L + [""]
