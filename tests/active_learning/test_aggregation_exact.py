"""The posteriors are exact: on tiny cases, every latent combination enumerated in plain Python.

The model's E step (cumulative sums, kernel matrices, scaling, sparse sums over reviews) is checked against the
model written out from its definition: for every (difficulty level, gap, grade) and, per review, every way of
answering (a way of erring and the gap it made the volunteer perceive, with or without a grade swap, or an
inverted answer), the product of the probabilities, summed. Parameters are random, not fitted, so nothing
is checked only at convenient values.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math

import numpy as np
import pandas as pd
import pytest

from active_learning.aggregation import GapDawidSkene, GapWitness, PerDateDawidSkene
from active_learning.aggregation.per_date import PerDateParams
from active_learning.aggregation.saboteurs import Saboteurs
from active_learning.aggregation.shift import ShiftParams, ShiftState
from active_learning.schema import Annotation, State, annotations_to_table

IN, D, X, N = State.INTACT, State.DAMAGED, State.DESTROYED, State.NOT_VISIBLE
WHEN = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
T = 3  # dates; gaps 0..3
G = T + 1
MAX_SHIFT = 1
GRADES = (1, 2)  # damaged, destroyed: the class of every date from the gap on

# building "a": two reviews and a whole-gap witness; "b": two reviews and a gold (expert) review; "c": three
# reviews, one of them partly not visible
REVIEWS = [
    ("a", "v0", (IN, D, D)),
    ("a", "v1", (IN, IN, X)),
    ("b", "v1", (D, D, IN)),
    ("b", "v2", (IN, N, D)),
    ("c", "v0", (IN, IN, IN)),
    ("c", "v1", (N, D, X)),
    ("c", "v2", (D, IN, D)),
]
GOLD = ("b", (IN, N, X))  # rules out gaps 0 and 3 and the damaged grade
WITNESS = {"a": [math.log(0.1), math.log(0.2), math.log(0.6), math.log(0.1)]}
MODEL_WEIGHT = 0.7


def _table() -> pd.DataFrame:
    rows = [Annotation(b, v, "simulated", s, WHEN, f"{b}-{v}") for b, v, s in REVIEWS]
    rows.append(Annotation(GOLD[0], "expert", "expert", GOLD[1], WHEN, "gold"))
    return annotations_to_table(rows)


def _witness() -> GapWitness:
    return GapWitness(tuple(WITNESS), np.array(list(WITNESS.values())), version="w")


# ---- the model written out from its definition ----------------------------------------------------------------


def _kernel(name: str, g: int, p: int, false_alarm: list[float]) -> float:
    """P(perceived gap p | true gap g) of one way of erring."""
    if g == T and name not in ("false_alarm", "noise"):
        return float(p == T)  # an undamaged building is seen undamaged by every other way of erring
    if name == "exact":
        return float(p == g)
    if name.startswith(("late_", "early_")):
        size = int(name.split("_")[1]) * (1 if name.startswith("late") else -1)
        return float(p == min(max(g + size, 0), T))
    if name == "far":
        far = [q for q in range(T) if abs(q - g) > MAX_SHIFT]
        return (1.0 / len(far) if p in far else 0.0) if far else float(p == g)
    if name == "miss":
        return float(p == T)
    if name == "false_alarm":
        return false_alarm[p] if g == T and p < T else float(g < T and p == g)
    if name == "noise":
        return 1.0 / G
    raise AssertionError(name)


def _answers(conf: np.ndarray, states: tuple[State, ...], cls: list[int]) -> float:
    """P(the review's visible answers | the class it saw at each date)."""
    out = 1.0
    for t, s in enumerate(states):
        if s != N:
            out *= conf[cls[t], int(s)]
    return out


def _ways(
    conf: np.ndarray,
    states: tuple[State, ...],
    names: tuple[str, ...],
    weights: np.ndarray,
    false_alarm: list[float],
    swap: float,
    g: int,
    k: int,
) -> list[float]:
    """P(way of answering, answers | g, k) for every way: (way of erring, perceived gap, swapped?) and inverted."""
    out = []
    for c, name in enumerate(names):
        if name == "inverted":  # damaged before the gap, intact from it on, either grade
            out.append(weights[c] * _answers(conf, states, [1 if t < g else 0 for t in range(T)]))
            continue
        for p in range(G):
            for swapped, p_swap in ((False, 1.0 - swap), (True, swap)):
                grade = 3 - k if swapped else k
                cls = [0 if t < p else grade for t in range(T)]
                out.append(
                    weights[c] * _kernel(name, g, p, false_alarm) * p_swap * _answers(conf, states, cls)
                )
    return out


def _gold_allows(g: int, k: int) -> bool:
    states = GOLD[1]
    for t, s in enumerate(states):
        if (s == IN and g <= t) or (s in (D, X) and g > t):
            return False
    seen = {s for s in states if s in (D, X)}
    return k == (2 if X in seen else 1) if seen else True


def _witness_log(building: str, g: int) -> float:
    if building not in WITNESS:
        return 0.0
    scores = WITNESS[building]
    return MODEL_WEIGHT * (scores[g] - max(scores))


def _normalise(joint: dict[tuple[int, int, int], float], n_h: int) -> np.ndarray:
    out = np.zeros((n_h, G, 2))
    for (h, g, k), value in joint.items():
        out[h, g, k - 1] = value
    return out / out.sum()


# ---- random parameters in the model's own containers --------------------------------------------------------


def _random_shift_params(fit: GapDawidSkene, rng: np.random.Generator, types: bool) -> ShiftParams:
    basis, n_h, n_v = fit.params_.basis, fit.difficulty_levels, len(fit.volunteer_ids_)
    conf = rng.dirichlet(np.ones(3), size=(n_v, 3))
    weights = rng.dirichlet(np.ones(len(basis.names)), size=(n_h, n_v))
    false_alarm = rng.dirichlet(np.ones(T))
    saboteurs = None
    if types:
        old = fit.params_.state.saboteurs
        assert old is not None
        sab_weights = rng.dirichlet(np.ones(len(old.basis.names)), size=n_h)
        saboteurs = Saboteurs(old.basis, old.anchor, sab_weights, np.linspace(0.2, 0.8, n_v))
    state = ShiftState(np.log(conf), weights, false_alarm, 0.2, saboteurs)
    prior = rng.dirichlet(np.ones(n_h * G * 2)).reshape(n_h, G, 2)
    return ShiftParams(basis, state, prior)


@pytest.mark.parametrize(
    ("levels", "inversion", "types"),
    [(1, False, False), (2, True, False), (1, True, False), (2, False, True), (1, True, True)],
)
def test_the_shift_models_posterior_matches_brute_force_enumeration(
    levels: int, inversion: bool, types: bool, rng: np.random.Generator
) -> None:
    table = _table()
    fit = GapDawidSkene(
        n_iter=0, max_shift=MAX_SHIFT, difficulty_levels=levels, inversion=inversion, volunteer_types=types,
        model_weight=MODEL_WEIGHT,
    ).fit(table, T, gap_witness=_witness())  # fmt: skip
    fit.params_ = params = _random_shift_params(fit, rng, types)
    state = params.state
    names = params.basis.names
    volunteers = list(fit.volunteer_ids_)
    conf = np.exp(state.log_conf)
    false_alarm = state.false_alarm.tolist()
    got = np.exp(fit.log_joint(table, gap_witness=_witness()))

    for building in ("a", "b", "c"):
        reviews = [(volunteers.index(v), s) for b, v, s in REVIEWS if b == building]
        joint: dict[tuple[int, int, int], float] = {}
        for h, g, k in itertools.product(range(levels), range(G), GRADES):
            if building == GOLD[0] and not _gold_allows(g, k):
                joint[h, g, k] = 0.0
                continue
            base = params.prior[h, g, k - 1] * math.exp(_witness_log(building, g))
            honest = [
                _ways(conf[v], s, names, state.weights[h, v], false_alarm, state.grade_swap, g, k)
                for v, s in reviews
            ]
            if not types:
                # the full joint: every combination of one way of answering per review, enumerated
                joint[h, g, k] = base * sum(math.prod(combo) for combo in itertools.product(*honest))
                continue
            # volunteer types are mean-field: each review adds E_type[log P(answers | g, k, type)]
            sab = state.saboteurs
            assert sab is not None
            log_term = 0.0
            for (v, s), ways in zip(reviews, honest, strict=True):
                p_sab = sum(
                    _ways(conf[v], s, sab.basis.names, sab.weights[h], false_alarm, state.grade_swap, g, k)
                )
                share = sab.probs[v]
                log_term += (1 - share) * math.log(sum(ways)) + share * math.log(p_sab)
            joint[h, g, k] = base * math.exp(log_term)
        want = _normalise(joint, levels)
        np.testing.assert_allclose(got[fit.index_of([building])[0]], want, rtol=0, atol=1e-9)


def test_the_per_date_models_posterior_matches_brute_force_enumeration(rng: np.random.Generator) -> None:
    table = _table()
    fit = PerDateDawidSkene(n_iter=0, model_weight=MODEL_WEIGHT).fit(table, T, gap_witness=_witness())
    conf = rng.dirichlet(np.ones(3), size=(len(fit.volunteer_ids_), 3))
    prior = rng.dirichlet(np.ones(G * 2)).reshape(G, 2)
    fit.params_ = PerDateParams(np.log(conf), np.log(prior))
    volunteers = list(fit.volunteer_ids_)
    got = np.exp(fit.log_joint(table, gap_witness=_witness()))
    for building in ("a", "b", "c"):
        joint = {}
        for g, k in itertools.product(range(G), GRADES):
            allowed = building != GOLD[0] or _gold_allows(g, k)
            cls = [0 if t < g else k for t in range(T)]
            answers = math.prod(
                _answers(conf[volunteers.index(v)], s, cls) for b, v, s in REVIEWS if b == building
            )
            joint[0, g, k] = allowed * prior[g, k - 1] * math.exp(_witness_log(building, g)) * answers
        np.testing.assert_allclose(got[fit.index_of([building])[0]], _normalise(joint, 1), rtol=0, atol=1e-9)
