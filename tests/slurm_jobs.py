"""What the SLURM tests submit: the job script of docs/clusters.md, as a user would, with the outputs in a test's folder.

The script is read from the documentation (the fenced ``bash`` block under "## A SLURM job"), so the script the
docs give and the one the tests run cannot drift apart. It is submitted from the repository root (``--chdir``:
a user submits from there, and the ``configs/...`` paths after ``job.sh`` are relative to it), with its log, the
run folders and the W&B files in the test's folder (``--output``, ``--trainer.default_root_dir``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import NamedTuple

from tests.helpers import REPO_ROOT, wandb_runs
from tests.slurm_cluster import SlurmCluster

CLUSTERS_DOC = REPO_ROOT / "docs" / "clusters.md"
JOB_SECTION = "## A SLURM job"
DEBUG = ["-c", "configs/blae/digits.yaml", "-c", "configs/presets/debug.yaml", "--trainer.enable_model_summary", "false"]
"""The BL-AE on digits, a few steps of the debug preset (the paths as a user gives them, from the repository root)."""


def documented_job_script(doc: Path = CLUSTERS_DOC) -> str:
    """The first fenced ``bash`` block under the heading "## A SLURM job" of docs/clusters.md."""
    text = doc.read_text()
    assert JOB_SECTION in text, f"{doc} has no section {JOB_SECTION!r}"
    section = text.split(JOB_SECTION, 1)[1].split("\n## ", 1)[0]
    found = re.search(r"^```bash\n(.*?)^```", section, flags=re.MULTILINE | re.DOTALL)
    assert found, f"{doc}: no ```bash block under {JOB_SECTION!r}"
    return found.group(1)


class Job(NamedTuple):
    """A submitted job: its id and the folder that holds its log and outputs."""

    id: str
    folder: Path

    @property
    def log(self) -> str:
        """The job's output (``slurm-<id>.out``; a requeued start appends to it)."""
        path = self.folder / f"slurm-{self.id}.out"
        return path.read_text() if path.exists() else ""

    @property
    def outputs(self) -> Path:
        return self.folder / "outputs"

    def run_folders(self) -> list[Path]:
        root = self.outputs / "meps-ldh"
        return sorted(root.iterdir()) if root.is_dir() else []

    def wandb_runs(self) -> list[Path]:
        return wandb_runs(self.outputs)

    def status(self, run_folder: Path) -> dict:
        return json.loads((run_folder / "status.json").read_text())


def submit(cluster: SlurmCluster, folder: Path, train_args: list[str], sbatch_args: tuple[str, ...] = ()) -> Job:
    """``sbatch [SBATCH_ARGS] job.sh -c configs/blae/digits.yaml -c configs/presets/debug.yaml ... TRAIN_ARGS`` of the
    documented script, from the repository root, everything it writes in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "job.sh"
    script.write_text(documented_job_script())
    job_id = cluster.sbatch(
        f"--chdir={REPO_ROOT}",
        f"--output={folder}/slurm-%j.out",
        *sbatch_args,
        str(script),
        *DEBUG,
        "--trainer.default_root_dir",
        str(folder / "outputs"),
        *train_args,
        cwd=folder,
        OMP_NUM_THREADS="1",
    )
    return Job(job_id, folder)


def cancel(cluster: SlurmCluster, *jobs: Job) -> None:
    """``scancel`` the jobs (a test's ``finally``: nothing of a failed test keeps running or comes back requeued)."""
    ids = [job.id for job in jobs]
    if ids:
        cluster.run("scancel", *ids)


def ended_ok(cluster: SlurmCluster, job: Job, timeout: float = 300) -> dict[str, str]:
    """Waits for the job to end and asserts it COMPLETED with exit code 0:0; its ``scontrol`` fields."""
    fields = cluster.wait(job.id, timeout=timeout)
    assert (fields["JobState"], fields["ExitCode"]) == ("COMPLETED", "0:0"), f"job {job.id}: {fields}\n{job.log[-6000:]}"
    return fields
