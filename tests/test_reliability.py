"""The command's promise under the cases a fresh hunt found (issue "Reliability, second round"): bad
input is one line and exit 2 before any work; an unproved result exits 1; ``--json`` always prints a
JSON object; nothing the user had is destroyed (a full disk, a signal)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import mpmath
import pytest

from ufm.app.cli import main

UFM = [sys.executable, "-m", "ufm"]


def _ufm(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*UFM, *args], capture_output=True, text=True, timeout=600, **kwargs)


# ------------------------------------------------------------------ bad input: one line, exit 2
@pytest.mark.parametrize("argv, words", [
    # an option that does not apply
    (["solve", "--loss", "ce", "--classifier", "etf", "--chunk-size", "10"], "--chunk-size does not apply to --loss ce"),
    (["solve", "--method", "convex", "--seed", "3"], "--seed does not apply to --method convex"),
    # a range whose stop would be dropped
    (["sweep", "temperature", "--taus", "1:2:1"], "a range of 1 point would drop its stop 2"),
    # a bound printed rounded contradicted the value
    (["solve", "--tau", "0.00099999999"], "0.00099999999 is outside the allowed range [0.001, 100]"),
    # negative values: argparse read them as options ("expected one argument")
    (["solve", "--counts", "-3,3"], "a class with -3 examples is no class"),
    (["sweep", "temperature", "--taus", "-1:1:3"], "-1 is outside the allowed range"),
    # the landscape's starts run past the largest seed: refused before the work
    (["landscape", "--seed", "4294967295"], "runs past the largest seed"),
    # SCL needs a positive pair (cross-entropy does not: see below)
    (["solve", "--counts", "17,1,18,16"], "a class with 1 example(s) has no positive pair"),
])
def test_bad_input_is_one_line_and_exit_2_before_any_work(argv, words, capsys):
    assert main(argv, validate_only=True) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and words in err, err


def test_cross_entropy_takes_a_class_of_one(capsys):
    """CE is defined with a single example in a class (no positive pair needed): solved, not refused."""
    assert main(["solve", "--counts", "17,1,18,16", "--loss", "ce", "--classifier", "etf", "--no-progress",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["counts"] == [17, 1, 18, 16] and report["status"] in ("optimal", "converged")


# ------------------------------------------------------------------ computed results
def test_landscape_at_tiny_tau_skips_the_hessian_slice_with_a_note_instead_of_failing():
    """At tau = 1e-3 the Hessian at the minimum is 0 to float64 (curvature ~ e^{-1/tau}): there are no
    Hessian directions to slice along (an IndexError before)."""
    from theory_checks.landscape import landscape_data
    from ufm import Problem

    data = landscape_data(Problem.from_counts([3, 3], tau=0.001), starts=2, slice_directions="hessian",
                          resolution=5)
    assert data["slice"] is None
    assert any("no Hessian directions" in note and "--directions random" in note for note in data["notes"])


def test_landscape_that_proves_no_start_exits_1_and_says_why(capsys, monkeypatch):
    """Reshuffled batches without ReLU: no start is proved (it exited 0 with gaps 1.2-2.4). Such starts
    run to the epoch budget whatever it is; 300 epochs instead of 5000 keep the test short."""
    import solvers.gd

    monkeypatch.setattr(solvers.gd, "DEFAULT_STEPS", 300)
    code = main(["landscape", "--counts", "4,4,2", "--batching", "random", "--batch-size", "4", "--starts", "2",
                 "--resolution", "3", "--no-progress", "--json"])
    out, err = capsys.readouterr()
    assert code == 1, err
    assert "no start was proved optimal (0 certified optimal" in err and "--relu" in err
    assert json.loads(out)["optimal"] == 0


def test_small_tau_prints_no_overflow_warning(capsys):
    assert main(["sweep", "batching", "--counts", "4,4", "--batch-sizes", "3", "--tau", "0.001", "--no-progress",
                 "--json"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_an_excess_below_float64_is_printed_in_full_and_the_gap_is_its_fraction(capsys):
    """E = e^-998 underflows a float64 (it printed 0.0 beside a relative gap of 3.6e-11): the JSON writes
    it as a number literal in full, and gap / excess is the relative gap."""
    code = main(["solve", "--counts", "6,2", "--tau", "0.001", "--batching", "random", "--batch-size", "4",
                 "--relu", "--steps", "200", "--json", "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 0 and "warning" not in err
    report = json.loads(out, parse_float=Decimal)
    excess, cert = report["excess"], report["certificate"]
    assert report["log_excess"] < -745 and excess > 0
    with mpmath.workdps(40):      # independent of ufm.lognumber: exp of the printed logarithm
        expected = mpmath.exp(mpmath.mpf(str(report["log_excess"])))
        assert abs(mpmath.mpf(str(excess)) / expected - 1) < 1e-12
        ratio = mpmath.mpf(str(cert["gap"])) / mpmath.mpf(str(excess))
        assert abs(ratio / mpmath.mpf(str(cert["relative_gap"])) - 1) < 1e-9
        assert cert["excess_lower_bound"] <= excess


def test_lognumber_decimal_against_mpmath():
    from ufm.lognumber import LogNumber, exact

    for log in (-745.5, -997.9205584583203, -1e4 - 0.123, -709.0):
        with mpmath.workdps(40):
            want = mpmath.exp(mpmath.mpf(log))
            got = mpmath.mpf(LogNumber(log).decimal())
            assert abs(got / want - 1) < 1e-12, log
    assert exact(1e-300, -690.8) == 1e-300          # a normal float64 is kept
    assert isinstance(exact(0.0, -800.0), LogNumber) and exact(0.0, float("-inf")) == 0.0


def test_a_stationary_solve_names_the_way_out():
    import argparse

    from ufm import Problem
    from ufm.app.commands.solve import _way_out

    args = argparse.Namespace(method="gd", starts=None)
    problem = Problem.from_counts([10] * 4, relu=True, dim=4)
    hint = _way_out(args, problem, "stationary")
    assert "--starts 8" in hint and "--dim" in hint and "--method reduced" in hint
    assert _way_out(args, problem, "optimal") == ""


# ------------------------------------------------------------------ faults: a full disk, signals
def _ufm_limited(args: list[str], limit: int) -> subprocess.CompletedProcess:
    """``ufm args`` in a child whose files may not grow past ``limit`` bytes (RLIMIT_FSIZE: a write past
    it fails with EFBIG, as one on a full disk fails with ENOSPC). The limit is set by a small Python
    that then execs the command (no preexec_fn: forking this multithreaded test process is unsafe)."""
    limited = ("import os, resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]),) * 2); "
               "os.execv(sys.executable, [sys.executable, '-m', 'ufm', *sys.argv[2:]])")
    return subprocess.run([sys.executable, "-c", limited, str(limit), *args], capture_output=True, text=True,
                          timeout=600, env=dict(os.environ, UFM_NO_CACHE="1"))


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("as_json", [False, True])
def test_a_figure_that_does_not_fit_leaves_the_old_file_and_no_partial_one(tmp_path, as_json):
    """A write that fails after the work (here: a file-size limit, as a full disk would) keeps the
    existing file byte for byte, leaves no temporary file, exits 1 with the path and the fix, and
    with --json still prints the computed numbers."""
    figure = tmp_path / "figure.png"
    figure.write_bytes(os.urandom(20000))
    before = _digest(figure)
    done = _ufm_limited(["sweep", "batching", "--counts", "4,4", "--batch-sizes", "3", "--no-progress", "--out",
                         str(figure), *(["--json"] if as_json else [])], 15000)     # a 20 KB file cannot be written
    assert done.returncode == 1, done.stderr
    assert _digest(figure) == before and sorted(p.name for p in tmp_path.iterdir()) == ["figure.png"]
    line = done.stderr.strip().splitlines()[-1]
    assert str(figure) in line and "unchanged" in line and "write elsewhere" in line
    if as_json:
        report = json.loads(done.stdout)
        assert report["figure"] is None and "was not written" in report["error"]
        assert report["series"] and report["x"] == [3.0]


def test_a_report_that_does_not_fit_leaves_the_old_file_and_keeps_the_numbers(tmp_path):
    saved = tmp_path / "report.json"
    saved.write_bytes(b"x" * 20000)
    before = _digest(saved)
    done = _ufm_limited(["verify", "--only", "ib-critical-betas", "--no-progress", "--save", str(saved), "--json"],
                        500)                                        # the report (about 1 KB) cannot be written
    assert done.returncode == 1, done.stderr
    assert _digest(saved) == before and [p.name for p in tmp_path.iterdir()] == ["report.json"]
    report = json.loads(done.stdout)
    assert report["checks"][0]["passed"] and "report.json was not written" in report["error"]
    assert "report.json was not written" in done.stderr.strip().splitlines()[-1]


def test_atomic_write_keeps_the_old_file_when_the_writer_fails(tmp_path):
    from ufm.atomic import write_atomically
    from ufm.errors import OutputError

    target = tmp_path / "kept.txt"
    target.write_text("old")

    def failing(out):
        out.write(b"new, half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OutputError, match="kept.txt was not written .No space left on device.*unchanged"):
        write_atomically(target, failing)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["kept.txt"]
    write_atomically(target, lambda out: out.write(b"new"))
    assert target.read_text() == "new" and oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
@pytest.mark.parametrize("as_json", [False, True])
def test_a_signal_ends_the_command_at_once_with_one_line(sig, code, as_json, tmp_path):
    """Ctrl-C or SIGTERM in the middle of a solve (a real signal to a child process, sent once the solve
    has started): exit 130 / 143 within seconds, one line on stderr, with --json a JSON object that
    says what was interrupted; no crash (a segmentation fault followed Ctrl-C in 3 of 4 tries)."""
    child = subprocess.Popen([*UFM, "solve", "--counts", "1500,1500", *(["--json"] if as_json else [])],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=dict(os.environ, UFM_CACHE_DIR=str(tmp_path)))
    line = ""
    while "solve:" not in line:               # the progress line: the solve has started
        line = child.stderr.readline()
        assert line or child.poll() is None, "the command ended before the signal"
    time.sleep(0.5)
    sent = time.perf_counter()
    child.send_signal(sig)
    out, err = child.communicate(timeout=60)
    assert child.returncode == code and time.perf_counter() - sent < 10
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "interrupted by" in lines[0] and "startup" in lines[0], err
    if as_json:
        report = json.loads(out)
        assert report["exit_code"] == code and report["interrupted"].startswith(signal.Signals(sig).name)
        assert report["finished"] == ["startup"]
    else:
        assert out == ""


def test_convex_below_the_relaxations_rank_reports_the_geometry_of_its_own_embeddings():
    """At d = 2 < rank 3 the relaxation is not tight: the class-mean Gram reported beside the loss of
    the rank-2 embeddings is theirs (it was the relaxation's ETF, cosines -1/3)."""
    import numpy as np

    from solvers.convex import solve_relaxation
    from ufm import Problem

    problem = Problem.from_counts([5, 5, 5, 5], tau=1.0, dim=2)
    solution = solve_relaxation(problem)
    assert solution.status != "optimal" and solution.info.tight is False
    H, labels = solution.embeddings, problem.labels
    means = np.array([H[labels == c].mean(axis=0) for c in range(4)])
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    np.testing.assert_allclose(solution.class_mean_gram, means @ means.T, atol=1e-9)


# ------------------------------------------------------------------ the API is as strict as the command
def _api_cases():
    import numpy as np

    from solvers import convex, gd
    from theory_checks.predictions import predict
    from ufm import Problem

    P = Problem.from_counts([3, 3], tau=0.5)
    return {
        "predict(None)": lambda: predict(None),
        "solve_reduced(None)": lambda: convex.solve_reduced(None),
        "solve_relaxation('x')": lambda: convex.solve_relaxation("x"),
        "solve_relaxation gap_tol 2": lambda: convex.solve_relaxation(P, gap_tol=2),
        "dtype 'foo'": lambda: gd.solve(P, dtype="foo"),
        "solve_batched seed 'a'": lambda: gd.solve_batched([P], seed="a"),
        "solve_batched one problem": lambda: gd.solve_batched(P),
        "unknown solver_options": lambda: convex.solve_relaxation(P, solver_options={"bogus": 1}),
        "counts np.array(3)": lambda: Problem.from_counts(np.array(3)),
        "counts a dict": lambda: Problem.from_counts({0: 3, 1: 3}),
        "counts a set": lambda: Problem.from_counts({3, 4}),
        "with_(bogus=1)": lambda: P.with_(bogus=1),
        "steps=True": lambda: gd.solve(P, steps=True),
        "certify='no'": lambda: gd.solve(P, certify="no"),
        "tol=inf": lambda: gd.solve(P, tol=float("inf")),
        "seed=1.5": lambda: gd.solve(P, seed=1.5),
        "NaN prototypes": lambda: __import__("ufm").scl_loss(np.eye(2)[[0, 0, 1, 1]], [0, 0, 1, 1], 0.5,
                                                             prototypes=np.full((2, 2), np.nan),
                                                             prototype_labels=[0, 1]),
        "rows of norm 1e200": lambda: __import__("ufm").scl_loss(1e200 * np.eye(2)[[0, 0, 1, 1]], [0, 0, 1, 1], 0.5),
    }


@pytest.mark.parametrize("name", list(_api_cases()))
def test_api_refuses_with_one_problem_error_before_any_work(name):
    from ufm import ProblemError

    with pytest.raises(ProblemError) as refused:
        _api_cases()[name]()
    assert "\n" not in str(refused.value)


def test_api_numbers_from_numpy_stay_json_and_a_stray_label_costs_nothing():
    import numpy as np

    import ufm
    from reference import scl_loop

    P = ufm.Problem.from_counts([3, 3]).with_(tau=np.float64(0.3), dim=np.int64(3), seed=np.int32(2))
    assert json.loads(json.dumps(P.describe()))["tau"] == 0.3
    H = np.random.default_rng(0).standard_normal((4, 2))
    labels = [0, 0, 10 ** 9, 10 ** 9]          # sized every per-class array by 10**9 before (8 GB)
    assert float(ufm.scl_loss(H, labels, 0.5)) == pytest.approx(scl_loop(H, labels, 0.5), rel=1e-12)


def test_within_class_spread_sees_what_nc1_does_not():
    """Spread along a direction the class means do not span: NC1 ~ 0 (it projects on the means' span),
    the within-class spread is 1 - the mean within-class cosine (a loop over pairs, self included)."""
    import numpy as np

    from ufm.geometry import nc1, within_class_spread

    t = 0.3
    rows = []
    for c in range(2):
        for sign in (1, -1):
            h = np.zeros(3)
            h[c], h[2] = np.cos(t), sign * np.sin(t)
            rows.append(h)
    H, labels = np.array(rows), np.array([0, 0, 1, 1])
    assert nc1(H, labels)[0] < 1e-20
    cosines = [H[i] @ H[j] for c in range(2) for i in range(4) for j in range(4) if labels[i] == labels[j] == c]
    assert within_class_spread(H, labels) == pytest.approx(1 - np.mean(cosines), abs=1e-15)
    assert within_class_spread(H, labels) == pytest.approx(np.sin(t) ** 2, abs=1e-15)
    assert within_class_spread(np.repeat(np.eye(2), 3, axis=0), np.repeat([0, 1], 3)) == 0.0


def test_hessian_legend_states_the_round_off_floor_not_a_negative_curvature():
    from ufm.app.plots import spectrum_label

    assert spectrum_label("minimum", [-2.7e-10, 0.4, 3.0]) == "minimum (smallest 0 to round-off: |value| < 3e-08)"
    assert spectrum_label("saddle", [-0.31, 0.4, 3.0]) == "saddle (smallest -0.31)"


def test_a_batches_file_with_too_many_batches_is_refused_before_it_is_parsed(tmp_path, capsys, monkeypatch):
    """Its lists are counted in the text (a 29 MB file took 17 s and 647 MB to parse before its size was
    refused); json.loads is never called."""
    import ufm.batching

    path = tmp_path / "batches.json"
    path.write_text("[" + ",".join(["[0,1,2,3,4,5,6,7]"] * 100_001) + "]")
    monkeypatch.setattr(ufm.batching.json, "loads", lambda *a, **k: pytest.fail("the file was parsed"))
    assert main(["solve", "--counts", "4,4", "--batches-file", str(path)], validate_only=True) == 2
    assert "lists 100001 batches, more than 100000" in capsys.readouterr().err


def test_a_batches_file_too_large_to_parse_in_memory_is_refused_first(tmp_path, capsys, monkeypatch):
    from solvers import sizing

    path = tmp_path / "batches.json"
    path.write_text("[[0, 1, 2, 3], [4, 5, 6, 7]]")
    monkeypatch.setattr(sizing, "memory_budget", lambda: 100)        # a machine with 100 bytes to spare
    assert main(["solve", "--counts", "4,4", "--batches-file", str(path)], validate_only=True) == 2
    assert "reading the batches file" in capsys.readouterr().err


def test_an_output_disk_without_room_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    """docs/cli.md: the output's directory must hold 8 MiB free before the work starts."""
    import os as os_module
    from types import SimpleNamespace

    from ufm.app import cli_values

    assert cli_values.MIN_FREE_BYTES == 8 * 2 ** 20
    assert "hold at least 8 MiB free" in " ".join((Path(__file__).resolve().parents[1] / "docs" / "cli.md")
                                                  .read_text().split())
    monkeypatch.setattr(os_module, "statvfs", lambda path: SimpleNamespace(f_bavail=1024, f_frsize=4096))
    assert main(["sweep", "batching", "--counts", "4,4", "--out", str(tmp_path / "s.png")], validate_only=True) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "has 4.0 MiB free" in err and "write elsewhere" in err


def test_an_interrupted_verify_says_which_checks_had_finished(tmp_path):
    """Ctrl-C once `ufm verify --json` has finished two checks (its plain progress lines off a terminal
    say so): the JSON's ``finished`` lists the startup phase, then exactly the checks whose progress
    line had been printed, in the catalogue's order; the stderr line counts them."""
    from theory_checks.catalogue import CATALOGUE

    child = subprocess.Popen([*UFM, "verify", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=dict(os.environ, UFM_CACHE_DIR=str(tmp_path)))
    seen = []
    while len(seen) < 2:
        line = child.stderr.readline()
        assert line or child.poll() is None, "verify ended before two checks"
        if line.startswith("verify "):
            seen.append(line.split()[-1])
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 130
    report = json.loads(out)
    names = [c.name for c in CATALOGUE]
    finished = report["finished"]
    assert finished[0] == "startup" and finished[1:3] == names[:2] == seen
    assert finished[1:] == names[:len(finished) - 1]          # at most the check running at the signal more
    assert f"{len(finished) - 1} finished items" in err.strip().splitlines()[-1]
    cli_doc = " ".join((Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text().split())
    assert f'e.g. `["startup", "{names[0]}", ...]`' in cli_doc         # its example is the catalogue's order


@pytest.mark.parametrize("kind", ["figure", "json"])
def test_a_file_larger_than_the_free_space_is_refused_before_it_is_written(kind, tmp_path, monkeypatch):
    """docs/cli.md: "each file is made in memory first, so its exact size is checked against the free
    space before it is written": with 10 KiB free a figure (made in memory, about 50 KiB) or a JSON
    report of 1 MiB is refused with the path, the size it needs and the fix; the file that was there
    is unchanged and nothing else is left in the directory."""
    import ufm.atomic
    from ufm.errors import OutputError

    assert ("each file is made in memory first, so its exact size is checked against the free space before it "
            "is written") in " ".join((Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text().split())
    monkeypatch.setattr(ufm.atomic, "free_bytes", lambda directory: 10 * 2 ** 10)
    target = tmp_path / ("old.png" if kind == "figure" else "old.json")
    target.write_bytes(b"the old file")
    with pytest.raises(OutputError, match=r"old\.(png|json) was not written: it needs [0-9.]+ MiB and its disk "
                                          r"has 0\.01 MiB free.*unchanged.*write elsewhere"):
        if kind == "figure":
            from ufm.app import plots
            fig, axes = plots.figure()
            axes[0, 0].plot([i % 7 for i in range(2000)])
            plots.save(fig, target)
        else:
            ufm.atomic.write_text_atomically(target, "[" + "0.1234567, " * 100000 + "0]")
    assert target.read_bytes() == b"the old file" and [p.name for p in tmp_path.iterdir()] == [target.name]
