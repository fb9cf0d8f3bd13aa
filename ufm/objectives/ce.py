"""Cross-entropy (CE), the second objective (docs/theory.md section 10).

Two models, chosen by :class:`CrossEntropy`'s ``classifier``:

- **Fixed classifier** (``"etf"`` or ``"of"``; the [PROTO] limit of many prototypes). Unit-norm
  embeddings H (n, d) (nonnegative with ReLU), classifier rows w_c (k, d) fixed as the simplex ETF or
  the orthogonal frame, loss (sum over examples)

      L(H) = sum_i f_i(h_i),   f_i(h) = log sum_c exp(w_c . h / tau) - w_{y_i} . h / tau
                                      = log(1 + sum_{c != y_i} exp((w_c - w_{y_i}) . h / tau)).

  L has no geometry-free constant (its excess is L itself) and underflows at small tau, so the solver
  minimises log L = logsumexp_i log softplus(logsumexp_{c != y_i} z_ic), z_ic = (w_c - w_{y_i}) . h_i / tau.
  Closed forms (:func:`fixed_prediction`): the ETF classifier gives h_i = w_{y_i}; the OF classifier
  gives the centred, normalised rows (k e_y - 1)/sqrt(k(k-1)) without ReLU (an ETF) and h_i = e_{y_i}
  with ReLU (the OF).

- **Learned classifier with weight decay** (``"learned"``; the UFM of Zhu et al. 2021). Unconstrained
  H (n, d), W (k, d), b (k,):

      F(H, W, b) = (1/n) sum_i CE(W h_i + b, y_i) + (lambda/2) (||W||_F^2 + ||H||_F^2 + ||b||^2).

  Balanced classes: the simplex ETF with self-duality (W proportional to the centred class means);
  :func:`learned_prediction` gives the optimal value from a 1-D convex problem.

Certificates (lower bounds that rest on no solver, :func:`fixed_log_loss_and_gap`, :func:`learned_lower_bound`)
are derived in docs/theory.md section 10.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import minimize_scalar

from ufm.constraint_sets import EUCLIDEAN, unit_sphere
from ufm.errors import ProblemError
from ufm.objectives.base import Capability, Evaluation, ObjectivePrediction, Params

if TYPE_CHECKING:
    from numpy.typing import DTypeLike

    from ufm.constraint_sets import ConstraintSet
    from ufm.problem import Problem, ProblemArrays, ProblemShape
from ufm.objectives.ce_options import (CLASSIFIERS, NAME, WEIGHT_DECAY_MAX, WEIGHT_DECAY_MIN,  # noqa: F401
                                      CrossEntropy)
from ufm.objectives.scl.formula import log_softplus
from ufm.geometry import etf_gram, factor_gram
from ufm.programs import program


def classifier_rows(kind: str, k: int, dim: int) -> np.ndarray:
    """The fixed classifier W (k, dim), unit rows: the simplex ETF (``"etf"``, Gram k/(k-1)(I - 11^T/k))
    or the orthogonal frame (``"of"``, the first k standard basis vectors)."""
    if kind == "of":
        return np.eye(k, dim)
    W = factor_gram(etf_gram(k), dim)
    return W / np.linalg.norm(W, axis=1, keepdims=True)


# ---------------------------------------------------------------- fixed classifier (JAX)
def fixed_margins(H: jnp.ndarray, labels: jnp.ndarray, W: jnp.ndarray, tau: float | jnp.ndarray) -> jnp.ndarray:
    """z (n, k): z_ic = (w_c - w_{y_i}) . h_i / tau, with -inf at c = y_i."""
    logits = H @ W.T / tau
    own = jnp.take_along_axis(logits, labels[:, None], axis=1)
    k = W.shape[0]
    return jnp.where(jnp.arange(k)[None, :] == labels[:, None], -jnp.inf, logits - own)


def fixed_log_loss(H: jnp.ndarray, labels: jnp.ndarray, W: jnp.ndarray, tau: float | jnp.ndarray) -> jnp.ndarray:
    """log L(H) of the fixed-classifier CE (module docstring), to full relative precision; JAX."""
    per_example = log_softplus(jax.scipy.special.logsumexp(fixed_margins(H, labels, W, tau), axis=1))
    return jax.scipy.special.logsumexp(per_example)


def fixed_log_loss_and_gap(H: np.ndarray, labels: np.ndarray, W: np.ndarray, tau: float,
                           relu: bool) -> tuple[float, float]:
    """``(log L(H), gap)`` from one evaluation of log L and its gradient, with ``gap`` a proved bound on
    (L(H) - L*) / L(H), L* the minimum over the unit (nonnegative) sphere.

    Each f_i is convex, so its minimum over the ball B = {||h|| <= 1} (intersected with h >= 0 under
    ReLU), which contains the sphere, is at least the linearisation bound
    f_i(h_i) + min_{x in B} <grad f_i, x - h_i> = f_i(h_i) - <grad f_i, h_i> - sigma_B(-grad f_i),
    sigma_B(v) = ||v|| (||max(v, 0)|| under ReLU). Divided by L with g = grad log L = grad L / L:

        (L - LB) / L = sum_i [ <g_i, h_i> + sigma_B(-g_i) ]   (>= 0; 0 at a minimiser on the sphere).
    """
    log_loss, g = _FIXED_VALUE_AND_GRAD(np.asarray(H, dtype=np.float64), np.asarray(labels),
                                        np.asarray(W, dtype=np.float64), np.float64(tau))
    g = np.asarray(g)
    support = np.linalg.norm(np.maximum(-g, 0.0) if relu else -g, axis=1)
    return float(log_loss), float(max(np.sum(np.sum(g * np.asarray(H), axis=1) + support), 0.0))


def _fixed_value_and_grad(H, labels, W, tau):
    return jax.value_and_grad(fixed_log_loss)(H, labels, W, tau)


#: log L and its gradient in H, compiled once per shape (the certificate of every fixed-classifier solve).
_FIXED_VALUE_AND_GRAD = program(_fixed_value_and_grad, cost=lambda H, labels, W, tau: H.shape[0] * W.shape[0])


# ---------------------------------------------------------------- learned classifier
class LearnedParams(NamedTuple):
    H: jnp.ndarray            # (n, d)
    W: jnp.ndarray            # (k, d)
    b: jnp.ndarray            # (k,)


def learned_loss(params: LearnedParams, labels: jnp.ndarray, weight_decay: float | jnp.ndarray) -> jnp.ndarray:
    """F(H, W, b) of the learned-classifier UFM (module docstring); JAX."""
    logits = params.H @ params.W.T + params.b[None, :]
    ce = jax.scipy.special.logsumexp(logits, axis=1) - jnp.take_along_axis(logits, labels[:, None], axis=1)[:, 0]
    norms = jnp.sum(params.W ** 2) + jnp.sum(params.H ** 2) + jnp.sum(params.b ** 2)
    return jnp.mean(ce) + 0.5 * weight_decay * norms


#: F compiled once per shape (the float64 evaluation of every learned-classifier solve).
_LEARNED_LOSS = program(learned_loss, cost=lambda params, labels, weight_decay: params.H.shape[0] * params.W.shape[0])


def learned_lower_bound(params: LearnedParams, labels: np.ndarray, weight_decay: float) -> float:
    """A lower bound on min F by convex duality (docs/theory.md section 10).

    ||W||^2 + ||H||^2 >= 2 ||W H^T||_* relaxes F to the convex G(Z, b) = g(Z + b 1^T) + lambda ||Z||_* +
    lambda/2 ||b||^2 over logits Z (k, n), g(U) = (1/n) sum_i CE(u_i, y_i). Its dual at Y (k, n) with
    ||Y||_2 <= lambda is D(Y) = (1/n) sum_i entropy(q_i) - ||Y 1||^2 / (2 lambda), q_i = n y_i + e_{y_i} in
    the simplex. The candidate Y = theta grad g(U) (columns (softmax(u_i) - e_{y_i})/n), theta =
    min(1, lambda / ||grad g(U)||_2), gives q_i = theta softmax(u_i) + (1 - theta) e_{y_i}."""
    H, W, b = (np.asarray(a, dtype=np.float64) for a in params)
    labels = np.asarray(labels)
    n, k = H.shape[0], W.shape[0]
    U = W @ H.T + b[:, None]                                  # (k, n)
    P = np.exp(U - U.max(axis=0, keepdims=True))
    P /= P.sum(axis=0, keepdims=True)
    E = np.zeros((k, n))
    E[labels, np.arange(n)] = 1.0
    grad = (P - E) / n
    norm = np.linalg.norm(grad, 2)
    theta = 1.0 if norm <= weight_decay else weight_decay / norm
    Q = theta * P + (1 - theta) * E
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.sum(np.where(Q > 0, Q * np.log(Q), 0.0))
    Y1 = (theta * grad).sum(axis=1)
    return float(entropy / n - Y1 @ Y1 / (2 * weight_decay))


def centred_means(H: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Mc (k, d): the class means centred by their (unweighted) average."""
    means = np.stack([H[labels == c].mean(axis=0) for c in range(k)])
    return means - means.mean(axis=0, keepdims=True)


