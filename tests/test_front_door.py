"""What a new user meets first, run as they would run it: the shipped config as it is, the default download
(against a local HTTP server: good zip, wrong checksum, no server), `make run` itself, and the README's
commands; the workflow's conventions (`snakefmt`, the conda environment's pins)."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from fixtures import served_beir_zip, unused_local_url
from test_workflow import ROOT, job_counts, snakemake, write_config


def test_the_shipped_config_builds_its_dag_as_it_is(tmp_path):
    """`snakemake -n` on config.yaml unchanged (no data_dir): the DAG starts with the SciFact download and
    runs to the summary; a dry run touches no network and writes nothing, and prints no error (a rule
    that matched a file it cannot make used to print an InputFunctionException for `hybrid`)."""
    result = snakemake(tmp_path, "--configfile", str(ROOT / "config.yaml"), "-n", "--cores", "2")
    assert "Exception" not in result.stdout + result.stderr and "Error" not in result.stdout + result.stderr
    counts = job_counts(result.stdout)
    assert counts["download"] == 1 and counts["prepare"] == 1 and counts["summary"] == 1, result.stdout[-2000:]
    assert counts["train"] == yaml.safe_load((ROOT / "config.yaml").read_text())["iterations"]
    assert ".cache/beir/scifact/corpus.jsonl" in result.stdout
    assert not (tmp_path / ".cache/beir").exists() and not (tmp_path / "results").exists()


@pytest.fixture
def served_tiny_zip(tmp_path, tiny_beir):
    with served_beir_zip(tiny_beir, tmp_path / "site") as download:
        yield download


def test_without_data_dir_the_workflow_downloads_checks_and_prepares_the_zip(tmp_path, tiny_beir, tiny_bert,
                                                                            served_tiny_zip):
    workdir = write_config(tmp_path / "wd", tiny_beir, tiny_bert, data_dir=None, download=served_tiny_zip)
    snakemake(workdir, "--cores", "2", "results/tiny/data/report.json")
    downloaded = workdir / ".cache/beir/tiny"
    assert (downloaded / "corpus.jsonl").read_bytes() == (tiny_beir / "corpus.jsonl").read_bytes()
    assert (workdir / "results/tiny/data/corpus.parquet").exists()
    assert "Nothing to be done" in snakemake(workdir, "--cores", "2", "-n", "results/tiny/data/report.json").stdout


def test_a_download_with_another_checksum_stops_the_run_naming_the_file(tmp_path, tiny_beir, tiny_bert,
                                                                       served_tiny_zip):
    download = {**served_tiny_zip, "sha256": "0" * 64}
    workdir = write_config(tmp_path / "wd", tiny_beir, tiny_bert, data_dir=None, download=download)
    result = snakemake(workdir, "--cores", "2", "--show-failed-logs", "results/tiny/data/report.json", check=False)
    assert result.returncode != 0
    error = next(line for line in (result.stdout + result.stderr).splitlines() if line.startswith("error: "))
    assert download["url"] in error and served_tiny_zip["sha256"] in error and "download.sha256" in error
    assert not (workdir / ".cache/beir/tiny").exists(), "nothing extracted"


def test_offline_the_run_fails_within_seconds_with_one_sentence_naming_the_url_and_the_way_out(
        tmp_path, tiny_beir, tiny_bert):
    url = unused_local_url()
    workdir = write_config(tmp_path / "wd", tiny_beir, tiny_bert, data_dir=None,
                           download={"url": url, "sha256": "0" * 64})
    started = time.monotonic()
    result = snakemake(workdir, "--cores", "2", "--show-failed-logs", "results/tiny/data/report.json", check=False)
    assert result.returncode != 0 and time.monotonic() - started < 30
    errors = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and url in errors[0] and "make run DATA=/path/to/beir" in errors[0], errors


def tiny_override(tiny_bert: Path) -> dict:
    """What a user with the tiny fixture would lay over config.yaml: the fixture model wherever MiniLM-L6
    serves, one short iteration with no warm-up, no export (the two-iteration test warms up and exports:
    CI time), 40 pseudo-queries (labels.source: auto has the teacher label them beside the fixture's few
    judged training queries)."""
    small = {"source": str(tiny_bert), "max_passage_length": 48, "max_query_length": 16}
    return {"experiment": "front-door", "iterations": 1, "threads": 1, "labels": {"pseudo_queries": {"count": 40}},
            "models": {"minilm-l6": small}, "student": {**small, "layers": 1},
            "warmup": {"epochs": 0},
            "train": {"epochs": 1, "batch_size": 8, "max_passage_length": 32},
            "mine": {"depth": 20, "window": [0, 10]}, "export": {"formats": []}}


def make_run(workdir: Path, *variables: str, snakemake_args: str = "") -> subprocess.CompletedProcess:
    """`make run VARIABLE=...` as typed in the checkout, its experiment kept in ``workdir`` (--directory)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}  # not the outer `make test`'s
    return subprocess.run(["make", "-C", str(ROOT), "run", *variables,
                           f"SNAKEMAKE_ARGS=--directory {workdir} {snakemake_args}"],
                          capture_output=True, text=True, env=env)


