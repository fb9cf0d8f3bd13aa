"""The statements of docs/architecture.md that the other tests did not check (test_layering: import
direction, every module named somewhere in the layer table, the 60-line rule, no loss imported by
name; test_startup: ``--help`` and bad input before JAX; test_doc_claims / test_doc_numbers: cli.md and
theory.md).

Each test first finds the sentence it checks in the doc (whitespace-normalised; a sentence no longer
there fails with "the doc no longer states ..."), then checks it against the code: the names resolve
(imported, or read from a class's fields), the layer table's module lists equal the files, the
constants and small behaviours the doc states (the block sizes, the window of the fused kernel, the
shape families, the even groups, the reduced program's choice, the status rules), the imports a fresh
interpreter makes, and the numbers quoted from stored measurements (benchmarks/results.json, the
comments the doc names) against those records.

The statements this audit found false of the code were corrected in the doc (the cvxpy and clarabel
imports, the scoped float64 switch, the outside loading of the loss modules, and three quoted
measurements); their tests assert the corrected sentences.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import json
import math
import re
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import doc_text
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC_TEXT = (ROOT / "docs" / "architecture.md").read_text()
DOC = " ".join(DOC_TEXT.split())
RESULTS = json.loads((ROOT / "benchmarks" / "results.json").read_text())

#: Dotted names the doc gives that the installed packages do not have, and why the doc gives them.
NOT_RESOLVED = {
    "jax.experimental.enable_x64": "named as older JAX's switch, beside the installed jax.enable_x64",
}


# ------------------------------------------------------------------------------------------------ helpers
def says(*passages: str) -> None:
    """Each passage (whitespace-normalised) is in docs/architecture.md."""
    doc_text.says(DOC, "docs/architecture.md", *passages)


def source(relative: str) -> str:
    return (ROOT / relative).read_text()


def member(obj, name: str):
    """``obj.name``, or a field a dataclass, NamedTuple or Protocol declares without a class value."""
    if hasattr(obj, name):
        return getattr(obj, name)
    for klass in getattr(obj, "__mro__", ()):
        if name in getattr(klass, "__dataclass_fields__", {}) or name in getattr(klass, "__annotations__", {}):
            return klass.__dataclass_fields__[name] if name in getattr(klass, "__dataclass_fields__", {}) else name
    raise AttributeError(f"{obj!r} has no {name!r}")


def resolve(dotted: str):
    """The object a dotted name names: the longest importable module prefix, then attributes."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        name = ".".join(parts[:i])
        try:
            obj = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name is not None and not name.startswith(err.name):
                raise                                    # a real missing dependency, not the prefix
            continue
        break
    else:
        raise LookupError(f"no module in {dotted}")
    for attr in parts[i:]:
        obj = member(obj, attr)
    return obj


def parameters(fn) -> list[str]:
    return [p for p in inspect.signature(fn).parameters if p not in ("self", "cls")]


def tokens(text: str) -> list[str]:
    """The backticked spans of ``text``, whitespace-normalised, each once, in order."""
    found: list[str] = []
    for raw in re.findall(r"`([^`]+)`", text):
        token = " ".join(raw.split())
        if token not in found:
            found.append(token)
    return found


def _layer_table() -> tuple[str, str, str]:
    """(the doc before the layer table, the table, the doc after it)."""
    start = DOC_TEXT.index("| layer | package | holds | imports |")
    end = DOC_TEXT.index("\n\n", start)
    return DOC_TEXT[:start], DOC_TEXT[start:end], DOC_TEXT[end:]


def imports_of(path: Path) -> list[tuple[str, bool]]:
    """(top-level module imported, whether at module level outside ``if TYPE_CHECKING``) for every
    import statement of ``path`` (absolute imports only)."""
    tree = ast.parse(path.read_text())
    top_level: set[int] = set()
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            top_level.add(id(node))
        elif isinstance(node, ast.Try):
            top_level.update(id(n) for n in node.body if isinstance(n, (ast.Import, ast.ImportFrom)))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name.split(".")[0], id(node) in top_level) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            found.append((node.module.split(".")[0], id(node) in top_level))
    return found


def _python(code: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          check=False)


# ================================================================================================ names
#: Names the doc uses with a short prefix: the prefix's object.
ALIASES = {
    "gd": "solvers.gd", "descent": "solvers.descent", "convex": "solvers.convex", "reduced": "solvers.reduced",
    "generic": "solvers.generic", "Config": "solvers.gd.Config", "Problem": "ufm.problem.Problem",
    "problem": "ufm.problem.Problem", "DescentInfo": "ufm.solution.DescentInfo", "solution": "ufm.solution.Solution",
    "lax": "jax.lax", "jax": "jax", "os": "os", "signal": "signal", "optax": "optax", "scipy": "scipy",
    "ufm": "ufm", "solvers": "solvers", "theory_checks": "theory_checks",
}

#: Every bare name the doc backticks (outside the layer table, whose names are modules: see the
#: layer tests), and where the code has it: a dotted name (any of a tuple), ``"f(p)"`` for a
#: parameter p of f, or ``"file::text"`` for a file that holds the text.
BARE = {
    "JAX_ENABLE_X64": "ufm/__init__.py::JAX_ENABLE_X64", "XLA_FLAGS": "ufm/programs.py::\"XLA_FLAGS\"",
    "UFM_NO_CACHE": "ufm.compile_cache.NO_CACHE_VARIABLE", "jax_enable_x64": "ufm/__init__.py::\"jax_enable_x64\"",
    "CompileCacheWarning": "ufm.compile_cache.CompileCacheWarning",
    "jit": "jax.jit", "grad": "jax.grad", "vmap": "jax.vmap", "cost": "ufm.programs.program(cost)",
    "FAST_COMPILE_COST": "ufm.programs.FAST_COMPILE_COST", "FAST_COMPILE_OPTIONS": "ufm.programs.FAST_COMPILE_OPTIONS",
    "startup": "benchmarks/run.py::\"startup\"",
    "solve_many": "solvers.gd.solve_many", "solve_batched": "solvers.gd.solve_batched",
    "lanes": "solvers.gd.solve_many(lanes)", "scl_loss": "ufm.objectives.scl.losses.scl_loss",
    "plots": "ufm.app.plots", "problem_title": "ufm.app.plots.problem_title", "sweep_panel": "ufm.app.plots.sweep_panel",
    "sweep_result_figure": "ufm.app.plots.sweep_result_figure", "SweepResult": "theory_checks.sweeps.SweepResult",
    "explore": "ufm.app.explore", "snapshot": "ufm.app.explore.Explorer.snapshot",
    "ProblemError": "ufm.errors.ProblemError", "objective": "ufm.problem.Problem.objective",
    "Problem": "ufm.problem.Problem",
    "ufm": "pyproject.toml::ufm = \"ufm.app.console:run\"", "fold_in": "jax.random.fold_in",
    "record": "solvers.descent.DescentState.record", "solver_value": "ufm.objectives.base.Objective.solver_value",
    "constraint_set": "ufm.objectives.base.Objective.constraint_set",
    "descent": "ufm.objectives.base.Capability.DESCENT", "relaxation": "ufm.objectives.base.Capability.RELAXATION",
    "gram": "ufm.objectives.base.Capability.GRAM", "reduced": "ufm.objectives.base.Capability.REDUCED",
    "batched": "ufm.objectives.base.Capability.BATCHED", "predict": ("ufm.objectives.base.Capability.PREDICT", "ufm.objectives.base.Objective.predict",
                "theory_checks.predictions.predict"),
    "status": "ufm.solution.Solution.status", "Status": "ufm.solution.Status", "str": "builtins.str",
    "info": "ufm.solution.Solution.info", "DescentInfo": "ufm.solution.DescentInfo",
    "metrics": "ufm.solution.DescentInfo.metrics", "ProgramInfo": "ufm.solution.ProgramInfo",
    "TypeError": "builtins.TypeError", "Starts": "ufm.solution.Starts",
    "optimal": "ufm.solution.Status.OPTIMAL", "stationary": "ufm.solution.Status.STATIONARY",
    "optimal_inaccurate": "ufm.solution.Status.OPTIMAL_INACCURATE", "gap_tol": "solvers.gd.solve(gap_tol)",
    "gram_certificate": "solvers.certificate.gram_certificate", "evaluate": "ufm.objectives.ce.evaluate",
    "SNAP_TOL": "solvers.certificate.SNAP_TOL", "_collapsed_rgap": "solvers.certificate._collapsed_rgap",
    "collapsed_slack": "solvers.certificate.collapsed_slack",
    "collapsed_gram_gradient": "ufm.objectives.scl.collapsed_gram_gradient",
    "method": "ufm.solution.Certificate.method", "gd": "solvers.gd",
    "certificate_slack": "solvers.certificate.certificate_slack",
    "name": ("ufm.objectives.base.ObjectiveOptions.name",), "min_class_size": "ufm.objectives.base.ObjectiveOptions.min_class_size",
    "uses_tau": "ufm.objectives.ce_options.CrossEntropy.uses_tau", "validate": "ufm.objectives.base.ObjectiveOptions.validate",
    "describe": "ufm.objectives.base.ObjectiveOptions.describe", "NAME": "ufm.objectives.base.Objective.NAME",
    "CAPABILITIES": "ufm.objectives.base.Objective.CAPABILITIES", "convex_optimum": "solvers.convex.convex_optimum",
    "solve_factored": "solvers.reduced.solve_factored", "solve_block": "solvers.reduced.solve_block",
    "certify_embeddings": "solvers.certificate.certify_embeddings", "problem_loss": "ufm.problem_loss",
    "start": "ufm.objectives.base.Objective.start", "gram_value_and_grad": "ufm.objectives.base.Objective.gram_value_and_grad",
    "loss": "ufm.objectives.base.Objective.loss", "log_excess": "ufm.objectives.scl.log_excess",
    "excess_constant": "ufm.objectives.base.Objective.excess_constant",
    "relaxation_expression": "ufm.objectives.base.Objective.relaxation_expression",
    "reduced_log_excess": "ufm.objectives.scl.reduced_log_excess", "reduced_excess": "ufm.objectives.scl.reduced_excess",
    "reduced_constant": "ufm.objectives.scl.reduced_constant", "reduced_expression": "ufm.objectives.scl.reduced_expression",
    "certify_mean_gram": "solvers.certificate.certify_mean_gram", "ObjectivePrediction": "ufm.objectives.base.ObjectivePrediction",
    "log_excess_packed": "ufm.objectives.scl.log_excess_packed",
    "log_excess_plain_packed": "ufm.objectives.scl.log_excess_plain_packed", "min_tau": "ufm.objectives.scl.min_tau",
    "rounding_estimate": "ufm.objectives.scl.rounding_estimate", "representatives": "ufm.objectives.scl.representatives",
    "class_rows_bucket": "ufm.objectives.scl.class_rows_bucket", "problem_batches": "ufm.objectives.scl.problem_batches",
    "anchor_gradient_rows": "ufm.objectives.scl.anchor_gradient_rows",
    "weight_gradient_rows": "ufm.objectives.scl.weight_gradient_rows", "loss_packed": "ufm.objectives.scl.loss_packed",
    "Config": "solvers.gd.Config", "ProblemShape": "ufm.problem.ProblemShape", "ProblemArrays": "ufm.problem.ProblemArrays",
    "Data": "solvers.gd.Data", "objective_of": "ufm.objectives.objective_of",
    "CLI_FLAGS": "ufm.objectives.ce_options.CrossEntropy.CLI_FLAGS",
    "CLI_ARGUMENTS": "ufm.objectives.ce_options.CrossEntropy.CLI_ARGUMENTS",
    "from_cli": "ufm.objectives.ce_options.CrossEntropy.from_cli", "anchor_parts": "ufm.objectives.scl.formula.anchor_parts",
    "positives_state": "ufm.objectives.scl.formula.positives_state",
    "cotangent_coefficients": "ufm.objectives.scl.formula.cotangent_coefficients",
    "scl_loss_packed": "ufm.objectives.scl.losses.scl_loss_packed", "chunk_size": "solvers.gd.solve(chunk_size)",
    "rows_product": "ufm.objectives.scl.precise.rows_product", "PLAIN_SWITCH": "solvers.gd.PLAIN_SWITCH",
    "PLAIN_MAX_NOISE": "solvers.gd.PLAIN_MAX_NOISE", "batch_excess_plain": "ufm.objectives.scl.plain.batch_excess_plain",
    "batch_log_excess": "ufm.objectives.scl.precise.batch_log_excess",
    "_evaluate_sharded": "ufm.objectives.scl.precise._evaluate_sharded",
    "test_no_function_is_longer_than_sixty_lines": "tests/test_layering.py::def test_no_function_is_longer_than_sixty_lines(",
    "solve_relaxation": "solvers.convex.solve_relaxation", "solve_reduced": "solvers.reduced.solve_reduced",
    "add_objective_options": "ufm.app.options.add_objective_options",
    "tangent": "ufm.constraint_sets.ConstraintSet.tangent", "direction": "ufm.constraint_sets.ConstraintSet.direction",
    "retract": "ufm.constraint_sets.ConstraintSet.retract", "point": "ufm.constraint_sets.ConstraintSet.point",
    "violation": "ufm.constraint_sets.ConstraintSet.violation",
    "random_point": "ufm.constraint_sets.ConstraintSet.random_point",
    "random_point_np": "ufm.constraint_sets.ConstraintSet.random_point_np",
    "ConstraintSet": "ufm.constraint_sets.ConstraintSet", "CONSTRAINT_SETS": "ufm.constraint_sets.CONSTRAINT_SETS",
    "test_numpy_and_jax_give_the_same_maps": "tests/test_constraint_sets.py::def test_numpy_and_jax_give_the_same_maps(",
    "array_module": "ufm.constraint_sets.array_module", "unit_sphere": "ufm.constraint_sets.unit_sphere",
    "GradientTransformationExtraArgs": "optax.GradientTransformationExtraArgs",
    "updates": "solvers.transforms.nonmonotone_armijo::def update(updates",
    "value": "solvers/descent.py::value=value", "value_fn": "solvers/descent.py::value_fn=",
    "value_and_grad_fn": "solvers/descent.py::\"value_and_grad_fn\"", "solve": "solvers.gd.solve",
    "accepted": "solvers/transforms.py::    accepted: jax.Array",
    "accepted_value": "solvers/transforms.py::    accepted_value: jax.Array",
    "accepted_grad": "solvers/transforms.py::    accepted_grad: optax.Updates",
    "KeepingTransformation": "solvers.transforms.KeepingTransformation", "add_parser": "ufm.app.commands.solve.add_parser",
    "cache_option": "ufm.app.parsing.cache_option", "problem_from_args": "ufm.app.options.problem_from_args",
    "count": "tests/test_cli.py::\"count\"", "COMMANDS": "ufm.app.cli.COMMANDS",
}

