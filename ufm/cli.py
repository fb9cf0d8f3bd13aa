"""The ``ufm`` command (its contract: docs/cli.md): argument parsing and output only.

Bad input ends with a one-line ``ufm: error: ...`` on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

import numpy as np

from ufm.batching import Batching, check_conditions
from ufm.errors import ProblemError
from ufm.problem import Problem, Prototypes


# ---------------------------------------------------------------- problem options (shared)
def add_problem_options(parser: argparse.ArgumentParser) -> None:
    """The options of CLI.md "Describing a problem"."""
    g = parser.add_argument_group("problem")
    g.add_argument("--counts", help="class counts, e.g. 8,8,2,2 (overrides --classes/--imbalance)")
    g.add_argument("--classes", type=int, default=4, help="number of classes K (default 4)")
    g.add_argument("--imbalance", choices=("balanced", "step", "long-tail"), default="balanced")
    g.add_argument("--n-max", type=int, default=10, help="examples in the largest class (default 10)")
    g.add_argument("--ratio", type=float, default=1.0, help="imbalance ratio R >= 1 (default 1)")
    g.add_argument("--minority-fraction", type=float, default=0.5,
                   help="fraction of minority classes under STEP (default 0.5)")
    g.add_argument("--tau", type=float, default=1.0, help="temperature > 0 (default 1.0)")
    g.add_argument("--relu", action="store_true", help="nonnegative embeddings (ReLU)")
    g.add_argument("--dim", type=int, default=None, help="embedding dimension (default k; 2k with --relu)")
    g.add_argument("--batching", choices=("full", "random", "balanced", "binding"), default="full")
    g.add_argument("--batch-size", type=int, default=None)
    g.add_argument("--batches-file", help="JSON list of lists of example indices")
    g.add_argument("--prototypes", choices=("none", "etf", "of"), default="none")
    g.add_argument("--prototypes-per-class", type=int, default=1)
    g.add_argument("--prototype-anchors", choices=("yes", "no"), default="yes",
                   help="whether prototypes are anchors too ((P-b), default) or not ((P-a))")
    g.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")


def _parse_counts(text: str) -> list[int]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ProblemError(f"--counts {text!r} must be comma-separated whole numbers, e.g. 8,8,2,2") from None
    return values  # Problem.from_counts rejects non-integers with its own message


def problem_from_args(args: argparse.Namespace) -> Problem:
    """Build (and so validate) the Problem that the options describe."""
    if args.batches_file:
        batching = Batching.from_file(args.batches_file)
    elif args.batching == "full":
        batching = Batching.full()
    else:
        if args.batch_size is None:
            raise ProblemError(f"--batching {args.batching} needs --batch-size B")
        batching = Batching(args.batching, batch_size=args.batch_size)
    prototypes = None
    if args.prototypes != "none":
        prototypes = Prototypes(args.prototypes, args.prototypes_per_class, args.prototype_anchors == "yes")
    options = dict(tau=args.tau, relu=args.relu, dim=args.dim, batching=batching,
                   prototypes=prototypes, seed=args.seed)
    if args.counts:
        return Problem.from_counts(_parse_counts(args.counts), **options)
    if args.imbalance == "balanced":
        return Problem.balanced(args.classes, args.n_max, **options)
    if args.imbalance == "step":
        return Problem.step(args.classes, args.n_max, args.ratio, args.minority_fraction, **options)
    return Problem.long_tail(args.classes, args.n_max, args.ratio, **options)


# ---------------------------------------------------------------- output helpers
def to_jsonable(value):
    """Convert NumPy / JAX values inside dicts and lists to plain JSON types."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return to_jsonable(value.tolist())
    if isinstance(value, float) and not np.isfinite(value):
        return None if np.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def print_json(obj) -> None:
    print(json.dumps(to_jsonable(obj), indent=2))


def print_table(rows: Sequence[Sequence], header: Sequence[str]) -> None:
    """A plain aligned text table."""
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for j, r in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        if j == 0:
            print("  ".join("-" * w for w in widths))


