"""The main job: does memorization rise with γ? `python sweep.py -c configs/sweeps/digits.yaml` (or `python -m sweep`).

Cells, each a `train.py` run (its own W&B run, all in one W&B group), each with a role:
  blae              the BL-AE (fit); every token cell below reads its tokens and decodes with it
  blae-noise-<r>    the same BL-AE at training noise rate r, once per --blae_noises (fit; MEPS frontier only)
  vae[-beta-<β>]    the Gaussian VAE baseline (fit), once per --vae_betas, β on the ELBO scale (MEPS frontier)
  <model>-gamma-<γ> kernel (validate: nothing to train) and neural (fit) γ-ARVM, for every γ
  <model>-gamma-<γ>-seed<s>   the same cell at another seed, for --spread_cells x --spread_seeds
  <model>-gamma-<γ>-n<N>      the same cell on N training images, for --phase_models x γ x --train_sizes
                              (the phase diagram; a size the main cells already use is not run twice)
  probes-<model>-gamma-<γ>    prefix extraction and forward-backward (validate) on the main cell's model, for
                              --probe_models x γ when --probes is given (configs/sweeps/probes.yaml, docs/probes.md)
The tokens are encoded once (the token cache of LatentTokenDataModule, keyed by checkpoint hash).
Every run writes `results.json` (its metrics, role, CPU seconds); a finished cell whose arguments did not
change, and whose results still hold what it promises (its checkpoint, its metrics), is reused; a cell stopped
by SIGTERM/SIGUSR1/Ctrl-C resumes its own run from its checkpoint (exit code 75 until then; see
docs/clusters.md), so the same command resumes an interrupted sweep. The report (report.json, report.md,
plots, a W&B summary run) is written at the end.

Same override syntax as train.py: --data.path uoft-cs/cifar10, --gammas [1,2,global],
--train_sizes [100,300,null], --trainer.devices 4 (passed through to every run; several devices
run each cell in its own `python train.py`, one after the other). On one device, `--workers N` runs N
independent cells side by side, each in a fresh process forked from a server that imported
train.py once; `--workers 1` runs them in this process. Every way, a cell's whole output goes to
cells/<name>/log.txt and the console shows one line per cell (its time and headline figure) with the
overall progress.

One concern per file: `cells.py` (what a cell is), `records.py` (its results on disk, its resumable run),
`plan.py` (the cells of the settings, the start order), `workers.py` (running one cell), `schedule.py`
(the run of the plan, then the report), `console.py` (a cell's console line), `arguments.py` (the parser
and its one-line errors), `argument_checks.py` (every argument checked before any cell starts),
`command.py` (the command and its exit code); with `--launcher slurm` (each cell a SLURM job through submitit):
`slurm_settings.py` (each job's resources, checked with the arguments), `submission.py` (the plan as jobs and
their dependencies, then the wait for the report job) and `cell_job.py` (what a job runs: one cell, or the report).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sweep.arguments import build_parser, sweep_from_args
    from sweep.cells import Cell, DataOverrides, Planned, Skip, Stage, TrainerOverrides
    from sweep.command import console_main, main
    from sweep.plan import EXPECTED_CPU_S, SweepPlan, critical_paths
    from sweep.schedule import Sweep

WHERE = {
    **dict.fromkeys(("build_parser", "sweep_from_args"), "sweep.arguments"),
    **dict.fromkeys(("Cell", "DataOverrides", "Planned", "Skip", "Stage", "TrainerOverrides"), "sweep.cells"),
    **dict.fromkeys(("console_main", "main"), "sweep.command"),
    **dict.fromkeys(("EXPECTED_CPU_S", "SweepPlan", "critical_paths"), "sweep.plan"),
    "Sweep": "sweep.schedule",
}
"""Each name of the package and its module, imported on first use: `python sweep.py` checks its arguments before
the modules that run cells (torch, Lightning, W&B) are imported."""


def __getattr__(name: str):
    if name not in WHERE:
        raise AttributeError(f"module 'sweep' has no attribute {name!r}")
    return getattr(importlib.import_module(WHERE[name]), name)


__all__ = [
    "Cell",
    "DataOverrides",
    "EXPECTED_CPU_S",
    "Planned",
    "Skip",
    "Stage",
    "Sweep",
    "SweepPlan",
    "TrainerOverrides",
    "build_parser",
    "console_main",
    "critical_paths",
    "main",
    "sweep_from_args",
]
