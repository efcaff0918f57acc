"""Seconds per training step of the 2-layer student, as the default trains it (bf16 autocast where the CPU
has it) and with one thing changed at a time: where a train step's time could be cut (issue 37).

    python benchmarks/train_step_variants.py --rounds 3 --out benchmarks/results/train-step-variants.json

A step as the distillation phase takes it: 16 SciFact queries (64 tokens) and 64 passages (128 tokens),
mean-pooled, normalised, a cross-entropy over the query-passage scores, backward, AdamW. Each variant
runs in its own process (precision and thread settings are process-wide), 3 warm-up steps then 12 timed
steps, the variants taking turns round after round; the figure is the median over rounds.

- ``default``: the student as the workflow trains it (dropout 0.1 from MiniLM's config, AdamW foreach);
- ``no-dropout``: every dropout probability 0 (a change of the recipe, not of speed alone);
- ``fused-adamw``: ``torch.optim.AdamW(fused=True)``;
- ``fp32``: no autocast.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("default", "no-dropout", "fused-adamw", "fp32")


def one_variant(variant: str, data_dir: str, threads: int) -> float:
    """The mean seconds of the 12 timed steps of ``variant``, in this process."""
    import torch

    sys.path.insert(0, str(ROOT))
    from pipeline import precision
    from pipeline.models import BiEncoder, ModelSpec, set_threads

    set_threads(threads)
    precision.set_precision("fp32" if variant == "fp32" else "auto")
    spec = ModelSpec.from_config("student", {"kind": "bi-encoder", "source": "packaged:all-MiniLM-L6-v2",
                                             "layers": 2, "pooling": "mean", "normalize": True})
    model = BiEncoder.load(spec, "cpu")
    with open(Path(data_dir) / "corpus.jsonl") as corpus:
        passages = [f"{doc['title']} {doc['text']}" for doc in map(json.loads, (next(corpus) for _ in range(320)))]
    with open(Path(data_dir) / "queries.jsonl") as queries:
        texts = [json.loads(next(queries))["text"] for _ in range(160)]
    if variant == "no-dropout":
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
    model.train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=variant == "fused-adamw")
    device = torch.device("cpu")

    def step(i: int) -> None:
        q = model.tokenize(texts[16 * i % 160:16 * i % 160 + 16], 64)
        p = model.tokenize(passages[64 * i % 320:64 * i % 320 + 64], 128)
        with precision.autocast(device):
            scores = model(q["input_ids"], q["attention_mask"]) @ model(p["input_ids"], p["attention_mask"]).T * 20
        loss = torch.nn.functional.cross_entropy(scores.float(), torch.arange(16) * 4)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    for i in range(3):
        step(i)
    began = time.perf_counter()
    for i in range(3, 15):
        step(i)
    return (time.perf_counter() - began) / 12


def cpu_model() -> str | None:
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data/scifact"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None)
    parser.add_argument("--one", choices=VARIANTS, help=argparse.SUPPRESS)  # a variant's own process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_variant(args.one, args.data, args.threads)))
        return
    seconds: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for _ in range(args.rounds):
        for variant in VARIANTS:
            out = subprocess.run([sys.executable, __file__, "--one", variant, "--data", args.data,
                                  "--threads", str(args.threads)], check=True, capture_output=True, text=True)
            seconds[variant].append(json.loads(out.stdout.strip().splitlines()[-1]))
    import torch

    medians = {v: statistics.median(s) for v, s in seconds.items()}
    result = {"threads": args.threads, "torch": torch.__version__, "machine": platform.platform(),
              "processor": cpu_model(), "rounds": args.rounds, "seconds_per_step": seconds,
              "median_s": medians, "over_default": {v: round(m / medians["default"], 3) for v, m in medians.items()}}
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