# ---------------------------------------------------------------- commands
def cmd_batches_check(args: argparse.Namespace) -> int:
    problem = problem_from_args(args)
    _, proto_labels = problem.prototype_rows()
    batches = problem.batches(epoch=0)
    result = check_conditions(problem.labels, batches, proto_labels).to_dict()
    result.update(problem=problem.describe(), n_batches=len(batches))
    if problem.batching.is_random:
        result["note"] = ("random scheme: checked on the batches of epoch 0; "
                          "later epochs reshuffle")
    if args.json:
        print_json(result)
        return 0
    print(f"batching: {problem.batching.scheme}, {len(batches)} batch(es), counts {list(problem.counts)}")
    print(f"neural collapse guaranteed (ReLU): {'yes' if result['neural_collapse'] else 'no'}")
    print(f"orthogonal frame guaranteed (ReLU): {'yes' if result['orthogonal_frame'] else 'no'}")
    v = result["violations"]
    for d in v["disconnected_classes"]:
        print(f"  class {d['class']}: its examples fall into {d['components']} pieces that never share a batch")
    for a, b in v["unmet_pairs"]:
        print(f"  classes {a} and {b} never meet in a batch where one of them has a positive")
    if "note" in result:
        print(f"note: {result['note']}")
    return 0


def solution_report(problem: Problem, solution, prediction) -> dict:
    """The JSON object of ``ufm solve`` (CLI.md)."""
    from ufm.geometry import etf_gram, nc1, normalized_distance, orthogonal_frame_gram

    M = np.asarray(solution.class_mean_gram)
    report = {
        "method": solution.method, "counts": list(problem.counts), "tau": problem.tau,
        "relu": problem.relu, "dim": problem.dim, "batching": problem.batching.scheme,
        "loss": solution.loss, "excess": solution.excess, "lower_bound": solution.lower_bound,
        "certificate": None if solution.certificate is None else solution.certificate.to_dict(),
        "class_mean_gram": M,
        "nc1": nc1(solution.embeddings, problem.labels)[0] if solution.embeddings is not None else None,
        "distance": {
            "etf": normalized_distance(M, etf_gram(problem.k)),
            "of": normalized_distance(M, orthogonal_frame_gram(problem.k)),
            "predicted": (None if prediction.class_mean_gram is None
                          else normalized_distance(M, prediction.class_mean_gram)),
        },
        "predicted": {"geometry": prediction.geometry, "loss": prediction.loss, "why": prediction.why},
        "status": solution.status, "message": solution.message,
        "iterations": solution.iterations, "seconds": solution.seconds,
    }
    if "starts" in solution.extra:
        report["starts"] = solution.extra["starts"]
    if "residuals" in solution.extra:
        report["residuals"] = solution.extra["residuals"]
    return report


def _best_start(solutions) -> tuple[object, dict]:
    """The start to keep: the certified one with the smallest relative gap, else the lowest excess;
    with a count of how the starts ended."""
    def key(sol):
        cert = sol.certificate
        certified = cert is not None and cert.certified
        return (0 if certified else 1, cert.relative_gap if certified else 0.0,
                sol.log_excess if sol.log_excess is not None else np.inf)
    ok = [s for s in solutions if s.status != "error"]
    best = min(ok, key=key) if ok else solutions[0]
    counts = {status: sum(s.status == status for s in solutions)
              for status in ("optimal", "stationary", "converged", "not_converged", "error")}
    return best, {"tried": len(solutions), "kept": solutions.index(best), **counts}


def _check_solve_options(args: argparse.Namespace) -> None:
    """Options that do not apply to the chosen method are errors, not ignored."""
    if args.method != "gd":
        for flag, value in (("--steps", args.steps), ("--lr", args.lr), ("--tol", args.tol),
                            ("--starts", args.starts)):
            if value is not None:
                raise ProblemError(f"{flag} applies to --method gd only (got --method {args.method})")
        if args.float32:
            raise ProblemError(f"--float32 applies to --method gd only (got --method {args.method}); "
                               "the convex programs run in float64")
    if args.starts is not None and args.starts < 1:
        raise ProblemError(f"--starts must be at least 1 (got {args.starts})")
    if not 0 < args.gap_tol < 1:
        raise ProblemError(f"--gap-tol must lie in (0, 1): the largest relative gap on the excess that "
                           f"counts as optimal (got {args.gap_tol})")
    if args.no_certify and args.method != "gd":
        raise ProblemError(f"--no-certify applies to --method gd only: the {args.method} program is always "
                           "judged by its certificate")


