"""How sharp is the KL's target? A run's iteration-1 teacher against MiniLM-L6 on the same groups (issue 35).

The listwise KL of distillation sees, per training query, its positive and 3 mined negatives (group_size 4)
and the teacher's softmax over their scores times its scale (``train.teacher_scale: auto``: 20 for a
cosine bi-encoder, 1 for a fusion's z-scores). For one seeded group per training query of a finished run
(the positive of its training labels, 3 negatives drawn from its iteration-1 candidates that the teacher
scored), this prints and writes the median entropy of that target and the median probability it gives
the positive, for the run's teacher as trained (its scores file, scale 1 unless cosine) and for MiniLM-L6
(cosine x 20, the default recipe's teacher) on the very same groups.

    python benchmarks/teacher_sharpness.py --run results/collection-med-label-free-labels-auto \\
        --teacher fusion --out benchmarks/results/teacher-sharpness-med.json
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.data import load_queries, read_provenance, read_table  # noqa: E402
from pipeline.embeddings import read_embeddings  # noqa: E402
from pipeline.models import ModelSpec  # noqa: E402
from pipeline.runtime import load_encoder  # noqa: E402

GROUP = 4
SIMILARITY_SCALE = 20.0


def target(scores: np.ndarray) -> tuple[float, float]:
    """(entropy, probability of the first) of the softmax over ``scores``."""
    p = np.exp(scores - scores.max())
    p /= p.sum()
    return float(-(p * np.log(p)).sum()), float(p[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True)
    parser.add_argument("--teacher", required=True, help="the iteration-1 teacher's name (its it1/scores/<name>.parquet)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    run = Path(args.run)
    scores_path = run / f"it1/scores/{args.teacher}.parquet"
    scores = read_table(scores_path)
    teacher_factor = SIMILARITY_SCALE if read_provenance(scores_path).get("scale") == "cosine" else 1.0
    positives = read_table(run / "data/training-qrels.parquet").groupby("query_id")["doc_id"].first().to_dict()
    negatives = read_table(run / "it1/candidates.parquet").groupby("query_id")["doc_id"].apply(list).to_dict()
    queries = load_queries(run / "data/queries-and-pseudo.parquet" if (run / "data/queries-and-pseudo.parquet").exists()
                           else run / "data/queries.parquet")
    ids, embeddings = read_embeddings([str(p) for p in sorted((run / "embeddings/minilm-l6").glob("*.parquet"))])
    position = {d: i for i, d in enumerate(ids)}
    encoder = load_encoder(ModelSpec("minilm-l6", source="packaged:all-MiniLM-L6-v2"), "cpu")
    query_ids = sorted(set(scores["query_id"]) & set(positives) & set(negatives))
    query_embedding = dict(zip(query_ids, encoder.encode([queries[q] for q in query_ids], is_query=True)))
    rng = np.random.default_rng(args.seed)
    by_query = {q: group.set_index("doc_id")["score"] for q, group in scores.groupby("query_id")}
    rows = []
    for q in query_ids:
        scored = by_query[q]
        pool = [d for d in negatives[q] if d in scored.index and d != positives[q]]
        if len(pool) < GROUP - 1 or positives[q] not in scored.index:
            continue
        group = [positives[q], *rng.choice(pool, GROUP - 1, replace=False)]
        cosine = np.array([query_embedding[q] @ embeddings[position[d]] for d in group], dtype=np.float64)
        rows.append((*target(teacher_factor * scored.loc[group].to_numpy(np.float64)), *target(SIMILARITY_SCALE * cosine)))
    table = np.array(rows)
    result = {"run": str(run), "teacher": args.teacher, "teacher_factor": teacher_factor, "groups": len(rows),
              "group_size": GROUP, "uniform_entropy": float(np.log(GROUP)),
              "teacher_median_entropy": float(np.median(table[:, 0])), "teacher_median_p_positive": float(np.median(table[:, 1])),
              "minilm_cosine_x20_median_entropy": float(np.median(table[:, 2])),
              "minilm_cosine_x20_median_p_positive": float(np.median(table[:, 3]))}
    print(json.dumps(result, indent=2))
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
