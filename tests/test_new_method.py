"""A new method is its own files: the worked example of docs/methods.md ("Adding a method"), written as it is
into a copy of the workflow, registers itself, passes the dry run and trains on the fixture, with no other
file of the workflow changed."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from test_workflow import write_config

ROOT = Path(__file__).resolve().parents[1]
#: a file of the worked example: ``<!-- file: PATH -->`` and the fenced block below it
FILE_BLOCK = re.compile(r"<!-- file: (\S+) -->\n```\w+\n(.*?)```", re.S)
WORKFLOW = ("Snakefile", "environment.yml", "rules", "pipeline", "schemas", "report")


def documented_files() -> dict[str, str]:
    return dict(FILE_BLOCK.findall((ROOT / "docs" / "methods.md").read_text()))


def test_the_worked_example_is_new_files_only():
    files = documented_files()
    assert set(files) == {"pipeline/methods/margin.py", "schemas/methods/margin.schema.yaml"}
    assert not any((ROOT / path).exists() for path in files), "the example is not a method of the workflow"


def test_the_docs_method_registers_from_its_own_files_and_trains(tmp_path, tiny_beir, tiny_bert):
    workflow = tmp_path / "workflow"
    workflow.mkdir()
    for name in WORKFLOW:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, workflow / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / name, workflow / name)
    for path, text in documented_files().items():
        (workflow / path).write_text(text)
    workdir = write_config(tmp_path / "run", tiny_beir, tiny_bert, iterations=1, methods=["standard", "margin"],
                           margin={"weight": 2.0}, encode={"shards": 1}, threads=1, export={"formats": []})
    snakemake = [sys.executable, "-m", "snakemake", "--snakefile", str(workflow / "Snakefile"),
                 "--directory", str(workdir)]

    bad = subprocess.run([*snakemake, "-n", "--cores", "1", "--config", "margin={'wieght': 1}"],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "wieght" in bad.stdout + bad.stderr, "its schema validates its section"
    dry = subprocess.run([*snakemake, "-n", "--cores", "1"], capture_output=True, text=True)
    assert dry.returncode == 0, dry.stdout[-3000:] + dry.stderr[-3000:]
    assert "train" in dry.stdout

    run = subprocess.run([*snakemake, "--cores", "2", "results/tiny/students/it1"], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    training = json.loads((workdir / "results/tiny/students/it1/training.json").read_text())
    assert training["methods"] == ["standard", "margin"]
    assert training["config"]["margin"] == {"margin": 1.0, "weight": 2.0}, "its schema's defaults, the config's weight"
    distill = [entry for entry in training["history"] if entry["phase"] == "distill"]
    assert distill and all("margin" in entry for entry in distill), "its term is in the distillation loss"
    assert not any("margin" in entry for entry in training["history"] if entry["phase"] != "distill")
