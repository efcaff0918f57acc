"""Would held-out pseudo-queries choose the final student where the judged dev split is too small or absent?
(issue 35, item 3; measured after the fact: the test figures are read only to score the signal.)

Per finished run: a fresh, seeded set of span pseudo-queries (``pipeline.labels.make_pseudo_queries``, kind
``span``) from passages that gave none of the run's own training pseudo-queries, each with its source
passage as the one relevant passage (an inverse-cloze dev split that needs no label and no teacher). Each
of the run's students (warm-up and iterations) retrieves for them (exact search over the corpus); the signal
is their MRR@10 and nDCG@10, scored, as ``benchmarks/dev_signal.py`` scores signals, by the test figure of the
student it picks against the best student's (regret) and by Kendall's tau with the test figure.

    PYTHONPATH=. .venv/bin/python benchmarks/pseudo_dev_signal.py OUT.json RUN_DIR [RUN_DIR ...]
"""

import json
import platform
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.stats import kendalltau

from pipeline.data import passage_texts, read_table
from pipeline.evaluation import compute_metrics
from pipeline.labels import PSEUDO_PREFIX, make_pseudo_queries
from pipeline.models import BiEncoder, load_student_spec

COUNT, SEED, SPAN_WORDS = 200, 99, (4, 24)


def student_folder(run: Path, name: str) -> Path:
    """student-itK -> students/itK; student-itK-warmup -> students/itK/warmup."""
    iteration, _, phase = name.removeprefix("student-").partition("-")
    return run / "students" / iteration / phase if phase else run / "students" / iteration


def held_out_queries(run: Path, corpus) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    trained = read_table(run / "data/queries-and-pseudo.parquet")["query_id"]
    used = {q.rsplit(":", 1)[-1] for q in trained if q.startswith(PSEUDO_PREFIX)}
    pseudo = make_pseudo_queries(corpus[~corpus["doc_id"].isin(used)].reset_index(drop=True), COUNT, ["span"],
                                 SPAN_WORDS, SEED)
    return dict(zip(pseudo["query_id"], pseudo["text"])), {q: {d: 1} for q, d in zip(pseudo["query_id"], pseudo["doc_id"])}


@torch.no_grad()
def search(folder: Path, corpus_ids: list[str], passages: list[str], queries: dict[str, str], depth: int = 100):
    model = BiEncoder.load(load_student_spec(folder), torch.device("cpu")).eval()
    doc = torch.nn.functional.normalize(torch.from_numpy(model.encode(passages, is_query=False)), dim=-1)
    ids = sorted(queries)
    query = torch.nn.functional.normalize(torch.from_numpy(model.encode([queries[q] for q in ids], is_query=True)), dim=-1)
    scores, order = torch.topk(query @ doc.T, k=min(depth, len(passages)), dim=1)
    return {q: {corpus_ids[int(j)]: float(s) for s, j in zip(r_s, r_o)} for q, r_s, r_o in zip(ids, scores, order)}


def signal(run: Path) -> dict:
    summary = json.loads((run / "summary.json").read_text())
    students = [r["name"] for r in summary["rows"] if r["model"] == "student" and r["name"].startswith("student-it")
                and "." not in r["name"] and not r["name"].endswith("-it0") and r["name"] != "student-it0"]
    corpus = read_table(run / "data/corpus.parquet")
    passages, corpus_ids = passage_texts(corpus, True), list(corpus["doc_id"])
    queries, qrels = held_out_queries(run, corpus)
    figures = {}
    for name in students:
        metrics = compute_metrics(qrels, search(student_folder(run, name), corpus_ids, passages, queries))
        test = json.loads((run / f"eval/test/{name}/metrics.json").read_text())["ndcg@10"]
        figures[name] = {"pseudo_mrr@10": metrics["mrr@10"], "pseudo_ndcg@10": metrics["ndcg@10"], "test": test}
    best = max(f["test"] for f in figures.values())
    scored = {}
    for key in ("pseudo_mrr@10", "pseudo_ndcg@10"):
        picked = max(figures, key=lambda s: (round(figures[s][key], 12), list(figures).index(s)))
        tau = kendalltau([f[key] for f in figures.values()], [f["test"] for f in figures.values()]).statistic
        scored[key] = {"picks": picked, "test_of_pick": figures[picked]["test"], "regret": best - figures[picked]["test"],
                       "kendall_tau": None if np.isnan(tau) else float(tau)}
    return {"run": str(run), "held_out_pseudo_queries": len(queries), "students": figures, "best_test": best,
            "signals": scored}


def main(out: str, *runs: str) -> None:
    rows = [signal(Path(r)) for r in runs]
    totals = {key: {"mean_regret": float(np.mean([r["signals"][key]["regret"] for r in rows])),
                    "runs_where_it_picks_the_best": sum(r["signals"][key]["regret"] == 0 for r in rows)}
              for key in ("pseudo_mrr@10", "pseudo_ndcg@10")}
    result = {"benchmark": "held-out span pseudo-queries as a dev signal (issue 35, item 3)", "count": COUNT,
              "seed": SEED, "runs": rows, "totals": totals, "machine": platform.platform()}
    Path(out).write_text(json.dumps(result, indent=2) + "\n")
    for r in rows:
        print(r["run"], {k: (round(v["pseudo_mrr@10"], 4), round(v["test"], 4)) for k, v in r["students"].items()},
              {k: v["picks"] for k, v in r["signals"].items()})
    print(json.dumps(totals, indent=2))


if __name__ == "__main__":
    main(*sys.argv[1:])
