"""Fuzz tests: generated bad and edge input never gives a traceback or a silent result.

- The ``ufm`` command: hypothesis builds argument lists from every command's options, tricky values
  (empty, negative, huge, non-finite, fractional, paths that are directories or missing) and unknown
  options, and calls ``main()`` in process. With ``validate_only=True`` (the checks every real run
  makes first, then stop) each list must end in exit 0 with nothing on stderr, or exit 2 with one
  line ``ufm <command>: error: ...``; 600 lists in the default run, and 300 more from the second hunt's
  values (negative lists and ranges, dropped range stops, rounded bounds, the largest seed, a class of
  one under CE, huge chunk sizes, a file of too many batches). A smaller set of well-formed,
  small lists runs for real: exit 0, 1 or 2, never a traceback, and ``--json`` output parses.
- ``Problem`` constructors and ``scl_loss``: arbitrary arguments give a result or a ``ProblemError``,
  never another exception; every finite loss matches the brute-force loop of tests/reference.py.
- The solvers' public functions (gd.solve, solve_many, solve_batched, convex.solve_relaxation,
  solve_reduced, certify_embeddings, predict): 120 generated calls end in a result with a known status
  or one ``ProblemError`` line.

The examples are derandomized: CI runs the same ones as a developer's machine.
"""

import contextlib
import io
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from reference import scl_loop
from ufm import Batching, Problem, ProblemError, Prototypes, scl_loss
from ufm.app.cli import main

COMMANDS = [["solve"], ["predict"], ["batches", "check"], ["landscape"], ["sweep", "imbalance"],
            ["sweep", "temperature"], ["sweep", "batching"], ["verify"], ["explore"]]
PROBLEM_OPTIONS = ["--counts", "--classes", "--imbalance", "--n-max", "--ratio", "--minority-fraction", "--tau",
                   "--dim", "--batching", "--batch-size", "--batches-file", "--prototypes",
                   "--prototypes-per-class", "--prototype-anchors", "--seed"]
OPTIONS = PROBLEM_OPTIONS + [
    "--method", "--steps", "--lr", "--tol", "--starts", "--gap-tol", "--chunk-size", "--only", "--save",
    "--ratios", "--taus", "--batch-sizes", "--schemes", "--out", "--directions", "--resolution", "--radius",
    "--bogus"]
FLAGS = ["--relu", "--json", "--float32", "--no-certify", "--quick", "--no-progress", "--compare-relu",
         "--check-gd", "--help", "--version"]
VALUES = ["", "0", "-1", "1", "2", "3", "4", "8", "16", "0.5", "2.7", "1e-300", "1e300", "nan", "inf", "-inf",
          "1180591620717411303424", "1000000000", "4,4", "4,1", "8,8,2,2", "1,2,4", "1,1e6", "1:16:0",
          "1:4:3", "1:x:3", ",", "4,,4", "abc", "etf", "of", "none", "random", "binding", "balanced", "full",
          "step", "long-tail", "gd", "convex", "reduced", "yes", "no", "hessian", "balanced-etf",
          "fixed-random,binding", "bogus", "/", "/nonexistent/x.png", "{tmp}/fig.png", "{tmp}/fig.txt",
          "{tmp}/report.json", "{tmp}/batches.json", "{tmp}/bad.json", "{tmp}", "{tmp}/" + "x" * 300 + ".png",
          "100000", "1000001"]


#: The second hunt's values and options (issue "Reliability, second round"): negative lists and ranges
#: that argparse took for options, a range whose stop was dropped, bounds printed rounded, the largest
#: seed, a class of one under CE, huge chunk sizes, a tiny tau, a file with too many batches.
NEW_VALUES = ["-3,3", "-1:1:3", "-0.5", "1:2:1", "2:2:1", "0.00099999999", "0.001", "100.0000001", "4294967295",
              "4294967294", "17,1,18,16", "5,5,5,5", "6,2", "1e20", "100000000000000000000", "0.192", "ce", "scl",
              "learned", "0.01", "-1e-9", "3,3", "4,4,2", "{tmp}/many.json", "{tmp}/dir.png/"]
NEW_OPTIONS = ["--loss", "--classifier", "--weight-decay", "--counts", "--tau", "--taus", "--ratios", "--seed",
               "--chunk-size", "--batch-size", "--batches-file", "--dim", "--method", "--starts", "--out", "--save"]


def _argv_strategy(options=OPTIONS, values=VALUES):
    option = st.one_of(st.tuples(st.sampled_from(options), st.sampled_from(values)),
                       st.tuples(st.sampled_from(FLAGS)))
    return st.tuples(st.sampled_from(COMMANDS), st.lists(option, max_size=6))


