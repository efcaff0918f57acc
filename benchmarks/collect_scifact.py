"""Turn a finished SciFact run into benchmarks/results/scifact.json and print it."""

import json
import os
import platform
import sys
from pathlib import Path

import torch


def selected_shares(history: list[dict]) -> dict[str, float]:
    """MTA4DPR: the share of the distillation steps that chose each assistant (the history's entries are
    means over windows of steps)."""
    shares, previous = {}, 0
    distill = [h for h in history if h["phase"] == "distill"]
    for entry in distill:
        steps, previous = entry["step"] - previous, entry["step"]
        for key, value in entry.items():
            if key.startswith("mta4dpr_selected:"):
                shares[key.split(":", 1)[1]] = shares.get(key.split(":", 1)[1], 0.0) + value * steps
    return {name: round(total / previous, 4) for name, total in shares.items()} if previous else {}


def main(run_dir: str, start: str, end: str, out_path: str) -> None:
    run = Path(run_dir)
    summary = json.loads((run / "summary.json").read_text())
    keys = ("model", "iteration", "phase", "name", "ndcg@10", "mrr@10", "recall@100", "dev", "encode_docs_per_s",
            "params", "size_mb", "backend")
    rows = [{k: row.get(k) for k in keys} for row in summary["rows"]]
    # what each iteration was (a PROD stage or round...) and what its methods reported (a round's selection)
    iterations = [{"iteration": entry["iteration"], "label": entry["label"],
                   **{k: v for report in entry["reports"] for k, v in report.items()
                      if k in ("queries", "selected", "student_ranks_positive_first", "teacher_disagrees")}}
                  for entry in summary.get("iterations", [])]
    for entry, source in zip(iterations, summary.get("iterations", [])):  # MTA4DPR's pool decision
        for report in source["reports"]:
            if "pool" in report:
                entry["mta4dpr"] = {"pool": report["pool"], "decision": report["decision"]["reason"],
                                    "hard_queries": len(report["hard_queries"])}
    for entry in iterations:  # what the methods measured while training (ADAM's teacher entropy...)
        timing = run / "benchmarks" / "train" / f"it{entry['iteration']}.tsv"  # Snakemake's benchmark: of the train job
        if timing.is_file():
            entry["train_s"] = round(float(timing.read_text().splitlines()[1].split("\t")[0]), 1)
        training = run / "students" / f"it{entry['iteration']}" / "training.json"
        if training.is_file() and json.loads(training.read_text()).get("reports"):
            entry["training_reports"] = json.loads(training.read_text())["reports"]
        if training.is_file() and "mta4dpr" in entry:
            entry["mta4dpr"]["selected_share"] = selected_shares(json.loads(training.read_text())["history"])
    labels = {entry["iteration"]: entry["label"] for entry in iterations}
    for row in rows:
        if row["model"] == "student" and row["iteration"] in labels:
            row["label"] = labels[row["iteration"]] + (f" ({row['phase']})" if row["phase"] else "")
    second = (run / "second-run.txt").read_text()
    teacher = next(r for r in rows if r["model"] == "teacher")
    # the encoding speed the student is compared with: the teacher's, or, for a teacher that encodes
    # nothing (a fusion, a cross-encoder), the bi-encoder teacher the run encoded the corpus with
    reference = {"name": teacher["name"], "encode_docs_per_s": teacher["encode_docs_per_s"]}
    if reference["encode_docs_per_s"] is None:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from pipeline.embeddings import encoding_stats

        folder = next(p for p in sorted((run / "embeddings").iterdir()) if not p.name.startswith("student-"))
        reference = {"name": folder.name,
                     "encode_docs_per_s": encoding_stats(sorted(map(str, folder.glob("shard-*"))))["encode_docs_per_s"]}
    # the students as trained (PyTorch), not their exports for serving (student-it2.onnx)
    students = sorted((r for r in rows if r["model"] == "student" and not r["phase"] and (r.get("backend") or "torch") == "torch"),
                      key=lambda r: r["iteration"])
    final = next(r for r in rows if r["name"] == summary["final"]["selected"])  # the best student on dev
    result = {
        "wall_s": round(float(end) - float(start), 1),
        "rows": rows,
        "iterations": iterations,
        "second_run_does_nothing": "Nothing to be done" in second,
        "final_student": summary["final"]["selected"],
        "final_student_reason": summary["final"]["reason"],
        "final_student_ndcg@10": final["ndcg@10"],
        "last_iteration_ndcg@10": students[-1]["ndcg@10"],
        "student_over_teacher_encode_speed": final["encode_docs_per_s"] / reference["encode_docs_per_s"],
        "encode_speed_reference": reference,
        "machine": {"cpus": torch.get_num_threads(), "platform": platform.platform(), "torch": torch.__version__},
    }
    # what made the run, for tables over seeds and presets: the seed (it also draws the dev split) and the
    # command's presets and overrides (scifact.sh's BENCH_PRESET, BENCH_CONFIG)
    splits = json.loads((run / "data" / "splits.json").read_text())
    result["seed"] = splits["seed"]
    result["presets"] = os.environ.get("BENCH_PRESET", "").split()
    result["config_overrides"] = os.environ.get("BENCH_CONFIG", "").split()
    if (run / "data" / "labels.json").is_file():  # labels.source: teacher: how the teacher labelled
        result["labels"] = json.loads((run / "data" / "labels.json").read_text())
        result["labels"].update({k: splits[k] for k in ("training_queries", "dev_queries")})
    if (run / "seeds.json").is_file():  # `seeds`: the rows above are the first seed's; over every seed here
        seeds = json.loads((run / "seeds.json").read_text())
        result["seeds"] = {"seeds": seeds["seeds"], "shared_from_seed": seeds["shared_from_seed"],
                           "rows": seeds["rows"]}
    if os.environ.get("BENCH_NOTE"):  # how the run was made, when it is not scifact.sh's plain run
        result["note"] = os.environ["BENCH_NOTE"]
    Path(out_path).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main(*sys.argv[1:5])