#: Backticked spans that are neither Python names nor paths, and what each is checked as.
CLI_SPANS = {"--help", "--version", "--method reduced", "--json", "--no-cache", "--no-escape", "ufm verify",
             "ufm predict", "ufm solve --loss <name>", "--method", "ufm predict --loss <name>", "--classifier",
             "--weight-decay", "--tau", "ufm solve --loss gram_target", "--loss", "--out"}
KEYWORDS = {"progress=": ("theory_checks.check.run_checks", "theory_checks.sweeps.sweep_imbalance"),
            "on_stage=": ("theory_checks.landscape.landscape_data",), "escape=False": ("solvers.gd.solve",),
            "certify=False": ("solvers.gd.solve",), "objective=True": ("ufm.app.options.add_problem_options",)}
STRINGS = {'"factored"': "solvers.reduced.PROGRAMS", '"block"': "solvers.reduced.PROGRAMS",
           '"general"': "solvers.reduced.PROGRAMS", '"auto"': "solvers.reduced.PROGRAMS",
           '"reduced-program"': "theory_checks.predictions.GEOMETRIES"}
#: Spans that name no code: templates, shell lines and the one signature written as a type.
NOT_CODE = {"<cache>/programs/<key>.jaxexport": "a path template (tested: test_programs_are_kept_under_cache_programs)",
            "<cache>/xla": "a path template (tested: test_programs_are_kept_under_cache_programs)",
            "ufm/objectives/<name>.py": "a path template", "ufm/objectives/<name>/": "a path template",
            "pip install ufm-scl": "a shell line (tested: the project's name in pyproject.toml)",
            "import ufm": "a Python statement", "JAX_ENABLE_X64=1": "an environment setting (test_startup)",
            "own-bound": "a capability's value (tested in test_capability_table_names_exist)",
            "(learning_rate, total_steps, constraint_set, stochastic) -> transform":
                "a signature (tested: test_optimiser_factories_take_the_stated_arguments)",
            "ufm/app/options.py: problem_from_args": "a file and its function (tested below)"}


def _classify() -> tuple[list[str], list[str], list[str], list[str]]:
    """(dotted names, bare names, paths, the rest) of the doc's backticked spans outside the layer table."""
    before, _, after = _layer_table()
    dotted, bare, paths, rest = [], [], [], []
    for token in tokens(before + after):
        head = token.split("(")[0]
        if token in NOT_CODE or token in CLI_SPANS or token in KEYWORDS or token in STRINGS:
            rest.append(token)
        elif re.fullmatch(r"[A-Za-z_]\w*", head):
            bare.append(token)
        elif re.fullmatch(r"[A-Za-z_][\w.]*", head):
            dotted.append(token)
        elif "/" in token:
            paths.append(token)
        else:
            rest.append(token)
    return dotted, bare, paths, rest


def _check_call(token: str, fn) -> None:
    """The argument names written in ``token`` (``f(a, b=...)``) are ``fn``'s parameters: the
    positional ones its first parameters, in order; ``...`` and expressions are skipped."""
    inner = token[token.index("(") + 1:token.rindex(")")]
    if not inner.strip():
        assert parameters(fn) == [], f"{token}: {fn} takes {parameters(fn)}"
        return
    names = parameters(fn)
    position = 0
    for arg in (a.strip() for a in inner.split(",")):
        if "=" in arg:
            assert arg.split("=")[0].strip() in names, f"{token}: {fn} has no parameter {arg.split('=')[0]}"
        elif re.fullmatch(r"[A-Za-z_]\w*", arg):
            assert names[position:position + 1] == [arg], f"{token}: {fn}'s parameters are {names}"
            position += 1
        else:
            position += 1


def _where(spec: str):
    """Check one BARE spec: a dotted name that resolves, ``f(p)`` (p a parameter of f), or
    ``file::text``."""
    if "::" in spec:
        path, text = spec.split("::", 1)
        if path.endswith((".py", ".toml")):
            assert text in source(path), f"{path} does not hold {text!r}"
            return path
        obj = resolve(path)
        assert text in inspect.getsource(obj), f"{path} does not hold {text!r}"
        return obj
    if spec.endswith(")"):
        fn = resolve(spec[:spec.index("(")])
        assert spec[spec.index("(") + 1:-1] in parameters(fn), spec
        return fn
    return resolve(spec)


def test_every_dotted_name_resolves_where_the_doc_says():
    """Every backticked dotted name (``solvers.certificate.certify_embeddings``, ``gd.FAMILY_MAX_ROWS``,
    ``Config.class_rows``, ``jax.shard_map``, ...) names an object, and a call written with argument
    names (``Problem.from_counts(counts, tau=..., ...)``) matches the signature."""
    dotted, _, _, _ = _classify()
    assert len(dotted) > 100
    failed = []
    for token in dotted:
        head = token.split("(")[0]
        first, _, rest = head.partition(".")
        if head.replace("()", "") in NOT_RESOLVED or head.rstrip(".") in NOT_RESOLVED:
            continue
        if first == "args":       # an argparse Namespace attribute: set by the command's main
            assert "validate_only" in source("ufm/app/cli.py")
            continue
        if first not in ALIASES:
            failed.append(f"{token}: unknown prefix {first}")
            continue
        try:
            obj = resolve(f"{ALIASES[first]}.{rest}" if rest else ALIASES[first])
            if "(" in token and first not in ("jax", "lax", "os", "signal", "optax", "scipy"):
                _check_call(token, obj)
        except (AttributeError, LookupError, ImportError, AssertionError) as err:
            failed.append(f"{token}: {err}")
    assert failed == []


def test_a_scoped_switch_exists_and_is_not_yet_used():
    """"JAX offers a scoped switch (`jax.enable_x64(True)` as a context manager; ...), but it is not yet
    used": the installed JAX's switch scopes float64, and no module of the packages calls one (the doc
    named ``jax.experimental.enable_x64``, which this JAX no longer has, until this test found it)."""
    says("JAX offers a scoped switch (`jax.enable_x64(True)` as a context manager; `jax.experimental.enable_x64()` "
         "in older JAX), but it is not yet used")
    import jax
    import jax.numpy as jnp

    with jax.enable_x64(True):
        assert jnp.ones(1).dtype == jnp.float64
    used = [p for pkg in ("ufm", "solvers", "theory_checks") for p in (ROOT / pkg).rglob("*.py")
            if "enable_x64(" in p.read_text()]
    assert used == []          # "it is not yet used"


def test_every_bare_name_is_where_the_code_has_it():
    """Every backticked bare name outside the layer table is listed in BARE with the place the code
    holds it, and that place holds it (a call written with argument names matches the signature:
    ``start(problem, key, dtype)``, ``reduced_expression(B, group_sizes, group_counts, tau)``, ...)."""
    _, bare, _, _ = _classify()
    unlisted = [t for t in bare if t.split("(")[0] not in BARE]
    assert unlisted == [], "add each to BARE with where the code has it"
    failed = []
    for token in bare:
        spec = BARE[token.split("(")[0]]
        try:
            found = [_where(s) for s in (spec if isinstance(spec, tuple) else (spec,))]
            functions = [f for f in found if callable(f) and not isinstance(f, str)]
            if "(" in token and token.split("(")[0] != "fold_in":     # fold_in: jax's, written loosely
                assert functions, f"{token}: no function at {spec}"
                _check_call(token, functions[0])
        except (AttributeError, LookupError, ImportError, AssertionError) as err:
            failed.append(f"{token}: {err}")
    assert failed == []


def test_every_path_the_doc_names_exists():
    _, _, paths, _ = _classify()
    missing = [p for p in paths if p not in NOT_CODE and not (ROOT / p.rstrip("/")).exists()]
    assert missing == []
    says("(`ufm/app/options.py: problem_from_args`)")
    assert "def problem_from_args(" in source("ufm/app/options.py")


def test_every_command_line_span_is_the_parser_s():
    """``--json``, ``--no-escape``, ``ufm solve --loss <name>``, ``--method reduced``, ...: each verb is a
    command and each option an option of the parser (a value after it: one of its choices)."""
    import argparse

    from ufm.app.cli import build_parser

    def every_option(parser) -> dict:
        """Option string -> its action, of the parser and all its subcommands (``sweep imbalance``, ...)."""
        found = {}
        for action in parser._actions:
            found.update(dict.fromkeys(action.option_strings, action))
            if isinstance(action, argparse._SubParsersAction):
                for child in action.choices.values():
                    found.update(every_option(child))
        return found

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    options = every_option(parser)
    _, _, _, rest = _classify()
    spans = [t for t in rest if t in CLI_SPANS]
    assert set(spans) == CLI_SPANS
    for span in spans:
        words = span.split()
        if words[0] == "ufm":
            assert words[1] in sub.choices, span
            words = words[2:]
        for i, word in enumerate(words):
            if word.startswith("--"):
                assert word in options, span
                value = words[i + 1] if i + 1 < len(words) else None
                if value is not None and not value.startswith(("<", "--")) and options[word].choices:
                    if word == "--loss":
                        continue          # gram_target: a loss the test registers (test_third_objective)
                    assert value in options[word].choices, span
    assert "ufm = \"ufm.app.console:run\"" in source("pyproject.toml")
    assert re.search(r'^name = "ufm-scl"', source("pyproject.toml"), flags=re.MULTILINE)      # pip install ufm-scl


