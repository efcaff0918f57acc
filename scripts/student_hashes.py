"""The sha256 of every student the standard recipe and each method preset train on the test fixture: the
check that a refactor keeps behaviour (run it before and after, on the same machine, and compare).

    .venv/bin/python scripts/student_hashes.py --out before.json
    .venv/bin/python scripts/student_hashes.py --out after.json --against before.json   # exit 1 on a change

Each case is the fixture configuration the end-to-end tests use (tests/test_workflow.py), trained in full
(warm-up, iterations, every saved student); the hashes are of each ``model.safetensors`` under
``students/``. Float arithmetic differs between CPUs, so compare runs of one machine only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
from fixtures import write_beir, write_tiny_bert  # noqa: E402
from test_workflow import write_config, write_preset_config  # noqa: E402


def cases(beir: Path, bert: Path, base: Path) -> dict[str, Path]:
    """case name -> its working directory, configured as the end-to-end tests configure it."""
    two_layers = {"kind": "bi-encoder", "source": str(bert), "layers": 2, "max_passage_length": 48,
                  "max_query_length": 16}
    preset = lambda name: yaml.safe_load((ROOT / f"configs/{name}.yaml").read_text())  # noqa: E731
    peer = {"peer": {"layers": [0, 2]}}
    return {
        "standard": write_config(base / "standard", beir, bert),
        "prod": write_preset_config(base / "prod", beir, bert, "prod", iterations=3,
                                    prod=dict(preset("prod")["prod"], w_lwf=1.0,
                                              rounds=dict(preset("prod")["prod"]["rounds"], count=1, max_rank=5,
                                                          negatives=3))),
        "adam": write_preset_config(base / "adam", beir, bert, "adam"),
        "onmkd": write_preset_config(base / "onmkd", beir, bert, "onmkd", student=two_layers,
                                     onmkd={**preset("onmkd")["onmkd"], **peer}),
        "lead": write_preset_config(base / "lead", beir, bert, "lead", student=two_layers),
        "mta4dpr": write_preset_config(base / "mta4dpr", beir, bert, "mta4dpr", iterations=2,
                                       mta4dpr={**preset("mta4dpr")["mta4dpr"], "assistants": ["bm25", "minilm-l6"]},
                                       mine={"depth": 20, "window": [0, 10]}),
        "all-methods": write_preset_config(base / "all-methods", beir, bert, "all-methods", student=two_layers,
                                           onmkd={**preset("all-methods")["onmkd"], **peer}),
        "label-free": write_preset_config(base / "label-free", beir, bert, "label-free"),
        "strong-teacher": write_preset_config(base / "strong-teacher", beir, bert, "strong-teacher"),
    }


def student_hashes(workdir: Path) -> dict[str, str]:
    students = workdir / "results" / "tiny" / "students"
    return {str(path.relative_to(students)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(students.rglob("model.safetensors"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--against", help="a file an earlier run wrote: exit 1 where any hash differs")
    parser.add_argument("--only", nargs="*", help="these cases only")
    parser.add_argument("--students-only", action="store_true",
                        help="build each case's last student and what it needs, not the evaluation and exports after "
                             "it (faster; the students are the same)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        beir, bert = write_beir(tmp / "beir"), write_tiny_bert(tmp / "tiny-bert", layers=3)
        hashes = {}
        for name, workdir in cases(beir, bert, tmp / "runs").items():
            if args.only and name not in args.only:
                continue
            iterations = yaml.safe_load((workdir / "config.yaml").read_text())["iterations"]
            targets = [f"results/tiny/students/it{iterations}"] if args.students_only else []
            result = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"),
                                     "--directory", str(workdir), "--cores", "2", *targets], capture_output=True,
                                    text=True)
            if result.returncode:
                sys.exit(f"{name}: snakemake failed\n{result.stderr[-3000:]}")
            hashes[name] = student_hashes(workdir)
            print(name, len(hashes[name]), "students", flush=True)
    Path(args.out).write_text(json.dumps(hashes, indent=1) + "\n")
    if args.against:
        before = json.loads(Path(args.against).read_text())
        changed = [f"{case}: {student}" for case in hashes for student in
                   sorted(set(hashes[case]) | set(before.get(case, {})))
                   if hashes[case].get(student) != before.get(case, {}).get(student)]
        print("\n".join(changed) or f"all {sum(map(len, hashes.values()))} students byte-identical")
        sys.exit(1 if changed else 0)


if __name__ == "__main__":
    main()