def test_make_run_on_the_fixture_runs_to_the_summary_then_has_nothing_to_do_then_reports_and_exports(
        tmp_path, tiny_beir, tiny_bert):
    """The README's commands as typed: `make run DATA=... CONFIG=...` (config.yaml with a small override on
    top) runs to the summary; again, it finds nothing to do; with `--report` it writes the report; with an
    export folder as the target it exports that student."""
    workdir = tmp_path / "wd"
    workdir.mkdir()
    override = workdir / "tiny.yaml"
    override.write_text(yaml.safe_dump(tiny_override(tiny_bert)))
    variables = [f"DATA={tiny_beir}", f"CONFIG={override}", "CORES=2"]
    first = make_run(workdir, *variables)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    summary = workdir / "results/front-door/summary.md"
    assert summary.exists() and summary.read_text() in first.stdout, "the run ends by printing its summary"
    assert "minilm-l6" in summary.read_text() and "student-it1" in summary.read_text()
    # few judged training queries: the shipped config's labels.source: auto lets the teacher label the others
    judged = len({line.split("\t")[0] for line in (tiny_beir / "qrels/train.tsv").read_text().splitlines()[1:]})
    assert f"labels: qrels+teacher ({judged} judged training queries, fewer than labels.few_judged_queries (200)" \
        in first.stderr
    splits = json.loads((workdir / "results/front-door/data/splits.json").read_text())
    assert splits["labels"] == "qrels" and splits["dev_queries"] > 0, "the dev split is judged"
    assert splits["teacher_labelled_queries"] >= 40, "the pseudo-queries, and the queries nobody judged"
    assert (workdir / ".cache/snakemake-outputs").is_dir(), "make run serves teacher work through --cache"
    second = make_run(workdir, *variables)
    assert second.returncode == 0 and "Nothing to be done" in second.stdout + second.stderr, second.stderr[-3000:]
    report = make_run(workdir, *variables, snakemake_args="--report report.html")
    assert report.returncode == 0 and (workdir / "report.html").stat().st_size > 10_000, report.stderr[-3000:]
    export = make_run(workdir, *variables, snakemake_args="results/front-door/export/student-it1")
    assert export.returncode == 0, export.stderr[-3000:]
    exported = workdir / "results/front-door/export/student-it1"  # the override asks for no ONNX format (CI time)
    assert (exported / "export.json").is_file() and (exported / "model.safetensors").is_file()


def test_make_run_with_seeds_passes_them_beside_the_data_folder(tmp_path, tiny_beir, tiny_bert):
    """`make run DATA=... SEEDS=13,7` puts both in one --config (a second --config would replace the first):
    the dry run prepares the fixture's folder and trains seed 7's students in seed-7/."""
    workdir = tmp_path / "wd"
    workdir.mkdir()
    override = workdir / "tiny.yaml"
    override.write_text(yaml.safe_dump(tiny_override(tiny_bert)))
    result = make_run(workdir, f"DATA={tiny_beir}", f"CONFIG={override}", "SEEDS=13,7", snakemake_args="-n")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"input: {tiny_beir}/corpus.jsonl" in result.stdout
    assert "rule seed_7_train:" in result.stdout and "output: results/front-door/seed-7/students/it1" in result.stdout
    assert "output: results/front-door/seeds.md" in result.stdout