def test_keyword_and_string_spans():
    """``progress=``, ``on_stage=``, ``escape=False``, ``certify=False``, ``objective=True`` are parameters
    of the functions the doc means; ``"factored"``, ``"block"``, ``"general"``, ``"auto"`` the reduced
    programs and ``"reduced-program"`` a geometry."""
    _, _, _, rest = _classify()
    assert {t for t in rest if t in KEYWORDS} == set(KEYWORDS)
    for span, functions in KEYWORDS.items():
        for name in functions:
            assert span.split("=")[0] in parameters(resolve(name)), (span, name)
    for span, where in STRINGS.items():
        says(span)
        assert span.strip('"') in resolve(where), span


# ================================================================================================ the layer table
#: The non-module names in the layer table's "holds" cells, and where each is (None: checked in
#: test_layer_table_names_that_are_not_modules: the verify command, add_parser, parsing's options).
TABLE_NAMES = {
    "KeepingTransformation": "solvers.transforms.KeepingTransformation",
    "certificate_slack": "solvers.certificate.certificate_slack",
    "ufm verify": None, "add_parser": None, "--json": None, "--out": None, "--no-cache": None,
}
#: Each row's package folder (the folder its "holds" names are relative to).
PACKAGES = {"1": ROOT / "ufm", "2": ROOT / "solvers", "3": ROOT / "theory_checks", "4": ROOT / "ufm" / "app"}


def _rows() -> dict[str, list[str]]:
    _, table, _ = _layer_table()
    rows = {}
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows[cells[0].split()[0]] = cells
    return rows


def _named_modules(cell: str, base: Path) -> tuple[set[Path], list[str]]:
    """(module files, other names) of a "holds" cell: a name is a module relative to the folder it is
    written in (``objectives/`` (...) and ``commands/`` (...) open their folder until the bracket closes)."""
    stack, opened, modules, others = [base], None, set(), []
    for m in re.finditer(r"`([^`]+)`|\(|\)", cell):
        if m.group(0) == "(":
            stack.append(opened or stack[-1])
        elif m.group(0) == ")":
            stack.pop()
        else:
            token, opened = m.group(1), None
            path = stack[-1] / token.rstrip("/")
            if token.endswith("/") and (path / "__init__.py").exists():
                modules.add(path / "__init__.py")
                opened = path
            elif path.with_suffix(".py").exists():
                modules.add(path.with_suffix(".py"))
            else:
                others.append(token)
        if m.group(0) in "()":
            opened = None
    return modules, others


def _actual(layer: str) -> set[Path]:
    base = PACKAGES[layer]
    files = set(base.rglob("*.py")) - {base / "__init__.py"}
    if layer == "1":
        files = {f for f in files if "app" not in f.relative_to(base).parts} - {base / "__main__.py"}
    if layer == "4":
        files.add(ROOT / "ufm" / "__main__.py")
    return files


@pytest.mark.parametrize("layer", ["1", "2", "3", "4"])
def test_layer_table_lists_exactly_the_modules_of_its_package(layer):
    """Each row of the layer table names every module of its package, each where it is, and no other
    (row 1: ``ufm/`` without ``ufm/app``; row 4: ``ufm/app/`` and ``ufm/__main__.py``)."""
    says("| layer | package | holds | imports |")
    cells = _rows()[layer]
    base = PACKAGES[layer]
    named, others = _named_modules(cells[2], base)
    if layer == "4":
        says("| 4 front ends | `ufm/app/`, `ufm/__main__.py` |")
        named.add(ROOT / "ufm" / "__main__.py")
    if layer == "1":
        says("| 1 model | `ufm/` (not `ufm/app`) |")
    actual = _actual(layer)
    assert sorted(map(str, named - actual)) == [] and sorted(map(str, actual - named)) == []
    assert set(others) <= set(TABLE_NAMES), others


def test_layer_table_names_that_are_not_modules():
    """``KeepingTransformation`` and ``certificate_slack`` are where the table puts them; ``ufm verify``
    is the verify command of ``catalogue`` / ``check``; each verb of ``commands/`` has its
    ``add_parser`` and handler and is one of ``ufm.app.cli.COMMANDS``; ``parsing`` adds the shared
    ``--json``, ``--out``, ``--no-cache``."""
    import argparse

    from ufm.app import cli, parsing

    rows = _rows()
    says("`transforms` (BB, nonmonotone Armijo, the declaration `KeepingTransformation`)",
         "`certificate` (and its slack, `certificate_slack`)", "`catalogue` and `check` (`ufm verify`)")
    for where in TABLE_NAMES.values():
        if where:
            resolve(where)
    assert "from theory_checks.catalogue import" in source("ufm/app/commands/verify.py")
    says("`commands/` (one module per verb: `batches`, `solve`, `predict`, `compare`, `verify`, `sweep`, "
         "`landscape`, `explore`, each with its `add_parser` and handler)")
    verbs = re.search(r"`commands/` \(one module per verb: (.*?), each with", rows["4"][2]).group(1)
    listed = re.findall(r"`(\w+)`", verbs)
    assert [m.__name__.rsplit(".", 1)[1] for m in cli.COMMANDS] == listed
    for command in cli.COMMANDS:
        assert parameters(command.add_parser) == ["sub"]
        assert any(n.startswith("cmd_") for n in dir(command)), command.__name__
    parser = argparse.ArgumentParser()
    parsing.output_options(parser, figure=True)
    parsing.cache_option(parser)
    says("`parsing` (the parser's one-line errors, the shared `--json`, `--out`, `--no-cache`)")
    assert {"--json", "--out", "--no-cache"} <= {s for a in parser._actions for s in a.option_strings}
    with pytest.raises(Exception) as err:               # the parser's one-line errors
        parsing.Parser(prog="ufm test").parse_args(["--no-such-option"])
    assert "\n" not in str(err.value) and "--help" in str(err.value)


# ---------------------------------------------------------------- the imports column
def _third_party(files) -> dict[str, dict[str, bool]]:
    """top-level package -> {file: imported at module level} for the files' non-project, non-stdlib imports."""
    found: dict[str, dict[str, bool]] = {}
    for path in files:
        for top, at_top in imports_of(path):
            if top in sys.stdlib_module_names or top in ("ufm", "solvers", "theory_checks", "__future__"):
                continue
            rel = str(path.relative_to(ROOT))
            found.setdefault(top, {})[rel] = found.get(top, {}).get(rel, False) or at_top
    return found


def test_the_model_imports_what_its_row_says():
    """Row 1: "numpy, scipy, jax, optax (`programs`: its version in the key); cvxpy in
    `objectives/scl/reduced` (inside its functions) and `objectives/scl/relaxation` (at its top; ...)".
    jaxlib is read with jax (its version, in the key)."""
    says("| numpy, scipy, jax, optax (`programs`: its version in the key); cvxpy in `objectives/scl/reduced` "
         "(inside its functions) and `objectives/scl/relaxation` (at its top; the registry imports it only when "
         "`relaxation_expression` is first asked for) |")
    found = _third_party(_actual("1"))
    assert set(found) <= {"numpy", "scipy", "jax", "jaxlib", "optax", "cvxpy"}, found
    assert set(found["optax"]) == {"ufm/programs.py"}
    # cvxpy: ufm/objectives/base.py only under TYPE_CHECKING (not an import at run time)
    assert set(found["cvxpy"]) - {"ufm/objectives/base.py"} == {"ufm/objectives/scl/relaxation.py",
                                                                 "ufm/objectives/scl/reduced.py"}
    assert not found["cvxpy"]["ufm/objectives/scl/reduced.py"] and not found["cvxpy"]["ufm/objectives/base.py"]
    assert found["cvxpy"]["ufm/objectives/scl/relaxation.py"]


def test_the_solvers_import_what_their_row_says():
    """Row 2: "the model; numpy, scipy, jax, optax, cvxpy; clarabel (`cvx_common`, inside a function ...)"."""
    says("| the model; numpy, scipy, jax, optax, cvxpy; clarabel (`cvx_common`, inside a function: its settings' "
         "names) |")
    found = _third_party(_actual("2"))
    assert set(found) <= {"numpy", "scipy", "jax", "optax", "cvxpy", "clarabel"}
    assert set(found["clarabel"]) == {"solvers/cvx_common.py"} and not found["clarabel"]["solvers/cvx_common.py"]


# ================================================================================================ starting fast
def test_startup_test_runs_31_calls():
    says("tests/test_startup.py runs 31 such calls in a fresh interpreter and lists what got imported")
    tree = ast.parse(source("tests/test_startup.py"))
    calls = next(n.value for n in tree.body if isinstance(n, ast.Assign)
                 and any(getattr(t, "id", None) == "LIGHT_CALLS" for t in n.targets))
    assert len(calls.elts) == 31


LEAN = r"""
import sys, json
out = {}
import ufm
out["import ufm"] = "jax" in sys.modules
import ufm.problem, ufm.batching, ufm.blocks, ufm.objectives.ce_options, ufm.objectives.scl_options
import solvers.sizing, solvers.defaults, ufm.app.explore_state
out["checks"] = [m for m in ("jax", "cvxpy", "matplotlib", "scipy.optimize") if m in sys.modules]
import theory_checks.catalogue
out["catalogue"] = [m for m in ("jax", "cvxpy", "solvers.gd", "scipy.optimize") if m in sys.modules]
from ufm.objectives import OBJECTIVES
OBJECTIVES.options("ce"); OBJECTIVES.capabilities("ce"); OBJECTIVES.capabilities("scl")
out["registry"] = [m for m in ("ufm.objectives.ce", "jax") if m in sys.modules]
from ufm.problem import Problem
from ufm.batching import Batching
Problem.from_counts([10, 10, 10], tau=0.5, batching=Batching.random(16))
out["wide random"] = "jax" in sys.modules
OBJECTIVES["ce"]
out["looked up"] = "ufm.objectives.ce" in sys.modules
import solvers.reduced
out["reduced"] = [m for m in ("jax", "cvxpy") if m in sys.modules]
import solvers.convex
out["convex"] = [m for m in ("jax", "cvxpy") if m in sys.modules]
print(json.dumps(out))
"""


def test_what_loads_when_in_a_fresh_interpreter():
    """``import ufm`` loads no JAX; the modules the checks need load none; a registered loss's
    implementation is imported on its first lookup (capabilities and options are read without it); a
    reshuffled batching whose widest batch proves a positive pair beside a negative is not drawn
    (batches of 16 > k = 3 and > the largest class, 10); importing the catalogue loads no solver;
    ``solvers.reduced`` loads no cvxpy, ``solvers.convex`` does."""
    says("`import ufm` loads no JAX",
         "what the checks need lives in modules without JAX (`ufm.problem`, `ufm.batching`, `ufm.blocks`, "
         "`ufm.objectives.ce_options`, `solvers.sizing`, `solvers.defaults`, `ufm.app.explore_state`)",
         "cvxpy is imported with `solvers.convex` (at module level) and by `solvers.reduced` only when it builds "
         "the block or the general program",
         "`Problem` draws them only where the widest batch does not already prove a positive pair beside a negative.",
         "the implementation is imported on its first lookup", "and the catalogue imports its measuring tools "
         "when a check runs",
         "in a module without JAX so that the command checks a problem before JAX loads")
    done = _python(LEAN)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out == {"import ufm": False, "checks": [], "catalogue": [], "registry": [], "wide random": False,
                   "looked up": True, "reduced": ["jax"], "convex": ["jax", "cvxpy"]}


