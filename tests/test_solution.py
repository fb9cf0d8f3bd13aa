"""The typed result records of ufm.solution: Status, DescentInfo, ProgramInfo, Starts."""

import json

import numpy as np
import pytest

from ufm.solution import STATUSES, DescentInfo, ProgramInfo, Solution, Status


def test_status_is_its_value_in_comparisons_text_and_json():
    sol = Solution("gd", np.eye(2), 1.0, "optimal")
    assert sol.status is Status.OPTIMAL and sol.status == "optimal" and sol.ok
    assert f"{sol.status}" == "optimal" and str(sol.status) == "optimal" and f"{sol.status:>9}" == "  optimal"
    assert json.dumps({"status": sol.status}) == '{"status": "optimal"}'
    assert STATUSES == ("optimal", "stationary", "converged", "optimal_inaccurate", "not_converged", "error")


def test_an_unknown_status_is_refused():
    with pytest.raises(ValueError):
        Solution("gd", np.eye(2), 1.0, "optimall")


def test_info_records_refuse_unknown_fields():
    """A typed record, not a dict of string keys: a misspelt field is an error where it is written."""
    with pytest.raises(TypeError):
        ProgramInfo(program="factored", solver="factored-descent", residual={})
    with pytest.raises(TypeError):
        DescentInfo(optimizer="bb", loss_histroy=[])


def test_solvers_return_their_typed_records():
    from solvers import gd
    from solvers.reduced import solve_reduced
    from ufm import Problem

    problem = Problem.from_counts([4, 4, 2], tau=0.5)
    sol = gd.solve(problem)
    assert isinstance(sol.info, DescentInfo) and sol.info.optimizer == "bb" and sol.info.objective == "scl"
    assert len(sol.info.loss_history) == sol.iterations
    assert sol.info.mean_gram_checkpoints["epochs"][0] == 0
    assert sol.info.evaluations <= 1.5 * sol.iterations + 1       # the search's kept evaluations reused
    red = solve_reduced(problem)
    assert isinstance(red.info, ProgramInfo) and red.info.program == "factored"
    assert red.info.solver == "factored-descent" and red.info.factored.starts_tried >= 1
