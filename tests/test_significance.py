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


def fake_run(folder, experiment, seed, ranks):
    """A finished run's folder as pipeline.compare reads it: the final student ranks each query's one
    relevant passage at ``ranks[query]`` (nDCG@10 1/log2(rank + 1))."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    data = folder / "data"
    data.mkdir(parents=True)
    docs = [f"d{k}" for k in range(12)]
    pq.write_table(pa.table({"doc_id": docs, "title": [""] * 12, "text": ["x"] * 12}), data / "corpus.parquet")
    pq.write_table(pa.table({"query_id": list(ranks), "doc_id": ["d0"] * len(ranks),
                             "relevance": pa.array([1] * len(ranks), pa.int32())}), data / "qrels-test.parquet")
    (data / "splits.json").write_text(json.dumps({"seed": seed}))
    (data / "report.json").write_text("{}")
    rows = [{"model": "student", "name": "student-it1", "iteration": 1, "split": "test",
             "ndcg@10": float(np.mean([1 / math.log2(r + 1) if r <= 10 else 0.0 for r in ranks.values()])),
             "mrr@10": 0.5, "recall@100": 1.0, "encode_docs_per_s": 100.0, "params": 10, "size_mb": 1.0}]
    (folder / "summary.json").write_text(json.dumps({"experiment": experiment, "rows": rows,
                                                    "final": {"selected": "student-it1"}}))
    (folder / "final.json").write_text("{}")
    evaluated = folder / "eval/test/student-it1"
    evaluated.mkdir(parents=True)
    (evaluated / "metrics.json").write_text("{}")
    with open(evaluated / "run.trec", "w") as handle:
        for query, rank in ranks.items():
            ranking = [d for d in docs if d != "d0"]
            ranking.insert(rank - 1, "d0")
            handle.writelines(f"{query} Q0 {d} {k + 1} {20 - k} x\n" for k, d in enumerate(ranking))
    (folder / "students/it1").mkdir(parents=True)
    (folder / "students/it1/training.json").write_text(json.dumps({"seconds": 10.0}))
    return folder


QUERIES = [f"q{k}" for k in range(6)]


def test_compare_makes_one_line_of_a_configurations_seeds_and_tests_them_paired_by_seed(tmp_path):
    import json

    from pipeline.compare import compare_experiments

    base_ranks = {13: [1, 2, 3, 4, 2, 1], 7: [2, 2, 3, 5, 2, 1], 21: [1, 3, 3, 4, 3, 2]}
    other_ranks = {13: [1, 1, 2, 4, 1, 1], 7: [1, 2, 2, 3, 2, 1], 21: [2, 1, 2, 4, 1, 1]}
    base = [fake_run(tmp_path / f"b{s}", f"b{s}", s, dict(zip(QUERIES, r))) for s, r in base_ranks.items()]
    other = [fake_run(tmp_path / f"o{s}", f"o{s}", s, dict(zip(QUERIES, r))) for s, r in other_ranks.items()]
    single = fake_run(tmp_path / "single", "single", 13, dict(zip(QUERIES, [1] * 6)))
    rows = compare_experiments([f"base={','.join(map(str, base))}", f"other={','.join(map(str, reversed(other)))}",
                                str(single)], str(tmp_path / "cmp"))
    ndcg = {s: {seed: [1 / math.log2(r + 1) for r in ranks[seed]] for seed in ranks}
            for s, ranks in (("base", base_ranks), ("other", other_ranks))}
    per_seed = {s: {seed: float(np.mean(v)) for seed, v in ndcg[s].items()} for s in ndcg}
    assert rows[0]["seeds"] == 3 and rows[0]["per_seed"] == pytest.approx(per_seed["base"])
    assert rows[0]["ndcg@10"] == pytest.approx(np.mean(list(per_seed["base"].values())))
    assert rows[0]["ndcg@10_sd"] == pytest.approx(np.std(list(per_seed["base"].values()), ddof=1))
    # per query: each query's mean over the seeds, paired by query
    base_q, other_q = (np.mean(list(ndcg[s].values()), axis=0) for s in ("base", "other"))
    tests = rows[1]["significance"]
    assert tests["p_t"] == pytest.approx(stats.ttest_rel(other_q, base_q).pvalue)
    # per seed: the seeds' means paired by seed (the other's runs were given in another order)
    seeds = tests["seeds"]
    expected = stats.ttest_rel([per_seed["other"][s] for s in (7, 13, 21)], [per_seed["base"][s] for s in (7, 13, 21)])
    assert seeds["seeds"] == [7, 13, 21] and seeds["p_t"] == pytest.approx(expected.pvalue)
    assert seeds["p_t_holm"] == pytest.approx(expected.pvalue), "one seeded experiment against the baseline"
    assert "seeds" not in rows[2]["significance"], "a single run has no seeds to pair"
    table = (tmp_path / "cmp/comparison.md").read_text()
    assert f"| base | 3 (sd {rows[0]['ndcg@10_sd']:.4f}) |" in table and f"({seeds['higher_in']} of 3) |" in table
    saved = json.loads((tmp_path / "cmp/comparison.json").read_text())["experiments"]
    assert saved[1]["significance"]["seeds"]["p_t"] == pytest.approx(expected.pvalue)


def test_an_experiment_whose_runs_share_a_seed_is_refused(tmp_path):
    from pipeline.compare import compare_experiments
    from pipeline.data import InputError

    runs = [fake_run(tmp_path / name, name, 13, dict(zip(QUERIES, [1, 2, 3, 4, 5, 6]))) for name in ("a", "b")]
    with pytest.raises(InputError, match=r"experiment twice: its runs .* must each have a seed of their own"):
        compare_experiments([f"twice={runs[0]},{runs[1]}"], str(tmp_path / "cmp"))


def test_a_seeds_run_reads_the_models_it_shares_from_the_experiments_folder(tmp_path):
    """A seed's run (``seed-K/`` beside the experiment's seeds.json) has its own students' rankings; the
    teachers' and baselines' are the experiment's, which the per-query tests then read."""
    import shutil

    from pipeline.compare import per_query_ndcg
    from pipeline.data import InputError

    experiment = fake_run(tmp_path / "exp", "exp", 13, dict(zip(QUERIES, [1, 2, 3, 4, 5, 6])))
    (experiment / "seeds.json").write_text('{"experiment": "exp", "seeds": [13, 7]}')
    shutil.copytree(experiment / "eval/test/student-it1", experiment / "eval/test/teacher")
    seed = fake_run(tmp_path / "exp/seed-7", "seed-7", 7, dict(zip(QUERIES, [1, 1, 1, 1, 1, 1])))
    shutil.rmtree(seed / "data")
    summary = {"rows": [{"split": "test"}]}
    assert per_query_ndcg(seed, summary, "student-it1") == pytest.approx(dict.fromkeys(QUERIES, 1.0)), "its own"
    shared = per_query_ndcg(seed, summary, "teacher")
    assert shared == pytest.approx({q: 1 / math.log2(r + 1) for q, r in zip(QUERIES, [1, 2, 3, 4, 5, 6])})
    with pytest.raises(InputError, match="missing: the per-query tests read nobody's ranking"):
        per_query_ndcg(seed, summary, "nobody")
