"""How many passages to encode at once on a CPU (issue 37): the corpus encode's passages per second by batch size.

    .venv/bin/python benchmarks/encode_batch_size.py --data ../shared/data/scifact   # -> results/encode-batch-size.json

The encode jobs (teachers' and students' corpus embeddings) run ``encode_batched``: passages sorted by length,
cut into batches, one forward pass a batch. On a GPU a big batch keeps the device busy; on a CPU each batch's
attention holds batch x heads x length^2 scores (64 passages of 256 tokens through MiniLM's 12 heads: 200 MB
a layer), far beyond the caches, so a smaller batch may be faster for the same arithmetic. This measures it
on the workflow's own encoders and loop, on a seeded sample of the corpus (titles and texts, as the encode job
joins them), for all-MiniLM-L6-v2 (the teacher, 6 layers), the default's 2-layer student (its first 2 layers,
untrained: the same cost as a trained one) and, with ``--onnx``, that student's ONNX fp32 export run by ONNX
Runtime (``encode.backend: onnx``). The batch sizes are timed in interleaved rounds (each round runs every
size once, so the machine's load drifts across all of them alike) and the medians compared; each batch size's
embeddings are compared with the first's (largest |difference|), since the batch decides the padding.
The achieved FLOP/s is set against this machine's float32 matmul throughput (``stage_speed.matmul_limit``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def sample_passages(data_dir: str, count: int, seed: int) -> list[str]:
    import numpy as np

    import pandas as pd

    from pipeline.data import passage_texts

    rows = [json.loads(line) for line in open(Path(data_dir) / "corpus.jsonl")]
    keep = sorted(np.random.default_rng(seed).choice(len(rows), size=min(count, len(rows)), replace=False))
    corpus = pd.DataFrame([{"doc_id": rows[i]["_id"], "title": rows[i].get("title", ""), "text": rows[i]["text"]}
                           for i in keep])
    return passage_texts(corpus, include_title=True)


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data/scifact"))
    parser.add_argument("--passages", type=int, default=400)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 32, 16, 8, 4])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=min(8, os.cpu_count() or 1), help="a job's: min(8, cores)")
    parser.add_argument("--onnx", action="store_true", help="also the student's ONNX fp32 export")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/encode-batch-size.json"))
    args = parser.parse_args()

    import numpy as np
    import torch

    from pipeline.models import BiEncoder, ModelSpec, set_threads
    from pipeline.precision import precision_used
    from stage_speed import count_flops, matmul_limit

    set_threads(args.threads)
    texts = sample_passages(args.data, args.passages, args.seed)
    teacher_spec = {"name": "minilm-l6", "source": "packaged:all-MiniLM-L6-v2"}
    encoders = {"teacher (MiniLM-L6, 6 layers)": BiEncoder.load(ModelSpec.from_config("minilm-l6", teacher_spec)),
                "student (its first 2 layers)": BiEncoder.load(ModelSpec.from_config(
                    "student", {**teacher_spec, "name": "student", "layers": 2}))}
    if args.onnx:
        from pipeline.runtime import onnx_encoder

        encoders["student, ONNX fp32 export"] = onnx_encoder(encoders["student (its first 2 layers)"],
                                                             torch.device("cpu"))
    limit = matmul_limit(4096, 384, 1536, 5, torch.float32)["gflop_per_s"]
    results = {}
    for name, encoder in encoders.items():
        # the arithmetic of one pass at the largest batch, counted once (attention and matmuls only)
        flops = None
        if isinstance(encoder, BiEncoder):
            flops = count_flops(lambda: encoder.encode(texts, is_query=False, batch_size=args.batch_sizes[0]))
        reference = encoder.encode(texts, is_query=False, batch_size=args.batch_sizes[0])  # also warms up
        seconds: dict[int, list[float]] = {size: [] for size in args.batch_sizes}
        largest_difference = {}
        for _ in range(args.rounds):
            for size in args.batch_sizes:
                began = time.perf_counter()
                embeddings = encoder.encode(texts, is_query=False, batch_size=size)
                seconds[size].append(time.perf_counter() - began)
                largest_difference[size] = float(np.abs(embeddings - reference).max())
        rows = {}
        for size, times in seconds.items():
            median = statistics.median(times)
            rows[str(size)] = {"passages_per_s": len(texts) / median, "seconds_median": median,
                               "seconds": times, "max_abs_difference_to_first": largest_difference[size],
                               **({"of_fp32_limit": flops / median / 1e9 / limit} if flops else {})}
        best = max(rows, key=lambda s: rows[s]["passages_per_s"])
        results[name] = {"by_batch_size": rows, "fastest": int(best),
                         "fastest_over_64": rows[best]["passages_per_s"] / rows["64"]["passages_per_s"]
                         if "64" in rows else None,
                         "gflop": flops / 1e9 if flops else None}
        print(name, {s: round(r["passages_per_s"], 1) for s, r in rows.items()}, flush=True)
    out = {"machine": {"processor": cpu_model(), "cpus": os.cpu_count(),
                       "threads": args.threads, "torch": torch.__version__,
                       "precision": precision_used(torch.device("cpu"))},
           "passages": len(texts), "rounds": args.rounds, "fp32_matmul_gflop_per_s": limit, "encoders": results,
           "command": " ".join([Path(sys.executable).name, *sys.argv])}
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps({k: {"fastest": v["fastest"], "over_64": round(v["fastest_over_64"] or 0, 3)}
                      for k, v in results.items()}))


if __name__ == "__main__":
    main()
