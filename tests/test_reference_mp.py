"""Self-test of tests/reference_mp.py (the mpmath reference), against plain float64 loops written
here and against known values of the step-count optimum."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

import reference_mp as R


@pytest.fixture(autouse=True)
def _mp_precision():
    """Comparisons of mpf results in this file are done at 100 digits (mpmath's global default is
    15); reference_mp itself never depends on the global precision."""
    with mpmath.workdps(100):
        yield


def _float_loss(H, labels, tau, batches=None, prototypes=None, prototype_labels=None,
                prototype_anchors=True):
    """Plain float64 double loop over the SCL definition (sum reduction)."""
    rows = [np.asarray(h, dtype=float) for h in H]
    lab = [int(y) for y in labels]
    n = len(rows)
    pids = []
    if prototypes is not None:
        for w, y in zip(prototypes, prototype_labels):
            pids.append(len(rows))
            rows.append(np.asarray(w, dtype=float))
            lab.append(int(y))
    if batches is None:
        batches = [list(range(n))]
    total = 0.0
    for B in batches:
        members = list(B) + pids
        anchors = list(B) + (pids if prototype_anchors else [])
        for i in anchors:
            others = [a for a in members if a != i]
            pos = [j for j in others if lab[j] == lab[i]]
            if not pos:
                continue
            s = [float(rows[i] @ rows[a]) / tau for a in others]
            m = max(s)
            lse = m + math.log(sum(math.exp(v - m) for v in s))
            total += sum(lse - float(rows[i] @ rows[j]) / tau for j in pos) / len(pos)
    return total


def _unit_rows(rng, n, d):
    H = rng.standard_normal((n, d))
    return H / np.linalg.norm(H, axis=1, keepdims=True)


@pytest.mark.parametrize("case", ["full", "two_batches", "prototypes", "prototypes_not_anchors"])
def test_excess_plus_log_counts_matches_float_loop(case):
    rng = np.random.default_rng(3)
    n, d, tau = 8, 3, 0.5
    H = _unit_rows(rng, n, d)
    labels = [0, 0, 0, 1, 1, 2, 2, 1]
    kw = {}
    if case != "full":
        kw["batches"] = [[0, 3, 5, 1, 6], [2, 4, 7]]
    if case.startswith("prototypes"):
        kw["prototypes"] = _unit_rows(rng, 3, d)
        kw["prototype_labels"] = [0, 1, 2]
        kw["prototype_anchors"] = case == "prototypes"
    L_float = _float_loss(H, labels, tau, **kw)
    E = R.excess_mp(H, labels, tau, **kw)
    logs = R.log_positive_count_sum(labels, kw.get("batches"), kw.get("prototype_labels"),
                                    kw.get("prototype_anchors", True))
    L_mp = R.loss_mp(H, labels, tau, **kw)
    assert E > 0
    assert float(E + logs) == pytest.approx(L_float, rel=1e-12)
    assert abs(L_mp - (E + logs)) < mpmath.mpf(10) ** -55 * abs(L_mp)


def test_excess_is_exact_at_small_tau():
    """E from the decomposition equals L - sum log|P| taken at very high precision."""
    rng = np.random.default_rng(5)
    H = _unit_rows(rng, 7, 4)
    labels = [0, 0, 1, 1, 1, 2, 2]
    tau = 0.01
    E = R.excess_mp(H, labels, tau)
    L = R.loss_mp(H, labels, tau, dps=200)
    logs = R.log_positive_count_sum(labels, dps=200)
    with mpmath.workdps(200):
        assert abs((L - logs) / E - 1) < mpmath.mpf(10) ** -50


# exactly representable unit vectors (entries +-1/2, or 0/+-1): M = V V^T has diagonal exactly 1
_EXACT_V = np.array([[0.5, 0.5, 0.5, 0.5],
                     [0.5, -0.5, -0.5, 0.5],
                     [-0.5, 0.5, -0.5, 0.5],
                     [0.0, 0.0, 0.0, -1.0]])


@pytest.mark.parametrize("counts", [[3, 3, 2], [5, 2, 3, 2]])
def test_collapsed_excess_equals_reduced(counts):
    tau = 0.01
    k = len(counts)
    V = _EXACT_V[:k]
    labels = np.repeat(np.arange(k), counts)
    H = V[labels]
    E_full = R.excess_mp(H, labels, tau)
    E_red = R.reduced_excess_mp(V @ V.T, counts, tau)
    assert E_full > 0
    assert abs(E_full / E_red - 1) < mpmath.mpf(10) ** -40
    # float rows that are unit only to rounding: compare with M_cc in place of 1, M exact in mp
    rng = np.random.default_rng(1)
    Vr = _unit_rows(rng, k, 5)
    Hr = Vr[labels]
    E_full = R.excess_mp(Hr, labels, tau)
    E_red = R.reduced_excess_mp(R.gram_mp(Vr, dps=120), counts, tau, unit_diagonal=False)
    assert abs(E_full / E_red - 1) < mpmath.mpf(10) ** -40


def test_etf_and_of_helpers():
    counts, tau = [8, 8, 2, 2], 0.5
    k = len(counts)
    etf = np.full((k, k), -1.0 / (k - 1))
    np.fill_diagonal(etf, 1.0)
    with mpmath.workdps(60):
        M = mpmath.matrix([[1 if r == s else mpmath.mpf(-1) / 3 for s in range(k)] for r in range(k)])
    assert abs(R.etf_excess_mp(counts, tau) / R.reduced_excess_mp(M, counts, tau) - 1) < 1e-50
    assert float(R.etf_excess_mp(counts, tau)) == pytest.approx(
        float(R.reduced_excess_mp(etf, counts, tau)), rel=1e-14)
    n = sum(counts)
    of_float = sum(c * math.log1p((n - c) / (c - 1) * math.exp(-1 / tau)) for c in counts)
    assert float(R.of_excess_mp(counts, tau)) == pytest.approx(of_float, rel=1e-14)
    # reduced loss = constant + excess
    assert float(R.reduced_loss_mp(np.eye(k), counts, tau)) == pytest.approx(
        sum(c * math.log((c - 1) + (n - c) * math.exp(-1 / tau)) for c in counts), rel=1e-14)


# (tau, a, b, c, E) for counts (8, 8, 2, 2)
_STEP_CHECKS = [
    (0.5, -0.4969, -0.3488, -0.0329, 4.85),
    (0.1, -0.3416, -0.3468, -0.2693, 1.55e-4),
    (0.05, -0.3387, -0.3401, -0.3002, 2.51e-10),
    (0.02, -0.3358, -0.3361, -0.3198, 1.07e-27),
    (0.01, -0.3346, -0.3347, -0.3265, 1.19e-56),
]


@pytest.mark.parametrize("tau,a,b,c,E", _STEP_CHECKS)
def test_step_optimum_check_values(tau, a, b, c, E):
    opt = R.step_optimum_mp(2, 8, 2, 2, tau)
    assert float(opt["a"]) == pytest.approx(a, abs=5e-5)
    assert float(opt["b"]) == pytest.approx(b, abs=5e-5)
    assert float(opt["c"]) == pytest.approx(c, abs=5e-5)
    assert float(opt["E"]) == pytest.approx(E, rel=1e-2)
    # the excess at the returned M (reduced formula) is E; the optimum beats the ETF and the OF
    assert abs(R.reduced_excess_mp(opt["M_mp"], opt["counts"], tau, dps=50) / opt["E"] - 1) < 1e-40
    assert opt["E"] < R.etf_excess_mp(opt["counts"], tau) < R.of_excess_mp(opt["counts"], tau)
    assert min(opt["hessian_eigs"]) > 0 and opt["kkt_multiplier"] > 0
    assert np.linalg.eigvalsh(opt["M"]).min() > -1e-12
    if tau == 0.5:
        assert float(opt["loss"]) == pytest.approx(35.98345, abs=1e-5)


def test_step_optimum_is_global_against_float_search():
    """Unstructured float search over unit-row Gram matrices at tau 0.5 finds the same optimum."""
    from scipy.optimize import minimize

    counts, tau = np.array([8, 8, 2, 2]), 0.5
    k = len(counts)

    def E(z):
        V = z.reshape(k, k)
        V = V / np.linalg.norm(V, axis=1, keepdims=True)
        M = V @ V.T
        return sum(counts[c] * math.log1p(sum(counts[o] / (counts[c] - 1) * math.exp((M[c, o] - 1) / tau)
                                              for o in range(k) if o != c)) for c in range(k))

    rng = np.random.default_rng(0)
    best = min((minimize(E, rng.standard_normal(k * k), method="BFGS", options={"gtol": 1e-10})
                for _ in range(4)), key=lambda r: r.fun)
    opt = R.step_optimum_mp(2, 8, 2, 2, tau)
    assert best.fun == pytest.approx(float(opt["E"]), rel=1e-9)
    assert best.fun >= float(opt["E"]) * (1 - 1e-12)