def test_reduced_imports_cvxpy_only_in_its_block_and_general_programs():
    """"by `solvers.reduced` only when it builds the block or the general program": every cvxpy import
    of solvers/reduced.py is inside a function that builds one of them (or TYPE_CHECKING)."""
    says("by `solvers.reduced` only when it builds the block or the general program; the factored reduced path "
         "loads none unless the caller has imported `solvers.convex`, as the command's `--method reduced` and "
         "the sweeps do")
    tree = ast.parse(source("solvers/reduced.py"))
    inside = {f.name for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)
              for n in ast.walk(f) if isinstance(n, ast.Import) and n.names[0].name == "cvxpy"}
    assert inside and inside <= {"build_reduced", "build_block", "_solve_reduced", "solve_block"}, inside
    assert "program == \"factored\"" in inspect.getsource(resolve("solvers.reduced._solve_reduced"))
    assert "from solvers.convex import solve_reduced" in source("theory_checks/sweeps.py")
    assert '"solvers.gd" if args.method == "gd" else "solvers.convex"' in source("ufm/app/commands/solve.py")


def test_console_exits_with_os_exit_once_jax_is_loaded():
    says("The console command exits with `os._exit` after flushing its output once JAX is loaded")
    body = inspect.getsource(resolve("ufm.app.cli.run"))
    assert body.index("flush()") < body.index('if "jax" in sys.modules:') < body.index("os._exit(code)")


SIGNAL = r"""
import os, signal, sys, time
from ufm.app import signals
assert signals.install()
from ufm import atomic          # after install: it imports NumPy, whose BLAS threads must inherit the mask
blocked = signal.pthread_sigmask(signal.SIG_BLOCK, set())
print(sorted(int(s) for s in blocked), flush=True)
signals.CALL["json"] = %r
pending = %r
open(pending, "w").close()
atomic.PENDING.add(pending)
os.kill(os.getpid(), signal.SIG%s)
time.sleep(20)
"""


@pytest.mark.parametrize("name, code, as_json", [("INT", 130, False), ("TERM", 143, True)])
def test_a_signal_ends_the_command_at_once_with_one_line(name, code, as_json, tmp_path):
    """``ufm.app.signals.install`` blocks SIGINT and SIGTERM and leaves them to one waiting thread; the
    signal ends the process with one line (and with ``--json`` one JSON object), exit 128 + its number
    (130, 143), after removing the temporary file being written."""
    says("first blocks SIGINT and SIGTERM and leaves them to one thread waiting in `signal.sigwait` "
         "(`ufm.app.signals`)", "a signal ends the command at once with one line (and a JSON object with "
         "`--json`), exit 130 or 143, after removing the temporary files being written.")
    assert 128 + getattr(signal, f"SIG{name}") == code
    pending = tmp_path / ".target.json.tmp"
    done = _python(SIGNAL % (as_json, str(pending), name), timeout=30)
    assert done.returncode == code
    out = done.stdout.splitlines()
    assert sorted(json.loads(out[0])) == sorted([int(signal.SIGINT), int(signal.SIGTERM)])
    assert len(done.stderr.strip().splitlines()) == 1 and "interrupted by SIG" in done.stderr
    assert (json.loads(out[1])["exit_code"] == code and len(out) == 2) if as_json else len(out) == 1
    assert not pending.exists()


def test_console_routes_signals_before_anything_else():
    """``ufm.app.console.run`` installs the routing before it imports the command (NumPy's import starts
    the BLAS threads), and ``ufm.app.signals`` imports only the standard library at its top."""
    says("Its entry point, `ufm.app.console.run`, first blocks SIGINT and SIGTERM",
         "before NumPy's import starts its BLAS threads (every later thread inherits the mask)")
    body = inspect.getsource(resolve("ufm.app.console.run"))
    assert body.index("signals.install()") < body.index("from ufm.app.cli import")
    assert all(top in sys.stdlib_module_names or top == "__future__"
               for top, at_top in imports_of(ROOT / "ufm/app/signals.py") if at_top)
    assert [n for n in ast.parse(source("ufm/app/console.py")).body if isinstance(n, (ast.Import, ast.ImportFrom))
            and not (isinstance(n, ast.ImportFrom) and n.module == "__future__")] == []


#: Calls that write a file: by name, or by (module, name).
_WRITERS = {"write_text", "write_bytes", "fdopen", "mkstemp", "savefig"}
_MODULE_WRITERS = {("np", "save"), ("np", "savez"), ("np", "savetxt"), ("os", "replace"), ("os", "rename"),
                   ("json", "dump"), ("pickle", "dump")}


def _file_writes(path: Path) -> list[tuple[int, str]]:
    """(line, call) of every call in ``path`` that writes a file itself: ``_WRITERS``, ``_MODULE_WRITERS``,
    ``open`` with a mode that writes; ``savefig`` only into a buffer in ufm/app/plots.py (allowed there)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call):
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        owner = getattr(getattr(node.func, "value", None), "id", "")
        modes = [a.value for a in node.args[1:2] if isinstance(a, ast.Constant)] + \
                [k.value.value for k in node.keywords if k.arg == "mode" and isinstance(k.value, ast.Constant)]
        writes_mode = any(isinstance(m, str) and ("w" in m or "a" in m) for m in modes)
        into_buffer = name == "savefig" and path == ROOT / "ufm/app/plots.py"
        if (name in _WRITERS or (owner, name) in _MODULE_WRITERS or (name == "open" and writes_mode)) and not into_buffer:
            found.append((node.lineno, name))
    return found


def test_every_user_file_goes_through_write_atomically(tmp_path):
    """No module of the packages writes a file itself (no ``open(..., "w")``, ``write_text``, ``savefig``
    to a path, ``np.save``, ``json.dump``) except ``ufm.atomic`` and the compile cache's own entries;
    a failing write leaves the file that was there and no temporary file."""
    says("Every file the toolkit writes for the user goes through `ufm.atomic.write_atomically` (a temporary "
         "file beside the target, renamed into place), so a full disk or a signal never damages the file that "
         "was there.")
    from ufm.atomic import write_atomically
    from ufm.errors import OutputError

    # the atomic writer itself, the compile cache's own entries (written atomically too, not for the user),
    # and cli_values' probe whether an --out path can be written (open "ab", no byte written)
    allowed = {"ufm/atomic.py", "ufm/programs.py", "ufm/compile_cache.py", "ufm/app/cli_values.py"}
    found = [f"{path.relative_to(ROOT)}:{line} {name}" for pkg in ("ufm", "solvers", "theory_checks")
             for path in (ROOT / pkg).rglob("*.py") if str(path.relative_to(ROOT)) not in allowed
             for line, name in _file_writes(path)]
    assert found == []
    assert "write_bytes_atomically(path, rendered.getvalue())" in source("ufm/app/plots.py")
    target = tmp_path / "kept.json"
    target.write_text("old")

    def fails(out):
        out.write(b"partial")
        raise OSError(28, "No space left on device")
    with pytest.raises(OutputError):
        write_atomically(target, fails)
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["kept.json"]


# ================================================================================================ compiled programs
def test_fast_compile_cost_and_options():
    """``FAST_COMPILE_COST`` = 256^2; ``FAST_COMPILE_OPTIONS``: no LLVM optimisation, the classic fusion
    emitters; a program whose cost is at most that compiles with them (on a CPU), a larger one without."""
    says("`FAST_COMPILE_COST` = 256^2 compiles with `FAST_COMPILE_OPTIONS` (no LLVM optimisation, the classic "
         "fusion emitters)")
    import jax

    from ufm import programs

    base, power = (int(x) for x in re.search(r"`FAST_COMPILE_COST` = (\d+)\^(\d+)", DOC).groups())
    assert programs.FAST_COMPILE_COST == base ** power
    assert programs.FAST_COMPILE_OPTIONS == {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}
    if jax.default_backend() != "cpu":
        pytest.skip("the options apply on a CPU")
    made = programs.Program(lambda x, size: x, cost=lambda x, size: size, name="test.cost")
    assert made._options((1.0,), {}, {"size": base ** power}) == programs.FAST_COMPILE_OPTIONS
    assert made._options((1.0,), {}, {"size": base ** power + 1}) == {}


def test_compile_trade_quoted_from_the_stored_startup_section():
    """"gradient descent's whole loop at n = 40 compiles in about a third of the time, and runs in
    milliseconds either way (benchmarks/, section `startup`, measures the trade at n = 40, 250 and 1000)"."""
    says("gradient descent's whole loop at n = 40 compiles in about a third of the time, and runs in milliseconds "
         "either way (benchmarks/, section `startup`, measures the trade at n = 40, 250 and 1000; README, "
         "Performance)")
    trade = {row["n"]: row for row in RESULTS["startup"]["compile_trade"]}
    assert sorted(trade) == [40, 250, 1000]
    ratio = trade[40]["fast_compile_seconds"] / trade[40]["default_compile_seconds"]
    assert 0.25 <= ratio <= 0.42, ratio                                    # about a third
    assert max(trade[40]["fast_run_seconds"], trade[40]["default_run_seconds"]) < 0.1   # milliseconds


def test_the_key_fingerprints_versions_flags_and_the_toolkit_source(monkeypatch):
    """"the key adds a fingerprint of everything else that could change the program (the toolkit's
    source, the jax, jaxlib, optax and numpy versions, the JAX settings that change a trace,
    `XLA_FLAGS`, the device and the CPU's flags)": each of them changes the fingerprint."""
    says("the key adds a fingerprint of everything else that could change the program (the toolkit's source, "
         "the jax, jaxlib, optax and numpy versions, the JAX settings that change a trace, `XLA_FLAGS`, the "
         "device and the CPU's flags)")
    import jax
    import jaxlib
    import optax

    from ufm import programs

    fingerprint = programs.fingerprint.__wrapped__
    first = fingerprint()
    assert fingerprint() == first
    monkeypatch.setenv("XLA_FLAGS", "--xla_test_flag_of_the_architecture_claims")
    assert fingerprint() != first
    monkeypatch.delenv("XLA_FLAGS")
    for module in (jax, jaxlib, optax, np):
        with monkeypatch.context() as m:
            m.setattr(module, "__version__", "0.0.0-test")
            assert fingerprint() != first, module.__name__
    with monkeypatch.context() as m:
        m.setattr(programs, "_cpu_model", lambda: "another CPU")
        assert fingerprint() != first
    with monkeypatch.context() as m:
        m.setattr(programs, "_source_digest", lambda: "another source")
        assert fingerprint() != first
    assert set(programs._PACKAGES) == {"ufm", "solvers", "theory_checks"}
    assert "jax_enable_x64" in inspect.getsource(fingerprint)


def test_programs_are_kept_under_cache_programs_and_executables_under_cache_xla():
    """Where the compile cache is on (the suite's conftest turns it on), a program is exported into
    ``<cache>/programs/<key>.jaxexport`` and JAX's persistent cache is ``<cache>/xla``."""
    says("exported with `jax.export` into `<cache>/programs/<key>.jaxexport`",
         "Its executable is kept by JAX's persistent compilation cache (`<cache>/xla`).")
    import jax

    from ufm import compile_cache
    from ufm.objectives.scl.formula import reduced_excess

    programs_dir = compile_cache.cache_dir()
    if programs_dir is None:
        pytest.skip("the compile cache is off in this process")
    assert programs_dir.name == "programs"
    assert jax.config.jax_compilation_cache_dir == str(programs_dir.parent / "xla")
    reduced_excess(np.eye(3), [3, 4, 5], 0.5)          # a toolkit program: built or loaded, kept on disk
    assert [p for p in programs_dir.iterdir() if re.fullmatch(r"[0-9a-f]{64}\.jaxexport", p.name)]