def cmd_solve(args: argparse.Namespace) -> int:
    problem = problem_from_args(args)
    _check_solve_options(args)
    from theory_checks.predictions import predict

    certify = not args.no_certify
    if args.method == "gd":
        import jax.numpy as jnp
        from solvers import gd

        options = {key: value for key, value in (("steps", args.steps), ("learning_rate", args.lr),
                                                 ("tol", args.tol)) if value is not None}
        if args.float32:
            options["dtype"] = jnp.float32
        if args.starts and args.starts > 1:
            sols = gd.solve_many(problem, range(args.seed, args.seed + args.starts), certify=certify,
                                 gap_tol=args.gap_tol, **options)
            solution, starts = _best_start(sols)
            solution.extra["starts"] = starts
        else:
            solution = gd.solve(problem, seed=args.seed, certify=certify, gap_tol=args.gap_tol, **options)
    else:
        from solvers import convex

        if args.method == "convex":
            if problem.n > 100:
                print(f"ufm: note: the n x n program with n = {problem.n} may take minutes (about 50 s at n = 96 "
                      "on 2 cores); --method reduced solves full-batch problems in seconds", file=sys.stderr)
            solution = convex.solve_relaxation(problem, gap_tol=args.gap_tol)
        else:
            solution = convex.solve_reduced(problem, gap_tol=args.gap_tol)
    report = solution_report(problem, solution, predict(problem))
    code = 0 if solution.status in ("optimal", "converged") else 1
    if args.json:
        print_json(report)
        return code
    _print_solution(report)
    return code


def _fmt(value, digits: int = 10) -> str:
    return "-" if value is None else (f"{value:.{digits}g}" if isinstance(value, float) else str(value))


def _print_solution(report: dict) -> None:
    print(f"method {report['method']}  counts {report['counts']}  tau {report['tau']}  relu {report['relu']}  "
          f"dim {report['dim']}  batching {report['batching']}")
    rows = [("loss (sum)", _fmt(report["loss"], 12)), ("excess (loss - constant)", _fmt(report["excess"], 6)),
            ("lower bound", _fmt(report["lower_bound"], 12))]
    cert = report.get("certificate")
    if cert is not None:
        rows.append(("certificate", f"relative gap {cert['relative_gap']:.3g} on the excess "
                                    f"({'certified' if cert['certified'] else 'not certified'}, "
                                    f"{cert['method']}, {cert['seconds']:.2g} s)"))
    if "starts" in report:
        st = report["starts"]
        rows.append(("starts", f"{st['tried']} tried: {st['optimal']} optimal, {st['stationary']} stationary, "
                               f"{st['not_converged']} not converged, {st['error']} error; kept #{st['kept']}"))
    rows += [("predicted", f"{report['predicted']['geometry']} (loss {_fmt(report['predicted']['loss'], 12)})"),
             ("distance to ETF", _fmt(report["distance"]["etf"], 4)),
             ("distance to OF", _fmt(report["distance"]["of"], 4)),
             ("distance to predicted", _fmt(report["distance"]["predicted"], 4)),
             ("NC1", _fmt(report["nc1"], 4)),
             ("status", report["status"] + (f" ({report['message']})" if report["message"] else "")),
             ("iterations", report["iterations"]), ("seconds", _fmt(report["seconds"], 3))]
    print_table(rows, ("quantity", "value"))
    print("class-mean Gram:")
    for row in np.asarray(report["class_mean_gram"]):
        print("  " + " ".join(f"{v:+.4f}" for v in row))
    print(f"why: {report['predicted']['why']}")


