"""How good a label-free run's teacher labels are: the share of the real training queries whose teacher
positive is judged relevant in SciFact's train qrels, and how often a pseudo-query's positive is the
passage it was cut from. A diagnostic read here, after the run: the run itself reads no judgment.

    .venv/bin/python benchmarks/label_quality.py results/bench-label-free [more runs] \
        --qrels ../shared/data/scifact/qrels/train.tsv --out benchmarks/results/label-quality.json
"""

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipeline.labels import PSEUDO_PREFIX  # noqa: E402


def quality(run: Path, judged: dict[str, set[str]]) -> dict:
    labels = pd.read_parquet(run / "data/qrels-teacher.parquet")
    pseudo = labels["query_id"].str.startswith(PSEUDO_PREFIX)
    real = labels[~pseudo]
    in_qrels = real[real["query_id"].isin(judged)]
    hits = [d in judged[q] for q, d in zip(in_qrels["query_id"], in_qrels["doc_id"])]
    result = {"teacher": json.loads((run / "data/labels.json").read_text())["teacher"],
              "real_queries": int(real["query_id"].nunique()), "judged_in_train_qrels": int(in_qrels["query_id"].nunique()),
              "positives_judged_relevant": round(sum(hits) / len(hits), 4) if hits else None, "pseudo": {}}
    parts = labels[pseudo]["query_id"].str.split(":", n=2, expand=True) if pseudo.any() else None
    if parts is not None:
        for kind in sorted(parts[1].unique()):
            mask = (parts[1] == kind).to_numpy()
            source_is_positive = (parts[2][mask].to_numpy() == labels[pseudo]["doc_id"].to_numpy()[mask]).mean()
            result["pseudo"][kind] = {"queries": int(mask.sum()), "positive_is_source": round(float(source_is_positive), 4)}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--qrels", default="../shared/data/scifact/qrels/train.tsv")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    table = pd.read_csv(args.qrels, sep="\t", dtype=str)
    table = table[table.iloc[:, 2].astype(int) > 0]
    judged: dict[str, set[str]] = {}
    for query_id, doc_id in zip(table.iloc[:, 0], table.iloc[:, 1]):
        judged.setdefault(query_id, set()).add(doc_id)
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.is_file() else {}
    results.update({Path(run).name: quality(Path(run), judged) for run in args.runs})
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
