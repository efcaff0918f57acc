"""benchmarks/st_baselines.py's tests against the workflow's students (issue 34, item 4): each recipe the
baseline, the workflow runs tested per query (the seeds' mean per query) and per seed, as scipy computes them,
Holm-corrected over the workflow runs. The training itself needs datasets/accelerate and hours; not run here."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

SPEC = importlib.util.spec_from_file_location("st_baselines",
                                              Path(__file__).resolve().parents[1] / "benchmarks" / "st_baselines.py")
st_baselines = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(st_baselines)

QUERIES = ["q1", "q2", "q3", "q4", "q5"]
RECIPE = {13: [0.2, 0.4, 0.1, 0.5, 0.3], 7: [0.3, 0.4, 0.2, 0.4, 0.3]}
WORKFLOWS = {"default": {13: [0.5, 0.6, 0.1, 0.7, 0.4], 7: [0.6, 0.5, 0.3, 0.8, 0.4], 21: [0.9] * 5},
             "prod": {13: [0.3, 0.4, 0.2, 0.6, 0.3], 7: [0.3, 0.5, 0.1, 0.4, 0.2]}}


def per_query(values):
    return dict(zip(QUERIES, values))


@pytest.fixture
def recipe_runs():
    return [{"recipe": "mnrl", "seed": seed, "test_per_query_ndcg@10": per_query(v)} for seed, v in RECIPE.items()]


@pytest.fixture
def workflows(monkeypatch):
    runs = {Path(name): {seed: per_query(v) for seed, v in seeds.items()} for name, seeds in WORKFLOWS.items()}
    monkeypatch.setattr(st_baselines, "workflow_seeds", lambda run: runs[run])
    return [(name, Path(name)) for name in WORKFLOWS]


def test_tests_against_match_scipy_over_common_seeds(recipe_runs, workflows):
    tested = st_baselines.tests_against(recipe_runs, workflows)["mnrl"]
    recipe_mean = np.mean([RECIPE[13], RECIPE[7]], axis=0)  # seed 21 is the default's alone: left out
    raw = []
    for row, name in zip(tested, WORKFLOWS):
        assert row["workflow"] == name and row["seeds"] == [7, 13]
        theirs = np.mean([WORKFLOWS[name][13], WORKFLOWS[name][7]], axis=0)
        assert row["recipe_ndcg@10"] == pytest.approx(recipe_mean.mean())
        assert row["workflow_ndcg@10"] == pytest.approx(theirs.mean())
        tests = row["per_query"]
        assert tests["p_t"] == pytest.approx(stats.ttest_rel(theirs, recipe_mean).pvalue)
        assert tests["p_wilcoxon"] == pytest.approx(stats.wilcoxon(theirs, recipe_mean).pvalue)
        assert (tests["improved"], tests["degraded"]) == (int((theirs > recipe_mean).sum()),
                                                          int((theirs < recipe_mean).sum()))
        seed_means = [np.mean(WORKFLOWS[name][s]) for s in (7, 13)]
        assert row["per_seed"]["p_t"] == pytest.approx(stats.ttest_rel(seed_means, [np.mean(RECIPE[7]),
                                                                                      np.mean(RECIPE[13])]).pvalue)
        raw.append(tests["p_t"])
    # Holm over the two workflow runs, by hand: the smaller p times 2, the larger kept at least as large
    low, high = sorted(raw)
    expected = {low: min(1.0, 2 * low), high: min(1.0, max(2 * low, high))}
    for row, p in zip(tested, raw):
        assert row["per_query"]["p_t_holm"] == pytest.approx(expected[p])


def test_tests_against_refuse_other_queries_and_no_common_seed(recipe_runs, monkeypatch):
    monkeypatch.setattr(st_baselines, "workflow_seeds", lambda run: {13: {"q1": 0.5, "q9": 0.1}})
    with pytest.raises(SystemExit, match="not mnrl's"):
        st_baselines.tests_against(recipe_runs, [("other", Path("other"))])
    monkeypatch.setattr(st_baselines, "workflow_seeds", lambda run: {99: per_query(RECIPE[13])})
    with pytest.raises(SystemExit, match="no seed that mnrl"):
        st_baselines.tests_against(recipe_runs, [("other", Path("other"))])


def test_against_argument_needs_a_name_and_a_folder():
    assert st_baselines.parse_against(["default=results/bench-seeds"]) == [("default", Path("results/bench-seeds"))]
    with pytest.raises(SystemExit, match="NAME=RUN_FOLDER"):
        st_baselines.parse_against(["results/bench-seeds"])