def cmd_predict(args: argparse.Namespace) -> int:
    from theory_checks.predictions import predict

    problem = problem_from_args(args)
    prediction = predict(problem).to_dict()
    if args.json:
        print_json(prediction | {"problem": problem.describe()})
        return 0
    print(f"geometry: {prediction['geometry']}")
    print(f"loss:     {_fmt(prediction['loss'], 12)}")
    print(f"why:      {prediction['why']}")
    if prediction["class_mean_gram"] is not None:
        print("class-mean Gram:")
        for row in prediction["class_mean_gram"]:
            print("  " + " ".join(f"{v:+.4f}" for v in row))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from theory_checks.catalogue import CATALOGUE
    from theory_checks.check import run_checks

    checks = CATALOGUE
    if args.only:
        wanted = set(args.only)
        unknown = wanted - {c.name for c in CATALOGUE}
        if unknown:
            raise ProblemError(f"unknown check(s) {', '.join(sorted(unknown))}; "
                               f"known: {', '.join(c.name for c in CATALOGUE)}")
        checks = [c for c in CATALOGUE if c.name in wanted]
    results = run_checks(checks, quick=args.quick, show_progress=not args.no_progress)
    passed = all(r.passed for r in results)
    report = {"checks": [r.to_dict() for r in results], "passed": passed, "quick": args.quick}
    if args.save:
        from pathlib import Path
        Path(args.save).write_text(json.dumps(to_jsonable(report), indent=2))
    if args.json:
        print_json(report)
    else:
        rows = [(r.check.name, r.check.source, _fmt(r.measured, 3),
                 ("<= " if r.check.comparison == "at_most" else ">= ") + _fmt(r.check.tolerance, 3),
                 "pass" if r.passed else "FAIL", f"{r.seconds:.1f}") for r in results]
        print_table(rows, ("check", "source", "measured", "tolerance", "result", "seconds"))
        for r in results:
            if not r.passed:
                print(f"\n{r.check.name} failed: {r.check.claim}")
                print(f"  measured: {r.check.measures} = {_fmt(r.measured, 4)}")
                if r.error:
                    print(f"  error: {r.error}")
        print(f"\n{sum(r.passed for r in results)}/{len(results)} checks passed")
    return 0 if passed else 1


def _floats(text: str, option: str) -> list[float]:
    """Parse a list ``1,2,4`` or an evenly spaced range ``start:stop:count`` (for geometric spacing
    give a list)."""
    try:
        if ":" in text:
            start, stop, count = text.split(":")
            return [float(v) for v in np.linspace(float(start), float(stop), int(count))]
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ProblemError(f"{option} {text!r} must be a comma-separated list (1,2,4) or a range "
                           "start:stop:count (1:20:8)") from None


def _finish_figure(fig, data: dict, args: argparse.Namespace, default_name: str) -> None:
    from ufm import plots

    path = plots.save(fig, args.out or default_name)
    data = dict(data, figure=str(path))
    if args.json:
        print_json(data)
    else:
        print(f"figure written to {path}")


RELU_OPTIONS = {"both": (False, True), "relu": (True,), "no-relu": (False,)}


def cmd_sweep(args: argparse.Namespace) -> int:
    from theory_checks import sweeps
    from ufm import plots

    progress_on = not args.no_progress
    if args.sweep == "imbalance":
        result = sweeps.sweep_imbalance(_floats(args.ratios, "--ratios"), profile=args.profile, k=args.classes,
                                        n_max=args.n_max, minority_fraction=args.minority_fraction,
                                        tau=args.tau, relu_options=RELU_OPTIONS[args.relu_options],
                                        check_gd=args.check_gd, show_progress=progress_on)
        panels = [("cos", "cosine between class means"), ("dist", "distance of mean Gram"),
                  ("loss", "optimal loss (sum, nats)")]
        title = f"{args.profile} imbalance, k = {args.classes}, tau = {args.tau}"
        logx = True
    elif args.sweep == "temperature":
        counts = [int(c) for c in _floats(args.counts, "--counts")]
        result = sweeps.sweep_temperature(_floats(args.taus, "--taus"), counts,
                                          relu_options=RELU_OPTIONS[args.relu_options], check_gd=args.check_gd,
                                          show_progress=progress_on)
        panels = [("cos", "cosine between class means"), ("dist", "distance of mean Gram"),
                  ("loss", "optimal loss (sum, nats)")]
        title, logx = f"counts {counts}", True
    else:
        counts = [int(c) for c in _floats(args.counts, "--counts")]
        result = sweeps.sweep_batching([int(b) for b in _floats(args.batch_sizes, "--batch-sizes")], counts,
                                       tau=args.tau, schemes=args.schemes.split(","), relu=not args.no_relu,
                                       seed=args.seed, show_progress=progress_on)
        panels = [("dist:OF", "distance to orthogonal frame"), ("nc1", "NC1 (within-class)")]
        title, logx = f"counts {counts}, tau = {args.tau}, {'no ReLU' if args.no_relu else 'ReLU'}", False
    fig = plots.sweep_figure(result.x, result.series, result.xlabel, panels, logx=logx,
                             logy=args.sweep == "batching", title=title)
    if not args.json:
        _print_sweep(result)
    _finish_figure(fig, result.to_dict(), args, f"ufm-sweep-{args.sweep}.png")
    return 1 if _sweep_points(result, lambda status: status == "error") else 0


