"""Dawid-Skene over the latent gap: exact posteriors, gold anchoring, shrinkage, the model as a witness."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pandas as pd
import pytest

from active_learning.aggregation import GapDawidSkene, GapWitness, ModelEmissions, PerDateDawidSkene
from active_learning.aggregation.kernels import KernelBasis
from active_learning.aggregation.shift import kernel_weights, own_shape_probability
from active_learning.errors import AggregationError, AnnotationTableError
from active_learning.schema import Annotation, State, annotations_to_table
from active_learning.truth import BuildingTruth
from tests.active_learning.conftest import N_DATES

IN, D, X, N = State.INTACT, State.DAMAGED, State.DESTROYED, State.NOT_VISIBLE
WHEN = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)


def path(gap: int, n: int = N_DATES, grade: State = D) -> tuple[State, ...]:
    return tuple(IN if t < gap else grade for t in range(n))


def majority_accuracy(table: pd.DataFrame, truths: tuple[BuildingTruth, ...]) -> float:
    """Per-date majority (ties count as intact) then the best monotone gap: the classic crowd baseline."""
    human = table[(table["source"] != "expert") & (table["state"] != int(N))]
    votes = human.assign(dmg=(human["state"] != int(IN)).astype(int) * 2 - 1)
    per_date = votes.groupby(["building_id", "date_index"])["dmg"].sum().unstack(fill_value=0)
    per_date = per_date.reindex(columns=range(N_DATES), fill_value=0)
    right = 0
    for t in truths[20:]:
        v = per_date.loc[t.building_id].to_numpy() if t.building_id in per_date.index else np.zeros(N_DATES)
        score = [-(v[:g]).sum() + v[g:].sum() for g in range(N_DATES + 1)]
        right += int(np.argmax(score) == t.true_gap)
    return right / (len(truths) - 20)


def test_posteriors_are_distributions_and_beat_majority_vote(crowd_table, truths) -> None:
    fit = GapDawidSkene().fit(crowd_table, N_DATES)
    assert fit.converged_
    np.testing.assert_allclose(fit.gap_probs_.sum(axis=1), 1.0, atol=1e-9)
    np.testing.assert_allclose(fit.confusion_.sum(axis=2), 1.0, atol=1e-9)
    assert fit.log_likelihood_[-1] >= fit.log_likelihood_[0] - 1e-6
    truth = np.array([t.true_gap for t in truths[20:]])
    pred = fit.predict().reindex([t.building_id for t in truths[20:]]).to_numpy()
    ours = float((pred == truth).mean())
    assert ours >= majority_accuracy(crowd_table, truths)
    assert ours > 0.75


def test_input_table_is_not_modified(crowd_table) -> None:
    before = crowd_table.copy()
    GapDawidSkene().fit(crowd_table, N_DATES)
    pd.testing.assert_frame_equal(crowd_table, before)


def test_gold_clamps_its_buildings(crowd_table, truths) -> None:
    fit = GapDawidSkene().fit(crowd_table, N_DATES)
    for t in truths[:20]:
        row = fit.index_of([t.building_id])[0]
        assert fit.gold_[row]
        assert fit.gap_probs_[row, t.true_gap] > 0  # the expert never excludes the truth in this pool
        hidden = [i for i, v in enumerate(t.visible) if not v]
        if not hidden:  # with every date visible the expert pins the gap exactly
            assert fit.map_gap_[row] == t.true_gap


def test_unreviewed_buildings_get_the_prior(crowd_table) -> None:
    fit = GapDawidSkene().fit(
        crowd_table, N_DATES, building_ids=["lonely", *crowd_table["building_id"].unique()]
    )
    row = fit.index_of(["lonely"])[0]
    assert fit.n_reviews_[row] == 0
    np.testing.assert_allclose(fit.gap_probs_[row], fit.gap_prior_.sum(axis=1), atol=1e-9)


def test_one_answer_volunteer_is_shrunk_to_the_pool(crowd_table) -> None:
    lone = Annotation("b000003", "newcomer", "simulated", (N,) * (N_DATES - 1) + (IN,), WHEN, "lone:1")
    table = pd.concat([crowd_table, annotations_to_table([lone])], ignore_index=True)
    fit = GapDawidSkene().fit(table, N_DATES)
    v = list(fit.volunteer_ids_).index("newcomer")
    assert np.abs(fit.confusion_[v] - fit.pooled_confusion_).max() < 0.3
    assert fit.confusion_[v, 0, 0] > 0.5


def test_an_inverting_volunteer_is_learned_as_such() -> None:
    rng = np.random.default_rng(3)
    rows, truth = [], []
    for b in range(60):
        gap = int(rng.integers(0, N_DATES + 1))
        truth.append(gap)
        for v in range(4):
            rows.append(Annotation(f"b{b}", f"honest{v}", "simulated", path(gap), WHEN, f"h{b}-{v}"))
        flipped = tuple(D if s == IN else IN for s in path(gap))
        rows.append(Annotation(f"b{b}", "inverter", "simulated", flipped, WHEN, f"x{b}"))
    fit = GapDawidSkene().fit(annotations_to_table(rows), N_DATES)
    v = list(fit.volunteer_ids_).index("inverter")
    assert fit.confusion_[v, 0, 1] > 0.8  # says damaged when intact
    assert fit.confusion_[v, 1, 0] > 0.8  # says intact when damaged
    assert fit.saboteur_probs_[v] > 0.99 and np.delete(fit.saboteur_probs_, v).max() < 0.01
    assert fit.predict().reindex([f"b{b}" for b in range(60)]).tolist() == truth


def test_non_monotone_and_not_visible_answers_are_evidence_not_errors() -> None:
    rows = [
        Annotation("b1", "v1", "simulated", (IN, IN, D, IN, D, D, D, D), WHEN, "a"),
        Annotation("b1", "v2", "simulated", (IN, N, N, D, D, D, D, D), WHEN, "b"),
        Annotation("b1", "v3", "simulated", (N,) * N_DATES, WHEN, "c"),
    ]
    fit = GapDawidSkene().fit(annotations_to_table(rows), N_DATES)
    assert fit.map_gap_[0] in (2, 3)
    assert fit.n_reviews_[0] == 3


def test_model_witness_moves_the_posterior() -> None:
    rows = [Annotation("b1", "v1", "simulated", (IN, IN, N, N, N, N, D, D), WHEN, "a")]
    table = annotations_to_table(rows)
    crowd = GapDawidSkene().fit(table, N_DATES)
    log_i = np.log(np.array([[0.95, 0.95, 0.95, 0.95, 0.05, 0.05, 0.05, 0.05]]))
    log_d = np.log(1 - np.exp(log_i))
    emissions = ModelEmissions(("b1",), log_i, log_d, version="detector@1")
    both = GapDawidSkene().fit(table, N_DATES, emissions=emissions)
    assert both.map_gap_[0] == 4
    assert both.confidence_[0] > crowd.confidence_[0]
    assert both.model_version_ == "detector@1"


def test_misuse_is_refused_with_clear_errors(crowd_table) -> None:
    with pytest.raises(AggregationError, match="not fitted"):
        _ = GapDawidSkene().map_gap_
    with pytest.raises(AnnotationTableError, match="date index"):
        GapDawidSkene().fit(crowd_table, N_DATES - 2)
    bad = ModelEmissions(("b1",), np.zeros((1, 3)), np.zeros((1, 3)))
    with pytest.raises(AggregationError, match="3 dates"):
        GapDawidSkene().fit(crowd_table, N_DATES, emissions=bad)
    with pytest.raises(AggregationError, match="shape"):
        ModelEmissions(("b1", "b2"), np.zeros((1, 3)), np.zeros((1, 3)))


def test_warns_when_not_converged(crowd_table) -> None:
    with pytest.warns(RuntimeWarning, match="did not converge"):
        fit = GapDawidSkene(n_iter=1).fit(crowd_table, N_DATES)
    assert not fit.converged_


@pytest.mark.parametrize("aggregator", [GapDawidSkene, PerDateDawidSkene])
def test_both_review_models_learn_an_inverter_and_clamp_gold(
    aggregator: type[GapDawidSkene | PerDateDawidSkene], crowd_table, truths
) -> None:
    # one more volunteer answers 100 of the simulated crowd's buildings inverted: damaged where it was intact
    # and intact where it was damaged
    inverted = {IN: D, D: IN, X: IN, N: N}
    reviewed = truths[20:120]
    rows = [
        Annotation(
            t.building_id, "inverter", "simulated", tuple(inverted[s] for s in t.states), WHEN, f"i{i}"
        )
        for i, t in enumerate(reviewed)
    ]
    table = pd.concat([crowd_table, annotations_to_table(rows)], ignore_index=True)
    fit = aggregator().fit(table, N_DATES)
    assert fit.converged_
    v = list(fit.volunteer_ids_).index("inverter")
    # learned as an inverter: says damaged where intact, intact where destroyed
    assert fit.confusion_[v, 0, 1:].sum() > 0.9 and fit.confusion_[v, 2, 0] > 0.9
    if isinstance(fit, GapDawidSkene):  # the shift model takes it for a saboteur who inverts
        assert fit.saboteur_probs_[v] > 0.99
        assert fit.saboteur_kernel_names_[-1] == "inverted" and fit.saboteur_kernel_weights_[0, -1] > 0.5
    # and the buildings it reviewed are dated at least as well as without it (its answers, read back, help)
    ids = [t.building_id for t in reviewed]
    truth = np.array([t.true_gap for t in reviewed])
    without = aggregator().fit(crowd_table, N_DATES).predict().reindex(ids).to_numpy()
    with_it = fit.predict().reindex(ids).to_numpy()
    assert (with_it == truth).mean() >= (without == truth).mean() > 0.7
    for t in truths[:20]:  # gold still clamps its buildings
        assert fit.gold_[fit.index_of([t.building_id])[0]]
        assert fit.gap_probs_[fit.index_of([t.building_id])[0], t.true_gap] > 0


def test_shift_model_beats_the_per_date_model_when_people_misplace_the_change(crowd_table, truths) -> None:
    truth = np.array([t.true_gap for t in truths[20:]])
    ids = [t.building_id for t in truths[20:]]
    acc = {
        m.__name__: float((m().fit(crowd_table, N_DATES).predict().reindex(ids) == truth).mean())
        for m in (GapDawidSkene, PerDateDawidSkene)
    }
    assert acc["GapDawidSkene"] > acc["PerDateDawidSkene"]


def test_a_volunteer_who_is_always_two_images_late_is_learned_as_such() -> None:
    rng = np.random.default_rng(5)
    rows = []
    for b in range(80):
        gap = int(rng.integers(0, N_DATES - 2))
        for v in range(3):
            rows.append(Annotation(f"b{b}", f"honest{v}", "simulated", path(gap), WHEN, f"h{b}-{v}"))
        rows.append(Annotation(f"b{b}", "late", "simulated", path(gap + 2), WHEN, f"l{b}"))
    fit = GapDawidSkene().fit(annotations_to_table(rows), N_DATES)
    weights = dict(
        zip(fit.kernel_names_, fit.kernel_weights_[0, list(fit.volunteer_ids_).index("late")], strict=False)
    )
    assert weights["late_2"] > 0.7
    honest = dict(
        zip(
            fit.kernel_names_, fit.kernel_weights_[0, list(fit.volunteer_ids_).index("honest0")], strict=False
        )
    )
    assert honest["exact"] > 0.7
    # and the late volunteer's answers are read back two images earlier: alone, it still dates the building
    alone = [Annotation("x", "late", "simulated", path(5), WHEN, "x1")]
    table = pd.concat([annotations_to_table(rows), annotations_to_table(alone)], ignore_index=True)
    refit = GapDawidSkene().fit(table, N_DATES)
    assert refit.map_gap_[refit.index_of(["x"])[0]] == 3


def test_difficulty_levels_give_a_distribution_per_building(crowd_table) -> None:
    fit = GapDawidSkene(difficulty_levels=2).fit(crowd_table, N_DATES)
    assert fit.kernel_weights_.shape[0] == 2
    np.testing.assert_allclose(fit.difficulty_probs_.sum(axis=1), 1.0, atol=1e-9)
    np.testing.assert_allclose(fit.gap_probs_.sum(axis=1), 1.0, atol=1e-9)


def test_gap_witness_moves_the_posterior_and_bad_ones_are_refused() -> None:
    rows = [Annotation("b1", "v1", "simulated", (IN, IN, N, N, N, N, D, D), WHEN, "a")]
    table = annotations_to_table(rows)
    scores = np.full((1, N_DATES + 1), np.log(0.01))
    scores[0, 4] = np.log(0.9)
    both = GapDawidSkene().fit(table, N_DATES, gap_witness=GapWitness(("b1",), scores, version="cp@0"))
    assert both.map_gap_[0] == 4
    assert both.model_version_ == "cp@0"
    with pytest.raises(AggregationError, match="gaps"):
        GapDawidSkene().fit(table, N_DATES, gap_witness=GapWitness(("b1",), np.zeros((1, 3))))
    with pytest.raises(AggregationError, match="NaN"):
        GapWitness(("b1",), np.full((1, N_DATES + 1), np.nan))
    with pytest.raises(AggregationError, match="review_model"):
        GapDawidSkene(review_model="votes").fit(table, N_DATES)  # type: ignore[arg-type]


def test_a_grade_mix_up_is_one_error_per_review() -> None:
    rng = np.random.default_rng(11)
    rows = []
    for b in range(80):
        gap = int(rng.integers(0, N_DATES))
        grade = D if b % 2 else X
        other = X if grade == D else D
        for v in range(3):
            rows.append(Annotation(f"b{b}", f"h{v}", "simulated", path(gap, grade=grade), WHEN, f"h{b}-{v}"))
        mixed_up = other if b % 4 < 2 else grade  # this volunteer reports the other grade on half its reviews
        rows.append(Annotation(f"b{b}", "mixer", "simulated", path(gap, grade=mixed_up), WHEN, f"m{b}"))
    table = annotations_to_table(rows)
    fit = GapDawidSkene().fit(table, N_DATES)
    assert 0.05 < fit.grade_swap_ < 0.25  # 40 of 320 damaged-perceived reviews swapped
    truth = {f"b{b}": int(g) for b, g in enumerate(np.random.default_rng(11).integers(0, N_DATES, 80))}
    assert fit.predict().to_dict() == truth
    assert (fit.grade_probs_[:, 1] > 0.5).tolist() == [b % 2 == 0 for b in range(80)]
    assert GapDawidSkene(review_grade_swap=False).fit(table, N_DATES).grade_swap_ == 0.0


def test_the_optional_inverted_answer_model_learns_a_saboteur() -> None:
    rng = np.random.default_rng(12)
    rows = []
    for b in range(80):
        gap = int(rng.integers(1, N_DATES))
        for v in range(3):
            rows.append(Annotation(f"b{b}", f"h{v}", "simulated", path(gap), WHEN, f"h{b}-{v}"))
        flipped = tuple(D if s == IN else IN for s in path(gap))
        rows.append(Annotation(f"b{b}", "saboteur", "simulated", flipped, WHEN, f"s{b}"))
    # the per-review inverted component alone (with volunteer types the saboteur type explains these reviews)
    fit = GapDawidSkene(inversion=True, volunteer_types=False).fit(annotations_to_table(rows), N_DATES)
    assert fit.kernel_names_[-1] == "inverted"
    weights = fit.kernel_weights_[0, :, -1]
    saboteur = list(fit.volunteer_ids_).index("saboteur")
    assert weights[saboteur] > 0.8
    assert np.delete(weights, saboteur).max() < 0.1
    assert "inverted" not in GapDawidSkene().fit(annotations_to_table(rows), N_DATES).kernel_names_


def _inverter_crowd() -> tuple[list[Annotation], dict[str, int]]:
    """Six honest volunteers and two who invert every review; on the last 20 buildings the inverters are two
    of the three reviewers, and gaps run over the whole timeline (0 and N_DATES included)."""
    rng = np.random.default_rng(21)
    rows, truth = [], {}
    for b in range(100):
        gap = b % (N_DATES + 1) if b >= 80 else int(rng.integers(0, N_DATES + 1))
        truth[f"b{b}"] = gap
        honest = [f"h{v}" for v in rng.choice(6, size=3 if b < 80 else 1, replace=False)]
        inverters = [f"s{b % 2}"] if b < 80 else ["s0", "s1"]
        for v in honest:
            rows.append(Annotation(f"b{b}", v, "simulated", path(gap), WHEN, f"{v}-{b}"))
        flipped = tuple(D if s == IN else IN for s in path(gap))
        for v in inverters:
            rows.append(Annotation(f"b{b}", v, "simulated", flipped, WHEN, f"{v}-{b}"))
    return rows, truth


def test_volunteer_types_find_the_saboteurs_and_date_the_buildings_they_outvote() -> None:
    rows, truth = _inverter_crowd()
    table = annotations_to_table(rows)
    fit = GapDawidSkene().fit(table, N_DATES)  # volunteer types are on by default
    probs = dict(zip(fit.volunteer_ids_, fit.saboteur_probs_, strict=True))
    assert min(probs["s0"], probs["s1"]) > 0.9
    assert max(p for v, p in probs.items() if v.startswith("h")) < 0.1
    assert fit.saboteur_kernel_names_[-1] == "inverted"
    assert fit.saboteur_kernel_weights_[0, -1] > 0.5  # the saboteurs were learned to invert
    assert fit.predict().to_dict() == truth  # the outvoted buildings included, intact and gap 0 alike
    assert (GapDawidSkene(volunteer_types=False).fit(table, N_DATES).saboteur_probs_ == 0).all()


def test_a_bad_saboteur_prior_is_refused(crowd_table) -> None:
    with pytest.raises(AggregationError, match="saboteur_prior"):
        GapDawidSkene(volunteer_types=True, saboteur_prior=1.0).fit(crowd_table, N_DATES)


def test_the_per_date_model_has_no_shift_options_and_the_front_door_names_it(crowd_table) -> None:
    names = {f.name for f in dataclasses.fields(PerDateDawidSkene) if f.init}
    assert not names & {"volunteer_types", "inversion", "difficulty_levels", "review_model"}
    with pytest.raises(TypeError, match="inversion"):
        PerDateDawidSkene(inversion=True)  # type: ignore[call-arg]
    with pytest.raises(AggregationError, match="PerDateDawidSkene"):
        GapDawidSkene(review_model="per_date").fit(crowd_table, N_DATES)  # type: ignore[arg-type]


@pytest.mark.filterwarnings("ignore:.*did not converge:RuntimeWarning")  # any parameters will do
@pytest.mark.parametrize("aggregator", [GapDawidSkene, PerDateDawidSkene])
def test_an_e_step_under_the_fitted_parameters_gives_back_the_fitted_posterior(
    aggregator: type[GapDawidSkene | PerDateDawidSkene], crowd_table
) -> None:
    fit = aggregator(n_iter=5).fit(crowd_table, N_DATES)
    again = fit.log_joint(crowd_table)
    np.testing.assert_allclose(np.exp(again), np.exp(fit.log_joint_), atol=1e-12)
    np.testing.assert_allclose(np.exp(again).sum(axis=(1, 3)), fit.gap_probs_, atol=1e-12)


@pytest.mark.parametrize("inverted", [False, True])
def test_kernel_weights_keep_each_volunteers_reliability_and_take_the_crowds_error_shape(
    rng: np.random.Generator, inverted: bool
) -> None:
    basis = KernelBasis.build(6, 2, inverted=inverted)
    n_c = len(basis.names)
    resp = rng.random((1, 4, n_c)) * np.array([40.0, 3.0, 1.0, 0.0])[None, :, None]  # busy .. silent
    pooled = rng.random((1, 1, n_c))
    pooled /= pooled.sum()
    mixture = kernel_weights(basis, resp, pooled, 8.0, None)
    np.testing.assert_allclose(mixture, (resp + 8.0 * pooled) / (resp.sum(axis=2, keepdims=True) + 8.0))
    own = [basis.names.index("exact"), *([n_c - 1] if inverted else [])]
    rest = [c for c in range(n_c) if c not in own]
    for shape_prior in (5.0, 1e12):
        weights = kernel_weights(basis, resp, pooled, 8.0, shape_prior)
        np.testing.assert_allclose(weights.sum(axis=2), 1.0)
        np.testing.assert_allclose(weights[..., own], mixture[..., own])  # reliability as before
    # an overwhelming shape prior: every volunteer errs the crowd's way, however its own errors looked
    errs = kernel_weights(basis, resp, pooled, 8.0, 1e12)[..., rest]
    crowd = pooled[..., rest] / pooled[..., rest].sum()
    np.testing.assert_allclose(errs / errs.sum(axis=2, keepdims=True), np.broadcast_to(crowd, errs.shape))
    # a weak one: the busy volunteer's own errors shape its kernel, as in the mixture model
    busy = kernel_weights(basis, resp, pooled, 8.0, 1e-6)[0, 0, rest]
    np.testing.assert_allclose(busy / busy.sum(), resp[0, 0, rest] / resp[0, 0, rest].sum(), rtol=1e-4)


def test_a_volunteer_with_few_reviews_takes_the_crowds_way_of_erring() -> None:
    rng = np.random.default_rng(11)
    rows = []
    for b in range(60):
        gap = int(rng.integers(3, N_DATES))
        for v in range(3):
            rows.append(Annotation(f"b{b}", f"honest{v}", "simulated", path(gap), WHEN, f"h{b}-{v}"))
        if b < 4:  # four reviews, one of them three images early
            rows.append(
                Annotation(f"b{b}", "rare", "simulated", path(gap - 3 if b == 0 else gap), WHEN, f"r{b}")
            )
    table = annotations_to_table(rows)

    def rare(fit: GapDawidSkene) -> dict[str, float]:
        i = list(fit.volunteer_ids_).index("rare")
        return dict(zip(fit.kernel_names_, fit.kernel_weights_[0, i].tolist(), strict=True))

    mixture = rare(GapDawidSkene(shape_prior=None).fit(table, N_DATES))
    # one early review makes "three early" its own habit in the mixture model, not with the crowd's shape
    assert mixture["early_3"] > 0.05
    # the default, and the shape prior without the escape for volunteers who err their own way
    for kwargs in ({}, {"own_shape_prior": None}):
        reliability = rare(GapDawidSkene(**kwargs).fit(table, N_DATES))
        assert reliability["early_3"] < mixture["early_3"] / 3
        assert abs(reliability["exact"] - mixture["exact"]) < 0.05  # its reliability is learned the same way


def test_own_shape_probability_needs_many_errors_the_crowd_seldom_makes() -> None:
    crowd = np.array([0.4, 0.4, 0.1, 0.1])[None, None]
    errs = np.array([[0.0, 0.0, 0.0, 0.0], [8.0, 8.0, 2.0, 2.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 40.0, 0.0]])
    p = own_shape_probability(errs[None], crowd, 0.1)[0]
    assert p[0] == pytest.approx(0.1)  # no errors: no evidence either way
    assert p[1] < 0.01  # the crowd's way of erring
    assert p[2] < 0.5  # one rare error is not a habit
    assert p[3] > 0.999  # forty of them are


def test_kernel_weights_let_a_volunteer_who_errs_its_own_way_keep_it() -> None:
    basis = KernelBasis.build(6, 2)
    names = list(basis.names)
    pooled = basis.initial_weights(0.0)[None, None]
    resp = np.zeros((1, 3, len(names)))
    resp[0, :, names.index("exact")] = 40.0
    resp[0, 0, names.index("late_1")] = 1.0  # one slip
    resp[0, 1, names.index("late_2")] = 40.0  # always two images late
    resp[0, 2, names.index("late_2")] = 0.4  # the same, but it is 99% likely a saboteur
    honest = np.array([1.0, 1.0, 0.01])
    mixture = kernel_weights(basis, resp, pooled, 8.0, None)
    crowd = kernel_weights(basis, resp, pooled, 8.0, 50.0)
    weights = kernel_weights(basis, resp, pooled, 8.0, 50.0, 0.1, honest)
    np.testing.assert_allclose(weights.sum(axis=2), 1.0)
    np.testing.assert_allclose(weights[0, 0], crowd[0, 0], atol=0.02)  # the slip keeps the crowd's shape
    np.testing.assert_allclose(weights[0, 1], mixture[0, 1], atol=1e-6)  # the habit is its own
    # its honest part is judged on all its reviews: forty late ones, not the 0.4 the honest type keeps
    late = names.index("late_2")
    assert weights[0, 2, late] - crowd[0, 2, late] > 0.9 * (mixture[0, 2, late] - crowd[0, 2, late])
