"""What a user would do instead of the workflow (issue 34, item 4): the workflow's untrained student, the
first 2 layers of all-MiniLM-L6-v2, trained the way sentence-transformers' own recipes train it, with
sentence-transformers itself (its trainer, losses and hard-negative miner), on the workflow's training split;
every checkpoint is chosen on the workflow's dev split and the chosen one evaluated as the workflow
evaluates its students (exact search over the corpus, nDCG@10 on the test split, ``pipeline.evaluation``).

Recipes (``--recipes``):

- ``mnrl``: fine-tuning with ``MultipleNegativesRankingLoss`` on (query, positive, 5 hard negatives) from
  ``mine_hard_negatives``, mined with all-MiniLM-L6-v2 as its guide does it (ranks 10-50, ``max_score``
  0.8, ``relative_margin`` 0.05, sampled at random): the training-with-hard-negatives recipe;
- ``mse``: the embedding distillation example (``examples/.../distillation/model_distillation.py``):
  ``MSELoss`` of the student's embeddings against all-MiniLM-L6-v2's, over in-domain texts (the corpus
  passages and the training queries), no labels;
- ``mse+mnrl``: the first, then the second from its chosen checkpoint (what the workflow's default does
  in its own way: a label-free warm-up onto the teacher, then the labels).

The dev split (``pipeline.splits.choose_queries``, seed 13 as the workflow draws it) chooses, per recipe,
the epoch whose checkpoint is kept (ST's ``InformationRetrievalEvaluator`` at each epoch's end,
``load_best_model_at_end``). Hyper-parameters are ST's documented ones (learning rate, batch size, warm-up
ratio) unless the workflow's are named; nothing is tuned on test.

Needs ``pip install datasets accelerate`` (sentence-transformers' trainer and miner; only this script
uses them). Per-query test figures go to ``OUT.runs/<recipe>-seed<k>.trec`` for paired tests against the
workflow's students (``pipeline.compare``'s tests, ``pipeline.significance``).

    .venv/bin/python benchmarks/st_baselines.py --data ../shared/data/scifact \
        --out benchmarks/results/scifact-st-baselines.json --seeds 13

``--against default=results/bench-seeds prod=results/bench-prod-seeds`` (workflow runs made with ``seeds``,
``benchmarks/three-seeds.yaml``) tests each workflow run's final students against each recipe over the seeds
both have, as ``pipeline.compare`` tests experiments: per query (paired t and Wilcoxon over the test queries,
each query's nDCG@10 the mean over the seeds, Holm-corrected over the workflow runs) and per seed (the seeds'
means paired by seed); ``--tests-only`` re-runs those tests on the runs already in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from pipeline.data import load_qrels, load_queries, passage_texts, prepare_dataset, read_table  # noqa: E402
from pipeline.compare import per_query_ndcg, run_seed, significance_against  # noqa: E402
from pipeline.evaluation import compute_metrics, per_query_metrics, write_trec_run  # noqa: E402
from pipeline.splits import choose_queries  # noqa: E402
from pipeline.training import init_student  # noqa: E402

log = logging.getLogger("st_baselines")
TEACHER = "packaged:all-MiniLM-L6-v2"
#: the workflow's config.yaml student (its layers, lengths, pooling)
STUDENT = {"name": "student", "kind": "bi-encoder", "source": TEACHER, "layers": 2, "pooling": "mean",
           "normalize": True, "max_query_length": 64, "max_passage_length": 256}
DEV = {"fraction": 0.2, "min_queries": 5, "max_queries": 100}  # the schema's splits.dev defaults
SPLIT_SEED = 13  # the workflow's dev split is drawn from the config's seed; 13 is config.yaml's


def load_data(data_dir: Path, work: Path) -> dict:
    prepare_dataset(str(data_dir), str(work), ["train", "test"])
    corpus = read_table(work / "corpus.parquet")
    queries = load_queries(work / "queries.parquet")
    train, test = load_qrels(work / "qrels-train.parquet"), load_qrels(work / "qrels-test.parquet")
    judged = sorted(q for q, docs in train.items() if any(r > 0 for r in docs.values()))
    training, dev, reason = choose_queries(judged, set(test), SPLIT_SEED, None, DEV["fraction"], DEV["min_queries"],
                                           DEV["max_queries"])
    if reason:
        raise SystemExit(f"no dev split: {reason}")
    return {"corpus_ids": list(corpus["doc_id"]), "passages": passage_texts(corpus, True), "queries": queries,
            "train": {q: train[q] for q in training}, "dev": {q: train[q] for q in dev}, "test": test}


def search(model, data: dict, qrels: dict, depth: int = 100) -> dict[str, dict[str, float]]:
    """Exact inner-product search of normalised embeddings: the workflow's Flat index."""
    passages = model.encode(data["passages"], batch_size=64, convert_to_tensor=True, normalize_embeddings=True)
    ids = sorted(qrels)
    queries = model.encode([data["queries"][q] for q in ids], batch_size=64, convert_to_tensor=True,
                           normalize_embeddings=True)
    scores, order = torch.topk(queries @ passages.T, k=min(depth, len(data["passages"])), dim=1)
    return {q: {data["corpus_ids"][int(j)]: float(s) for s, j in zip(row_scores, row_order)}
            for q, row_scores, row_order in zip(ids, scores, order)}