def _sweep_points(result, select) -> list[str]:
    """'series at x: status' for every sweep point whose solver status ``select`` accepts."""
    return [f"{name} at {x:g}: {status}" for name, q in result.series.items()
            for x, status in zip(result.x, q.get("status", [])) if select(status)]


def _print_sweep(result) -> None:
    """One table per series (rows: swept values; columns: every quantity), then any solver trouble."""
    counts = result.meta.get("counts")
    if not (isinstance(counts, list) and len(counts) == len(result.x)
            and all(isinstance(c, (list, tuple)) for c in counts)):
        counts = None                     # one count vector for the whole sweep: in the title instead
    for name, quantities in result.series.items():
        print(f"{name}:")
        header = [result.xlabel] + (["counts"] if counts else []) + list(quantities)
        rows = []
        for i, x in enumerate(result.x):
            row = [f"{x:g}"] + ([",".join(map(str, counts[i]))] if counts else [])
            row += [_fmt(values[i], 6) if isinstance(values[i], (int, float)) else values[i]
                    for values in quantities.values()]
            rows.append(row)
        print_table(rows, header)
        print()
    trouble = _sweep_points(result, lambda status: status not in ("optimal", "converged"))
    if trouble:
        print("solver status not optimal at: " + "; ".join(trouble))
    if counts is None and result.meta.get("counts"):
        print(f"counts: {result.meta['counts']}")


def cmd_landscape(args: argparse.Namespace) -> int:
    from theory_checks.landscape import landscape_data
    from ufm import plots

    problem = problem_from_args(args)
    data = landscape_data(problem, starts=args.starts, slice_directions=args.directions,
                          resolution=args.resolution, radius=args.radius)
    fig = plots.landscape_figure(data, title=f"counts {list(problem.counts)}, tau {problem.tau}, "
                                             f"{'ReLU' if problem.relu else 'no ReLU'}, d = {problem.dim}")
    if not args.json:
        print(f"{args.starts} starts: {data['optimal']} certified optimal, {data['stationary']} stationary; largest relative gap to the convex "
              f"optimum {max(data['gaps']):.3g}; largest Procrustes residual {data['max_procrustes_residual']:.3g}")
    _finish_figure(fig, data, args, "ufm-landscape.png")
    return 0


