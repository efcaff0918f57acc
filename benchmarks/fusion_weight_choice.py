"""Does the fusion weight chosen on a run's judged training queries agree with the test split? (issue 35)

For each finished run (its data/ and its MiniLM-L6 corpus embeddings), the choice rule choose_fusion_weights
follows (pipeline/fusion_weights.py: the one-standard-error rule over a grid) is applied to the run's
judged training queries, sampled as the run sampled them (``data/splits.json``: seed, train_queries), for a
fusion of MiniLM-L6 and BM25 with the given configured weights and step; then the same grid is measured,
after the fact, on the run's test split, ranking as the fusion ranks (BM25's top 100, the members'
z-scored scores summed): the test figure of the choice, of the configured weights, of the grid's best,
and the choice's regret. The test split chooses nothing. The members' settings are config.yaml's.

    python benchmarks/fusion_weight_choice.py --out benchmarks/results/fusion-weight-choice.json \
        --configured minilm-l6=0.5,bm25=0.5 --step 0.25 scifact-30=results/few-labels-30 med=results/collection-med-...
    python benchmarks/fusion_weight_choice.py --out ... --configured minilm-l6=0.7,bm25=0.3 --step 0.1 \\
        --every-judged scifact-809=results/few-labels-30

``--out`` is updated (rows of other names are kept).
"""

import argparse
import glob
import json
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.data import load_qrels, load_queries  # noqa: E402
from pipeline.evaluation import judged_queries  # noqa: E402
from pipeline.fusion_weights import METRIC, choose_fusion_weights, choose_weights, member_scores  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def test_grid(run: Path, choice: dict) -> dict:
    """Every weighting of the choice's grid measured on the run's test split."""
    models = {name: dict(settings, name=name) for name, settings in yaml.safe_load((ROOT / "config.yaml").read_text())["models"].items()}
    qrels = load_qrels(run / "data/qrels-test.parquet")
    query_ids = sorted(judged_queries(qrels))
    shards = {m: sorted(glob.glob(str(run / f"embeddings/{m}/*.parquet"))) for m in choice["configured"]}
    pairs = member_scores(list(choice["configured"]), models, query_ids, load_queries(run / "data/queries.parquet"),
                          str(run / "data/corpus.parquet"), shards, True, "cpu", choice["first_stage_depth"])
    _, figures = choose_weights(pairs, qrels, choice["configured"], choice["step"], choice["normalization"])
    return {"queries": len(query_ids), "grid": figures}


def choose_on_training(run: Path, configured: dict[str, float], step: float, out_path: Path, every_judged: bool) -> dict:
    """The choice the workflow's rule makes on the run's judged training queries (``every_judged``: all of
    the train split's, whatever sample the run took)."""
    models = {name: dict(settings, name=name) for name, settings in yaml.safe_load((ROOT / "config.yaml").read_text())["models"].items()}
    splits = json.loads((run / "data/splits.json").read_text())
    fusion = {"name": "fusion", "kind": "fusion", "members": configured, "fusion_normalization": "zscore"}
    shards = {m: sorted(glob.glob(str(run / f"embeddings/{m}/*.parquet"))) for m in configured}
    return choose_fusion_weights(fusion, {**models, "fusion": fusion}, str(run / "data/queries.parquet"),
                                 str(run / "data/corpus.parquet"), str(run / "data/qrels-train.parquet"),
                                 str(run / "data/qrels-test.parquet"), str(out_path), seed=splits["seed"],
                                 train_queries=None if every_judged else splits["train_queries"], step=step, embedding_shards=shards, device="cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--configured", default="minilm-l6=0.5,bm25=0.5", help="member=weight,... (the tie-break)")
    parser.add_argument("--step", type=float, default=0.25)
    parser.add_argument("--every-judged", action="store_true",
                        help="choose on every judged training query, not the run's sample of train_queries")
    parser.add_argument("runs", nargs="+", help="NAME=RUN_DIR")
    args = parser.parse_args()
    configured = {m: float(w) for m, w in (part.split("=") for part in args.configured.split(","))}
    out = Path(args.out)
    rows = json.loads(out.read_text())["runs"] if out.exists() else {}
    for item in args.runs:
        name, run = item.split("=", 1)
        run = Path(run)
        with tempfile.TemporaryDirectory() as scratch:
            choice = choose_on_training(run, configured, args.step, Path(scratch) / "fusion.json", args.every_judged)
        test = test_grid(run, choice)
        on_test = {json.dumps(f["members"], sort_keys=True): f[METRIC] for f in test["grid"]}
        on_train = {json.dumps(f["members"], sort_keys=True): f[METRIC] for f in choice["grid"]}
        total = sum(choice["configured"].values())
        configured_key = json.dumps({m: w / total for m, w in choice["configured"].items()}, sort_keys=True)
        chosen = json.dumps(choice["members"], sort_keys=True)
        best = max(on_test, key=on_test.get)
        rows[name] = {"run": str(run), "judged_training_queries": choice["queries"], "test_queries": test["queries"],
                      "chosen": choice["members"], "configured": choice["configured"], "step": args.step,
                      "reason": choice["reason"],
                      "within_one_standard_error": [f["members"] for f in choice["grid"] if f["within_one_standard_error"]],
                      f"train_{METRIC}": on_train, f"test_{METRIC}": on_test,
                      "test_chosen": on_test[chosen], "test_configured": on_test[configured_key],
                      "test_best": on_test[best], "test_best_weights": json.loads(best),
                      "regret": round(on_test[best] - on_test[chosen], 4),
                      "chosen_minus_configured": round(on_test[chosen] - on_test[configured_key], 4)}
        print(f"{name}: chosen {choice['members']} test {on_test[chosen]:.4f}; configured {on_test[configured_key]:.4f}; "
              f"best {json.loads(best)} {on_test[best]:.4f}")
    out.write_text(json.dumps({"runs": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
