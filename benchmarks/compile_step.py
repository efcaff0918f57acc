"""Does ``torch.compile`` speed up the student's train step on a CPU? (issue 37)

    .venv/bin/python benchmarks/compile_step.py      # -> results/compile-step.json (about 4 minutes)

The default distillation step's model work, through the workflow's own :class:`pipeline.models.BiEncoder`:
the 2-layer student embeds 16 queries (up to 64 tokens) and 64 passages (up to 128 tokens, as
``train.max_passage_length`` cuts them), an in-batch softmax loss, backward, AdamW, dropout off as the
default config trains. Each mode runs in a fresh process, one after the other, on the same seeded batches of
SciFact texts: ``eager`` (what the workflow runs) and ``compile`` (the backbone wrapped in
``torch.compile(dynamic=True)``, inductor: every batch has its own lengths). Reported: the first step (the
compilation), the median of the steps after the first ``--skip``, in the precision the workflow computes in
on this machine (``precision: auto``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def steps(mode: str, data: str, count: int, threads: int) -> list[float]:
    import torch

    from pipeline.models import BiEncoder, ModelSpec, set_threads

    set_threads(threads)
    torch.manual_seed(0)
    model = BiEncoder.load(ModelSpec.from_config("student", {"source": "packaged:all-MiniLM-L6-v2", "layers": 2}))
    model.train()
    for layer in model.modules():
        if isinstance(layer, torch.nn.Dropout):
            layer.p = 0.0
    if mode == "compile":
        model.backbone = torch.compile(model.backbone, dynamic=True)
    corpus = [json.loads(line) for line in open(Path(data) / "corpus.jsonl")]
    queries = [json.loads(line)["text"] for line in open(Path(data) / "queries.jsonl")]
    rng = random.Random(13)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    seconds = []
    for _ in range(count):
        batch_queries = rng.sample(queries, 16)
        passages = [f"{d.get('title', '')} {d['text']}".strip() for d in rng.sample(corpus, 64)]
        began = time.perf_counter()
        scores = model.embed(batch_queries, is_query=True) @ model.embed(passages, is_query=False, max_length=128).T
        loss = torch.nn.functional.cross_entropy(scores / 0.05, torch.arange(16) * 4)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seconds.append(time.perf_counter() - began)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data/scifact"))
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--skip", type=int, default=4, help="steps left out of the median (compilation, warm-up)")
    parser.add_argument("--threads", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/compile-step.json"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(steps(args.worker, args.data, args.steps, args.threads)))
        return
    import torch

    from pipeline.precision import precision_used

    modes = {}
    for mode in ("eager", "compile"):
        out = subprocess.run([sys.executable, __file__, "--worker", mode, "--data", args.data, "--steps",
                              str(args.steps), "--threads", str(args.threads)], check=True, capture_output=True,
                             text=True).stdout
        seconds = json.loads(out.strip().splitlines()[-1])
        modes[mode] = {"first_step_s": seconds[0], "median_step_s": statistics.median(seconds[args.skip:]),
                       "steps_s": seconds}
        print(mode, round(modes[mode]["first_step_s"], 2), round(modes[mode]["median_step_s"], 3), flush=True)
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "") if Path("/proc/cpuinfo").exists() else ""
    result = {"machine": {"cpu": cpu, "cpus": os.cpu_count(), "threads": args.threads, "torch": torch.__version__,
                          "precision": precision_used(torch.device("cpu"))},
              "steps": args.steps, "skip": args.skip, "modes": modes,
              "compile_over_eager": modes["compile"]["median_step_s"] / modes["eager"]["median_step_s"],
              "command": " ".join([Path(sys.executable).name, *sys.argv])}
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
