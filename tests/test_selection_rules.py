"""benchmarks/selection_rules.py: the rules see the students in the order the run made them."""

import importlib.util
import json
from pathlib import Path

SPEC = importlib.util.spec_from_file_location(
    "selection_rules", Path(__file__).resolve().parents[1] / "benchmarks" / "selection_rules.py")
selection_rules = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(selection_rules)

IN_ORDER = ["student-it0", "student-it1-warmup", "student-it1", "student-it2"]


def test_the_students_order_is_the_runs_not_final_jsons_sorted_keys(tmp_path):
    # final.json as the workflow writes it (keys sorted: it1 before it1-warmup), without "students"
    dev = {name: 0.5 for name in sorted(IN_ORDER)}
    (tmp_path / "final.json").write_text(json.dumps({"dev": dev}, sort_keys=True))
    rows = [{"model": "teacher", "name": "t"}, *({"model": "student", "name": n, "backend": "torch"} for n in IN_ORDER),
            {"model": "student", "name": "student-it2.onnx-int8", "backend": "onnx"}, {"model": "hybrid", "name": "hybrid"}]
    (tmp_path / "summary.json").write_text(json.dumps({"rows": rows}))
    assert list(dev) != IN_ORDER and selection_rules.students_in_order(tmp_path) == IN_ORDER
    # a run that records the order: it is read as recorded
    (tmp_path / "final.json").write_text(json.dumps({"dev": dev, "students": IN_ORDER[::-1]}))
    assert selection_rules.students_in_order(tmp_path) == IN_ORDER[::-1]


def test_a_further_seeds_run_reads_the_students_it_shares_from_the_experiments_folder(tmp_path):
    from pipeline.compare import eval_folder

    experiment, seed = tmp_path / "exp", tmp_path / "exp" / "seed-7"
    (experiment / "seeds.json").parent.mkdir(parents=True)
    (experiment / "seeds.json").write_text(json.dumps({"experiment": "exp", "seeds": [13, 7]}))
    for run, names in ((experiment, IN_ORDER), (seed, IN_ORDER[1:])):  # the seed's run has no untrained student
        for name in names:
            (run / "eval" / "dev" / name).mkdir(parents=True)
    assert eval_folder(seed, "dev", "student-it0") == experiment / "eval" / "dev" / "student-it0"
    assert eval_folder(seed, "dev", "student-it2") == seed / "eval" / "dev" / "student-it2", "its own, where it has one"
    assert eval_folder(experiment, "dev", "student-it9") == experiment / "eval" / "dev" / "student-it9", \
        "a run of one seed reads its own folder (missing files are named by their reader)"
