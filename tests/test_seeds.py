"""The summary over seeds (pipeline/seeds.py) against hand computations."""

import json

import pytest

from pipeline.seeds import seed_rows, summarize_seeds


def summary(final: str, **students: float) -> dict:
    rows = [{"name": "teacher", "model": "teacher", "ndcg@10": 0.5, "mrr@10": 0.4, "recall@100": 0.9}]
    rows += [{"name": name, "model": "student", "ndcg@10": v, "mrr@10": v / 2, "recall@100": 0.8}
             for name, v in students.items()]
    return {"rows": rows, "final": {"selected": final}}


def test_each_model_and_each_seeds_final_student_get_mean_sample_sd_and_per_seed_figures(tmp_path):
    summaries = {13: summary("student-it2", **{"student-it1": 0.30, "student-it2": 0.40}),
                 7: summary("student-it1", **{"student-it1": 0.36, "student-it2": 0.34}),
                 21: summary("student-it2", **{"student-it1": 0.33, "student-it2": 0.37})}
    paths = []
    for seed, content in summaries.items():
        paths.append(str(tmp_path / f"{seed}.json"))
        (tmp_path / f"{seed}.json").write_text(json.dumps(content))
    rows = summarize_seeds([13, 7, 21], paths, str(tmp_path / "seeds.md"), str(tmp_path / "seeds.json"), "x",
                           shared_from_seed=13)
    by_name = {row["name"]: row for row in rows}
    assert list(by_name) == ["teacher", "student-it1", "student-it2", "final"]
    teacher = by_name["teacher"]["ndcg@10"]
    assert teacher["mean"] == pytest.approx(0.5) and teacher["sd"] == pytest.approx(0.0)
    it1 = by_name["student-it1"]["ndcg@10"]
    # mean 0.33; sample sd sqrt(((-0.03)^2 + 0.03^2 + 0^2) / 2) = 0.03
    assert it1["mean"] == pytest.approx(0.33) and it1["sd"] == pytest.approx(0.03)
    assert it1["per_seed"] == {"13": 0.30, "7": 0.36, "21": 0.33}
    final = by_name["final"]
    # each seed's own final student: 0.40 (it2), 0.36 (it1), 0.37 (it2): mean 0.3766..., sd 0.02081...
    assert final["selected"] == {"13": "student-it2", "7": "student-it1", "21": "student-it2"}
    assert final["ndcg@10"]["per_seed"] == {"13": 0.40, "7": 0.36, "21": 0.37}
    assert final["ndcg@10"]["mean"] == pytest.approx(1.13 / 3)
    assert final["ndcg@10"]["sd"] == pytest.approx(0.0208166600, abs=1e-9)
    assert final["mrr@10"]["mean"] == pytest.approx(1.13 / 6)
    written = json.loads((tmp_path / "seeds.json").read_text())
    assert written["seeds"] == [13, 7, 21] and written["rows"] == json.loads(json.dumps(rows))
    table = (tmp_path / "seeds.md").read_text()
    assert "| final | final | 0.3767 (0.0208) |" in table and "0.3600 (student-it1)" in table
    assert "drawn and made at seed 13" in table and "nDCG@10 at seed 13 | nDCG@10 at seed 7 | nDCG@10 at seed 21" in table
    with pytest.raises(ValueError, match="2 seeds and 3 summaries"):
        summarize_seeds([13, 7], paths, str(tmp_path / "a.md"), str(tmp_path / "a.json"), "x")


def test_a_model_missing_at_a_seed_has_no_row_and_one_seed_has_no_sd():
    rows = seed_rows({13: summary("student-it1", **{"student-it1": 0.3, "student-it1-peer": 0.2}),
                      7: summary("student-it1", **{"student-it1": 0.4})})
    assert [row["name"] for row in rows] == ["teacher", "student-it1", "final"]
    one = seed_rows({13: summary("student-it1", **{"student-it1": 0.3})})
    assert one[-1]["ndcg@10"]["sd"] is None and one[-1]["ndcg@10"]["mean"] == 0.3
    with pytest.raises(ValueError, match="seed 7: its summary names no final student"):
        seed_rows({13: summary("student-it1", **{"student-it1": 0.3}), 7: {"rows": [], "final": None}})
