#!/usr/bin/env bash
# The default run's last student exported for serving (ONNX fp32, ONNX int8) and each format evaluated on
# SciFact like any model; writes benchmarks/results/scifact-export.json. It works on the run folder that
# benchmarks/scifact.sh made (results/bench-scifact): that run's outputs are marked up to date first (the
# data's files may be newer copies), so only the export, its encodings, indexes and evaluations run.
#   bash benchmarks/export_scifact.sh        (after bash benchmarks/scifact.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=$(realpath "${BENCH_DATA:-../shared/data/scifact}")
EXP=${BENCH_EXPERIMENT:-bench-scifact}
OUT=${BENCH_OUT:-benchmarks/results/scifact-export.json}
BIN=.venv/bin
RUN=results/$EXP
[ -f "$RUN/final.json" ] || { echo "no finished run in $RUN: bash benchmarks/scifact.sh first" >&2; exit 2; }
# both formats evaluated (the default evaluates the quantized one only: export.evaluate auto)
SMK=("$BIN/snakemake" --cores all --config data_dir="$DATA" experiment="$EXP"
     'export={"formats": ["onnx", "onnx-int8"], "evaluate": ["onnx", "onnx-int8"]}')
"${SMK[@]}" --touch "$RUN/final.json" $(ls -d "$RUN"/eval/test/*/metrics.json | grep -v '\.onnx') > /dev/null 2>&1
"${SMK[@]}"
"${SMK[@]}" --dry-run > "$RUN/second-run-export.txt" 2>&1
"$BIN/python" - "$RUN" "$OUT" <<'PY'
import json, sys
from pathlib import Path

run, out = Path(sys.argv[1]), sys.argv[2]
summary = json.loads((run / "summary.json").read_text())
keys = ("name", "backend", "ndcg@10", "mrr@10", "recall@100", "dev", "encode_docs_per_s", "params", "size_mb")
last = max(r["iteration"] for r in summary["rows"] if r["model"] == "student")
rows = [{k: r.get(k) for k in keys} for r in summary["rows"] if r["model"] == "student" and r["iteration"] == last
        and not r.get("phase")]
pytorch = next(r for r in rows if (r["backend"] or "torch") == "torch")  # (None: evaluated before backends)
for row in rows:
    row["ndcg@10_minus_pytorch"] = round(row["ndcg@10"] - pytorch["ndcg@10"], 6)
    row["encode_speed_over_pytorch"] = round(row["encode_docs_per_s"] / pytorch["encode_docs_per_s"], 3)
exported = json.loads((run / f"export/student-it{last}/export.json").read_text())


def job(path):  # Snakemake's benchmark of a job: seconds, max RSS (MB)
    fields = (run / "benchmarks" / path).read_text().splitlines()[1].split("\t")
    return {"s": float(fields[0]), "max_rss_mb": float(fields[2])}


# what the export stage costs the run: the export job, and per format its encode, index and evaluate jobs
jobs = {"export": job(f"export/student-it{last}.tsv")}
for row in (r for r in rows if r is not pytorch):
    jobs[row["name"]] = {stage: job(f"{stage}/{row['name']}{suffix}.tsv")
                         for stage, suffix in (("encode", "-0-of-1"), ("index", ""), ("evaluate", ""))}
result = {"run": str(run), "rows": rows,
          "export": {"formats": exported["formats"], "check": exported.get("check"), "versions": exported["versions"]},
          "jobs": jobs,
          "second_run_does_nothing": "Nothing to be done" in (run / "second-run-export.txt").read_text()}
Path(out).write_text(json.dumps(result, indent=2) + "\n")
print(json.dumps(result, indent=2))
PY