def self_duality(W: np.ndarray, H: np.ndarray, labels: np.ndarray) -> float:
    """||W/||W||_F - Mc/||Mc||_F||_F with Mc the centred class means (0: self-dual, Zhu et al. NC3)."""
    Mc = centred_means(np.asarray(H), np.asarray(labels), W.shape[0])
    return float(np.linalg.norm(W / np.linalg.norm(W) - Mc / np.linalg.norm(Mc)))


# ---------------------------------------------------------------- predictions
#: The CE prediction: ``class_mean_gram`` (k, k) of the predicted class means (raw; None: no closed form).
CEPrediction = ObjectivePrediction


def fixed_prediction(classifier: str, relu: bool, counts: Sequence[int], tau: float) -> CEPrediction:
    """The fixed-classifier optimum in closed form (docs/theory.md section 10): every example of class y
    sits at one point whose margins (w_c - w_y) . h all equal -m, so L* = n log(1 + (k-1) e^{-m/tau})
    with m = k/(k-1) (ETF), sqrt(k/(k-1)) (OF, no ReLU), 1 (OF, ReLU)."""
    k, n = len(counts), int(sum(counts))
    if classifier == "etf":
        m, geometry, M = k / (k - 1), "etf", etf_gram(k)
        why = "h_i = w_{y_i}: the ETF classifier's own rows"
    elif relu:
        m, geometry, M = 1.0, "orthogonal-frame", np.eye(k)
        why = "h_i = e_{y_i}: with h >= 0 every margin is at least -1, reached only at the standard basis"
    else:
        m, geometry, M = float(np.sqrt(k / (k - 1))), "etf", etf_gram(k)
        why = "h_i = (k e_{y_i} - 1)/sqrt(k(k-1)): the centred, normalised OF rows, a simplex ETF"
    loss = n * float(np.log1p((k - 1) * np.exp(-m / tau)))
    return CEPrediction(geometry, M, loss, why)


