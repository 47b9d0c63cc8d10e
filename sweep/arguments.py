"""The sweep's command line: its parser (train.py's override syntax: --data.path uoft-cs/cifar10,
--gammas [1,2,global], --trainer.devices 4) and the checks that refuse, in one line, a sweep that cannot
mean what it says, before anything is trained or written."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from jsonargparse import ActionConfigFile, ArgumentParser

from networks.gamma_mask import parse_gamma
from report.cells import TOKEN_MODELS
from runtime.errors import BadInput
from sweep.cells import DataOverrides, Stage, TrainerOverrides

DESCRIPTION = "The main job: does memorization rise with γ? `python sweep.py -c configs/sweeps/digits.yaml`."


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(description=DESCRIPTION, parser_mode="omegaconf+")
    parser.add_argument("-c", "--config", action=ActionConfigFile)
    parser.add_argument("--out_dir", type=str, default="outputs/sweeps/digits")
    parser.add_argument("--gammas", type=list[int | str], default=[1, 2, 3, 4, "global"])
    parser.add_argument("--group", type=str | None, default=None, help="W&B group of the runs (default: sweep-<out_dir name>)")
    parser.add_argument("--threads", type=int | None, default=None, help="torch intra-op threads per run (default: torch's choice)")
    parser.add_argument("--workers", type=int, default=1, help="cells run side by side (one device only)")
    # list[float | str]: a value that is not a number reaches check_levels, which names it in one line
    parser.add_argument(
        "--vae_betas",
        type=list[float | str] | None,
        default=None,
        help="one VAE cell per KL weight β >= 0 on the ELBO scale (β = 1: the ELBO; default: the VAE config's own)",
    )
    parser.add_argument(
        "--blae_noises",
        type=list[float | str],
        default=[],
        help="one more BL-AE cell per training noise rate > 0 (Gaussian noise_rate), beside the main cell's own: the MEPS frontier",
    )
    parser.add_argument("--spread_cells", type=list[str], default=[], help="cells run again at other seeds, e.g. [neural-global]")
    parser.add_argument("--spread_seeds", type=list[int], default=[], help="the other seeds (seed_everything) of --spread_cells")
    parser.add_argument(
        "--train_sizes", type=list[int | None], default=[], help="phase diagram: training-set sizes (null = the whole training split)"
    )
    parser.add_argument("--phase_models", type=list[str], default=["kernel"], help="the models of the phase diagram")
    parser.add_argument(
        "--phase_args", type=dict[str, list[str]], default={}, help="extra train.py arguments of the phase-diagram cells, per model"
    )
    parser.add_argument(
        "--probes",
        type=Stage | None,
        default=None,
        help="probe cells (validate) on every main token cell: the preset and its extra arguments",
    )
    parser.add_argument("--probe_models", type=list[str], default=list(TOKEN_MODELS), help="the models the probes run on")
    for stage in ("blae", "vae", "kernel", "neural"):
        parser.add_argument(f"--{stage}", type=Stage, required=True)
    parser.add_argument("--data", type=DataOverrides, default=DataOverrides())
    parser.add_argument("--trainer", type=TrainerOverrides, default=TrainerOverrides())
    return parser


def check_sweep_arguments(out_dir: str, gammas: list) -> None:
    """One line for a sweep that cannot mean what it says, before anything is trained or written.

    ``gammas`` are parsed already (ints and None for global).
    """
    if not gammas:
        raise BadInput("--gammas is empty: a sweep needs at least one γ, e.g. --gammas '[1, 2, global]'")
    seen: dict = {}
    for gamma in gammas:
        if gamma in seen:
            label = "global" if gamma is None else gamma
            raise BadInput(
                f"--gammas lists γ={label} twice ({[('global' if g is None else g) for g in gammas]}):"
                " each γ is one cell of the sweep, list it once"
            )
        seen[gamma] = True
    folder = Path(out_dir).expanduser()
    if folder.exists() and not folder.is_dir():
        raise BadInput(f"--out_dir {out_dir!r} is a file, not a folder")
    for parent in folder.parents:
        if parent.exists():
            if not parent.is_dir():
                raise BadInput(f"--out_dir {out_dir!r}: {str(parent)!r} is a file, not a folder")
            break


def check_levels(flag: str, values: Sequence | None, *, zero_allowed: bool) -> list[float]:
    """Each value of --vae_betas (β >= 0) or --blae_noises (a noise rate > 0) a finite number listed once (as its cell
    name writes it, `level_label`), as floats; anything else is one line naming the flag and the value, before any
    cell starts."""
    bound = ">= 0" if zero_allowed else "> 0"
    listed = "[" + ", ".join(level_label(v) for v in values or []) + "]"
    levels: list[float] = []
    for value in values or []:
        number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
        if number is None or not math.isfinite(number) or not (number >= 0 if zero_allowed else number > 0):
            raise BadInput(f"{flag} {level_label(value)}: each value must be a finite number {bound}, got {listed}")
        if level_label(value) in [level_label(level) for level in levels]:  # the cell name's label: 0.3 and 0.3000001 are one cell
            raise BadInput(f"{flag} lists {level_label(value)} twice ({listed}): each value is one cell of the sweep, list it once")
        levels.append(float(number))
    return levels


def level_label(value) -> str:
    """A level as a cell name writes it (0.3, 1, -2), anything else as written (quoted)."""
    return f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else repr(value)


def check_workers(workers: int, in_process: bool, devices) -> None:
    """Side by side only on one device: several devices run each cell as its own `python train.py`, one at a time."""
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    if workers > 1 and not in_process:
        raise ValueError(
            f"--workers {workers} runs cells side by side on one device; with --trainer.devices "
            f"{devices} the cells run one after the other: use --workers 1"
        )


def check_token_models(spread_cells: Sequence[str], phase_models: Sequence[str], probe_models: Sequence[str]) -> None:
    """--spread_cells are <model>-<γ>, and every model named is one of the token models."""
    for name in spread_cells:
        if name.split("-")[0] not in TOKEN_MODELS or "-" not in name:
            raise ValueError(f"--spread_cells {name!r}: spread cells are <model>-<γ>, model one of {TOKEN_MODELS}")
        parse_gamma(name.split("-", 1)[1])
    for name in [*phase_models, *probe_models]:
        if name not in TOKEN_MODELS:
            raise ValueError(f"--phase_models / --probe_models {name!r}: models are one of {TOKEN_MODELS}")