def dev_evaluator(data: dict):
    from sentence_transformers.evaluation import InformationRetrievalEvaluator

    relevant = {q: {d for d, r in docs.items() if r > 0} for q, docs in data["dev"].items()}
    return InformationRetrievalEvaluator({q: data["queries"][q] for q in data["dev"]},
                                         dict(zip(data["corpus_ids"], data["passages"])), relevant,
                                         ndcg_at_k=[10], name="dev", show_progress_bar=False)


def train(model, dataset, loss, out: Path, data: dict, seed: int, epochs: int, batch_size: int, lr: float):
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.training_args import BatchSamplers

    args = SentenceTransformerTrainingArguments(
        output_dir=str(out), num_train_epochs=epochs, per_device_train_batch_size=batch_size, learning_rate=lr,
        warmup_steps=0.1, seed=seed, data_seed=seed, eval_strategy="epoch", save_strategy="epoch",
        save_total_limit=epochs, load_best_model_at_end=True, metric_for_best_model="eval_dev_cosine_ndcg@10",
        greater_is_better=True, logging_steps=20, report_to=[], use_cpu=not torch.cuda.is_available(),
        batch_sampler=BatchSamplers.NO_DUPLICATES)
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset, loss=loss,
                                         evaluator=dev_evaluator(data))
    began = time.perf_counter()
    trainer.train()
    history = [{k: v for k, v in h.items() if k in ("epoch", "eval_dev_cosine_ndcg@10")}
               for h in trainer.state.log_history if "eval_dev_cosine_ndcg@10" in h]
    return {"train_s": round(time.perf_counter() - began, 1), "dev_by_epoch": history,
            "chosen_checkpoint": trainer.state.best_model_checkpoint}


def mse_dataset(data: dict, teacher, cache: Path):
    from datasets import Dataset

    texts = data["passages"] + [data["queries"][q] for q in data["train"]]
    if cache.is_file():  # the teacher's embeddings do not depend on the seed: made once, for every seed
        labels = np.load(cache)
    else:
        labels = teacher.encode(texts, batch_size=64, convert_to_numpy=True)
        np.save(cache, labels)
    return Dataset.from_dict({"text": texts, "label": [row.tolist() for row in labels]})


def mnrl_dataset(data: dict, miner, max_score: float, cache: Path):
    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives

    position = {doc_id: i for i, doc_id in enumerate(data["corpus_ids"])}
    pairs = [(data["queries"][q], data["passages"][position[d]])
             for q, docs in sorted(data["train"].items()) for d, r in sorted(docs.items()) if r > 0]
    pairs_set = Dataset.from_dict({"query": [q for q, _ in pairs], "passage": [p for _, p in pairs]})
    return mine_hard_negatives(pairs_set, miner, corpus=data["passages"], range_min=10, range_max=50,
                               max_score=max_score, relative_margin=0.05, num_negatives=5, sampling_strategy="random",
                               batch_size=64, output_format="n-tuple", verbose=False,
                               cache_folder=str(cache))  # the miner's encodings: made once, for every seed


