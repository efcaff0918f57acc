"""Is one system better than another, or is it noise? Paired tests over queries and over seeds.

Per query (PyTerrier's ``pt.Experiment`` and ranx's way): the systems' per-query metric values, paired by
query, go through scipy's paired t-test (``ttest_rel``), the Wilcoxon signed-rank test (``wilcoxon``) and,
when asked, Fisher's randomisation test (``permutation_test`` over sign flips of the differences); the
p-values of several systems against one baseline are Holm-corrected (statsmodels' ``multipletests``)
per test, and the queries each system improves and degrades are counted.

Per seed (what neither does, and what matters most in distillation, where training randomness moves a
student more than a query sample does): the per-seed means of two configurations, paired by seed, go
through the paired t-test too.

Nothing here computes a statistic by hand: the tests are scipy's, the correction statsmodels'.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

TESTS = ("t", "wilcoxon", "randomisation")


def paired_query_tests(baseline: Sequence[float], system: Sequence[float], randomisation: bool = False,
                       resamples: int = 10_000, seed: int = 0) -> dict[str, Any]:
    """``system`` against ``baseline``, both per-query values in the same query order: the mean difference,
    the queries improved and degraded, and the two-sided p-values of the paired t-test, the Wilcoxon
    signed-rank test and (``randomisation``) Fisher's randomisation test with ``resamples`` sign flips."""
    # scipy: only where a test runs
    from scipy import stats

    baseline, system = np.asarray(baseline, dtype=float), np.asarray(system, dtype=float)
    if baseline.shape != system.shape or baseline.ndim != 1:
        raise ValueError(f"paired tests need two equal-length lists of per-query values ({baseline.shape} vs {system.shape})")
    differences = system - baseline
    result: dict[str, Any] = {"queries": int(len(differences)), "mean_difference": float(differences.mean()),
                              "improved": int((differences > 0).sum()), "degraded": int((differences < 0).sum())}
    if not differences.any():  # identical systems: no test has anything to say, and scipy's would divide by 0
        return {**result, "p_t": 1.0, "p_wilcoxon": 1.0, **({"p_randomisation": 1.0} if randomisation else {})}
    result["p_t"] = float(stats.ttest_rel(system, baseline).pvalue)
    result["p_wilcoxon"] = float(stats.wilcoxon(system, baseline).pvalue)
    if randomisation:
        test = stats.permutation_test((system, baseline), lambda x, y: np.mean(x - y), permutation_type="samples",
                                      n_resamples=resamples, rng=np.random.default_rng(seed))
        result["p_randomisation"] = float(test.pvalue)
    return result


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down correction of p-values from several tests of one family."""
    # statsmodels (slow to import): only where p-values are corrected
    from statsmodels.stats.multitest import multipletests

    if not p_values:
        return []
    return [float(p) for p in multipletests(list(p_values), method="holm")[1]]


def correct_across_systems(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each system's per-query results with ``p_<test>_holm`` added: Holm over the systems compared with
    the same baseline, test by test."""
    corrected = [dict(r) for r in results]
    for test in TESTS:
        key = f"p_{test}"
        if results and all(key in r for r in results):
            for r, p in zip(corrected, holm([r[key] for r in results])):
                r[f"{key}_holm"] = p
    return corrected


def paired_seed_test(baseline: dict[int, float], system: dict[int, float]) -> dict[str, Any]:
    """Two configurations' per-seed means (seed -> metric), paired by seed: the mean difference over the seeds
    both have, how many of them the system is higher in, and the paired t-test's two-sided p-value (None
    with fewer than two common seeds, where it has no degrees of freedom)."""
    # scipy: only where a test runs
    from scipy import stats

    seeds = sorted(set(baseline) & set(system))
    differences = [system[s] - baseline[s] for s in seeds]
    result = {"seeds": seeds, "mean_difference": float(np.mean(differences)) if seeds else None,
              "higher_in": sum(d > 0 for d in differences), "p_t": None}
    if len(seeds) >= 2 and any(differences):
        result["p_t"] = float(stats.ttest_rel([system[s] for s in seeds], [baseline[s] for s in seeds]).pvalue)
    elif len(seeds) >= 2:
        result["p_t"] = 1.0
    return result