def test_an_unusable_cache_is_one_warning_and_the_run_goes_on(tmp_path, monkeypatch):
    says("an unreadable or unwritable cache is one `CompileCacheWarning` and the run goes on without it")
    from ufm import compile_cache, programs

    monkeypatch.setitem(compile_cache._state, "warned", False)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    before = compile_cache.cache_dir()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert compile_cache.enable_compile_cache(blocker / "cache") is None
        entry = tmp_path / ("0" * 64 + ".jaxexport")
        entry.write_bytes(b"not a program")
        assert programs._load(entry, [], None) is None
    assert [w.category for w in caught] == [compile_cache.CompileCacheWarning]
    assert not entry.exists() and compile_cache.cache_dir() == before


def test_enable_compile_cache_is_the_one_call_and_the_command_makes_it():
    says("`ufm.compile_cache.enable_compile_cache` is the one call that turns this on (the command makes it; "
         "`--no-cache`, `UFM_NO_CACHE`)")
    calls = [str(p.relative_to(ROOT)) for pkg in ("ufm", "solvers", "theory_checks") for p in (ROOT / pkg).rglob("*.py")
             if "enable_compile_cache(" in p.read_text() and p.name != "compile_cache.py"]
    assert calls == ["ufm/app/running.py"]
    body = inspect.getsource(resolve("ufm.app.running.start_work"))
    assert "args.no_cache or compile_cache.cache_disabled_by_environment()" in body


def test_inside_another_transformation_a_program_is_plain_jit():
    says("Called inside another transformation (`jit`, `grad`, `vmap`), a program is plain `jax.jit`.")
    import jax
    import jax.numpy as jnp

    from ufm.programs import Program

    made = Program(lambda x: jnp.sin(x) * x, name="test.inside")
    jax.jit(made)(1.0)
    jax.grad(made)(1.0)
    jax.vmap(made)(jnp.ones(3))
    assert made._cache_size() == 0             # nothing built by the program itself
    made(1.0)
    assert made._cache_size() == 1


def test_a_user_class_in_the_static_arguments_keeps_the_program_in_memory_only():
    says("A compiled program whose static arguments hold a class defined outside the toolkit is kept in memory "
         "only (its code is not in the disk cache's fingerprint).")
    from ufm.objectives.scl_options import SCL
    from ufm.programs import _static_name

    @dataclasses.dataclass(frozen=True)
    class Outside:
        name: str = "outside"

    assert _static_name({"objective": SCL()}) is not None
    assert _static_name({"objective": Outside()}) is None


# ---------------------------------------------------------------- compiling less
def test_shape_families():
    """"A small full-batch problem of SCL's batched driver (<= `gd.FAMILY_MAX_ROWS` = 256 rows, not
    row-sharded) runs in the program of its family: rows, dimension and classes rounded up to powers
    of two (at least 32, 8 and 8)"."""
    says("A small full-batch problem of SCL's batched driver (<= `gd.FAMILY_MAX_ROWS` = 256 rows, not row-sharded)",
         "rows, dimension and classes rounded up to powers of two (at least 32, 8 and 8)")
    from types import SimpleNamespace

    from solvers import gd
    from ufm.batching import Batching
    from ufm.problem import Problem

    assert gd.FAMILY_MAX_ROWS == 256
    assert (gd.FAMILY_LEAST_ROWS, gd.FAMILY_LEAST_DIM, gd.FAMILY_LEAST_CLASSES) == (32, 8, 8)
    single = SimpleNamespace(mesh=None)
    assert gd._family(Problem.from_counts([5, 4, 3], tau=0.5), single) == (32, 8, 8)
    assert gd._family(Problem.from_counts([30, 20, 3], tau=0.5, dim=9), single) == (64, 16, 8)
    assert gd._family(Problem.from_counts([10] * 9, tau=0.5, dim=20), single) == (128, 32, 16)
    assert gd._family(Problem.from_counts([128, 128], tau=0.5), single) == (256, 8, 8)
    assert gd._family(Problem.from_counts([129, 128], tau=0.5), single) is None        # > 256 rows
    assert gd._family(Problem.from_counts([5, 4, 3], tau=0.5), SimpleNamespace(mesh=object())) is None
    batched = Problem.from_counts([8, 8, 8], tau=0.5, batching=Batching.binding(6))
    assert gd._family(batched, single) is None


def test_the_other_padded_shapes():
    """"The full-batch loss (rows to a power of two of at least 64, columns and classes at least 8),
    the certificate's rows (batch width and dimension, at least 32 and 8) and the n x n program's
    evaluation (G and the batch width, at least 32) are padded to powers of two too"; random starts
    are one flat draw of a power-of-two length."""
    says("The full-batch loss (rows to a power of two of at least 64, columns and classes at least 8), the "
         "certificate's rows (batch width and dimension, at least 32 and 8) and the n x n program's evaluation "
         "(G and the batch width, at least 32) are padded to powers of two too",
         "random starts are one flat draw of a power-of-two length, cut")

    def least(module: str, function: str) -> list[int]:
        """The lower bounds of the bucket calls in one function, in order."""
        fn = next(n for n in ast.walk(ast.parse(source(module))) if isinstance(n, ast.FunctionDef) and n.name == function)
        calls = [n for n in ast.walk(fn) if isinstance(n, ast.Call)
                 and getattr(n.func, "id", "") in ("bucket", "_bucket") and len(n.args) == 2]
        return [n.args[1].value for n in sorted(calls, key=lambda n: (n.lineno, n.col_offset))]

    assert sorted(least("ufm/objectives/scl/losses.py", "full_batch_loss_bucketed")) == [8, 8, 64]
    assert least("solvers/certificate.py", "_log_excess_and_gradient")[:2] == [32, 8]     # width, dimension
    assert least("ufm/objectives/scl/gram.py", "gram_value_and_grad") == [32, 32]          # G, batch width
    from ufm.programs import bucket

    assert [bucket(x, 256) for x in (1, 256, 257, 3000)] == [256, 256, 512, 4096]
    assert "bucket(size, 256)" in inspect.getsource(resolve("ufm.constraint_sets.random_point"))


def test_even_groups():
    """"`gd._group`: ceil(runs / groups) each, so 20 starts in two groups of 10, not 16 + 4; 7 in 4 + 3";
    a user's lanes is used as given; ``solvers.generic`` takes no lanes."""
    says("(`gd._group`: ceil(runs / groups) each, so 20 starts in two groups of 10, not 16 + 4; 7 in 4 + 3)",
         "A `lanes` given by the user is used as given by the batched driver (an objective without batched "
         "kernels runs its starts through `solvers.generic`, which vmaps them all and takes no `lanes`).")
    from solvers import gd, generic

    def groups(runs: int, default: int) -> list[int]:
        size = gd._group(None, runs, default) or runs
        return [min(size, runs - i) for i in range(0, runs, size)]

    assert groups(20, 16) == [10, 10]
    assert groups(7, 4) == [4, 3]
    for runs in range(1, 40):
        for default in range(1, 20):
            n_groups = math.ceil(runs / default)
            assert (gd._group(None, runs, default) or runs) == math.ceil(runs / n_groups)
    assert gd._group(3, 20, 16) == 3 and gd._group(5, 7, 4) == 5
    assert "lanes" not in parameters(generic.solve_many)
    assert "jax.vmap" in source("solvers/generic.py")


def test_the_suite_shares_one_compile_cache_and_drops_what_each_module_compiled():
    says("The test suite shares one compile cache among its workers (tests/conftest.py: the controller makes a "
         "directory before the workers start)", "the conftest still drops what each module compiled")
    conftest = source("tests/conftest.py")
    configure = conftest[conftest.index("def pytest_configure"):conftest.index("def pytest_unconfigure")]
    assert "mkdtemp" in configure and "enable_compile_cache" in configure
    assert 'scope="module"' in conftest and "programs.clear()" in conftest


def test_theory_checks_take_a_progress_callable():
    says("Theory checks report progress through a callable they are given (`progress=`, or the landscape's "
         "`on_stage=`); they never import the front end's bar")
    taking = [n for n in ("sweeps", "check", "compare", "landscape")
              for _, fn in inspect.getmembers(importlib.import_module(f"theory_checks.{n}"), inspect.isfunction)
              if "progress" in parameters(fn) or "on_stage" in parameters(fn)]
    assert {"check", "sweeps", "landscape"} <= set(taking)           # check.run_checks runs the catalogue
    front = [(p.name, node.lineno) for p in (ROOT / "theory_checks").rglob("*.py") for node in ast.walk(ast.parse(
        p.read_text())) if isinstance(node, (ast.Import, ast.ImportFrom)) and any(
        (name or "").startswith("ufm.app") for name in [getattr(node, "module", None)] + [a.name for a in node.names])]
    assert front == []


def test_figures_and_explorer():
    says("`sweep_panel` merges coinciding lines and marks floors; two columns at most",
         "The class-mean picture is `ufm.geometry.means_picture` (metric MDS of the means and the origin, SMACOF, "
         "with its stress)", "it solves on slider release and `snapshot(path)` saves its panels as a figure "
         "without widgets")
    from ufm import geometry
    from ufm.app import explore

    assert "ncols = min(2, len(panels))" in source("ufm/app/plots.py")
    assert "SMACOF" in geometry.means_picture.__doc__ and "origin" in geometry.means_picture.__doc__
    assert "stress" in {f for f in getattr(geometry.MeansPicture, "_fields", ())} | set(
        getattr(geometry.MeansPicture, "__dataclass_fields__", {}))
    assert parameters(explore.Explorer.snapshot) == ["path"]
    assert "button_release_event" in source("ufm/app/explore.py")
    assert "matplotlib.widgets" in source("ufm/app/explore.py")


# ================================================================================================ the flow
def test_problem_from_counts_and_the_default_objective():
    says("`Problem.from_counts(counts, tau=..., relu=..., dim=..., batching=..., prototypes=..., objective=...)` "
         "validates everything once (one `ProblemError` line). `objective` holds the options of a registered "
         "loss: `ufm.SCL()` (the default) or a `ufm.CrossEntropy`.",
         "The default loss is `ufm.objectives.DEFAULT_OBJECTIVE` (`ufm.problem.DEFAULT_OBJECTIVE` holds its options)")
    import ufm
    from ufm.objectives import DEFAULT_OBJECTIVE, OBJECTIVES
    from ufm.problem import DEFAULT_OBJECTIVE as default_options
    from ufm.problem import Problem

    assert Problem.from_counts([3, 3], tau=0.5).objective == ufm.SCL()
    assert DEFAULT_OBJECTIVE == "scl" and default_options == OBJECTIVES.options(DEFAULT_OBJECTIVE)()
    assert isinstance(ufm.CrossEntropy(), OBJECTIVES.options("ce"))
    with pytest.raises(ufm.ProblemError) as err:
        Problem.from_counts([3, 1], tau=0.5)
    assert "\n" not in str(err.value)