# The README's commands and the tests that run them as CI can (on the fixture, a local server instead of the
# network); a command CI cannot run says so in the README's "What CI runs".
README_COMMANDS = {
    "make run": ["test_the_shipped_config_builds_its_dag_as_it_is",
                 "test_without_data_dir_the_workflow_downloads_checks_and_prepares_the_zip",
                 "test_offline_the_run_fails_within_seconds_with_one_sentence_naming_the_url_and_the_way_out"],
    "make test": [],  # what CI runs (.ci/run)
    "make run DATA=/path/to/beir": [
        "test_make_run_on_the_fixture_runs_to_the_summary_then_has_nothing_to_do_then_reports_and_exports"],
    "make run DATA=/path/to/beir CONFIG=configs/label-free.yaml": [
        "test_make_run_on_the_fixture_runs_to_the_summary_then_has_nothing_to_do_then_reports_and_exports",
        "test_workflow.py::test_label_free_preset_on_a_test_only_collection_reads_no_judgment"],
    "make run DATA=/path/to/beir CORES=2": [
        "test_make_run_on_the_fixture_runs_to_the_summary_then_has_nothing_to_do_then_reports_and_exports"],
    'make run DATA=/path/to/beir SNAKEMAKE_ARGS="--report report.html"': [
        "test_make_run_on_the_fixture_runs_to_the_summary_then_has_nothing_to_do_then_reports_and_exports"],
    ".venv/bin/python -m pipeline.compare results/minilm-l6-to-l2 results/prod --out results/comparison": [
        "test_workflow.py::test_a_second_experiment_reuses_the_teachers_work_and_compares_with_the_first_in_one_report"],
    "make run DATA=/path/to/beir SEEDS=13,7,21": [
        "test_make_run_with_seeds_passes_them_beside_the_data_folder",
        "test_workflow.py::test_seeds_added_to_a_finished_run_train_only_the_new_seed_and_summarise_both"],
    'make run DATA=/path/to/beir SNAKEMAKE_ARGS="results/minilm-l6-to-l2/export/student-it1"': [
        "test_make_run_on_the_fixture_runs_to_the_summary_then_has_nothing_to_do_then_reports_and_exports"],
}


def test_every_readme_command_is_run_by_a_test_that_exists():
    blocks = re.findall(r"^```bash\n(.*?)^```", (ROOT / "README.md").read_text(), re.M | re.S)
    commands = [re.sub(r"\s+#.*$", "", line).strip() for block in blocks for line in block.splitlines()]
    assert set(filter(None, commands)) == set(README_COMMANDS), "a README command without its test here"
    for tests in README_COMMANDS.values():
        for test in tests:
            module, _, name = test.rpartition("::")
            source = (Path(__file__).parent / (module or Path(__file__).name)).read_text()
            assert f"def {name}(" in source, test


def test_snakefmt_finds_the_snakefile_and_rules_formatted():
    snakefmt = Path(sys.executable).with_name("snakefmt")
    result = subprocess.run([str(snakefmt), "--check", "Snakefile", "rules"], cwd=ROOT, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_conda_environment_pins_what_requirements_txt_pins():
    pins = [line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(item["pip"] for item in environment["dependencies"] if isinstance(item, dict))
    assert pip == pins
    python = next(item for item in environment["dependencies"] if str(item).startswith("python="))
    assert python == "python=" + ".".join(map(str, sys.version_info[:2]))


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation out, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_the_readme_is_short_and_every_link_of_it_and_of_the_docs_resolves():
    readme = ROOT / "README.md"
    assert len(readme.read_text().splitlines()) <= 200
    pages = [readme, *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks/README.md"]
    for page in pages:
        text = page.read_text()
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"^[a-z]+://", target):
                continue
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            assert file.exists(), f"{page.relative_to(ROOT)} links to {target}: no such file"
            if anchor:
                headings = re.findall(r"^#+ (.+)$", file.read_text(), re.M)
                assert anchor in map(github_anchor, headings), f"{page.relative_to(ROOT)}: no heading #{anchor}"
    linked = set(re.findall(r"\]\((docs/[^)#]+\.md)", readme.read_text()))
    assert linked == {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")}, "every docs page is linked from the README"


def test_every_result_file_the_readme_cites_exists():
    cited = re.findall(r"`((?:scifact|cuda)[\w.-]*\.json)`", (ROOT / "README.md").read_text())
    assert cited
    for name in cited:
        assert (ROOT / "benchmarks/results" / name).is_file(), name