def _call(argv, validate_only):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv, validate_only=validate_only)
    return code, out.getvalue(), err.getvalue()


def _check_error(code, err):
    assert "Traceback" not in err and "internal error" not in err, err
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("ufm") and ": error: " in lines[0], err


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    (tmp / "batches.json").write_text(json.dumps([[0, 1, 2, 3], [4, 5, 6, 7]]))
    (tmp / "bad.json").write_text("[[0, 1], [2, \"x\"]")
    (tmp / "many.json").write_text("[" + ",".join(["[0,1]"] * 100_001) + "]")
    return tmp


def _render(command, options, tmp) -> list[str]:
    argv = list(command)
    for item in options:
        argv += [part.replace("{tmp}", str(tmp)) for part in item]
    return argv


@settings(max_examples=600, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(case=_argv_strategy())
def test_cli_fuzz_checks_never_trace_back(case, scratch):
    argv = _render(*case, scratch)
    code, out, err = _call(argv, validate_only=True)
    event(f"exit {code}")              # --hypothesis-show-statistics: how many lists were well formed
    _check_error(code, err)
    assert code in (0, 2), (argv, code, err)
    if code == 0:
        assert err == "" or "--help" in argv or "--version" in argv, (argv, err)
    elif "--json" in argv:
        assert json.loads(out.strip().splitlines()[-1])["exit_code"] == 2


# well-formed small runs, executed for real
SMALL = st.tuples(
    st.sampled_from([["predict"], ["batches", "check"], ["solve", "--method", "reduced"],
                     ["solve", "--steps", "200"]]),
    st.sampled_from(["3,3", "4,4,2", "6,3,2", "2,2,2"]),
    st.sampled_from([[], ["--relu"], ["--tau", "0.1"], ["--tau", "2"], ["--batching", "random", "--batch-size", "3"],
                     ["--prototypes", "etf"], ["--dim", "2"]]),
    st.booleans())


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(case=_argv_strategy(NEW_OPTIONS, NEW_VALUES + VALUES[:20]))
def test_cli_fuzz_second_hunt_never_traces_back(case, scratch):
    """300 more lists built from the second hunt's values: the same promise (exit 0 with nothing on
    stderr, or one error line with exit 2), before any work."""
    argv = _render(*case, scratch)
    code, out, err = _call(argv, validate_only=True)
    _check_error(code, err)
    assert code in (0, 2), (argv, code, err)
    if code == 0 and "--help" not in argv and "--version" not in argv:
        assert err == "", (argv, err)


@settings(max_examples=14, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(case=SMALL)
def test_cli_fuzz_small_runs(case):
    """A real run agrees with its checks: where they pass (exit 0) it computes and exits 0 or 1 (a
    status the certificate does not prove), never 2; where they refuse, it refuses with the same line."""
    command, counts, extra, as_json = case
    argv = command + ["--counts", counts] + extra + (["--json"] if as_json else [])
    checked, _, check_err = _call(argv, validate_only=True)
    code, out, err = _call(argv, validate_only=False)
    _check_error(code, err)
    if checked == 2:
        assert code == 2 and err == check_err, (argv, err, check_err)
        return
    assert code in (0, 1), (argv, code, err)
    if as_json:
        assert isinstance(json.loads(out), dict)
    if code == 1:      # a solver that did not prove its result says which status it reached
        assert "status" in out


# ---------------------------------------------------------------- the Python API
ANY = st.one_of(st.none(), st.booleans(), st.integers(-3, 10), st.floats(allow_nan=True, allow_infinity=True),
                st.text(max_size=3), st.lists(st.integers(-2, 6), max_size=4))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(counts=st.one_of(ANY, st.lists(st.one_of(st.integers(-1, 5), st.floats(0, 5), st.text(max_size=2)),
                                      max_size=4)),
       tau=ANY, dim=ANY, seed=ANY, relu=ANY,
       batching=st.one_of(st.none(), st.sampled_from(["random", "full", 3]),
                          st.builds(Batching, st.sampled_from(["full", "random", "binding", "bogus"]),
                                    st.one_of(st.none(), st.integers(-1, 6), st.floats(0, 6)))),
       prototypes=st.one_of(st.none(), st.just("etf"),
                            st.builds(Prototypes, st.sampled_from(["etf", "of", "x"]), st.integers(0, 2))))
def test_problem_constructor_fuzz(counts, tau, dim, seed, relu, batching, prototypes):
    try:
        problem = Problem.from_counts(counts, tau=tau, dim=dim, seed=seed, relu=relu, batching=batching,
                                      prototypes=prototypes)
    except ProblemError as err:
        assert "\n" not in str(err)
        return
    assert all(isinstance(c, int) and c >= 2 for c in problem.counts) and problem.k >= 2
    assert isinstance(problem.dim, int) and problem.dim >= 1 and 0 < problem.tau < np.inf


@settings(max_examples=200, deadline=None, derandomize=True)
@given(k=ANY, n_max=ANY, ratio=ANY, fraction=ANY, profile=st.sampled_from(["step", "long-tail", "balanced", "x"]))
def test_profile_constructor_fuzz(k, n_max, ratio, fraction, profile):
    try:
        problem = Problem.from_profile(profile, k, n_max, ratio, fraction)
    except ProblemError:
        return
    counts = problem.counts
    assert max(counts) == n_max and max(counts) / min(counts) == pytest.approx(ratio, rel=1e-9)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(n=st.integers(1, 6), d=st.integers(1, 3), seed=st.integers(0, 10 ** 6),
       bad_entry=st.sampled_from([None, np.nan, np.inf]),
       labels_shift=st.integers(-1, 1),
       batches=st.one_of(st.none(), st.lists(st.lists(st.integers(-2, 7), max_size=5), max_size=3)),
       tau=st.one_of(st.floats(-1, 2), st.just(float("nan"))))
def test_scl_loss_fuzz(n, d, seed, bad_entry, labels_shift, batches, tau):
    rng = np.random.default_rng(seed)
    H = rng.normal(size=(n, d))
    H /= np.linalg.norm(H, axis=1, keepdims=True)
    if bad_entry is not None:
        H[rng.integers(n), rng.integers(d)] = bad_entry
    labels = rng.integers(0, 2, size=n + labels_shift)
    try:
        value = float(scl_loss(H, labels, tau, batches))
    except ProblemError as err:
        assert "\n" not in str(err)
        return
    assert np.isfinite(value) and bad_entry is None and labels_shift == 0 and tau > 0
    assert value == pytest.approx(scl_loop(H, labels, tau, batches), rel=1e-9, abs=1e-12)


# ---------------------------------------------------------------- the solver APIs
SOLVER_CALLS = ["solve", "solve_many", "solve_batched", "solve_relaxation", "solve_reduced", "certify_embeddings",
                "predict"]


@settings(max_examples=120, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(call=st.sampled_from(SOLVER_CALLS), problem=st.one_of(st.just("P"), ANY), steps=st.one_of(st.none(), ANY),
       seed=st.one_of(st.none(), ANY), tol=st.one_of(st.none(), ANY), certify=st.one_of(st.just(True), ANY),
       gap_tol=st.one_of(st.just(1e-6), ANY), dtype=st.one_of(st.sampled_from(["float64", "float32"]), ANY))
def test_solver_api_fuzz(call, problem, steps, seed, tol, certify, gap_tol, dtype):
    """Any argument to a solver's public function: a result with a known status, or one ProblemError
    line before any work; never another exception."""
    from solvers import convex, gd
    from solvers.certificate import certify_embeddings
    from theory_checks.predictions import predict

    P = Problem.from_counts([2, 2], tau=0.5) if problem == "P" else problem
    descent = dict(steps=steps, tol=tol, certify=certify, gap_tol=gap_tol, dtype=dtype)
    calls = {
        "solve": lambda: gd.solve(P, seed=seed, **descent),
        "solve_many": lambda: gd.solve_many(P, [0, 1] if seed is None else [seed], **descent),
        "solve_batched": lambda: gd.solve_batched([P], seed=seed, **descent),
        "solve_relaxation": lambda: convex.solve_relaxation(P, gap_tol=gap_tol),
        "solve_reduced": lambda: convex.solve_reduced(P, gap_tol=gap_tol),
        "certify_embeddings": lambda: certify_embeddings(P, np.repeat(np.eye(2), 2, axis=0), gap_tol),
        "predict": lambda: predict(P),
    }
    try:
        result = calls[call]()
    except ProblemError as err:
        assert "\n" not in str(err)
        event(f"{call}: refused")
        return
    event(f"{call}: ran")
    results = result if isinstance(result, list) else [result]
    for r in results:
        status = getattr(r, "status", None)
        assert status is None or status in ("optimal", "stationary", "converged", "not_converged",
                                            "optimal_inaccurate", "error")
        if hasattr(r, "loss"):
            assert r.loss is None or np.isfinite(r.loss) or status == "error"