def cmd_explore(args: argparse.Namespace) -> int:
    import matplotlib

    if args.out:
        matplotlib.use("Agg")
    from ufm import plots
    from ufm.explore import Explorer, ExplorerState, main as explore_main

    if args.out:  # headless: draw the starting state and save it
        explorer = Explorer(ExplorerState(ratio=args.ratio, k=args.classes, tau=args.tau, relu=args.relu))
        print(f"snapshot written to {plots.save(explorer.fig, args.out)}")
        return 0
    if matplotlib.get_backend().lower() == "agg":
        raise ProblemError("no display for the explorer window (matplotlib backend Agg); run it on a desktop, "
                           "or save a snapshot with --out FILE.png")
    explore_main()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ufm", description="The unconstrained features model with the supervised contrastive loss.")
    sub = parser.add_subparsers(dest="command", required=True)

    batches = sub.add_parser("batches", help="inspect a batching")
    batches_sub = batches.add_subparsers(dest="batches_command", required=True)
    check = batches_sub.add_parser(
        "check", help="whether the batching guarantees NC and the orthogonal frame under ReLU")
    add_problem_options(check)
    check.add_argument("--json", action="store_true", help="print one JSON object")
    check.set_defaults(handler=cmd_batches_check)

    solve = sub.add_parser("solve", help="solve a problem and compare with the prediction")
    add_problem_options(solve)
    solve.add_argument("--method", choices=("gd", "convex", "reduced"), default="gd")
    solve.add_argument("--steps", type=int, default=None, help="gradient descent: maximum steps")
    solve.add_argument("--lr", type=float, default=None, help="gradient descent: learning rate")
    solve.add_argument("--tol", type=float, default=None, help="gradient descent: stopping tolerance")
    solve.add_argument("--float32", action="store_true", help="gradient descent in float32 (speed option)")
    solve.add_argument("--starts", type=int, default=None,
                       help="gradient descent: S random starts in one call, the best certified kept "
                            "(useful with ReLU at d < 2k, or after a stationary result)")
    solve.add_argument("--no-certify", action="store_true",
                       help="gradient descent: skip the certificate (status 'converged' instead of "
                            "'optimal' / 'stationary')")
    solve.add_argument("--gap-tol", type=float, default=1e-6,
                       help="largest relative gap on the excess that counts as optimal (default 1e-6)")
    solve.add_argument("--json", action="store_true", help="print one JSON object")
    solve.set_defaults(handler=cmd_solve)

    pred = sub.add_parser("predict", help="what the theory predicts for a problem")
    add_problem_options(pred)
    pred.add_argument("--json", action="store_true", help="print one JSON object")
    pred.set_defaults(handler=cmd_predict)

    verify = sub.add_parser("verify", help="run the theorem catalogue")
    verify.add_argument("--quick", action="store_true", help="fewer, smaller instances (under a minute)")
    verify.add_argument("--only", action="append", metavar="NAME", help="run only this check (repeatable)")
    verify.add_argument("--json", action="store_true", help="print one JSON object")
    verify.add_argument("--save", metavar="FILE", help="also write the JSON report to FILE")
    verify.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    verify.set_defaults(handler=cmd_verify)

    sweep = sub.add_parser("sweep", help="optimal geometry against imbalance, temperature or batching")
    sweep_sub = sweep.add_subparsers(dest="sweep", required=True)
    imb = sweep_sub.add_parser("imbalance", help="against the imbalance ratio R (reduced program)")
    imb.add_argument("--ratios", default="1,2,4,8,16", help="list 1,2,4 or range start:stop:count")
    imb.add_argument("--profile", choices=("step", "long-tail"), default="step")
    imb.add_argument("--classes", type=int, default=4)
    imb.add_argument("--n-max", type=int, default=32)
    imb.add_argument("--minority-fraction", type=float, default=0.5)
    imb.add_argument("--tau", type=float, default=0.5)
    temp = sweep_sub.add_parser("temperature", help="against the temperature (reduced program)")
    temp.add_argument("--taus", default="0.1,0.2,0.5,1,2")
    temp.add_argument("--counts", default="20,20,4,4")
    for p in (imb, temp):
        p.add_argument("--relu-options", choices=tuple(RELU_OPTIONS), default="both")
        p.add_argument("--check-gd", action="store_true", help="cross-check each point with vmapped GD")
    bat = sweep_sub.add_parser("batching", help="against the batch size per scheme (gradient descent)")
    bat.add_argument("--batch-sizes", default="6,8,12,16")
    bat.add_argument("--counts", default="8,8,4,4")
    bat.add_argument("--schemes", default="fixed-random,random,binding",
                     help="comma-separated: fixed-random (one partition, every epoch), random, balanced, binding")
    bat.add_argument("--tau", type=float, default=0.5)
    bat.add_argument("--no-relu", action="store_true")
    bat.add_argument("--seed", type=int, default=0)
    for p in (imb, temp, bat):
        p.add_argument("--out", help="figure file (.png, .pdf, .svg)")
        p.add_argument("--json", action="store_true", help="print the numbers as one JSON object")
        p.add_argument("--no-progress", action="store_true")
        p.set_defaults(handler=cmd_sweep)

    land = sub.add_parser("landscape", help="random starts, a loss slice, Hessian spectra, convergence")
    add_problem_options(land)
    land.add_argument("--starts", type=int, default=20)
    land.add_argument("--directions", choices=("random", "hessian"), default="random")
    land.add_argument("--resolution", type=int, default=31)
    land.add_argument("--radius", type=float, default=1.0)
    land.add_argument("--out", help="figure file (.png, .pdf, .svg)")
    land.add_argument("--json", action="store_true")
    land.set_defaults(handler=cmd_landscape)

    explore = sub.add_parser("explore", help="the interactive explorer window")
    explore.add_argument("--out", help="save a snapshot of the starting state instead of opening a window")
    explore.add_argument("--ratio", type=float, default=4.0, help="starting imbalance ratio")
    explore.add_argument("--classes", type=int, default=4, help="starting number of classes")
    explore.add_argument("--tau", type=float, default=0.5, help="starting temperature")
    explore.add_argument("--relu", action="store_true", help="start with ReLU on")
    explore.set_defaults(handler=cmd_explore)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except ProblemError as err:
        print(f"ufm: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ufm: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into head & co.
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
