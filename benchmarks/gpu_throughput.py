"""Throughput of the teacher's and the student's architecture on a GPU: the base of the 8.8M-passage plan.

    python benchmarks/gpu_throughput.py prepare FOLDER     # here: all-MiniLM-L6-v2's config and tokenizer
    python benchmarks/gpu_throughput.py run FOLDER OUT.json  # on the GPU machine

The weights do not travel (90 MB; the GPU machine has no network), and speed does not depend on them:
``run`` builds all-MiniLM-L6-v2's architecture with random weights, saves it, and loads it through the
workflow's own :class:`pipeline.models.BiEncoder`: 6 layers (the teacher) and its first 2 (the student).
It measures the corpus encoding loop (``encode``: tokenisation included, length-sorted batches, bf16
autocast) on MS MARCO-like passages (~60 words, cut at 128 tokens) and SciFact-like ones (~200 words, cut
at 256), and the student's training step (``embed`` of 64 queries and 64 x 8 passages, in-batch softmax
over all 512, backward, AdamW) in steps/s.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def prepare(folder: Path) -> None:
    from pipeline.models import resolve_source

    source = Path(resolve_source("packaged:all-MiniLM-L6-v2"))
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(source / name, folder / name)


def texts(count: int, words: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    vocabulary = "study patients results data analysis effect group increase level observed trial cohort " \
                 "protein cell expression gene treatment risk disease clinical model response human".split()
    return [" ".join(rng.choice(vocabulary, size=int(rng.integers(words // 2, words * 3 // 2))))
            for _ in range(count)]


def run(folder: Path, out_path: Path) -> None:
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from pipeline.models import BiEncoder, ModelSpec

    assert torch.cuda.is_available(), "no CUDA device"
    model_dir = Path("/tmp/minilm-random")
    torch.manual_seed(0)
    BertModel(BertConfig.from_pretrained(folder), add_pooling_layer=False).save_pretrained(model_dir)
    AutoTokenizer.from_pretrained(folder).save_pretrained(model_dir)
    report = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "encode": [], "train": []}
    corpora = {"msmarco-like": (texts(100_000, 60), 128), "scifact-like": (texts(30_000, 200), 256)}
    for layers in (6, 2):
        for name, (passages, max_length) in corpora.items():
            spec = ModelSpec(f"minilm-l6-{layers}", source=str(model_dir), layers=layers if layers < 6 else None,
                             max_passage_length=max_length, batch_size=256)
            encoder = BiEncoder.load(spec, "cuda")
            encoder.encode(passages[:2048], is_query=False)  # warm-up: kernels, allocator
            torch.cuda.synchronize()
            began = time.perf_counter()
            encoder.encode(passages, is_query=False)
            torch.cuda.synchronize()
            seconds = time.perf_counter() - began
            report["encode"].append({"layers": layers, "passages": name, "max_length": max_length,
                                     "count": len(passages), "docs_per_s": round(len(passages) / seconds, 1)})
            print(json.dumps(report["encode"][-1]), flush=True)
    student = BiEncoder.load(ModelSpec("student", source=str(model_dir), layers=2, max_passage_length=128), "cuda")
    student.train()
    optimizer = torch.optim.AdamW(student.parameters(), lr=2e-5)
    queries, passages = texts(64 * 40, 8, seed=1), texts(512 * 40, 60, seed=2)
    steps = []
    for step in range(40):
        if step == 5:  # the first steps warm kernels up
            torch.cuda.synchronize()
            began = time.perf_counter()
        q = student.embed(queries[step * 64:(step + 1) * 64], is_query=True)
        p = student.embed(passages[step * 512:(step + 1) * 512], is_query=False)
        loss = torch.nn.functional.cross_entropy(20 * q.float() @ p.float().T, torch.arange(64, device=q.device) * 8)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        steps.append(float(loss.detach()))
    torch.cuda.synchronize()
    report["train"].append({"layers": 2, "queries_per_step": 64, "passages_per_step": 512, "max_length": 128,
                            "steps_per_s": round(35 / (time.perf_counter() - began), 2),
                            "peak_gpu_mb": round(torch.cuda.max_memory_allocated() / 2**20)})
    print(json.dumps(report["train"][-1]), flush=True)
    out_path.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    if sys.argv[1] == "prepare":
        prepare(Path(sys.argv[2]))
    else:
        run(Path(sys.argv[2]), Path(sys.argv[3]))