def learned_optimal_product(k: int, n: int, weight_decay: float) -> float:
    """p* = argmin_{p >= 0} log(1 + (k-1) e^{-p k/(k-1)}) + lambda sqrt(k n) p (a 1-D convex problem)."""
    slope = weight_decay * np.sqrt(k * n)
    f = lambda p: np.log1p((k - 1) * np.exp(-p * k / (k - 1))) + slope * p
    if slope >= 1.0:            # the derivative at 0 is -1 + slope: the optimum is H = W = 0
        return 0.0
    hi = 1.0
    while f(2 * hi) < f(hi):
        hi *= 2
    return float(minimize_scalar(f, bounds=(0.0, 2 * hi), method="bounded",
                                 options={"xatol": 1e-14}).x)


def learned_prediction(counts: Sequence[int], weight_decay: float, dim: int) -> CEPrediction:
    """Balanced counts and dim >= k-1: W = a M_etf, h_i = s m_{y_i}, b = 0 with k a^2 = n s^2 and a s = p*
    (:func:`learned_optimal_product`); the optimal value F* = log(1 + (k-1) e^{-p* k/(k-1)}) + lambda sqrt(kn) p*.
    Otherwise no closed form is known (minority collapse under imbalance)."""
    k, n = len(counts), int(sum(counts))
    if len(set(counts)) > 1 or dim < k - 1:
        reason = "imbalanced classes" if len(set(counts)) > 1 else f"dim {dim} < k - 1"
        return CEPrediction("none", None, None, f"no closed form for the learned classifier with {reason}")
    p = learned_optimal_product(k, n, weight_decay)
    value = float(np.log1p((k - 1) * np.exp(-p * k / (k - 1))) + weight_decay * np.sqrt(k * n) * p)
    s2 = p * np.sqrt(k / n)                                 # ||h_i||^2 = s^2, with k a^2 = n s^2, a s = p
    return CEPrediction("etf" if p > 0 else "zero", s2 * etf_gram(k), value,
                        "balanced classes: a simplex ETF with W proportional to the centred means (self-dual); "
                        "the norms from a 1-D convex problem")


