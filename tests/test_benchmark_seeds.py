"""benchmarks/seeds.py: medians over seeds and differences paired by seed, from scifact.sh's result files."""

import importlib.util
import json
import statistics
from pathlib import Path

import pytest
from scipy import stats

SPEC = importlib.util.spec_from_file_location("bench_seeds", Path(__file__).resolve().parents[1] / "benchmarks" / "seeds.py")
seeds = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(seeds)


def write_result(folder: Path, name: str, final: float, it1: float, wall: float, seed: int | None = None) -> None:
    rows = [{"model": "teacher", "name": "minilm-l6", "ndcg@10": 0.645, "mrr@10": 0.6, "recall@100": 0.92, "dev": None},
            {"model": "student", "name": "student-it1", "ndcg@10": it1, "mrr@10": it1 - 0.05, "recall@100": 0.9,
             "dev": it1 - 0.02},
            {"model": "student", "name": "student-it2", "ndcg@10": final, "mrr@10": final - 0.05, "recall@100": 0.93,
             "dev": final - 0.02}]
    result = {"wall_s": wall, "rows": rows, "final_student": "student-it2", "student_over_teacher_encode_speed": 3.0}
    if seed is not None:
        result["seed"] = seed
    (folder / name).write_text(json.dumps(result))


@pytest.fixture
def results(tmp_path, monkeypatch):
    monkeypatch.setattr(seeds, "RESULTS", tmp_path)
    write_result(tmp_path, "a13.json", 0.64, 0.60, 1600)
    write_result(tmp_path, "a7.json", 0.62, 0.58, 1700, seed=7)
    write_result(tmp_path, "a21.json", 0.65, 0.61, 1500, seed=21)
    write_result(tmp_path, "b13.json", 0.63, 0.59, 1400)
    write_result(tmp_path, "b7.json", 0.63, 0.57, 1450, seed=7)
    return tmp_path


def test_medians_and_paired_differences(results, capsys):
    out = results / "seeds.json"
    assert seeds.main(["b=13:b13.json,7:b7.json", "a=13:a13.json,7:a7.json,21:a21.json", "--out", str(out)]) == 0
    written = json.loads(out.read_text())
    a = written["configurations"]["a"]
    assert a["median"]["ndcg@10"] == pytest.approx(0.64)
    assert a["median"]["wall_s"] == 1600
    assert (a["min_ndcg@10"], a["max_ndcg@10"]) == (0.62, 0.65)
    assert written["configurations"]["b"]["median"]["ndcg@10"] == pytest.approx(0.63)
    [pair] = written["paired"]
    # only the seeds both ran: 13 (0.64 - 0.63) and 7 (0.62 - 0.63)
    assert pair["seeds"] == [13, 7]
    assert pair["ndcg@10_differences"] == pytest.approx([0.01, -0.01])
    assert pair["higher_in"] == 1
    # the seed-paired t-test on those two pairs, scipy's own
    assert pair["p_t_seeds"] == pytest.approx(stats.ttest_rel([0.64, 0.62], [0.63, 0.63]).pvalue)
    assert pair["mean_difference"] == pytest.approx(0.0)
    assert a["mean_ndcg@10"] == pytest.approx((0.64 + 0.62 + 0.65) / 3)
    assert a["sd_ndcg@10"] == pytest.approx(statistics.stdev([0.64, 0.62, 0.65]))
    assert "| **a, median** |" in capsys.readouterr().out


def test_a_recorded_seed_that_disagrees_is_an_error(results, capsys):
    assert seeds.main(["a=21:a7.json", "--out", str(results / "x.json")]) == 2
    assert "a7.json: field 'seed' is 7, the command line says 21" in capsys.readouterr().err
    assert not (results / "x.json").exists()


@pytest.mark.parametrize("spec, message", [("a", "expected NAME=SEED:FILE"), ("a=a13.json", "is not SEED:FILE"),
                                           ("a=13:a13.json,13:a7.json", "a seed is given twice"),
                                           ("a=13:missing.json", "missing.json: no such benchmark result")])
def test_bad_specs_are_named(results, capsys, spec, message):
    assert seeds.main([spec, "--out", str(results / "x.json")]) == 2
    assert message in capsys.readouterr().err


METHODS_SPEC = importlib.util.spec_from_file_location(
    "compare_methods", Path(__file__).resolve().parents[1] / "benchmarks" / "compare_methods.py")
compare_methods = importlib.util.module_from_spec(METHODS_SPEC)
METHODS_SPEC.loader.exec_module(compare_methods)


@pytest.mark.parametrize("tests, expected", [
    (None, "baseline"),
    ({"mean_difference": 0.012, "p_t_holm": 0.01}, "helps"),
    ({"mean_difference": -0.03, "p_t_holm": 0.0001}, "hurts"),
    # a larger difference than the first's, but not significant after Holm: no verdict either way
    ({"mean_difference": 0.02, "p_t_holm": 0.06}, "cannot be told apart at this scale")])
def test_the_methods_table_says_what_the_holm_corrected_t_test_says(tests, expected):
    assert compare_methods.verdict(tests) == expected


def test_an_unknown_three_seed_experiment_is_refused_before_comparing(tmp_path):
    with pytest.raises(SystemExit, match="unknown experiments \\['bench-mine'\\]"):
        compare_methods.seed_rows([str(tmp_path / "bench-strong-teacher-seeds"), str(tmp_path / "bench-mine")])
