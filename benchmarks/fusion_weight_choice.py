"""Does the fusion weight chosen on a run's judged training queries agree with the test split? (issue 35)

For each run that chose its fusion teacher's weights (``fusion-weights/fusion.json``, written by rule
choose_fusion_weights), the same grid of weightings of the fusion's members is measured, after the fact,
on the run's test split, ranking as the fusion ranks (BM25's top ``first_stage_depth``, the members'
z-scored scores summed): the test figure of the choice, of the configured (even) weights, of each member
alone and of the grid's best, and the choice's regret. The test split chose nothing: the run read
``fusion.json`` before this script existed. Reads the run's data/, embeddings/<bi-encoder>/ and config
(the members' settings from config.yaml, as the run's were).

    python benchmarks/fusion_weight_choice.py --out benchmarks/results/fusion-weight-choice.json \\
        scifact-30=results/few-labels-chosen-30 med=results/collection-med-label-free-labels-auto
"""

import argparse
import glob
import json
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.data import load_qrels, load_queries, read_table  # noqa: E402
from pipeline.evaluation import judged_queries, ranked_pairs  # noqa: E402
from pipeline.fusion_weights import METRIC, choose_weights  # noqa: E402
from pipeline.lexical import BM25  # noqa: E402
from pipeline.models import ModelSpec  # noqa: E402
from pipeline.scorers import make_scorer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def test_grid(run: Path, choice: dict) -> dict:
    """Every weighting of the choice's grid measured on the run's test split."""
    models = {name: dict(settings, name=name) for name, settings in yaml.safe_load((ROOT / "config.yaml").read_text())["models"].items()}
    qrels = load_qrels(run / "data/qrels-test.parquet")
    query_ids = sorted(judged_queries(qrels))
    queries = load_queries(run / "data/queries.parquet")
    corpus = str(run / "data/corpus.parquet")
    ranked_ids, _ = BM25.from_corpus(read_table(corpus)).search([queries[q] for q in query_ids], choice["first_stage_depth"])
    pairs = ranked_pairs(query_ids, ranked_ids)
    shards = {m: sorted(glob.glob(str(run / f"embeddings/{m}/*.parquet"))) for m in choice["configured"]}
    for name in choice["configured"]:
        scorer = make_scorer(ModelSpec.from_config(name, models[name]), models, queries, corpus, shards, device="cpu",
                             doc_ids=set(pairs["doc_id"]))
        pairs[name] = scorer.score(pairs)
    _, figures = choose_weights(pairs, qrels, choice["configured"], choice["step"], choice["normalization"])
    return {"queries": len(query_ids), "grid": figures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("runs", nargs="+", help="NAME=RUN_DIR")
    args = parser.parse_args()
    rows = {}
    for item in args.runs:
        name, run = item.split("=", 1)
        run = Path(run)
        choice = json.loads((run / "fusion-weights/fusion.json").read_text())
        test = test_grid(run, choice)
        on_test = {json.dumps(f["members"], sort_keys=True): f[METRIC] for f in test["grid"]}
        on_train = {json.dumps(f["members"], sort_keys=True): f[METRIC] for f in choice["grid"]}
        total = sum(choice["configured"].values())
        configured = json.dumps({m: w / total for m, w in choice["configured"].items()}, sort_keys=True)
        chosen = json.dumps(choice["members"], sort_keys=True)
        best = max(on_test, key=on_test.get)
        rows[name] = {"run": str(run), "judged_training_queries": choice["queries"], "test_queries": test["queries"],
                      "chosen": choice["members"], "configured": choice["configured"],
                      f"train_{METRIC}": on_train, f"test_{METRIC}": on_test,
                      "test_chosen": on_test[chosen], "test_configured": on_test[configured],
                      "test_best": on_test[best], "test_best_weights": json.loads(best),
                      "regret": round(on_test[best] - on_test[chosen], 4),
                      "chosen_minus_configured": round(on_test[chosen] - on_test[configured], 4)}
        print(f"{name}: chosen {choice['members']} test {on_test[chosen]:.4f}; configured {on_test[configured]:.4f}; "
              f"best {json.loads(best)} {on_test[best]:.4f}")
    Path(args.out).write_text(json.dumps({"runs": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