def run_recipe(recipe: str, seed: int, data: dict, student_dir: Path, work: Path, args) -> dict:
    from sentence_transformers import SentenceTransformer, losses

    torch.manual_seed(seed)
    model = SentenceTransformer(str(student_dir), device="cpu" if not torch.cuda.is_available() else "cuda")
    teacher = SentenceTransformer(str(work / "teacher"))
    figures = {"recipe": recipe, "seed": seed, "phases": []}
    for phase in recipe.split("+"):
        if phase == "mse":
            dataset = mse_dataset(data, teacher, work / "mse-teacher-embeddings.npy")
            phase_figures = train(model, dataset, losses.MSELoss(model), work / f"{recipe}-{seed}-mse", data, seed,
                                  args.mse_epochs, 64, 1e-4)
        else:
            dataset = mnrl_dataset(data, teacher, args.miner_max_score, work / "mining-cache")
            phase_figures = train(model, dataset, losses.MultipleNegativesRankingLoss(model),
                                  work / f"{recipe}-{seed}-mnrl", data, seed, args.mnrl_epochs, 16, 5e-5)
            phase_figures["training_tuples"] = len(dataset)
        figures["phases"].append({"phase": phase, **phase_figures})
    dev_run, test_run = search(model, data, data["dev"]), search(model, data, data["test"])
    figures["dev"] = compute_metrics(data["dev"], dev_run)
    figures["test"] = compute_metrics(data["test"], test_run)
    # kept so that the paired tests against the workflow's students (--against) can be re-run without training
    figures["test_per_query_ndcg@10"] = {q: round(v, 6) for q, v in
                                         sorted(per_query_metrics(data["test"], test_run)["ndcg@10"].items())}
    runs = Path(str(args.out) + ".runs")
    runs.mkdir(parents=True, exist_ok=True)
    write_trec_run(test_run, runs / f"{recipe}-seed{seed}.trec", f"{recipe}-seed{seed}")
    log.info("%s seed %d: dev %.4f test %.4f", recipe, seed, figures["dev"]["ndcg@10"], figures["test"]["ndcg@10"])
    return figures


def workflow_seeds(run: Path) -> dict[int, dict[str, float]]:
    """A workflow run made with ``seeds`` (its folder the first seed's run, ``seed-K/`` the others'; or a run at
    one seed): each seed's final, dev-selected student's per-query test nDCG@10, read as ``pipeline.compare``
    reads it."""
    per_seed = {}
    for seed_run in [run, *sorted(run.glob("seed-*"))]:
        for needed in ("summary.json", "final.json"):
            if not (seed_run / needed).is_file():
                raise SystemExit(f"{seed_run / needed}: missing; --against takes a finished workflow run's folder")
        summary = json.loads((seed_run / "summary.json").read_text())
        final = json.loads((seed_run / "final.json").read_text())["selected"]
        per_seed[run_seed(seed_run)] = per_query_ndcg(seed_run, summary, final)
    return per_seed


def tests_against(results: list[dict], against: list[tuple[str, Path]]) -> dict[str, list[dict]]:
    """Each recipe (its seeds' runs) as the baseline, each workflow run of ``against`` tested against it over
    the seeds all of them have, by ``pipeline.compare.significance_against``: per query (each query's nDCG@10
    the mean over those seeds; paired t and Wilcoxon, Holm-corrected over the workflow runs) and per seed (the
    seeds' means paired by seed)."""
    workflows = [(name, run, workflow_seeds(run)) for name, run in against]
    tested = {}
    for recipe in dict.fromkeys(r["recipe"] for r in results):
        ours = {r["seed"]: r["test_per_query_ndcg@10"] for r in results
                if r["recipe"] == recipe and "test_per_query_ndcg@10" in r}
        seeds = sorted(set(ours).intersection(*(theirs for _, _, theirs in workflows)))
        if not seeds:
            raise SystemExit(f"--against: no seed that {recipe} ({sorted(ours)}) and every workflow run "
                             f"({', '.join(f'{n}: {sorted(t)}' for n, _, t in workflows)}) have")
        queries = sorted(ours[seeds[0]])
        for name, run, theirs in workflows:
            if any(sorted(per_query[s]) != queries for per_query in (ours, theirs) for s in seeds):
                raise SystemExit(f"--against {name}={run}: its test queries are not {recipe}'s; "
                                 "compare runs on the same data only")
        systems = [(recipe, ours)] + [(name, theirs) for name, _, theirs in workflows]
        rows = [{"experiment": name, "seeds": len(seeds), "per_seed": {s: float(np.mean(list(per_seed[s].values())))
                                                                         for s in seeds}} for name, per_seed in systems]
        per_query = [{q: float(np.mean([per_seed[s][q] for s in seeds])) for q in queries} for _, per_seed in systems]
        tests = significance_against(rows, per_query, 0, randomisation=False)[1:]
        tested[recipe] = [{"workflow": name, "run": str(run), "seeds": seeds,
                           "recipe_ndcg@10": float(np.mean(list(per_query[0].values()))),
                           "workflow_ndcg@10": float(np.mean(list(values.values()))),
                           "per_query": {k: v for k, v in test.items() if k not in ("baseline", "metric", "seeds")},
                           "per_seed": test.get("seeds")}
                          for (name, run, _), values, test in zip(workflows, per_query[1:], tests)]
    return tested