def test_choose_program():
    """"`solvers.reduced.choose_program` names the reduced program: `"factored"` (the default ...),
    `"block"` or `"general"` (cvxpy; `"auto"` picks one of these when a cvxpy solver is named)"."""
    says('`solvers.reduced.choose_program` names the reduced program: `"factored"` (the default:',
         '`"block"` or `"general"` (cvxpy; `"auto"` picks one of these when a cvxpy solver is named)')
    from solvers.reduced import choose_program
    from ufm.problem import Problem

    step = Problem.from_counts([8, 8, 2, 2], tau=0.5)
    distinct = Problem.from_counts([8, 6, 4, 2], tau=0.5)
    assert choose_program(step) == "factored"
    assert choose_program(step, solver="CLARABEL") in ("block", "general")
    assert choose_program(distinct, solver="CLARABEL") in ("block", "general")
    assert {choose_program(step, p) for p in ("factored", "block", "general")} == {"factored", "block", "general"}


def test_the_factored_program_compiles_once_per_k_rank_and_relu():
    says("compiled once per (k, rank, ReLU) with counts and tau traced")
    from solvers import reduced

    assert set(reduced._factored_run.static_argnames) == {"objective", "relu", "max_iter", "grad_tol"}
    assert parameters(reduced._factored)[:3] == ["V0", "counts", "tau"]       # traced: V0 (k, rank), counts, tau


def test_solution_status_is_a_str_enum_and_records_are_typed():
    says("its `status` is a `Status` (a `str` enum: it compares, prints and serialises as its value)",
         "A misspelt field is a `TypeError` where it is written.")
    from ufm.solution import DescentInfo, ProgramInfo, Solution, Status

    assert issubclass(Status, str)
    assert Status.OPTIMAL == "optimal" and str(Status.OPTIMAL) == "optimal" and f"{Status.STATIONARY}" == "stationary"
    assert json.dumps({"s": Status.OPTIMAL_INACCURATE}) == '{"s": "optimal_inaccurate"}'
    assert Solution("gd", np.eye(2), 0.0, "optimal").status is Status.OPTIMAL
    with pytest.raises(TypeError):
        DescentInfo(optimiser="bb")
    with pytest.raises(TypeError):
        ProgramInfo(program="factored", solver="x", residual={})
    fields = {f.name for f in dataclasses.fields(DescentInfo)}
    assert {"optimizer", "tol", "grad_tol", "loss_history", "mean_gram_checkpoints", "metrics", "staircase"} <= fields
    fields = {f.name for f in dataclasses.fields(ProgramInfo)}
    assert {"program", "solver_word", "residuals", "factor", "bracket"} <= fields


def test_statuses_the_certificate_decides():
    """"`optimal` when the relative gap on the excess is within `gap_tol`; else `stationary` (gradient
    descent and the factored reduced program) or `optimal_inaccurate` (the n x n and the cvxpy reduced
    programs; also a reduced optimum at dim < k - 1 ...)"."""
    says("`optimal` when the relative gap on the excess is within `gap_tol`; else `stationary` (gradient descent "
         "and the factored reduced program) or `optimal_inaccurate` (the n x n and the cvxpy reduced programs; "
         "also a reduced optimum at dim < k - 1, which d-dimensional embeddings cannot attain).")
    from ufm.solution import Certificate, certified_status

    def cert(rel, tol=1e-6):
        return Certificate(1.0, 0.0, 0.0, 1.0 - rel, rel, rel, rel <= tol, tol, 0.0, "dense", 0.0, 0.0)

    assert certified_status("converged", "", cert(1e-7))[0] == "optimal"
    assert certified_status("converged", "", cert(1e-3))[0] == "stationary"
    assert certified_status("converged", "", cert(1e-3), unproved="optimal_inaccurate")[0] == "optimal_inaccurate"
    body = inspect.getsource(resolve("solvers.reduced._reduced_solution"))
    assert 'unproved="stationary"' in body and '"factored"' in body and '"optimal_inaccurate"' in body
    assert 'problem.dim >= problem.k - 1' in inspect.getsource(resolve("solvers.reduced.solve_reduced"))
    assert 'unproved="optimal_inaccurate"' in source("solvers/convex.py")


def test_a_collapsed_full_batch_is_certified_in_its_k_by_k_form():
    """"For a full batch without prototypes whose classes are collapsed (within `SNAP_TOL` of their
    means) the batch-block bound is first taken in its k x k form at the collapsed point
    (`collapsed_slack` and `_collapsed_rgap`, ...; `method` "collapsed")": the simplex ETF of (4, 4, 4)."""
    says("the batch-block bound is first taken in its k x k form at the collapsed point (`collapsed_slack` and "
         "`_collapsed_rgap`, from the `reduced` capability's `collapsed_gram_gradient`; `method` \"collapsed\")")
    from solvers.certificate import certify_embeddings
    from ufm.geometry import etf_gram, factor_gram
    from ufm.problem import Problem

    problem = Problem.from_counts([4, 4, 4], tau=0.5)
    H = factor_gram(etf_gram(3), 3)[problem.labels]
    cert = certify_embeddings(problem, H)
    assert cert.method == "collapsed" and cert.certified
    assert "collapsed_gram_gradient" in inspect.getsource(resolve("solvers.certificate.collapsed_slack"))
    assert "collapsed_slack" in inspect.getsource(resolve("solvers.certificate._collapsed_rgap"))


def test_the_staircase_is_climbed_by_the_batched_driver_and_gram_objectives():
    says("`gd.solve` and `gd.solve_many` climb the staircase (`solvers.staircase.climb`",
         "An objective of `solvers.generic` with the `gram` capability (and no bound of its own) climbs the same "
         "staircase, descending again by `generic.solve_from`")
    from solvers import gd

    for name in ("solve", "solve_many"):
        assert "_escaped(" in inspect.getsource(getattr(gd, name)) and "escape" in parameters(getattr(gd, name))
    assert "escape" not in parameters(gd.solve_batched)
    body = inspect.getsource(gd._generic_descent)
    assert "Capability.GRAM" in body and "Capability.OWN_BOUND" in body and "generic.solve_from" in body
    assert "staircase.climb(" in inspect.getsource(gd._escaped)


def test_predict_names_the_reduced_program_in_the_stated_case():
    """"(geometry `"reduced-program"` without a Gram: SCL without ReLU, full batch, no prototypes,
    imbalanced counts, d >= k - 1)"."""
    says('(geometry `"reduced-program"` without a Gram: SCL without ReLU, full batch, no prototypes, imbalanced '
         'counts, d >= k - 1)')
    from ufm.batching import Batching
    from ufm.objectives import objective_of
    from ufm.problem import Problem

    def geometry(**options):
        problem = Problem.from_counts(options.pop("counts", [6, 4, 3, 3]), tau=0.5, **options)
        own = objective_of(problem).predict(problem)
        return own.geometry, own.class_mean_gram is None

    assert geometry() == ("reduced-program", True)
    assert geometry(dim=3) == ("reduced-program", True)                   # d = k - 1
    assert geometry(dim=2)[0] != "reduced-program"                        # d < k - 1
    assert geometry(counts=[4, 4, 4, 4])[0] == "etf"                      # balanced
    assert geometry(relu=True)[0] != "reduced-program"
    assert geometry(batching=Batching.binding(5))[0] != "reduced-program"
    assert 'own.geometry == "reduced-program" and own.class_mean_gram is None' in source("theory_checks/predictions.py")


def test_the_sweeps_take_their_profiles_and_batch_their_cross_check():
    says("The sweeps (`theory_checks.sweeps`) take every profile from `ufm.problem.profile_counts`, solve each "
         "point's reduced program, and run their gradient-descent cross-check for all points and starts of one "
         "shape in one padded `solvers.gd.solve_batched` call",
         "with an objective without the reduced program (cross-entropy) each point is a certified `gd.solve`.")
    from ufm.problem import Problem, profile_counts

    sweeps = source("theory_checks/sweeps.py")
    assert "Problem.from_profile(" in sweeps and "profile_counts(" in inspect.getsource(Problem.from_profile)
    assert Problem.from_profile("step", 4, 20, 4.0, 0.5).counts == tuple(profile_counts("step", 4, 20, 4.0, 0.5))
    assert Problem.from_profile("long-tail", 5, 20, 10.0).counts == tuple(profile_counts("long-tail", 5, 20, 10.0))
    assert "solve_batched(runs, pad=True)" in sweeps and "sol = solve_reduced(problem)" in sweeps
    gaps = inspect.getsource(resolve("theory_checks.sweeps._gd_gaps"))
    assert "shapes.setdefault((problem.k, problem.dim, problem.relu)" in gaps     # one call per shape
    assert "sol = solve(problem)" in inspect.getsource(resolve("theory_checks.sweeps._objective_points"))


# ================================================================================================ objectives
def test_options_classes_have_the_stated_members():
    """"a frozen dataclass with `name`, `min_class_size`, `batched`, optionally `uses_tau` (default
    True), `validate(k, dim, relu)` and `describe()`"."""
    says("a frozen dataclass with `name`, `min_class_size`, `batched`, optionally `uses_tau` (default True), "
         "`validate(k, dim, relu)` and `describe()`")
    from ufm.objectives import OBJECTIVES
    from ufm.problem import uses_tau

    for name in OBJECTIVES:
        options = OBJECTIVES.options(name)
        assert dataclasses.is_dataclass(options) and options.__dataclass_params__.frozen, name
        instance = options()
        assert isinstance(instance.name, str) and isinstance(instance.min_class_size, int)
        assert isinstance(instance.batched, bool)
        assert parameters(options.validate) == ["k", "dim", "relu"] and parameters(options.describe) == []
    assert not hasattr(OBJECTIVES.options("scl")(), "uses_tau") and uses_tau(OBJECTIVES.options("scl")())


def test_register_and_require():
    says("`ufm.objectives.register(name, options, implementation)` (also `ufm.register_objective`) puts both in "
         "the registry", "one that is missing is one `ProblemError` line naming the capability and what the "
         "objective declares")
    from types import SimpleNamespace

    import ufm
    from ufm.errors import ProblemError
    from ufm.objectives import OBJECTIVES, Capability, register, require

    assert ufm.register_objective is register
    ce = SimpleNamespace(NAME="ce", CAPABILITIES=OBJECTIVES.capabilities("ce"))
    with pytest.raises(ProblemError) as err:
        require(ce, Capability.GRAM, "gram_certificate")
    message = str(err.value)
    assert "\n" not in message and "(gram)" in message and "descent, own-bound, predict" in message


def test_the_declared_capabilities():
    says("SCL declares `batched`, `gram`, `relaxation`, `reduced` and `predict`; cross-entropy `descent`, "
         "`own-bound` and `predict`.")
    from ufm.objectives import OBJECTIVES

    declared = re.search(r"SCL declares (.*?); cross-entropy (.*?)\.", DOC)
    scl, ce = ({c for c in re.findall(r"`([\w-]+)`", part)} for part in declared.groups())
    assert {c.value for c in OBJECTIVES.capabilities("scl")} == scl
    assert {c.value for c in OBJECTIVES.capabilities("ce")} == ce
    assert {c.value for c in OBJECTIVES["ce"].CAPABILITIES} == ce


def _capability_rows() -> dict[str, tuple[str, str]]:
    text = DOC_TEXT[DOC_TEXT.index("| capability | the functions | who asks |"):]
    rows = {}
    for line in text.splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows[cells[0].strip("`")] = (cells[1], cells[2])
    return rows