# ---------------------------------------------------------------- the objective interface
#: The capabilities of CE (:class:`ufm.objectives.base.Capability`): gradient descent with a bound of
#: its own, and the closed-form prediction.
CAPABILITIES = frozenset({Capability.DESCENT, Capability.OWN_BOUND, Capability.PREDICT})


def constraint_set(problem: Problem | ProblemShape) -> ConstraintSet:
    """Unit rows (nonnegative with ReLU) for a fixed classifier; the whole space for the learned one."""
    return EUCLIDEAN if problem.objective.learned else unit_sphere(problem.relu)


def start(problem: Problem, key: jax.Array, dtype: DTypeLike = jnp.float64) -> np.ndarray | LearnedParams:
    """A random start: a random point of the sphere set, or (learned) Gaussian H, W of scale 0.1 and b = 0."""
    n, k, d = problem.n, problem.k, problem.dim
    if not problem.objective.learned:
        return constraint_set(problem).random_point(key, (n, d), dtype)
    return jax.tree_util.tree_map(np.asarray, _LEARNED_START(np.asarray(key), n=n, k=k, d=d,
                                                             dtype=np.dtype(dtype).name))


def _learned_start(key, *, n: int, k: int, d: int, dtype: str) -> "LearnedParams":
    kh, kw = jax.random.split(key)
    return LearnedParams(0.1 * jax.random.normal(kh, (n, d), dtype), 0.1 * jax.random.normal(kw, (k, d), dtype),
                         jnp.zeros((k,), dtype))


_LEARNED_START = program(_learned_start, static_argnames=("n", "k", "d", "dtype"), cost=lambda *a, **kw: 0)


def solver_value(shape: ProblemShape) -> Callable[[Params, ProblemArrays], jax.Array]:
    """The function ``(params, arrays)`` that gradient descent minimises, log L (fixed) or F (learned),
    for a :class:`~ufm.problem.ProblemShape`; the labels and tau come traced in the
    :class:`~ufm.problem.ProblemArrays`, so problems of one shape share a compiled run."""
    if shape.objective.learned:
        lam = float(shape.objective.weight_decay)
        return lambda params, arrays: learned_loss(params, arrays.labels, lam)
    W = jnp.asarray(classifier_rows(shape.objective.classifier, shape.k, shape.dim))
    return lambda H, arrays: fixed_log_loss(H, arrays.labels, W.astype(H.dtype), arrays.tau.astype(H.dtype))


def evaluate(problem: Problem, params: Params) -> Evaluation:
    """The loss of ``params`` in float64 and its proved bound (module docstring)."""
    labels = np.asarray(problem.labels)
    if problem.objective.learned:
        if not (isinstance(params, tuple) and len(params) == 3):
            raise ProblemError("a point of the learned-classifier CE is (H, W, b); evaluate a LearnedParams")
        params = LearnedParams(*(np.asarray(a, dtype=np.float64) for a in params))
        lam = float(problem.objective.weight_decay)
        loss = float(_LEARNED_LOSS(params, labels, np.float64(lam)))
        bound = learned_lower_bound(params, labels, lam)
        info = {"self_duality": self_duality(params.W, params.H, labels),
                "classifier": params.W, "bias": params.b}
        gap = (loss - bound) / loss if loss > 0 else 0.0
        return Evaluation(params.H, loss, loss, float(np.log(loss)), bound, max(gap, 0.0), "nuclear-norm dual", info)
    H = np.asarray(params, dtype=np.float64)
    W = classifier_rows(problem.objective.classifier, problem.k, problem.dim)
    log_loss, gap = fixed_log_loss_and_gap(H, labels, W, problem.tau, problem.relu)
    loss = float(np.exp(log_loss))
    return Evaluation(H, loss, loss, log_loss, loss * (1.0 - gap), gap, "ball linearisation", {})


def predict(problem: Problem) -> CEPrediction:
    """The closed-form prediction of the problem's CE optimum."""
    ce = problem.objective
    if ce.learned:
        return learned_prediction(problem.counts, float(ce.weight_decay), problem.dim)
    return fixed_prediction(ce.classifier, problem.relu, problem.counts, problem.tau)