def parse_against(values: list[str]) -> list[tuple[str, Path]]:
    pairs = []
    for value in values:
        name, sep, run = value.partition("=")
        if not sep or not name or not run:
            raise SystemExit(f"--against {value}: expected NAME=RUN_FOLDER (e.g. default=results/bench-seeds)")
        pairs.append((name, Path(run)))
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/scifact")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/scifact-st-baselines.json")
    parser.add_argument("--recipes", nargs="+", default=["mnrl", "mse", "mse+mnrl"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[13])
    parser.add_argument("--mnrl-epochs", type=int, default=3, help="the workflow trains its labels 1 + 2 epochs")
    parser.add_argument("--mse-epochs", type=int, default=2, help="the workflow's warm-up: 2 epochs")
    parser.add_argument("--miner-max-score", type=float, default=0.8, help="the guide's 0.8 (a smoke test: 1)")
    parser.add_argument("--teacher", default=TEACHER, help="the model the student is cut from (a smoke test: a tiny one)")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--against", nargs="*", default=[], metavar="NAME=RUN",
                        help="workflow runs (made with seeds) whose final students are tested against each recipe")
    parser.add_argument("--tests-only", action="store_true",
                        help="train nothing: re-run the tests against --against on the runs already in --out")
    args = parser.parse_args()
    args.against = parse_against(args.against)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.tests_only:
        written = json.loads(args.out.read_text())
        written["against"] = tests_against(written["runs"], args.against)
        args.out.write_text(json.dumps(written, indent=2) + "\n")
        print(json.dumps(written["against"], indent=2))
        return
    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or Path(scratch)
        data = load_data(args.data.resolve(), work / "data")
        init_student({**STUDENT, "source": args.teacher}, str(work / "student0"))
        init_student({**STUDENT, "name": "teacher", "source": args.teacher, "layers": None}, str(work / "teacher"))
        results = []
        for recipe in args.recipes:
            for seed in args.seeds:
                results.append(run_recipe(recipe, seed, data, work / "student0", work, args))
                write_results(args, data, results)  # after each run: a long benchmark stopped keeps what it did


def write_results(args, data: dict, results: list[dict]) -> None:
    summary = {}
    for recipe in dict.fromkeys(r["recipe"] for r in results):
        tests = [r["test"]["ndcg@10"] for r in results if r["recipe"] == recipe]
        summary[recipe] = {"test_ndcg@10_mean": float(np.mean(tests)),
                           "test_ndcg@10_sd": float(np.std(tests, ddof=1)) if len(tests) > 1 else None,
                           "seeds": [r["seed"] for r in results if r["recipe"] == recipe]}
    out = {"benchmark": "sentence-transformers' own recipes on the workflow's 2-layer student (issue 34, item 4)",
           "data": str(args.data), "training_queries": len(data["train"]), "dev_queries": len(data["dev"]),
           "test_queries": len(data["test"]), "student": STUDENT, "runs": results, "summary": summary,
           "against": tests_against(results, args.against) if args.against else {},
           "machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads()},
           "command": " ".join(sys.argv)}
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