def test_capability_table_names_exist():
    """Each capability of the table is a ``Capability`` value (and every value has its row); each function
    named for it is supplied by a loss that declares it (SCL: ``_FUNCTIONS``; cross-entropy: its module),
    with the parameters written."""
    from ufm.objectives import OBJECTIVES, scl
    from ufm.objectives.base import Capability

    rows = _capability_rows()
    assert set(rows) == {c.value for c in Capability}
    functions = {}
    for capability, (cell, _) in rows.items():
        for token in tokens(cell):
            if re.fullmatch(r"[a-z_]+(\(.*\))?", token) and token not in ("reduced-program",):
                functions.setdefault(capability, []).append(token)
    for capability, named in functions.items():
        suppliers = [name for name in OBJECTIVES if Capability(capability) in OBJECTIVES.capabilities(name)]
        assert suppliers, capability
        for token in named:
            name = token.split("(")[0]
            found = [getattr(OBJECTIVES[s], name) for s in suppliers if hasattr(OBJECTIVES[s], name)]
            assert found, f"{capability}: no loss with it supplies {name}"
            if "(" in token:        # the parameters as the protocol names them, else as the supplier does
                protocol = getattr(resolve("ufm.objectives.base.Objective"), name, None)
                _check_call(token, protocol if protocol is not None else found[0])
            if "scl" in suppliers and capability != "gram":
                assert name in scl._FUNCTIONS, name
    # gram's optional functions: "`ufm.objectives` fills them in from the Gram value, and 0"
    objectives = source("ufm/objectives/__init__.py")
    assert "return 0.0 if own is None" in objectives and "gram_value_and_grad(problem, H @ H.T)" in objectives


#: Who asks for each capability (the table's third column) -> a source that asks (or calls one that does).
ASKERS = {
    "descent": {"solvers/generic.py": "Capability.DESCENT", "solvers/gd.py": "generic.solve_many("},
    "own-bound": {"solvers/generic.py": "Capability.OWN_BOUND", "solvers/certificate.py": "Capability.OWN_BOUND"},
    "gram": {"solvers/certificate.py": "Capability.GRAM", "solvers/convex.py": "Capability.GRAM"},
    "relaxation": {"solvers/convex.py": "Capability.RELAXATION"},
    "reduced": {"solvers/reduced.py": "Capability.REDUCED", "solvers/certificate.py": "Capability.REDUCED",
                "theory_checks/predictions.py": "solve_reduced(problem)", "theory_checks/sweeps.py": "Capability.REDUCED"},
    "predict": {"theory_checks/predictions.py": "Capability.PREDICT",
                "ufm/app/commands/predict.py": "from theory_checks.predictions import predict"},
    "batched": {"solvers/gd.py": "batched(problem)", "solvers/certificate.py": "Capability.BATCHED",
                "theory_checks/landscape.py": "Capability.BATCHED", "ufm/objectives/scl/losses.py": "batched(problem)"},
}


def test_who_asks_for_each_capability():
    rows = _capability_rows()
    says("| `descent` |", "| `solvers.generic` (through `gd.solve`, `gd.solve_many`) |",
         "| `solvers.reduced` (factored, block and general programs), `certify_mean_gram`, the certificate's "
         "collapsed form, `predict`, the sweeps |",
         "| the driver of `solvers.gd` (its `Config` holds the objective's options and takes the kernels from "
         "them), the batch-block certificate, `theory_checks.landscape`, `problem_loss` |")
    assert set(ASKERS) == set(rows)
    for capability, askers in ASKERS.items():
        for path, text in askers.items():
            assert text in source(path), (capability, path)
    assert "require(objective, Capability.REDUCED, \"certify_mean_gram\")" in source("solvers/certificate.py")
    assert "objective: ObjectiveOptions | None" in inspect.getsource(resolve("solvers.gd.Config"))


def test_problem_shape_and_arrays():
    says("its `ProblemShape` (n, k, dim, ReLU, the objective's options), the static key, and its `ProblemArrays` "
         "(labels, counts, tau; `Problem.arrays()`), traced",
         "returns its set from `constraint_set(shape)` (a `ProblemShape`; a `Problem` has the same fields)")
    from ufm.problem import Problem, ProblemArrays, ProblemShape

    shape_fields = [f.name for f in dataclasses.fields(ProblemShape)]
    assert shape_fields == ["n", "k", "dim", "relu", "objective"]
    assert list(ProblemArrays._fields) == ["labels", "counts", "tau"]
    problem = Problem.from_counts([3, 4], tau=0.5)
    assert all(getattr(problem, f) == getattr(problem.shape, f) for f in shape_fields)
    assert isinstance(problem.arrays(), ProblemArrays)


def test_the_driver_packs_its_own_data():
    says("The batched driver of `solvers.gd` packs its own `Data` (the batches, representatives and prototypes "
         "as well) with tau traced")
    from solvers.gd import Data

    assert {"tau", "mon_index", "mon_valid", "rep", "protos", "proto_labels"} <= set(Data._fields)


def test_loss_cli_options_come_from_the_options_class():
    says("each loss's command-line options come from its options class (`CLI_FLAGS`, `CLI_ARGUMENTS`, `from_cli`)",
         "`CLI_FLAGS` and `from_cli` (cross-entropy's `--classifier` and `--weight-decay`), and `uses_tau` "
         "(False: the command refuses `--tau`); `ufm/app/options.py` is not edited.")
    from ufm.objectives.ce_options import CrossEntropy

    assert set(CrossEntropy.CLI_ARGUMENTS) == {"--classifier", "--weight-decay"}
    assert set(CrossEntropy.CLI_FLAGS) == {"classifier", "weight_decay"}
    options_code = [n for n in ast.walk(ast.parse(source("ufm/app/options.py"))) if isinstance(n, ast.Constant)
                    and isinstance(n.value, str) and n.value in ("--classifier", "--weight-decay", "ce")]
    assert options_code == [] and "CrossEntropy" not in source("ufm/app/options.py")
    assert "CLI_ARGUMENTS" in inspect.getsource(resolve("ufm.app.options.add_objective_options"))
    assert CrossEntropy(classifier="learned").uses_tau is False


def test_losses_are_registered_by_strings_in_the_objectives_package():
    says("the line is in `ufm/objectives/__init__.py`, with the modules named as strings so that nothing is "
         "imported before it is needed (a heavy implementation also gives its capabilities there")
    calls = [n for n in ast.walk(ast.parse(source("ufm/objectives/__init__.py")))
             if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "register"]
    assert len(calls) == 2
    assert all(isinstance(a, ast.Constant) and isinstance(a.value, str) for c in calls for a in c.args[:3])
    ce = next(c for c in calls if c.args[0].value == "ce")
    assert len(ce.args) == 4                                   # its capabilities, without importing it


def test_the_third_objective_test_does_what_the_doc_says():
    says("tests/test_third_objective.py does exactly this: f(G) = 1/2 ||G - T||_F^2 with its Gram gradient and "
         "cvxpy expression, in that one file, registered in one line")
    text = source("tests/test_third_objective.py")
    assert "f(G) = 1/2 ||G - T||_F^2" in text and text.count("ufm.register_objective(") == 1
    assert 'NAME = "gram_target"' in text and '"--loss", NAME' in text


# ================================================================================================ SCL per backend
def test_scl_table_names_and_the_reference_formula():
    says("The reference SCL formula is `ufm.objectives.scl.formula.anchor_state` (`anchor_parts` its value part)",
         "the fused kernel shares its positives' series and cotangent (`positives_state`, `cotangent_coefficients`) "
         "but computes its negatives itself")
    precise = source("ufm/objectives/scl/precise.py")
    assert "positives_state" in precise and "cotangent_coefficients" in precise
    assert "anchor_state" not in precise and "anchor_parts" not in precise
    assert "anchor_state(" in inspect.getsource(resolve("ufm.objectives.scl.formula.anchor_parts"))
    from ufm.objectives.scl import losses, reduced

    assert reduced.reduced_log_excess is resolve("ufm.objectives.scl.formula.reduced_log_excess")
    assert "num_classes" in parameters(losses.scl_loss_packed)


# ================================================================================================ the fused kernel
def test_block_sizes_of_the_precise_kernel(monkeypatch):
    """"sizes a block's logits at about 4 MB: at least 256 bytes of anchors per column (32 rows in
    float64, 64 in float32); at most a quarter of the batch"; on a GPU one block."""
    says("`ufm.blocks.precise_default_block` (also `ufm.objectives.scl.precise.default_block`) sizes a block's "
         "logits at about 4 MB:", "at least 256 bytes of anchors per column (32 rows in float64, 64 in float32);",
         "at most a quarter of the batch, because the window grows with c.", "On a GPU the default is one block.")
    from ufm import blocks
    from ufm.objectives.scl import precise

    assert precise.default_block is blocks.precise_default_block
    assert blocks.PRECISE_BLOCK_BYTES == 4 * 2 ** 20 and blocks.PRECISE_MIN_BLOCK_BYTES == 256
    monkeypatch.setattr(blocks, "backend", lambda: "cpu")
    for m in (100, 1000, 5000, 20000, 10 ** 6):
        for itemsize in (4, 8):
            c = blocks.precise_default_block(m, itemsize)
            assert c >= 256 // itemsize
            assert c == 256 // itemsize or c <= m // 4
            assert c == 256 // itemsize or c * m * itemsize <= 4 * 2 ** 20
    assert blocks.precise_default_block(10 ** 6, 8) == 32 and blocks.precise_default_block(10 ** 6, 4) == 64
    monkeypatch.setattr(blocks, "backend", lambda: "gpu")
    assert blocks.precise_default_block(5000, 8) == 5000 and blocks.plain_default_block(5000, 8) == 5000


def test_the_measured_shape_of_where_the_time_goes(monkeypatch):
    """"Measured at n = 5000, k = d = 10, float64, blocks of 104": the default block there; "the window
    (W = 1127 of 5000 columns ...)": c + 2 n_c - 1 with n_c = 500 rounded up to 512; "where c = 250" at
    n = 1000. The default block's time (~100 ms) is the constant's comment."""
    says("Measured at n = 5000, k = d = 10, float64, blocks of 104", "The kernel takes about 100 ms",
         "the window (W = 1127 of 5000 columns", "a quarter of the work at n = 1000, where c = 250",
         "W = c + 2 n_c - 1 when no class has more than n_c rows in a batch. `Config.class_rows` "
         "(`Problem.class_rows`, rounded up to a power of two so nearby counts share a program) gives n_c.")
    from ufm import blocks
    from ufm.objectives.scl.precise import _window
    from ufm.problem import Problem

    monkeypatch.setattr(blocks, "backend", lambda: "cpu")
    c = blocks.precise_default_block(5000, 8)
    assert c == 104
    n_c = blocks.class_rows_bucket(Problem.from_counts([500] * 10, tau=0.5).class_rows)
    assert n_c == 512 and _window(5000, c, n_c) == c + 2 * n_c - 1 == 1127
    assert _window(5000, c, None) == 5000 + c                        # without a bound: W = m + c
    assert blocks.precise_default_block(1000, 8) == 250
    assert "blocks of 52 / 78 / 104 / 156: 116 / 117 / 100 / 105 ms (104)" in " ".join(source("ufm/blocks.py").replace(
        "#:", "").split())
    floor = next(r for r in RESULTS["gd_scaling"]["rows"] if r["n"] == 5000)["floor_seconds"]
    says("the floor (one exp pass and two products, best block size) takes 35 ms")
    assert round(floor * 1000) == 35


def test_the_window_bound_is_off_in_pad_and_family_runs():
    says("Without a bound (`solve_batched(pad=True)`, and every shape-family run), W = m + c")
    from solvers import gd

    assert "cfg._replace(class_rows=None)" in inspect.getsource(gd.solve_batched)
    assert "class_rows=None" in inspect.getsource(gd._in_family)


def test_expm1_pair_takes_exp_and_its_series_length():
    says("`ufm.objectives.scl.formula.expm1_pair` takes exp, not expm1: the series covers |v| <= 1 (18 terms in "
         "float64, 10 in float32)")
    import jax
    import jax.numpy as jnp

    from ufm.objectives.scl import formula

    assert formula.EXPM1_SERIES_REACH == 1.0
    assert formula.expm1mx_terms(float(np.finfo(np.float64).eps)) == 18
    assert formula.expm1mx_terms(float(np.finfo(np.float32).eps)) == 10
    program = str(jax.make_jaxpr(formula.expm1_pair)(jnp.float64(0.5)))      # its custom rule's body too
    assert re.search(r"= exp ", program) and not re.search(r"= expm1 ", program)


