"""pipeline.significance against hand computations and scipy, on hand-made per-query figures."""

import math

import numpy as np
import pytest
from scipy import stats

from pipeline.compare import significance_against
from pipeline.significance import correct_across_systems, holm, paired_query_tests, paired_seed_test

BASELINE = [0.10, 0.50, 0.30, 0.20, 0.90, 0.40, 0.00, 0.70]
SYSTEM = [0.20, 0.60, 0.20, 0.40, 0.90, 0.55, 0.10, 0.75]


def test_the_paired_t_test_is_the_hand_computed_one():
    result = paired_query_tests(BASELINE, SYSTEM)
    differences = [s - b for s, b in zip(SYSTEM, BASELINE)]
    n, mean = len(differences), sum(differences) / len(differences)
    sd = math.sqrt(sum((d - mean) ** 2 for d in differences) / (n - 1))
    t = mean / (sd / math.sqrt(n))
    assert result["mean_difference"] == pytest.approx(mean)
    assert result["p_t"] == pytest.approx(2 * stats.t.sf(abs(t), n - 1))
    assert (result["improved"], result["degraded"], result["queries"]) == (6, 1, 8)


def test_the_wilcoxon_and_randomisation_p_values_are_scipys_on_the_same_arrays():
    result = paired_query_tests(BASELINE, SYSTEM, randomisation=True, resamples=2000, seed=3)
    assert result["p_wilcoxon"] == stats.wilcoxon(SYSTEM, BASELINE).pvalue
    # 8 queries, 7 non-zero differences: 2^8 sign flips, so scipy enumerates them all (an exact test)
    exact = stats.permutation_test((np.array(SYSTEM), np.array(BASELINE)), lambda x, y: np.mean(x - y),
                                   permutation_type="samples").pvalue
    assert result["p_randomisation"] == pytest.approx(exact)


def test_identical_systems_have_nothing_to_test():
    result = paired_query_tests(BASELINE, BASELINE, randomisation=True)
    assert (result["p_t"], result["p_wilcoxon"], result["p_randomisation"]) == (1.0, 1.0, 1.0)
    assert (result["improved"], result["degraded"], result["mean_difference"]) == (0, 0, 0.0)
    with pytest.raises(ValueError, match="equal-length"):
        paired_query_tests(BASELINE, SYSTEM[:-1])


def test_holm_is_the_step_down_correction_by_hand():
    # sorted 0.01, 0.03, 0.04 times 3, 2, 1, each at least the one before: 0.03, 0.06, 0.06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.2, 0.5]) == pytest.approx([0.4, 0.5])
    assert holm([]) == []
    corrected = correct_across_systems([{"p_t": 0.01, "p_wilcoxon": 0.02}, {"p_t": 0.04, "p_wilcoxon": 0.01}])
    assert [r["p_t_holm"] for r in corrected] == pytest.approx([0.02, 0.04])
    assert [r["p_wilcoxon_holm"] for r in corrected] == pytest.approx([0.02, 0.02])
    assert "p_randomisation_holm" not in corrected[0], "no test that was not run"


def test_compare_pairs_queries_by_id_and_corrects_over_the_systems_against_the_named_baseline():
    queries = ["q1", "q2", "q3", "q4", "q5", "q6", "q7", "q8"]
    rows = [{"experiment": name} for name in ("a", "b", "c")]
    # each run lists its queries in its own order: the tests pair them by id
    third = [0.12, 0.48, 0.33, 0.20, 0.88, 0.45, 0.02, 0.72]
    per_query = [dict(zip(queries, BASELINE)), dict(reversed(list(zip(queries, SYSTEM)))), dict(zip(queries, third))]
    tests = significance_against(rows, per_query, baseline=0, randomisation=False)
    assert tests[0] is None and tests[1]["baseline"] == "a"
    p_b = stats.ttest_rel(SYSTEM, BASELINE).pvalue
    p_c = stats.ttest_rel(third, BASELINE).pvalue
    assert tests[1]["p_t"] == pytest.approx(p_b) and tests[2]["p_t"] == pytest.approx(p_c)
    assert [tests[1]["p_t_holm"], tests[2]["p_t_holm"]] == pytest.approx(holm([p_b, p_c]))
    against_c = significance_against(rows, per_query, baseline=2, randomisation=False)
    assert against_c[2] is None and against_c[0]["mean_difference"] == pytest.approx(np.mean(BASELINE) - np.mean(third))


def test_the_seed_test_pairs_configurations_by_seed():
    baseline = {13: 0.6374, 7: 0.6293, 21: 0.6288}
    system = {13: 0.6447, 7: 0.6422, 21: 0.6411, 99: 0.7}  # seed 99 has no partner: left out
    result = paired_seed_test(baseline, system)
    differences = [0.6422 - 0.6293, 0.6447 - 0.6374, 0.6411 - 0.6288]  # seeds 7, 13, 21
    assert result["seeds"] == [7, 13, 21] and result["higher_in"] == 3
    assert result["mean_difference"] == pytest.approx(sum(differences) / 3)
    mean, sd = np.mean(differences), np.std(differences, ddof=1)
    assert result["p_t"] == pytest.approx(2 * stats.t.sf(mean / (sd / math.sqrt(3)), 2))
    assert paired_seed_test({13: 0.5}, {13: 0.6})["p_t"] is None, "one seed: no test"
