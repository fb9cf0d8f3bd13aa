"""The ``ufm`` command: contract fields of docs/cli.md and one-line errors."""

import dataclasses
import json
import subprocess
import sys

import pytest

from ufm.app.cli import main


def one_line_error(err: str) -> bool:
    """The bad-input convention: one line ``ufm <command>: error: <what and the fix>``."""
    return err.startswith("ufm") and ": error: " in err and "\n" not in err and "Traceback" not in err


def run_json(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_batches_check_counterexample(capsys, tmp_path):
    path = tmp_path / "b.json"
    path.write_text(json.dumps([list(range(0, 8)), list(range(8, 16))]))
    out = run_json(capsys, ["batches", "check", "--counts", "4,4,4,4", "--batches-file", str(path), "--json"])
    assert out["neural_collapse"] is True and out["orthogonal_frame"] is False
    assert [0, 3] in out["violations"]["unmet_pairs"]


def test_batches_check_binding(capsys):
    out = run_json(capsys, ["batches", "check", "--classes", "4", "--n-max", "6", "--batching", "binding",
                            "--batch-size", "8", "--json"])
    assert out["orthogonal_frame"] is True and out["violations"]["unmet_pairs"] == []


def test_batches_check_table(capsys):
    assert main(["batches", "check", "--counts", "4,4,4", "--batching", "random", "--batch-size", "3"]) == 0
    text = capsys.readouterr().out
    assert "orthogonal frame guaranteed (ReLU): no" in text


@pytest.mark.parametrize("argv,match", [
    (["--counts", "4,1"], "no positive pair"),
    (["--counts", "4,4", "--seed", "-1"], "--seed"),
    (["--counts", "4,4,x"], "whole number"),
    (["--counts", "4,4,4", "--batching", "binding", "--batch-size", "3"], "must exceed k = 3"),
    (["--counts", "4,4", "--tau", "0.5"], "--tau does not apply"),
    (["--counts", "4,4", "--batching", "random"], "--batch-size"),
    (["--counts", "4,4", "--batches-file", "/nonexistent.json"], "does not exist"),
])
def test_bad_input_one_line(capsys, argv, match):
    assert main(["batches", "check", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert one_line_error(err) and match in err


def test_python_dash_m_entry_point():
    proc = subprocess.run([sys.executable, "-m", "ufm", "batches", "check", "--counts", "3,1"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert one_line_error(proc.stderr.strip())


SOLVE_FIELDS = {"method", "counts", "tau", "relu", "dim", "loss", "excess", "lower_bound", "certificate",
                "class_mean_gram", "nc1", "distance", "predicted", "status", "iterations", "seconds"}


@pytest.mark.parametrize("method", ["gd", "convex", "reduced"])
def test_solve_json_contract(capsys, method):
    from reference import orthogonal_frame_loss
    out = run_json(capsys, ["solve", "--counts", "6,3,2", "--relu", "--tau", "0.5", "--method", method, "--json"])
    assert SOLVE_FIELDS <= set(out)
    assert set(out["distance"]) >= {"etf", "of", "predicted"} and set(out["predicted"]) >= {"geometry", "loss"}
    assert out["predicted"]["geometry"] == "orthogonal-frame"
    assert out["loss"] == pytest.approx(orthogonal_frame_loss([6, 3, 2], 0.5), rel=1e-6)
    assert out["distance"]["of"] < 1e-4
    # the lower bound is the certificate's: below the closed-form optimum, and the contract's fields
    assert out["lower_bound"] <= orthogonal_frame_loss([6, 3, 2], 0.5) * (1 + 1e-15)
    assert out["lower_bound"] == out["certificate"]["lower_bound"]
    assert set(out["certificate"]) >= {"lower_bound", "gap", "relative_gap", "certified", "seconds"}
    assert out["certificate"]["relative_gap"] == pytest.approx(out["certificate"]["gap"] / out["excess"])


def test_solve_gd_certificate_reports_the_gap(capsys):
    out = run_json(capsys, ["solve", "--counts", "8,8,2,2", "--tau", "0.5", "--json"])
    assert out["lower_bound"] == pytest.approx(35.98345, abs=1e-5)      # docs/theory.md section 2 check value
    from reference_mp import step_optimum_mp
    assert out["lower_bound"] <= float(step_optimum_mp(2, 8, 2, 2, 0.5)["loss"]) * (1 + 1e-15)
    assert out["certificate"]["relative_gap"] < 1e-6 and out["status"] == "optimal"


def test_solve_no_certify_is_converged_without_a_bound(capsys):
    out = run_json(capsys, ["solve", "--counts", "8,8,2,2", "--tau", "0.5", "--no-certify", "--json"])
    assert out["status"] == "converged" and out["lower_bound"] is None and out["certificate"] is None


def test_solve_table_and_float32(capsys):
    assert main(["solve", "--counts", "4,4,4", "--tau", "0.5", "--float32", "--steps", "300"]) == 0
    text = capsys.readouterr().out
    assert "distance to ETF" in text and "status" in text


def test_predict_json(capsys):
    out = run_json(capsys, ["predict", "--counts", "10,5,3,2", "--tau", "0.5", "--json"])
    assert out["geometry"] == "reduced-program"
    assert out["loss"] == pytest.approx(35.714086, abs=1e-6)             # docs/theory.md section 3 check value
    assert "why" in out and len(out["class_mean_gram"]) == 4


def test_verify_json_contract_and_exit_code(capsys):
    assert main(["verify", "--only", "ib-critical-betas", "--only", "step-block-form", "--json", "--no-progress"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["passed"] is True and len(out["checks"]) == 2
    for check in out["checks"]:
        assert {"name", "source", "claim", "passed", "measured", "tolerance", "seconds"} <= set(check)


def test_verify_exit_code_is_nonzero_on_failure(capsys, monkeypatch):
    import theory_checks.catalogue as catalogue
    broken = dataclasses.replace(catalogue.CATALOGUE[0], name="broken", tolerance=-1.0,
                                 instances=lambda quick: [None], measure=lambda inst, tools: (0.0, {}))
    monkeypatch.setattr(catalogue, "CATALOGUE", [broken])
    assert main(["verify", "--no-progress"]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_verify_unknown_check_is_a_one_line_error(capsys):
    assert main(["verify", "--only", "nonsense"]) == 2
    assert "unknown check" in capsys.readouterr().err


@pytest.mark.parametrize("argv,match", [
    (["--counts", "2,2", "--tau", "0.5", "--batching", "balanced", "--batch-size", "3", "--method", "convex"],
     "positive"),                                         # no epoch-0 batch holds a positive pair
    (["--counts", "4,4", "--method", "reduced", "--starts", "3"], "--starts"),
    (["--counts", "4,4", "--method", "convex", "--float32"], "--float32"),
    (["--counts", "4,4", "--method", "reduced", "--no-certify"], "--no-certify"),
    (["--counts", "4,4", "--gap-tol", "0"], "--gap-tol"),
    (["--counts", "4,4", "--tau", "0"], "--tau"),
])
def test_solve_bad_input_one_line_exit_2(capsys, argv, match):
    assert main(["solve", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert one_line_error(err) and match in err


def test_solve_starts_keeps_a_certified_start_and_counts_the_stalled(capsys):
    """ReLU at d = k: some starts stall (docs/theory.md section 3); --starts keeps a certified one."""
    argv = ["solve", "--counts", "8,8,2,2", "--tau", "0.5", "--relu", "--dim", "4", "--starts", "8", "--json"]
    out = run_json(capsys, argv)
    assert out["status"] == "optimal" and out["distance"]["of"] < 1e-6
    assert out["starts"]["tried"] == 8 and out["starts"]["optimal"] + out["starts"]["stationary"] == 8


def test_solve_exit_1_when_not_proved(capsys):
    """A stalled ReLU start at d = k (seed 3 stalls) under plain descent (--no-escape) is stationary:
    exit 1, JSON printed anyway."""
    code = main(["solve", "--counts", "8,8,2,2", "--tau", "0.5", "--relu", "--dim", "4", "--seed", "3", "--json",
                 "--no-escape"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1 and out["status"] == "stationary" and not out["certificate"]["certified"]


# ---------------------------------------------------------------- the cases of the reliability issue
ISSUE_CASES = [
    # the cross-entropy options (issue 13)
    ("solve --loss ce --counts 3,3", "needs --classifier"),
    ("solve --classifier of --counts 3,3", "--classifier does not apply to --loss scl"),
    ("solve --loss ce --classifier of --weight-decay 0.1 --counts 3,3", "--weight-decay does not apply"),
    ("solve --loss ce --classifier learned --counts 3,3", "needs --weight-decay"),
    ("solve --loss ce --classifier learned --weight-decay 0.1 --tau 0.5 --counts 3,3", "--tau does not apply"),
    ("solve --loss ce --classifier learned --weight-decay 5 --counts 3,3", "--weight-decay"),
    ("solve --loss ce --classifier etf --relu --counts 3,3", "no closed form"),
    ("solve --loss ce --classifier of --method reduced --counts 3,3", "--method gd"),
    ("solve --loss ce --classifier of --batching random --batch-size 3 --counts 3,3", "--batching does not apply"),
    ("predict --loss ce --classifier of --dim 2 --counts 3,3,3", "needs dim >= 3"),
    ("sweep imbalance --loss ce --classifier etf --check-gd", "--check-gd does not apply to --loss ce"),
    ("sweep imbalance --loss ce --classifier learned --weight-decay 0.01 --tau 0.5", "--tau does not apply"),
    ("sweep temperature --loss ce --classifier learned --weight-decay 0.01", "no temperature"),
    ("sweep temperature --classifier of", "--classifier does not apply to --loss scl"),
    ("solve --tau 1e-300", "--tau"), ("solve --seed -1", "--seed"),
    ("solve --seed 1180591620717411303424", "--seed"), ("solve --imbalance step --ratio nan", "--ratio"),
    ("sweep imbalance --ratios=", "--ratios"), ("sweep imbalance --ratios 1:16:0", "count of points"),
    ("sweep imbalance --ratios 1,inf", "finite"), ("sweep batching --batch-sizes 0", "--batch-sizes"),
    ("solve --batches-file {tmp}", "is a directory"), ("landscape --resolution 1", "--resolution"),
    ("sweep imbalance --out {tmp}/missing/x.png", "does not exist"),
    ("sweep imbalance --out {tmp}/file.txt/x.png", "not a directory"),
    ("sweep imbalance --out /proc/x.png", "cannot be written"),
    ("solve --counts 4,4,2 --dim 1 --method reduced", "dim >= k - 1"),
    ("solve --counts 4,4,2 --batches-file {tmp}/single.json", "no anchor has a negative"),
    ("solve --counts 4,4,2 --batching random --batch-size 10", "full batching"),
    ("solve --counts 4,4,2 --dim 100000", "exceeds both the 10 rows"),
    ("batches check --counts 10000000,10000000 --batching random --batch-size 2", "batches per epoch"),
    ("solve --counts 4,4 --counts 4,4,2", "given twice"),
    ("predict --counts 4,4,2 --seed 3", "--seed does not apply"),
    ("solve --imbalance step", "needs --ratio"),
    ("sweep imbalance --ratios 1,1", "twice"), ("sweep batching --batch-sizes 6,6", "twice"),
    ("solve --counts ４,４", "whole number"), ("solve --tau 1_0", "not a number"),
    ("solve --batches-file=", "empty"), ("solve --batches-file /dev/null", "not a regular file"),
    ("solve --batches-file {tmp}/" + "x" * 300, "too long"), ("landscape --out {tmp}/" + "x" * 300 + ".png", "too long"),
    ("landscape --counts 200,200 --directions hessian", "--directions hessian"),
    ("batches check --counts 4,4 --seed 0", "--seed does not apply"),
    ("batches check --classes 1000 --n-max 1000 --batching binding --batch-size 1001", "batches per epoch"),
    ("explore --ratio 150 --out {tmp}/e.png", "[1, 100]"), ("solve --tau 1000", "--tau"),
    ("solve --counts 4,4,2 --batching random --batch-size 4 --steps 10000000", "lower --steps"),
    ("sweep batching --batch-sizes 6,1000000 --counts 4,4,2", "full batching"),
    ("landscape --out {tmp}", "--out"),
    ("solve --counts 1e7,1e7", "whole number"), ("solve --counts 10000000,10000000", "memory"),
    ("solve --counts=", "--counts"), ("solve --counts 4,4 --batching random --batch-size 1", "--batch-size"),
    ("solve --counts 2,2 --batching random --batch-size 2", "no batch"),
    ("sweep imbalance --ratios 1,1e6 --n-max 10", "not a whole number"),
    ("sweep imbalance --minority-fraction 0", "--minority-fraction"),
    ("sweep batching --schemes bogus", "unknown 'bogus'"), ("sweep batching --batch-sizes 1", "--batch-sizes"),
    ("sweep batching --batch-sizes 3,6 --schemes binding", "must exceed k"),
    ("solve --method convex --float32", "--float32"), ("solve --method reduced --no-certify", "--no-certify"),
    ("solve --batch-size 4", "--batch-size does not apply"), ("explore --tau -1", "slider range"),
    ("solve --dim 2.7", "--dim"), ("solve --counts 4,4 --classes 3", "--classes does not apply"),
    ("solve --ratio 2", "--ratio does not apply"), ("solve --imbalance long-tail --ratio 2 --minority-fraction 0.5",
                                                    "--minority-fraction does not apply"),
    ("solve --no-certify --gap-tol 0.01", "--gap-tol does not apply"),
    ("solve --prototypes-per-class 2", "--prototypes-per-class does not apply"),
    ("solve --batches-file {tmp}/b.json --batching random", "--batching does not apply"),
    ("solve --method reduced --batching random --batch-size 4", "full-batch"),
    ("solve --method convex --counts 300,300", "memory"), ("solve --starts 5 --seed 4294967295", "largest seed"),
    ("sweep imbalance --relu --compare-relu", "--relu does not apply"), ("verify --save {tmp}/r.txt", ".json"),
    ("solve --rel", "unrecognized"), ("bogus", "invalid choice"),
]


@pytest.mark.parametrize("line,match", ISSUE_CASES)
def test_listed_bad_input_is_one_line_exit_2_before_any_work(line, match, tmp_path, capsys):
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "b.json").write_text("[[0, 1, 2, 3], [4, 5, 6, 7]]")
    (tmp_path / "single.json").write_text("[[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in line.split()]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert one_line_error(err) and match in err, err


def test_json_error_object_and_version(capsys):
    assert main(["solve", "--counts", "4,1", "--json"]) == 2
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"error": captured.err.strip(), "exit_code": 2}
    assert main(["--version"]) == 0
    from ufm import __version__
    assert capsys.readouterr().out.strip() == f"ufm {__version__}"


def test_version_matches_pyproject():
    import re
    from pathlib import Path

    from ufm import __version__
    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert re.search(r'^version = "([^"]+)"', text, re.M).group(1) == __version__


def test_figure_without_out_goes_to_a_printed_default_path(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", "imbalance", "--ratios", "1", "--classes", "2", "--n-max", "4", "--no-progress"]) == 0
    out = capsys.readouterr().out
    path = tmp_path / "ufm-sweep-imbalance.png"
    assert path.exists() and f"figure written to {path.resolve()}" in out


def test_internal_error_is_one_line_exit_1(monkeypatch, capsys):
    """A bug below the command (here a solver that raises) gives one line and exit 1, not a traceback."""
    from solvers import gd

    def broken(*args, **kwargs):
        raise RuntimeError("boom")
    monkeypatch.setattr(gd, "solve", broken)
    assert main(["solve", "--counts", "3,3", "--no-progress"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("ufm: internal error: RuntimeError: boom") and "\n" not in err
    # with its progress line (a log: not a terminal), the error is still one line, the last
    assert main(["solve", "--counts", "3,3"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and lines[0] == "solve: gradient descent, n = 6 + certificate ..."
    assert lines[1].startswith("ufm: internal error: RuntimeError: boom")


def test_best_start_keeps_the_certified_start_whichever_it_is():
    """--starts keeps the certified start with the smallest gap, here the second of three (found by
    identity: Solutions hold arrays, so == between them is not defined)."""
    import numpy as np

    from theory_checks.report import best_start as _best_start
    from ufm.solution import Solution

    def start(status, gap, certified):
        cert = dataclasses.make_dataclass("C", ["certified", "relative_gap"])(certified, gap)
        return Solution("gd", np.eye(2), 1.0, status, embeddings=np.eye(2), log_excess=0.0, certificate=cert)
    solutions = [start("stationary", 0.3, False), start("optimal", 1e-9, True), start("optimal", 1e-7, True)]
    best, counts = _best_start(solutions)
    assert best is solutions[1] and counts.kept == 1 and counts.ended["optimal"] == 2 and counts.ended["stationary"] == 1


def test_verify_text_rows_carry_the_claim(capsys):
    """docs/cli.md: one row per check with its name, source, claim, measured value, tolerance, result."""
    from theory_checks.catalogue import CATALOGUE

    assert main(["verify", "--only", "ib-critical-betas", "--no-progress"]) == 0
    out = capsys.readouterr().out
    check = next(c for c in CATALOGUE if c.name == "ib-critical-betas")
    row = next(line for line in out.splitlines() if line.startswith("ib-critical-betas"))
    assert check.source in row and row.rstrip().endswith(check.claim) and " pass " in row
    assert out.splitlines()[0].split()[-1] == "claim"


def test_sweep_table_names_its_temperature(capsys, tmp_path):
    """The batching sweep's default tau (0.5) differs from the shared default (1.0): the table says it."""
    assert main(["sweep", "batching", "--counts", "4,4", "--batch-sizes", "3", "--no-progress",
                 "--out", str(tmp_path / "s.png")]) == 0
    out = capsys.readouterr().out
    assert "tau: 0.5" in out and "counts: [4, 4]" in out


def test_cli_md_states_the_problem_defaults_the_command_uses():
    """docs/cli.md's table of the problem options: each stated default is the parser's."""
    import re
    from pathlib import Path

    from ufm.app.options import PROBLEM_DEFAULTS

    text = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text()
    rows = {}
    for line in text[:text.index("## Exit codes")].splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)]        # "\|" inside a cell is not a border
        if len(cells) == 5 and cells[1].startswith("`--"):
            rows[cells[1].strip("`").split()[0]] = cells[3]
    assert rows["--tau"] == f"{PROBLEM_DEFAULTS['tau']}" and rows["--seed"] == str(PROBLEM_DEFAULTS["seed"])
    assert rows["--relu"] == "off" and rows["--prototypes"] == PROBLEM_DEFAULTS["prototypes"]
    assert rows["--loss"] == PROBLEM_DEFAULTS["loss"]
    assert rows["--batching"] == PROBLEM_DEFAULTS["batching"]
    generated = rows["--classes"]
    assert generated == (f"{PROBLEM_DEFAULTS['imbalance']}, K={PROBLEM_DEFAULTS['classes']}, "
                         f"N={PROBLEM_DEFAULTS['n_max']}, R={PROBLEM_DEFAULTS['ratio']:g}, "
                         f"F={PROBLEM_DEFAULTS['minority_fraction']}")


def test_a_new_verb_is_one_module_and_one_entry(monkeypatch, capsys):
    """docs/architecture.md "How to add a command": a module with ``add_parser(sub)`` and its handler,
    and one entry in ``ufm.app.cli.COMMANDS``; the shared problem options and rendering come with it."""
    import types

    from ufm.app import cli
    from ufm.app.options import add_problem_options, problem_from_args
    from ufm.app.parsing import cache_option, output_options
    from ufm.app.render import print_json

    def cmd_count(args):
        problem = problem_from_args(args)
        if args.validate_only:
            return 0
        print_json({"n": problem.n, "k": problem.k})
        return 0

    def add_parser(sub):
        parser = sub.add_parser("count", help="the number of examples and classes")
        add_problem_options(parser)
        output_options(parser)
        cache_option(parser)
        parser.set_defaults(handler=cmd_count)

    monkeypatch.setattr(cli, "COMMANDS", cli.COMMANDS + (types.SimpleNamespace(add_parser=add_parser),))
    assert main(["count", "--counts", "5,3,2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"n": 10, "k": 3}
    assert main(["count", "--counts", "5,1", "--json"]) == 2        # the shared checks, one line, exit 2
    assert "positive pair" in json.loads(capsys.readouterr().out)["error"]
