"""Numbers, defaults and example outputs of docs/cli.md, and numbers of docs/theory.md sections 8 and
8a, that the other doc tests (test_readme, test_theory_doc, test_doc_numbers, test_cli,
test_reliability, test_benchmarks, test_staircase's quoted stall) did not check.

Each test first finds the quoted passage in the doc (whitespace-normalised; theory.md's passages only
inside sections 8 and 8a), then checks it against the code: the parser and ``ufm.app.cli.main``
(``validate_only=True`` for the limits, which checks without computing; small real runs with
``--json`` for the field lists), the module constants the doc names, or an independent NumPy
computation (the lift's formulas of section 8a, the certificate's rounding margin). A passage that is
no longer in the doc raises RuntimeError, which says so.

Five statements (four of theory.md section 8, one of cli.md) were found not to say what the code
does; the docs were corrected and the tests here check the corrected statements.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import io
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from doc_text import quote, says

from ufm.app.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
CLI = " ".join((ROOT / "docs" / "cli.md").read_text().split())
_THEORY = (ROOT / "docs" / "theory.md").read_text()
#: docs/theory.md sections 8 and 8a only (from "## 8." up to "## 9.").
THEORY_8 = " ".join(_THEORY[_THEORY.index("## 8. Certificates"):_THEORY.index("## 9. Gradient descent")].split())
EPS = float(np.finfo(float).eps)


# ------------------------------------------------------------------------------------------------ helpers
def _says(text: str, *passages: str) -> None:
    """Each passage (literal, whitespace-normalised) is in ``text``."""
    says(text, "the doc", *passages)


def _quote(text: str, pattern: str) -> re.Match:
    return quote(text, "the doc", pattern)


def _check(argv: str) -> tuple[int, str]:
    """``main(argv, validate_only=True)``: (exit code, stderr)."""
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(argv.split(), validate_only=True)
    return code, err.getvalue().strip()


@functools.cache
def _run(*argv: str) -> tuple[int, dict, str]:
    """A real run of ``ufm argv --json`` (cached: several tests read the same small run):
    (exit code, the JSON object, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([*argv, "--json"])
    return code, json.loads(out.getvalue()), err.getvalue()


def _parse(argv: str):
    return build_parser().parse_args(argv.split())


def _subparser(*names: str):
    """The parser of ``ufm names...`` (e.g. "sweep", "batching")."""
    parser = build_parser()
    for name in names:
        parser = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices[name]
    return parser


def _helps(*names: str) -> str:
    """Every option's help text of ``ufm names...``, joined (not the formatted --help, whose wrapping
    depends on the terminal's width and breaks words at hyphens)."""
    return " ".join(" ".join((a.help or "").split()) for a in _subparser(*names)._actions)


def _run_text(*argv: str) -> tuple[int, str, str]:
    """A real run of ``ufm argv`` without --json: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


# ================================================================================================ docs/cli.md
def test_dim_default_is_k_and_2k_with_relu():
    """cli.md, problem table: `--dim D` defaults to k without --relu and 2k with it: the problem the
    options build, the option's help, and the ``dim`` of a real solve (counts 3,3: k = 2)."""
    from ufm.app.options import problem_from_args

    _says(CLI, "| `--dim D` | embedding dimension | k without `--relu`; 2k with `--relu`")
    assert problem_from_args(_parse("solve --counts 3,3,2")).dim == 3
    assert problem_from_args(_parse("solve --counts 3,3,2 --relu")).dim == 6
    assert problem_from_args(_parse("solve --counts 3,3,2 --relu --dim 3")).dim == 3
    assert "(default k; 2k with --relu)" in _helps("solve")
    code, plain, _ = _run("solve", "--counts", "3,3", "--no-progress")
    assert code == 0 and plain["dim"] == 2
    code, relu, _ = _run("solve", "--counts", "3,3", "--relu", "--no-progress")
    assert code == 0 and relu["dim"] == 4


def test_gap_tol_default_is_1e_6():
    """cli.md's `ufm solve ... [--gap-tol T]` and theory.md section 8's status table: `optimal` is a
    relative gap <= tolerance, "default 1e-6, `--gap-tol`": the solvers' constant, the option's help,
    the tolerance a real solve's certificate reports without the option, and the option moves it."""
    from solvers.defaults import GAP_TOL

    _says(THEORY_8, "| `optimal` | the certificate proves relative gap <= tolerance (default 1e-6, `--gap-tol`) |")
    _says(CLI, "[--gap-tol T]")
    assert GAP_TOL == 1e-6
    assert _parse("solve").gap_tol is None          # None: the solver's GAP_TOL applies
    assert "(default 1e-6)" in _helps("solve")
    _, report, _ = _run("solve", "--counts", "3,3", "--no-progress")
    assert report["certificate"]["tolerance"] == 1e-6 and report["status"] == "optimal"
    _, looser, _ = _run("solve", "--counts", "3,3", "--no-progress", "--gap-tol", "0.001")
    assert looser["certificate"]["tolerance"] == 1e-3


def test_solve_json_has_the_implementation_fields():
    """cli.md `ufm solve`: "in this implementation also `within_class`"; `excess` "beside
    `log_excess`"; the certificate's `method` is one of theory.md section 8's "`cholesky`, `dense`,
    `lanczos` or `collapsed`" (collapsed: a full batch whose optimum is collapsed); the timings table's phases of `ufm solve`
    (`startup`, `compile`, `solve`, `certificate`, `report`) add up to `seconds`."""
    _says(CLI, "in this implementation also `within_class`", "beside `log_excess`",
          "| `solve`, `certificate` (`ufm solve`); `predict`; `checks` (`verify`); `sweep`; `landscape`; "
          "`check` (`batches check`) |")
    _says(THEORY_8, "`method` says which: `cholesky`, `dense`, `lanczos` or `collapsed` (below).")
    _, report, _ = _run("solve", "--counts", "3,3", "--no-progress")
    assert {"within_class", "log_excess", "excess", "timings"} <= set(report)
    assert report["log_excess"] == pytest.approx(math.log(report["excess"]), rel=1e-12)
    assert report["certificate"]["method"] == "collapsed"      # a full batch, collapsed at its optimum
    assert set(report["timings"]) == {"startup", "compile", "solve", "certificate", "report"}
    assert sum(report["timings"].values()) == pytest.approx(report["seconds"], rel=1e-9)


@pytest.mark.parametrize("argv, work", [
    (("predict", "--counts", "3,3"), "predict"),
    (("batches", "check", "--counts", "3,3"), "check"),
    (("verify", "--only", "ib-critical-betas", "--no-progress"), "checks"),
])
def test_timings_phases_of_each_command(argv, work):
    """cli.md "Time, and the compile cache": `timings` splits `seconds` into `startup`, `compile`, the
    command's own phase (`predict`; `checks` for `verify`; `check` for `batches check`) and `report`,
    which add up to it."""
    _says(CLI, "`timings`, its split into phases that add up to it",
          "| `startup` | the interpreter,", "| `compile` | building compiled programs", "| `report` | the prediction")
    code, report, _ = _run(*argv)
    assert code == 0
    assert set(report["timings"]) == {"startup", "compile", work, "report"}
    assert sum(report["timings"].values()) == pytest.approx(report["seconds"], rel=1e-9)


def test_staircase_json_fields_and_the_measured_escape():
    """cli.md `ufm solve`, field `staircase`: `{levels: [{rank, lambda_min, escaped, lifted, matvecs,
    seconds, log_excess, log_excess_after, step, kind}], escapes, stop, rank}`, matvecs "0: dense",
    `rank` "the numerical rank of the last point's Gram". On theory.md 8a's stall ((8, 8, 2, 2),
    tau 0.5, ReLU, d = 4, seed 1): exactly those fields; the escape lifts one part (ReLU: "one part of
    the first eigenvector lifts") by a dense eigensolve (20 rows); the final rank is that of the
    reported class-mean Gram (NumPy); log E falls by 0.139 at t = 1 as 8a states, and the doc's own
    numbers satisfy its Armijo test at t = 1 (0.139 >= 0.5 x 0.259: so t = 1 is accepted, not halved)."""
    _says(CLI, "`{levels: [{rank, lambda_min, escaped, lifted, matvecs, seconds, log_excess, log_excess_after, "
               "step, kind}], escapes, stop, rank}`", "matrix-vector products (0: dense)",
          "the numerical rank of the last point's Gram")
    _says(THEORY_8, "Under ReLU one part of the first eigenvector lifts.")
    found = _quote(THEORY_8, r"log E fell by ([0-9.]+) at t = 1 against the model's ([0-9.]+)\.")
    armijo = float(_quote(THEORY_8, r"log E\(t\) <= log E\(0\) \+ ([0-9.]+) t\^2 slope").group(1))
    fall, model = float(found.group(1)), float(found.group(2))
    assert fall >= armijo * 1.0 ** 2 * model          # the doc's numbers: t = 1 passes the doc's test

    code, report, _ = _run("solve", "--counts", "8,8,2,2", "--relu", "--dim", "4", "--tau", "0.5", "--seed", "1",
                           "--no-progress")
    assert code == 0 and report["status"] == "optimal"
    staircase = report["staircase"]
    assert set(staircase) == {"levels", "escapes", "stop", "rank"}
    level = staircase["levels"][0]
    assert set(level) == {"rank", "lambda_min", "escaped", "lifted", "matvecs", "seconds", "log_excess",
                          "log_excess_after", "step", "kind"}
    assert level["rank"] == 4 and level["escaped"] and level["lifted"] == 1 and level["matvecs"] == 0
    assert level["kind"] in ("positive part", "negative part", "absolute value")
    assert level["step"] == 1.0
    # the part lifted (positive or negative: their slopes tie, -0.259 each) may differ from one CPU to the
    # next; either falls by 0.139 to the doc's rounding (half a unit of the 3rd decimal, and 5e-5 of slack)
    assert abs(level["log_excess"] - level["log_excess_after"] - fall) <= 5e-4 + 5e-5
    gram = np.array(report["class_mean_gram"])
    assert staircase["rank"] == np.linalg.matrix_rank(gram, tol=1e-6) == 4


def test_staircase_stop_reasons_are_the_codes():
    """cli.md: why the staircase stopped, "(`certified`, `escape cap`, `no negative curvature`, `no
    decrease`, `eigensolver not converged`, `descent failed`)": the reasons solvers.staircase names (the
    ways out of ``_why``, read from its source, plus `certified`)."""
    from solvers import staircase

    listed = _quote(CLI, r"why it stopped \(((?:`[a-z ]+`, )+`[a-z ]+`)\)").group(1)
    doc = set(re.findall(r"`([a-z ]+)`", listed))
    code = set(re.findall(r'"([a-z ]+)": ', inspect.getsource(staircase._why))) | {"certified"}
    assert doc == code
    assert all(staircase._why(reason) for reason in doc - {"certified"})


STALLED = ("solve", "--counts", "8,8,2,2", "--tau", "0.5", "--relu", "--dim", "4", "--seed", "3", "--no-escape",
           "--no-progress")


def test_a_stationary_solve_names_its_hint():
    """cli.md: "where gradient descent ends `stationary`, `hint` names what to try (more starts, a larger
    `--dim`, `--method reduced`); without `--json` the same hint is printed on stderr", and exit code 1 ("1 a solver failure or a
    result the certificate does not prove (`error`, `not_converged`, `stationary`; in this
    implementation also `optimal_inaccurate`)"): the statuses ufm.app.running exits 1 on, and a stalled
    ReLU start at d = k under plain descent (seed 3, as in tests/test_cli.py): the JSON's `hint`, and
    the same hint on stderr from the text output."""
    from ufm.app.running import FAILED

    _says(CLI, "`hint` names what to try (more starts, a larger `--dim`, `--method reduced`); without `--json` "
               "the same hint is printed on stderr")
    statuses = _quote(CLI, r"1 a solver failure or a result the certificate does not prove \(`error`, "
                           r"`not_converged`, `stationary`; in this implementation also `optimal_inaccurate`\)")
    assert set(FAILED) == set(re.findall(r"`([a-z_]+)`", statuses.group(0)))
    code, report, _ = _run(*STALLED)
    assert code == 1 and report["status"] == "stationary"
    hint = report["hint"]
    assert "--starts" in hint and "--dim" in hint and "--method reduced" in hint
    code, _, err = _run_text(*STALLED)
    assert code == 1 and err.strip() == f"ufm solve: {hint}"


def test_a_stationary_solve_prints_its_hint_on_stderr_without_json_only():
    """cli.md, `ufm solve` JSON: "`hint` names what to try ...; without `--json` the same hint is printed
    on stderr" (with --json, stdout's JSON carries it and stderr does not)."""
    _says(CLI, "`hint` names what to try (more starts, a larger `--dim`, `--method reduced`); without `--json` "
               "the same hint is printed on stderr")
    code, report, err = _run(*STALLED)
    assert code == 1 and report["hint"]
    assert report["hint"] not in err


@pytest.mark.parametrize("argv, code", [
    ("solve --tau 0.001", 0), ("solve --tau 0.00099", 2), ("solve --tau 100", 0), ("solve --tau 100.001", 2),
    ("sweep temperature --counts 3,3 --taus 0.001,100", 0), ("sweep temperature --counts 3,3 --taus 0.0009", 2),
    ("solve --seed 4294967295", 0), ("solve --seed 4294967296", 2), ("solve --seed 0", 0),
    ("solve --seed 4294967294 --starts 2", 0), ("solve --seed 4294967295 --starts 2", 2),
    ("solve --gap-tol 0.5", 0), ("solve --gap-tol 1", 2), ("solve --tol 0", 2), ("solve --tol 1", 2),
    ("solve --tol 0.5", 0), ("solve --imbalance step --ratio 2 --minority-fraction 0.25", 0),
    ("solve --imbalance step --ratio 2 --minority-fraction 1", 2),
    ("sweep temperature --counts 3,3 --taus 0.01:2:1000", 0), ("sweep temperature --counts 3,3 --taus 0.01:2:1001", 2),
    ("sweep temperature --counts 3,3 --taus 0.5:0.5:1", 0), ("sweep temperature --counts 3,3 --taus 0.01:2:0", 2),
    ("solve --counts 4", 2), ("solve --counts 2,2", 0), ("solve --counts 4,1", 2),
    ("solve --n-max 1e3", 2), ("solve --n-max 1000", 0),
])
def test_value_ranges_of_the_check_table(argv, code):
    """cli.md "what it checks before any work": `--tau` (and `--taus`) in [1e-3, 100]; `--seed` in
    0..2^32-1, "and `--seed + --starts - 1` too"; `--minority-fraction`, `--gap-tol`, `--tol` in (0, 1)
    (both ends refused); lists `start:stop:count` with "count 1..1000" (a count of 1 is taken for a
    one-point range, start = stop: a longer one would drop its stop); `--counts` "at least two whole
    numbers, each at least 2"; integers "written in digits (`2.5`, `1e3` are refused)". Each at and
    across its ends, by ``main(..., validate_only=True)``, and the constants the ranges come from."""
    from ufm.app.cli_values import MAX_POINTS
    from ufm.problem import SEED_MAX, TAU_MAX, TAU_MIN

    _says(CLI, "| `--tau` (and `--taus`) | finite, in [1e-3, 100]",
          "`--seed` in 0..2^32-1, and `--seed + --starts - 1` too",
          "| `--minority-fraction`, `--gap-tol`, `--tol` | finite, in (0, 1) |",
          "`1,2,4` or `start:stop:count` (count 1..1000)",
          "| `--counts` | at least two whole numbers, each at least 2 |",
          "written in digits (`2.5`, `1e3` are refused)")
    assert (TAU_MIN, TAU_MAX, SEED_MAX, MAX_POINTS) == (1e-3, 100, 2 ** 32 - 1, 1000)
    got, err = _check(argv)
    assert got == code, err
    if code == 2:
        assert err.startswith("ufm ") and ": error: " in err and "\n" not in err


@pytest.mark.parametrize("argv, code", [
    ("solve --counts 4,4,2 --dim 1024", 0), ("solve --counts 4,4,2 --dim 1025", 2),
    ("solve --counts 600,601 --dim 1201", 0), ("solve --counts 600,601 --dim 1202", 2),
    ("solve --counts 600,600 --prototypes etf --dim 1202", 0),
    ("solve --counts 600,600 --prototypes etf --dim 1203", 2),
    ("solve --counts 4,4,2,2 --method reduced --dim 3", 0), ("solve --counts 4,4,2,2 --method reduced --dim 2", 2),
])
def test_dim_limits(argv, code):
    """cli.md: `--dim` "at most the number of rows (examples plus prototypes) or 1024, whichever is
    larger ...; with `--method reduced` and no ReLU at least k - 1": 1024 beside 10 rows, 1201 rows
    beside 1024, 1200 examples + 2 ETF prototypes, and k - 1 = 3 for four classes."""
    from ufm.app.options import MAX_SPARE_DIM

    _says(CLI, "| `--dim` | at most the number of rows (examples plus prototypes) or 1024, whichever is larger",
          "with `--method reduced` and no ReLU at least k - 1")
    assert MAX_SPARE_DIM == 1024
    got, err = _check(argv)
    assert got == code, err


@pytest.mark.parametrize("argv, code", [
    ("landscape --counts 150,150 --directions hessian --out {tmp}/l.png", 0),      # n d = 300 x 2 = 600
    ("landscape --counts 150,151 --directions hessian --out {tmp}/l.png", 2),      # 602
    ("explore --classes 2 --out {tmp}/e.png", 0), ("explore --classes 20 --out {tmp}/e.png", 0),
    ("explore --classes 1 --out {tmp}/e.png", 2), ("explore --classes 21 --out {tmp}/e.png", 2),
    ("explore --ratio 100 --out {tmp}/e.png", 0), ("explore --ratio 101 --out {tmp}/e.png", 2),
    ("explore --tau 0.01 --out {tmp}/e.png", 0), ("explore --tau 2 --out {tmp}/e.png", 0),
    ("explore --tau 2.01 --out {tmp}/e.png", 2),
])
def test_landscape_hessian_size_and_explorer_sliders(argv, code, tmp_path):
    """cli.md: "`landscape --directions hessian` needs n d <= 600"; "`explore`'s starting values must lie
    on its sliders (R in 1..100 and tau in 0.01..2, both on log scales; k a whole number in 2..20)"."""
    from solvers.sizing import MAX_HESSIAN_SIZE
    from ufm.app.explore_state import LOG_SLIDERS, SLIDER_RANGES

    _says(CLI, "`landscape --directions hessian` needs n d <= 600 (a dense Hessian)",
          "(R in 1..100 and tau in 0.01..2, both on log scales; k a whole number in 2..20)")
    assert MAX_HESSIAN_SIZE == 600
    assert SLIDER_RANGES == {"ratio": (1, 100), "tau": (0.01, 2), "k": (2, 20)} and set(LOG_SLIDERS) == {"ratio", "tau"}
    got, err = _check(argv.replace("{tmp}", str(tmp_path)))
    assert got == code, err


def test_size_guard_refuses_above_80_percent(monkeypatch):
    """cli.md: the size guard "refuses above 80 % of the machine's physical memory, naming the
    estimate": on a machine of 10 GiB (patched), 8 GiB is allowed and a byte more refused, in one line
    that names the share."""
    from solvers import sizing
    from ufm.errors import ProblemError

    _says(CLI, "refuses above 80 % of the machine's physical memory, naming the estimate")
    assert sizing.BUDGET_SHARE == 0.8
    monkeypatch.setattr(sizing, "physical_memory", lambda: 10 * 2 ** 30)
    sizing.require(8 * 2 ** 30, "a run", "smaller")
    with pytest.raises(ProblemError, match=r"80 % of 10(\.0)? GiB"):
        sizing.require(8 * 2 ** 30 + 1, "a run", "smaller")


def test_reshuffled_batching_draws_at_most_a_million_batches():
    """cli.md: "Gradient descent on a reshuffled batching draws every epoch's batches first, so `--steps`
    times the batches per epoch may not exceed 10^6": counts 4,4,2 in random batches of 4 give
    ceil(10/4) = 3 batches an epoch, so 333333 steps (999999 batches) pass and 333334 are refused."""
    from ufm.app.options import MAX_BATCHES

    _says(CLI, "so `--steps` times the batches per epoch may not exceed 10^6")
    assert MAX_BATCHES * 10 == 10 ** 6
    assert -(-10 // 4) * 333333 <= 10 ** 6 < -(-10 // 4) * 333334
    base = "solve --counts 4,4,2 --batching random --batch-size 4 --steps"
    assert _check(f"{base} 333333")[0] == 0
    code, err = _check(f"{base} 333334")
    assert code == 2 and "more than 1000000" in err


def test_sweep_defaults(monkeypatch):
    """cli.md: the sweeps' own defaults: `sweep imbalance` step profile, `--classes 4`, `--n-max 32`,
    `--tau 0.5`, ratios 1,2,4,8,16; `sweep temperature` counts 20,20,4,4 and taus 0.01 .. 2;
    `sweep batching` counts 8,8,4,4, batch sizes 6,8,12,16, `--tau 0.5`; its schemes
    `fixed-random,random,binding` with `--relu` and `fixed-random` without; every sweep without ReLU
    unless `--relu`; "each sweep's `--help` says so". The problems each command builds (recorded from
    theory_checks.sweeps while ``validate_only`` runs the command's checks) and the help texts."""
    from theory_checks import sweeps

    _says(CLI, "`sweep imbalance` step profile, `--classes 4`, `--n-max 32`, `--tau 0.5`, ratios 1,2,4,8,16; "
               "`sweep temperature` counts 20,20,4,4; `sweep batching` counts 8,8,4,4, batch sizes 6,8,12,16, "
               "`--tau 0.5` (each sweep's `--help` says so",
          "(default taus 0.01 .. 2, log axis", "The batching sweep's default schemes are "
          "`fixed-random,random,binding` with `--relu` and `fixed-random` without",
          "Each sweep is drawn without ReLU unless `--relu` is given")
    seen = {}
    for name in ("imbalance_problems", "temperature_problems", "batching_problems"):
        original = getattr(sweeps, name)

        def record(*args, _name=name, _original=original, **kwargs):
            seen[_name] = (args, kwargs)
            return _original(*args, **kwargs)
        monkeypatch.setattr(sweeps, name, record)

    assert _check("sweep imbalance")[0] == 0
    ratios, options = seen["imbalance_problems"]
    assert list(ratios[0]) == [1, 2, 4, 8, 16]
    assert (options["profile"], options["k"], options["n_max"], options["tau"]) == ("step", 4, 32, 0.5)
    assert tuple(options["relu_options"]) == (False,)
    assert _check("sweep temperature")[0] == 0
    (taus, counts), options = seen["temperature_problems"]
    assert list(counts) == [20, 20, 4, 4] and min(taus) == 0.01 and max(taus) == 2
    assert tuple(options["relu_options"]) == (False,)
    assert _check("sweep batching")[0] == 0
    (sizes, counts), options = seen["batching_problems"]
    assert list(sizes) == [6, 8, 12, 16] and list(counts) == [8, 8, 4, 4] and options["tau"] == 0.5
    assert list(options["schemes"]) == ["fixed-random"] and options["relu"] is False
    assert _check("sweep batching --relu")[0] == 0
    assert list(seen["batching_problems"][1]["schemes"]) == ["fixed-random", "random", "binding"]

    helps = {name: _helps("sweep", name) for name in ("imbalance", "temperature", "batching")}
    for phrase in ("(default 1,2,4,8,16)", "(default step)", "(default 4)", "(default 32)", "(default 0.5)"):
        assert phrase in helps["imbalance"], phrase
    assert "(default 20,20,4,4)" in helps["temperature"] and "default 0.01," in helps["temperature"]
    for phrase in ("(default 8,8,4,4)", "(default 6,8,12,16)", "(default 0.5)",
                   "default fixed-random,random,binding with --relu; fixed-random without"):
        assert phrase in helps["batching"], phrase


def test_compare_and_cache_sizes():
    """cli.md: `ufm compare` reads a `.csv` of "at most 512 MiB of text", "in blocks of 32 MiB", and
    predicts a reshuffled batching "on the batches of its first 8 epochs pooled" (`geometry` "on 8
    epochs' batches"); the compile caches are "each kept under 2 GB" (the code's 2 GiB)."""
    from theory_checks import compare as theory_compare
    from ufm import compile_cache
    from ufm.app.commands import compare as compare_command

    _says(CLI, "at most 512 MiB of text, checked before it is read", "The features are read in blocks of 32 MiB",
          "predicted on the batches of its first 8 epochs pooled", "\"on 8 epochs' batches\"", "each kept under 2 GB")
    assert compare_command.MAX_CSV_BYTES == 512 * 2 ** 20
    assert theory_compare.CHUNK_BYTES == 32 * 2 ** 20
    assert theory_compare.PREDICTION_EPOCHS == 8
    assert "on {PREDICTION_EPOCHS} epochs' batches" in inspect.getsource(theory_compare)
    assert compile_cache.CACHE_MAX_BYTES == 2 * 2 ** 30


# ================================================================================ docs/theory.md section 8
def test_section8_constants():
    """Section 8: ReLU multipliers "where G0_ij <= 1e-6"; "densely (up to 1500 rows): from 256 rows on,
    first one Cholesky factorisation"; "The widest shift spends 1/100 of the tolerance"; "gradient
    descent stops at ||grad log E|| <= tol^(3/4) (1e-9 in float64)"; 8a's "Up to 1500 rows dense
    `eigh`" (the staircase's slack is dense where the certificate's DENSE_MAX says)."""
    from solvers import certificate, gd

    _says(THEORY_8, "with ReLU N = max(C, 0) where G0_ij <= 1e-6",
          "lambda_min(S), densely (up to 1500 rows): from 256 rows on, first one Cholesky factorisation",
          "The widest shift spends 1/100 of the tolerance: eta = 0.01 tol / q",
          "gradient descent stops at ||grad log E|| <= tol^(3/4) (1e-9 in float64)",
          "Beyond 1500 rows a full batch without prototypes stays on this dense path", "dense for up to 1500 rows", "Up to 1500 rows dense `eigh`")
    assert certificate.ACTIVE_TOL == 1e-6
    assert certificate.DENSE_MAX == 1500 and certificate.CHOLESKY_MIN_ROWS == 256
    assert certificate.CHOLESKY_SHARE == 1 / 100
    assert gd.GRAD_POWER == 3 / 4
    assert gd.DEFAULT_TOL[gd.jnp.float64] ** gd.GRAD_POWER == pytest.approx(1e-9, rel=1e-12, abs=0)


def _two_classes(counts, batching=None):
    """(problem, H): two classes at tau 0.5, d = 2, at their antipodal optimum (exactly collapsed)."""
    from ufm.problem import Problem

    problem = Problem.from_counts(counts, tau=0.5, dim=2, batching=batching)
    return problem, np.repeat(np.array([[1.0, 0.0], [-1.0, 0.0]]), counts, axis=0)


def test_certificate_method_by_rows_and_the_widest_shift(monkeypatch):
    """Section 8: "from 256 rows on, first one Cholesky factorisation ... Below 256 rows ...: dense
    `eigvalsh`. Beyond 1500 rows ... with several batches, Lanczos" and `method` says which: 255 rows `dense`, 256 rows
    `cholesky`, 1501 rows in two batches `lanczos`; every one certifies the optimum. "The widest shift
    spends 1/100 of the tolerance: eta = 0.01 tol / q": the shift the Cholesky test is given at 256
    rows with tolerance 1e-4 (recorded)."""
    from solvers import certificate
    from ufm.batching import Batching

    _says(THEORY_8, "Below 256 rows, and where the test fails: dense `eigvalsh`.", "with several batches, Lanczos",
          "and the n x n bound is computed only where it proves nothing")
    monkeypatch.setattr(certificate, "collapsed_form_applies", lambda problem: False)   # the n x n bound
    problem, H = _two_classes([128, 127])
    cert = certificate.certify_embeddings(problem, H)
    assert cert.method == "dense" and cert.certified

    shifts = []
    original = certificate._cholesky_lower_bound

    def record(S, spent, widest):
        shifts.append((len(S), widest))
        return original(S, spent, widest)
    monkeypatch.setattr(certificate, "_cholesky_lower_bound", record)
    problem, H = _two_classes([128, 128])
    cert = certificate.certify_embeddings(problem, H, tolerance=1e-4)
    assert cert.method == "cholesky" and cert.certified
    assert len(shifts) == 1 and shifts[0][0] == 256
    assert shifts[0][1] == pytest.approx(0.01 * 1e-4 / 256, rel=1e-12, abs=0)

    idx = np.arange(1501)          # classes 0 (rows 0..750) and 1 (751..1500), half of each per batch
    halves = Batching.from_lists([[int(i) for i in np.r_[idx[:376], idx[751:1126]]],
                                  [int(i) for i in np.r_[idx[376:751], idx[1126:]]]])
    problem, H = _two_classes([751, 750], halves)
    cert = certificate.certify_embeddings(problem, H)
    assert cert.method == "lanczos" and cert.certified


def test_full_batch_beyond_1500_rows_stays_dense(monkeypatch):
    """Section 8: "Beyond 1500 rows a full batch without prototypes stays on this dense path (its
    gradient is one dense n x n block already)": one full batch of 1501 rows is certified by the
    Cholesky test (solvers/certificate.py ``_scl_rgap`` passes the dense block whatever n is)."""
    from solvers import certificate

    _says(THEORY_8, "Beyond 1500 rows a full batch without prototypes stays on this dense path (its gradient is "
                    "one dense n x n block already); with several batches, Lanczos")
    problem, H = _two_classes([751, 750])
    assert certificate.certify_embeddings(problem, H).method == "collapsed"     # its k x k form first
    monkeypatch.setattr(certificate, "collapsed_form_applies", lambda problem: False)
    assert certificate.certify_embeddings(problem, H).method in ("cholesky", "dense")


def test_dense_eigenvalue_path_subtracts_the_stated_rounding_margin():
    """Section 8: below 256 rows the smallest eigenvalue is computed densely and "A rounding margin
    10 sqrt(q) eps ||S||_F is subtracted": on a diagonal S (its eigenvalues exact), the bound is
    lambda_min - 10 sqrt(q) eps ||S||_F to a unit of the last place."""
    from solvers import certificate

    _says(THEORY_8, "A rounding margin is subtracted: 10 sqrt(q) eps ||S||_F from the dense eigenvalue")
    q = 100
    values = np.linspace(-0.3, 2.0, q)
    S = np.diag(values[np.random.default_rng(0).permutation(q)])
    bound, method = certificate._dense_lower_bound(S, 0.0, 1e-8)
    expected = -0.3 - 10 * math.sqrt(q) * EPS * math.sqrt(float(np.sum(values ** 2)))
    assert method == "dense"
    assert bound == pytest.approx(expected, rel=4 * EPS, abs=0)
    assert bound < -0.3 - 9 * math.sqrt(q) * EPS * math.sqrt(float(np.sum(values ** 2)))     # the margin is there


def test_lanczos_path_subtracts_the_stated_rounding_margin():
    """Section 8: "10 q eps |lambda_max| (lambda_max estimated by Lanczos, times 1.01) from the Lanczos
    bound": on a diagonal S with |lambda_max| = 1 (q = 40) the margin is 10 q eps 1.01 to 1e-3."""
    from solvers import certificate

    _says(THEORY_8, "10 q eps |lambda_max| (lambda_max estimated by Lanczos, times 1.01) from the Lanczos bound")
    q = 40
    values = np.linspace(0.0, 1.0, q)
    S = np.diag(values)
    X = np.eye(q)[:, :1]                       # span X = the eigenvector of 0 (the near-null space)
    _, margin = certificate._lanczos_lower_bound(lambda V: S @ V, X, seed=0)
    assert margin == pytest.approx(10 * q * EPS * 1.01, rel=1e-3, abs=0)


def _u():
    return EPS / 2


def test_cholesky_bound_is_the_stated_formula():
    """Section 8: where the factorisation of S + eta I completes, "lambda_min(S) >= -eta - gamma/(1 -
    gamma) tr(S + eta I) - u max|s_ii + eta|" with "gamma = (q + 2) u / (1 - (q + 2) u)", "rounded up by
    the factor 1 + 2 (q + 2) u": on S = I (q = 300) with the widest shift, the code's bound is that
    formula to 1e-12 relative."""
    from solvers import certificate

    _says(THEORY_8, "gamma = (q + 2) u / (1 - (q + 2) u)",
          "lambda_min(S) >= -eta - gamma/(1 - gamma) tr(S + eta I) - u max|s_ii + eta|",
          "rounded up by the factor 1 + 2 (q + 2) u")
    q, widest = 300, 1e-9
    S = np.eye(q)
    u = _u()
    gamma = (q + 2) * u / (1 - (q + 2) * u)
    eta = min(4 * gamma * q, widest)          # the tight shift (spent = 0), below the widest: the one kept
    bound = certificate._cholesky_lower_bound(S, 0.0, widest)
    stated = -(eta + gamma / (1 - gamma) * (q * (1 + eta)) + u * (1 + eta)) * (1 + 2 * (q + 2) * u)
    assert bound is not None and bound == pytest.approx(stated, rel=1e-12, abs=0)


def test_tight_shift_loses_at_most_a_factor_2_25():
    """Section 8: "Where it succeeds, a tight shift is tried (eta = max(rgap so far / q, 4 gamma |tr S|)),
    so the reported gap loses at most a factor 2 where that succeeds". On S = I/2 (q = 300, lambda_min
    = 1/2 > 0, so the eigenvalue path reports rgap = the gap so far) with the gap so far per row just
    above 4 gamma tr S: the reported rgap = q (spent + |bound|) is 2.25 times the gap so far, since the
    bound adds gamma/(1 - gamma) tr(S + eta I) ~ eta / 4 to the shift."""
    from solvers import certificate

    _says(THEORY_8, "a tight shift is tried (eta = max(rgap so far / q, 4 gamma |tr S|)), so the reported gap "
                    "loses at most a factor 2.25 where that succeeds (to rounding;")
    q = 300
    S = np.eye(q) / 2
    u = _u()
    gamma = (q + 2) * u / (1 - (q + 2) * u)
    spent = 4 * gamma * np.trace(S) * (1 + 1e-6)       # the gap so far per row (rgap so far / q)
    widest = 0.01 * 1e-6 / q
    assert spent < widest                               # the tight shift is the one tried second
    bound = certificate._cholesky_lower_bound(S, spent, widest)
    assert bound is not None
    factor = (q * spent + q * max(-bound, 0.0)) / (q * spent)
    assert 2 < factor <= 2.25 * (1 + 1e-5)            # "to rounding"


# =============================================================================== docs/theory.md section 8a
def _unit(X):
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def test_lift_gram_and_its_derivative():
    """Section 8a, "The lift": the rows h_i(t) = (h_i, t u_i)/||.|| have Gram "G_ij(t) = (g_ij + t^2 u_i
    u_j) / sqrt((1 + t^2 u_i^2)(1 + t^2 u_j^2))" and "dG/ds at s = 0 = u u^T - (D G0 + G0 D)/2, D =
    Diag(u_i^2)"; "Several directions at once": with m directions each in a coordinate of its own the
    derivative is the sum of the m terms (cross terms second order). Explicit rows against the
    formulas (NumPy, 1e-14), the derivative against one-sided differences in s, Richardson-combined (1e-8)."""
    _says(THEORY_8, "G_ij(t) = (g_ij + t^2 u_i u_j) / sqrt((1 + t^2 u_i^2)(1 + t^2 u_j^2)), so with s = t^2",
          "dG/ds at s = 0 = u u^T - (D G0 + G0 D)/2, D = Diag(u_i^2),",
          "h_i(t) = (h_i, t u_1i, ..., t u_mi)/norm, the derivative is the sum of the m quadratic forms")
    rng = np.random.default_rng(3)
    n, d = 7, 3
    H = _unit(rng.standard_normal((n, d)))
    G0 = H @ H.T
    U = rng.standard_normal((n, 2))

    def gram(t, cols):
        X = _unit(np.hstack([H, t * U[:, cols]]))
        return X @ X.T

    u, t = U[:, 0], 0.7
    formula = (G0 + t ** 2 * np.outer(u, u)) / np.sqrt(np.outer(1 + t ** 2 * u ** 2, 1 + t ** 2 * u ** 2))
    assert np.abs(gram(t, [0]) - formula).max() < 1e-14
    h = 1e-5
    for cols in ([0], [0, 1]):
        # s = t^2 >= 0: one-sided differences in s, combined (Richardson) to an O(h^2) error
        first = (gram(math.sqrt(h), cols) - gram(0.0, cols)) / h
        second = (gram(math.sqrt(2 * h), cols) - gram(0.0, cols)) / (2 * h)
        richardson = 2 * first - second
        D = np.diag(np.sum(U[:, cols] ** 2, axis=1))
        model = sum(np.outer(U[:, c], U[:, c]) for c in cols) - (D @ G0 + G0 @ D) / 2
        assert np.abs(richardson - model).max() < 1e-8


def test_lift_slope_and_the_relu_split():
    """Section 8a: for symmetric C, "d log E / ds = <C, u u^T> - sum_i u_i^2 (C G0)_ii = u^T (C -
    Diag(y0)) u, y0_i = (C G0)_ii", i.e. <C, dG/ds>; and under ReLU, from S v = lambda v with v = v+ -
    v-, "v+^T S v+ = lambda ||v+||^2 + v+^T S v-". Random symmetric C, unit rows and a random
    symmetric S's smallest eigenvector (NumPy, 1e-12)."""
    _says(THEORY_8, "d log E / ds = <C, u u^T> - sum_i u_i^2 (C G0)_ii = u^T (C - Diag(y0)) u, y0_i = (C G0)_ii,",
          "From S v = lambda v, v+^T S v+ = lambda ||v+||^2 + v+^T S v-")
    rng = np.random.default_rng(4)
    n = 9
    H = _unit(rng.standard_normal((n, 4)))
    G0 = H @ H.T
    C = rng.standard_normal((n, n))
    C = (C + C.T) / 2
    u = rng.standard_normal(n)
    D = np.diag(u ** 2)
    inner = float(np.sum(C * (np.outer(u, u) - (D @ G0 + G0 @ D) / 2)))
    middle = float(u @ C @ u - np.sum(u ** 2 * np.diag(C @ G0)))
    y0 = np.diag(C @ G0)
    assert inner == pytest.approx(middle, abs=1e-12) and middle == pytest.approx(float(u @ (C - np.diag(y0)) @ u),
                                                                               abs=1e-12)
    lams, vecs = np.linalg.eigh(C)
    lam, v = lams[0], vecs[:, 0]
    vp, vm = np.maximum(v, 0), np.maximum(-v, 0)
    assert float(vp @ C @ vp) == pytest.approx(lam * float(vp @ vp) + float(vp @ C @ vm), abs=1e-12)


def test_measured_stall_eigenvector_is_a_unit_vector():
    """Section 8a's measured stall: "v = +0.158 on class 0, -0.632 on class 3, 0 elsewhere" for counts
    (8, 8, 2, 2): 8 rows of 0.158 and 2 of 0.632 make a unit vector (to the 3 printed decimals), and v
    is orthogonal (8 x 0.158 - 2 x 0.632 ~ 0) to the column of H along the direction classes 0 and 3
    share (1 on their rows, 0 elsewhere), as an eigenvector of a nonzero eigenvalue of a slack with
    S H = 0 (complementarity at the stall) must be."""
    found = _quote(THEORY_8, r"\(8, 8, 2, 2\) at tau 0.5, d = 4, classes 0 and 3 with cosine 1; v = \+([0-9.]+) on "
                             r"class 0, -([0-9.]+) on class 3, 0 elsewhere\)")
    a, b = float(found.group(1)), float(found.group(2))
    norm2 = 8 * a ** 2 + 2 * b ** 2
    # each printed to 3 decimals: the norm moves by at most 2 (8 a + 2 b) 5e-4
    assert abs(norm2 - 1) <= 2 * (8 * a + 2 * b) * 5e-4
    assert abs(8 * a - 2 * b) <= (8 + 2) * 5e-4


def test_staircase_constants():
    """Section 8a: "t halves from 1 until log E(t) <= log E(0) + 0.5 t^2 slope"; "at most 8; a further pair
    only where its eigenvalue is at most 1/100 of the smallest"; "until the certificate proves the point
    or 8 escapes"; numerical rank "(eigenvalues above 1e-6 of the largest)"; Lanczos "tolerance is 1e-10",
    a residual that "exceeds 1e-6 of the largest |eigenvalue| is \"not converged\""; "A smallest eigenvalue
    above -1e-9 is no negative curvature"."""
    from solvers import staircase

    _says(THEORY_8, "t halves from 1 until log E(t) <= log E(0) + 0.5 t^2 slope",
          "lift together (at most 8; a further pair only where its eigenvalue is at most 1/100 of the smallest",
          "repeat until the certificate proves the point or 8 escapes",
          "(eigenvalues above 1e-6 of the largest)", "Its tolerance is 1e-10",
          "a pair whose residual ||S v - lambda v|| exceeds 1e-6 of the largest |eigenvalue| is \"not converged\"",
          "A smallest eigenvalue above -1e-9 is no negative curvature", "(`eigsh`, which=\"SA\")")
    assert staircase.ARMIJO == 0.5
    assert staircase.MAX_LIFT == 8 and staircase.LIFT_SHARE == 1 / 100 and staircase.MAX_ESCAPES == 8
    assert staircase.RANK_TOL == 1e-6 and staircase.LANCZOS_TOL == 1e-10 and staircase.RESIDUAL_TOL == 1e-6
    assert staircase.NEGATIVE_TOL == 1e-9
    assert 'which="SA"' in inspect.getsource(staircase._lanczos_pair)


def _diagonal_slack(values):
    from solvers.certificate import Slack

    S = np.diag(np.asarray(values, dtype=float))
    return Slack(0.0, lambda V: S @ V, S, lambda V: S @ V)


@pytest.mark.parametrize("values, lifted", [
    ([-1.0, -0.02, -0.005, 0.3, 0.7], 2),            # -0.02 <= -1/100; -0.005 is not
    ([-1.0, -0.01, 0.2], 2),                          # exactly 1/100 of the smallest: "at most"
    ([-1.0] * 10 + [0.5], 8),                         # at most 8
    ([-1.0, 0.1, 0.2], 1),
    ([0.1, 0.2, 0.3], 1),                             # no negative pair: the smallest alone
])
def test_which_eigenpairs_lift_together(values, lifted):
    """Section 8a: "the negative eigenpairs of a dense slack lift together (at most 8; a further pair only
    where its eigenvalue is at most 1/100 of the smallest...)": solvers.staircase's choice on diagonal
    slacks whose spectrum is known."""
    from solvers.staircase import MAX_LIFT, smallest_eigenpairs

    _says(THEORY_8, "On the sphere the negative eigenpairs of a dense slack lift together (at most 8;")
    rng = np.random.default_rng(0)
    order = rng.permutation(len(values))
    lams, _, matvecs, converged = smallest_eigenpairs(_diagonal_slack(np.array(values)[order]), len(values),
                                                      most=MAX_LIFT)
    assert converged and matvecs == 0 and len(lams) == lifted
    assert np.allclose(lams, np.sort(values)[:lifted])


def test_numerical_rank_counts_eigenvalues_above_1e_6_of_the_largest():
    """Section 8a: "its Gram's numerical rank (eigenvalues above 1e-6 of the largest)": rows with Gram
    eigenvalues 3, 3 x 2e-6 and 3 x 0.5e-6 have numerical rank 2 (NumPy builds them)."""
    from solvers.staircase import numerical_rank

    _says(THEORY_8, "where its Gram's numerical rank (eigenvalues above 1e-6 of the largest) is at most d")
    Q, _ = np.linalg.qr(np.random.default_rng(1).standard_normal((6, 3)))
    H = Q * np.sqrt([3.0, 3 * 2e-6, 3 * 0.5e-6])
    assert np.allclose(np.sort(np.linalg.eigvalsh(H @ H.T))[-3:], [1.5e-6, 6e-6, 3.0])
    assert numerical_rank(H) == 2


def test_staircase_slack_is_dense_up_to_1500_rows():
    """Section 8a, "The eigensolver": "Up to 1500 rows dense `eigh`; beyond, Lanczos": the staircase's
    slack holds its dense matrix at 1500 rows (full batch) and none at 1501 (Lanczos then)."""
    from solvers.certificate import certificate_slack

    _says(THEORY_8, "**The eigensolver.** Up to 1500 rows dense `eigh`; beyond, Lanczos")
    problem, H = _two_classes([750, 750])
    assert certificate_slack(problem, H).dense is not None
    problem, H = _two_classes([751, 750])
    assert certificate_slack(problem, H).dense is None