def test_plain_phase_constants_and_the_numbers_of_their_comment():
    """``gd.PLAIN_MIN_WIDTH`` = 1000 rows of a deterministic batching; the numbers the doc quotes from
    its comment (~0.85 s, 0.195 s -> 0.124 s at n = 1000 to tol 1e-12, a dozen warm solves, n ~ 3000)."""
    says("balanced n = 1000, tau 0.5, to tol 1e-12, 0.195 s -> 0.124 s (the comment on `gd.PLAIN_MIN_WIDTH`). "
         "The second kernel adds ~0.85 s to the compile of a run's program, so the phase is compiled only for "
         "batches of at least `gd.PLAIN_MIN_WIDTH` = 1000 rows (deterministic batchings): there a dozen warm "
         "solves of one shape pay it back, and from n ~ 3000 one solve does",
         "the steps on the plain form while `PLAIN_SWITCH` x its rounding (relative to E) is below the last "
         "change of log E and below `PLAIN_MAX_NOISE`, and tau is at least `min_tau`")
    from solvers import gd

    assert gd.PLAIN_MIN_WIDTH == 1000
    assert gd._takes_plain_phase(False, 1000) and not gd._takes_plain_phase(False, 999)
    assert not gd._takes_plain_phase(True, 5000)
    text = source("solvers/gd.py")
    comment = " ".join(text[:text.index("PLAIN_MIN_WIDTH = 1000")].rsplit("PLAIN_MAX_NOISE = ", 1)[1]
                       .replace("#:", "").split())
    for quoted in ("~0.85 s", "0.195 -> 0.124 s to tol 1e-12", "n = 1000", "a dozen warm solves", "n ~ 3000"):
        assert quoted in comment, quoted
    cond = inspect.getsource(gd._two_phases)
    assert "PLAIN_SWITCH * _plain_rounding" in cond and "noise < PLAIN_MAX_NOISE" in cond
    assert "s.change > jnp.maximum(tol, noise)" in cond and "min_tau" in cond


def test_plain_block_sizes_and_the_sweep_the_doc_quotes(monkeypatch):
    """"about 20 MB of logits, at most half the batch, `ufm.blocks.plain_default_block`"; "in the
    block-size sweep (the comment on `ufm.blocks.PLAIN_BLOCK_BYTES`): float64 1.35x (n = 1000), 1.18x
    (n = 5000), 1.18x (n = 20000); float32 1.10x and 1.14x (n = 5000, 20000)": the ratios the comment
    measured at the block nearest the default the code computes."""
    says("(about 20 MB of logits, at most half the batch, `ufm.blocks.plain_default_block`)",
         "in the block-size sweep (the comment on `ufm.blocks.PLAIN_BLOCK_BYTES`): float64 1.35x (n = 1000), "
         "1.18x (n = 5000), 1.18x (n = 20000); float32 1.10x and 1.14x (n = 5000, 20000)")
    from ufm import blocks

    monkeypatch.setattr(blocks, "backend", lambda: "cpu")
    assert blocks.PLAIN_BLOCK_BYTES == 20 * 2 ** 20
    for m in (2000, 5000, 20000):
        assert blocks.plain_default_block(m, 8) <= -(-m // 2)
    text = source("ufm/blocks.py")
    comment = " ".join(text[text.index("#: The plain kernel"):text.index("PLAIN_BLOCK_BYTES =")].replace("#:", "").split())
    measured = {}
    for dtype, part in (("float64", comment.split("float32")[0]), ("float32", comment.split("float32")[1])):
        for n, sizes, ratios in re.findall(r"n = (\d+) blocks of ([\d /]+): ([\d. /]+)x", part):
            sizes, ratios = [int(s) for s in sizes.split("/")], [float(r) for r in ratios.split("/")]
            default = blocks.plain_default_block(int(n), 8 if dtype == "float64" else 4)
            nearest = min(range(len(sizes)), key=lambda i: abs(math.log(sizes[i] / default)))
            measured[(dtype, int(n))] = ratios[nearest]
    assert measured == {("float64", 1000): 1.35, ("float64", 5000): 1.18, ("float64", 20000): 1.18,
                        ("float32", 5000): 1.10, ("float32", 20000): 1.14}


def test_the_tolerances_the_doc_cites_are_the_tests():
    """"equal the reference path's to 1e-13 / 1e-12 in float64 ... (tests/test_plain_fused.py"; "Float64
    values and gradients equal JAX's derivative of the reference formula to 1e-12 where the point is well
    conditioned" (tests/test_excess_fused.py); the class bound's NaN is a test there too. (The ~4e-12
    near collapse is that file's measurement; it asserts 1e-10: reported.)"""
    says("equal the reference path's to 1e-13 / 1e-12 in float64 where its rounding bound allows "
         "(tests/test_plain_fused.py", "Float64 values and gradients equal JAX's derivative of the reference "
         "formula to 1e-12 where the point is well conditioned.",
         "a class with more rows than the bound makes the value NaN, never a wrong number (test)")
    plain = source("tests/test_plain_fused.py")
    assert "<= 1e-13 * max(1.0, abs(float(v1)))" in plain and "<= 1e-12 * float(jnp.abs(G1).max())" in plain
    fused = source("tests/test_excess_fused.py")
    assert re.search(r"^TOL = 1e-12$", fused, flags=re.MULTILINE)
    assert "def test_a_class_larger_than_class_rows_gives_nan_not_a_wrong_number" in fused
    assert "def test_near_collapse_gradient_against_mpmath" in fused


def test_the_numbers_quoted_from_the_kernels_docstrings():
    """"XLA's expm1 cost 3x its exp", "ran it 3x slower than the row side", "(which cost 10-25% at
    n = 5000)": the measurements the functions' docstrings record."""
    says("On this CPU XLA's expm1 cost 3x its exp", "XLA's CPU backend ran it 3x slower than the row side",
         "instead of vmapping over a batch axis of length 1 (which cost 10-25% at n = 5000)")
    doc = {name: " ".join(resolve(name).__doc__.split()) for name in (
        "ufm.objectives.scl.formula.expm1_pair", "ufm.objectives.scl.precise.rows_product",
        "ufm.objectives.scl.formula.over_batches")}
    assert "XLA's expm1 cost 3x its exp on a CPU" in doc["ufm.objectives.scl.formula.expm1_pair"]
    assert "XLA's CPU backend ran it 3x slower than the row side" in doc["ufm.objectives.scl.precise.rows_product"]
    assert "10-25% slower on CPU (n = 5000" in doc["ufm.objectives.scl.formula.over_batches"]


def test_sharding_over_devices():
    says("splits the anchors by rows over a one-axis `jax.sharding.Mesh` (`jax.shard_map`, `_evaluate_sharded`)",
         "its own ceil(m / p) sorted anchors", "(an all-gather of p scalars, a psum of the gradients weighted by "
         "E_p / E)", "Tested with four host devices against one (tests/test_sharding.py).")
    body = inspect.getsource(resolve("ufm.objectives.scl.precise._evaluate_sharded"))
    assert "jax.shard_map(" in body and "per = -(-m // p)" in body and "all_gather(ref" in body and "psum(" in body
    assert "mesh" in parameters(resolve("ufm.objectives.scl.plain.batch_excess_plain"))
    assert "--xla_force_host_platform_device_count=4" in source("tests/test_sharding.py")
    from solvers import gd

    assert "sharding.ROWS" in inspect.getsource(gd._row_mesh)
    for fn in (gd.solve_many, gd.solve_batched):
        assert "sharding.RUNS" in inspect.getsource(fn)
    assert "devices" in parameters(gd.solve)


# ================================================================================================ how to add
def test_constraint_set_protocol_and_registry():
    says("A class in `ufm/constraint_sets.py` with a `name` and `tangent`, `direction` (minus the projection of "
         "minus the gradient on the tangent cone), `retract`, `point` (from a Gaussian draw), `violation`, and "
         "`random_point` / `random_point_np` (the `ConstraintSet` protocol); then one entry in "
         "`CONSTRAINT_SETS`, keyed by its name")
    from ufm.constraint_sets import CONSTRAINT_SETS, ConstraintSet

    members = {"tangent", "direction", "retract", "point", "violation", "random_point", "random_point_np"}
    assert members <= set(vars(ConstraintSet)) and "name" in ConstraintSet.__annotations__
    assert all(key == value.name for key, value in CONSTRAINT_SETS.items())
    assert all(hasattr(s, m) for s in CONSTRAINT_SETS.values() for m in members)
    text = source("tests/test_constraint_sets.py")
    says("tests/test_constraint_sets.py's `test_numpy_and_jax_give_the_same_maps` runs every registered set",
         "tests/test_constraint_sets.py adds one that way (rows of norm 2), runs the checks of every set on it and "
         "descends on it")
    assert '@pytest.mark.parametrize("name", sorted(CONSTRAINT_SETS))\ndef test_numpy_and_jax_give_the_same_maps' in text
    assert "rows of norm 2" in text and "monkeypatch.setitem(CONSTRAINT_SETS, cset.name, cset)" in text


def test_optimiser_factories_take_the_stated_arguments():
    says("Register a factory `(learning_rate, total_steps, constraint_set, stochastic) -> transform` in "
         "`solvers.optimizers.OPTIMIZERS`",
         "declares it by being a `solvers.transforms.KeepingTransformation` (`KeepingTransformation(*transform)`; "
         "the default optimiser's is)", "tests/test_transforms.py bounds it by 1.5 per step on full-batch problems")
    import optax

    from solvers.optimizers import OPTIMIZERS
    from solvers.transforms import KeepingTransformation, keeps_evaluation
    from ufm.constraint_sets import unit_sphere

    for name, factory in OPTIMIZERS.items():
        assert parameters(factory) == ["learning_rate", "total_steps", "constraint_set", "stochastic"], name
    default = OPTIMIZERS["bb"](0.1, 10, unit_sphere(False), False)
    assert isinstance(default, KeepingTransformation) and keeps_evaluation(default)
    assert not keeps_evaluation(optax.lbfgs())
    assert issubclass(KeepingTransformation, optax.GradientTransformationExtraArgs)
    text = source("tests/test_transforms.py")
    assert "len(calls) / steps <= 1.5" in text and "optax.lbfgs()" in text
    step = inspect.getsource(resolve("solvers.descent.step"))
    assert "value_fn=lambda p: objective(constraint_set.retract(p))" in step and "grad=g" in step


def test_how_to_add_a_check_and_a_command():
    says("append a `theory_checks.check.Check` to `theory_checks.catalogue.CATALOGUE`",
         "The README's \"Adding a check\" shows one", "and one entry in `ufm.app.cli.COMMANDS`. tests/test_cli.py "
         "adds a verb `count` that way")
    from theory_checks.catalogue import CATALOGUE
    from theory_checks.check import Check

    assert CATALOGUE and all(isinstance(c, Check) for c in CATALOGUE)
    assert "### Adding a check" in source("README.md")
    assert "objective" in parameters(resolve("ufm.app.options.add_problem_options"))
    assert "COMMANDS" in source("tests/test_cli.py") and '"count"' in source("tests/test_cli.py")


def test_precision_switch_is_documented_in_the_package_docstring():
    says("Until that is done the global switch is documented here and in the package docstring; float32 remains "
         "an explicit solver option.")
    import jax.numpy as jnp

    import ufm
    from solvers import gd

    assert "jax_enable_x64" in ufm.__doc__ and "float32" in ufm.__doc__
    assert "dtype" in parameters(gd.solve) and jnp.float32 in gd.DEFAULT_TOL
