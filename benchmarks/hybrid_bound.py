"""How high could the hybrid of a finished run go? Every weight, two first stages, read after the fact.

    .venv/bin/python benchmarks/hybrid_bound.py RUN[,QRELS.tsv] [RUN/seed-7 ...] --out benchmarks/results/hybrid-bound.json

Issue 35 asks the hybrid row (the final student fused with BM25) to reach the better of BM25 and the
teacher. Where it does not, is it the weight the workflow chose, the first stage (BM25's top
``first_stage.depth``, which a passage BM25 misses cannot enter), or the student itself? For each run this
re-scores the run's own exported hybrid (``export/hybrid/``: its student copy, normalisation and depth;
the student's cached corpus embeddings) at every student weight of a grid, over two first stages:

- ``bm25``: BM25's top ``depth`` (what the workflow serves), which reproduces the run's hybrid row at its
  weight (checked: the script stops if it does not);
- ``union``: BM25's top ``depth`` and the student's dense top ``depth``, every pair scored by both.

and reports each split's figures (dev when the run has one) beside the run's teacher, BM25 and final
student. ``RUN,QRELS.tsv`` (the collection's judged training queries, e.g. ``qrels/train.tsv``) adds a
split ``judged-unread``: for a run that read no judgment (the label-free preset), the real
judgments of its dev queries (``data/splits.json``), or, without a dev split, of every query it judges
outside the test split; a held-out set to compare first stages on that is not the test split. The test split's best weight is an upper bound read off the test split, for diagnosis only:
nothing here chooses a weight or a first stage for a run.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from pipeline.compare import data_dir, data_file  # noqa: E402
from pipeline.data import load_qrels, load_queries, qrels_lines, read_table, write_json  # noqa: E402
from pipeline.embeddings import read_embeddings  # noqa: E402
from pipeline.evaluation import compute_metrics, judged_queries, ranked_pairs  # noqa: E402
from pipeline.hybrid import fused_run  # noqa: E402
from pipeline.lexical import BM25  # noqa: E402
from pipeline.models import ModelSpec  # noqa: E402
from pipeline.scorers import BiEncoderScorer  # noqa: E402

GRID = [round(w, 1) for w in np.arange(0.0, 1.01, 0.1)]
SPLIT_QRELS = {"dev": "dev-qrels.parquet", "test": "qrels-test.parquet"}


def unread_judgments(run: Path, path: str, test_queries: set[str]) -> dict[str, dict[str, int]]:
    """The judgments in ``path`` of the run's dev queries, or without a dev split of every query outside
    the test split."""
    judged: dict[str, dict[str, int]] = {}
    for _, fields in qrels_lines(Path(path)):
        judged.setdefault(fields[0].strip(), {})[fields[1].strip()] = int(float(fields[2]))
    dev = set(json.loads(data_file(run, "splits.json").read_text()).get("dev_query_ids") or [])
    keep = dev if dev else set(judged) - test_queries
    return {q: docs for q, docs in judged.items() if q in keep}


def bound(run: Path, judgments: str | None = None) -> dict:
    data = data_dir(run)
    summary = json.loads((run / "summary.json").read_text())
    rows = {r["name"]: r for r in summary["rows"]}
    serving = json.loads((run / "export/hybrid/hybrid.json").read_text())
    student, depth, normalization = serving["student"], serving["first_stage"]["depth"], serving["normalization"]
    name = student["name"]
    corpus = read_table(str(data / "corpus.parquet"))
    bm25 = BM25.from_corpus(corpus, include_title=serving["include_title"], **serving["lexical"].get("bm25", {}))
    queries = load_queries(str(data / "queries.parquet"))
    spec = ModelSpec.from_config(name, {**student["model"], "source": str(run / "export/hybrid" / student["path"])})
    doc_ids, doc_embeddings = read_embeddings(sorted((run / "embeddings" / name).glob("*.parquet")))
    scorer = BiEncoderScorer(spec, queries, doc_ids, doc_embeddings, "cpu")
    result = {"run": str(run), "experiment": summary["experiment"], "final_student": name,
              "served_weight": student["weight"], "weight_reason": serving["weight_reason"], "depth": depth,
              "normalization": normalization,
              "rows": {r["name"]: {"model": r["model"], "test_ndcg@10": r["ndcg@10"], "dev_ndcg@10": r.get("dev")}
                       for r in summary["rows"] if r["model"] in ("teacher", "baseline", "hybrid") or r["name"] == name},
              "splits": {}}
    split_qrels = {split: load_qrels(str(data_file(run, file))) for split, file in SPLIT_QRELS.items()}
    if judgments:
        split_qrels["judged-unread"] = unread_judgments(run, judgments, set(split_qrels["test"]))
    for split, qrels in split_qrels.items():
        query_ids = sorted(judged_queries(qrels))
        if not query_ids:
            continue
        lexical_ids, _ = bm25.search([queries[q] for q in query_ids], depth)
        dense_rows = np.argsort(-(scorer.query_embeddings(query_ids) @ doc_embeddings.T), axis=1)[:, :depth]
        first_stages = {"bm25": lexical_ids,
                        "union": [list(dict.fromkeys([*lexical, *(doc_ids[i] for i in dense)]))
                                  for lexical, dense in zip(lexical_ids, dense_rows)]}
        figures = {}
        for stage, ranked in first_stages.items():
            pairs = ranked_pairs(query_ids, ranked)
            pairs["lexical"] = bm25.score_pairs(queries, pairs)
            pairs["student"] = scorer.score(pairs)
            figures[stage] = {f"{w:g}": compute_metrics(qrels, fused_run(pairs, w, normalization))["ndcg@10"]
                              for w in GRID}
        served = figures["bm25"][f"{student['weight']:g}"]
        if split == "test" and abs(served - rows["hybrid"]["ndcg@10"]) > 1e-6:
            raise SystemExit(f"error: {run}: the hybrid re-scored at its weight gives {served:.6f}, the run's row "
                             f"{rows['hybrid']['ndcg@10']:.6f}")
        result["splits"][split] = {"queries": len(query_ids), "ndcg@10_by_weight": figures,
                                   "best": {stage: max(by_weight.items(), key=lambda kv: kv[1])
                                            for stage, by_weight in figures.items()}}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="finished runs (an experiment's folder or a further seed's), each "
                        "with ',QRELS.tsv' where the run never read those judgments")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    results = []
    for argument in args.runs:
        run, _, judgments = argument.partition(",")
        result = bound(Path(run), judgments or None)
        results.append(result)
        test = result["splits"]["test"]
        teacher = [f"{n} {r['test_ndcg@10']:.4f}" for n, r in result["rows"].items() if r["model"] == "teacher"]
        print(f"{run}: teacher {', '.join(teacher)}; served hybrid {result['rows']['hybrid']['test_ndcg@10']:.4f} "
              f"(weight {result['served_weight']:g}); test's best over weights: bm25 first stage "
              f"{test['best']['bm25'][1]:.4f} (w {test['best']['bm25'][0]}), union {test['best']['union'][1]:.4f} "
              f"(w {test['best']['union'][0]})", flush=True)
    write_json({"host": platform.processor() or platform.machine(), "grid": GRID, "runs": results}, args.out)


if __name__ == "__main__":
    main()
