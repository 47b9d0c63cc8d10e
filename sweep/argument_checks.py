"""Every sweep argument checked before the first cell starts: one `error:` line naming the flag and the value
(exit code 2), nothing written, no cell started.

A sweep is hours of cells; a value that cannot mean what it says (``--threads -1``, ``--train_sizes '[0]'``, a
spread cell of a γ the sweep does not run, a value listed twice, a config file that is not there) must be refused
here, not by the first cell that reads it. `TAKES` says what each flag takes: the parser's type errors
(`sweep/arguments.py`) and these checks name it alike. Nothing here imports torch, Lightning or matplotlib
(`parse_gamma` and `TOKEN_MODELS` come without them): the line comes before a cell's imports.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from networks.gamma_mask import gamma_name, parse_gamma
from report.cells import TOKEN_MODELS
from runtime.errors import BadInput
from runtime.output_folder import unwritable_because
from sweep.cells import DataOverrides, Stage, TrainerOverrides, resolve_config_paths
from sweep.slurm_settings import TAKES as SLURM_TAKES
from sweep.slurm_settings import SlurmSettings, check_launcher

MAX_SEED = 2**32 - 1
"""The largest seed ``seed_everything`` takes; beyond it Lightning warns and seeds with 0 (two "seeds" would be one)."""
MODELS = ", ".join(TOKEN_MODELS)
GAMMA = "an integer >= 1 or global"
STEPS = "an integer >= 1, or -1 (no limit)"
WHOLE_SPLIT = "or null (the whole training split)"
TAKES = {
    "out_dir": "a folder",
    "gammas": f"a list of γ, each {GAMMA}, e.g. --gammas '[1, 2, global]'",
    "group": "a W&B group name",
    "threads": "an integer >= 1 (torch threads per cell) or null (torch's choice)",
    "workers": "an integer >= 1 (cells run side by side)",
    "vae_betas": "a list of KL weights β, each a finite number >= 0, or null (the VAE config's own)",
    "blae_noises": "a list of training noise rates, each a finite number > 0",
    "spread_cells": f"a list of main cells <model>-<γ>, model one of {MODELS}, e.g. [neural-global]",
    "spread_seeds": f"a list of seeds, integers from 0 to {MAX_SEED}",
    "train_sizes": f"a list of training-set sizes, integers >= 1 {WHOLE_SPLIT}",
    "phase_models": f"a list of token models ({MODELS})",
    "probe_models": f"a list of token models ({MODELS})",
    "phase_args": f"a mapping of token models ({MODELS}) to lists of train.py arguments,"
    " e.g. --phase_args '{kernel: [-c, configs/presets/memorization_only.yaml]}'",
    "trainer.max_steps": STEPS,
    "trainer.max_epochs": STEPS,
    "trainer.devices": "an integer >= 1, -1 (every device), or a string such as auto or '0,1'",
    "trainer.num_nodes": "an integer >= 1",
    "data.image_size": "an integer >= 1 (pixels)",
    "data.channels": "an integer >= 1",
    "data.max_train_samples": f"an integer >= 1 {WHOLE_SPLIT}",
    **{f"slurm.{key}": what for key, what in SLURM_TAKES.items() if key != "launcher"},
    "launcher": SLURM_TAKES["launcher"],
}
"""What each flag takes, as its `error:` line says it (flags not listed: their type, as the parser says it)."""


def shown(value) -> str:
    """A value as a user writes it on the command line: null, 0.3, global."""
    if value is None:
        return "null"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def listed(values: Sequence) -> str:
    return "[" + ", ".join(shown(v) for v in values) + "]"


def refuse(flag: str, value, *, got: Sequence | None = None) -> BadInput:
    """``--flag value: expected <what it takes>[, got <the whole list>]``; the list is left out when the value is the
    whole list as written (``--gammas '[1.5]'``: the parser could not split it), where it would only repeat it."""
    whole = isinstance(value, str) and value.strip().startswith("[")
    return BadInput(f"--{flag} {shown(value)}: expected {TAKES[flag]}" + (f", got {listed(got)}" if got is not None and not whole else ""))


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_once(flag: str, values: Sequence, label=shown) -> None:
    """Each value is one cell, named by ``label`` (the value as its cell's name writes it): a value listed twice, in
    one spelling or two (``neural-global``, ``neural-inf``), would be two cells of one name."""
    seen: dict[str, object] = {}
    for value in values:
        name = label(value)
        if name in seen:
            spellings = f", as {shown(seen[name])} and {shown(value)}" if shown(seen[name]) != shown(value) else ""
            raise BadInput(f"--{flag} lists {name} twice{spellings} ({listed(values)}): each value is one cell of the sweep, list it once")
        seen[name] = value


def check_gammas(gammas: Sequence) -> list:
    """γ parsed (ints, None for global), each listed once."""
    if not gammas:
        raise BadInput("--gammas is empty: a sweep needs at least one γ, e.g. --gammas '[1, 2, global]'")
    parsed = []
    for gamma in gammas:
        try:
            parsed.append(parse_gamma(gamma))
        except ValueError:
            raise refuse("gammas", gamma, got=gammas) from None
    for i, gamma in enumerate(parsed):
        if gamma in parsed[:i]:
            raise BadInput(
                f"--gammas lists γ={shown(gamma) if gamma is not None else 'global'} twice ({listed(gammas)}):"
                " each γ is one cell of the sweep, list it once"
            )
    return parsed


def check_levels(flag: str, values: Sequence | None, *, zero_allowed: bool) -> list[float]:
    """Each value of --vae_betas (β >= 0) or --blae_noises (a noise rate > 0) a finite number listed once (as its cell
    name writes it, `level_label`), as floats; anything else is one line naming the flag and the value, before any
    cell starts."""
    written = "[" + ", ".join(level_label(v) for v in values or []) + "]"
    levels: list[float] = []
    for value in values or []:
        number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
        if number is None or not math.isfinite(number) or not (number >= 0 if zero_allowed else number > 0):
            raise refuse(flag.removeprefix("--"), value, got=values)
        if level_label(value) in [level_label(level) for level in levels]:  # the cell name's label: 0.3 and 0.3000001 are one cell
            raise BadInput(f"{flag} lists {level_label(value)} twice ({written}): each value is one cell of the sweep, list it once")
        levels.append(float(number))
    return levels


def level_label(value) -> str:
    """A level as a cell name writes it (0.3, 1, -2), anything else as written."""
    return f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else shown(value)


def check_count(flag: str, value, *, minimum: int = 1, also: tuple = ()) -> None:
    """None (the default), ``also``, or an integer >= ``minimum``."""
    if value is not None and value not in also and not (is_int(value) and value >= minimum):
        raise refuse(flag, value)


def check_workers(workers: int, in_process: bool, devices) -> None:
    """Side by side only on one device: several devices run each cell as its own `python train.py`, one at a time."""
    if not is_int(workers) or workers < 1:
        raise refuse("workers", workers)
    if workers > 1 and not in_process:
        raise BadInput(
            f"--workers {workers} runs cells side by side on one device; with --trainer.devices "
            f"{devices} the cells run one after the other: use --workers 1"
        )


def check_models(flag: str, models: Sequence[str]) -> None:
    for model in models:
        if model not in TOKEN_MODELS:
            raise refuse(flag, model, got=models)
    check_once(flag, models)


def check_spread_cells(spread_cells: Sequence[str], gammas: list) -> None:
    """Each spread cell is a main cell of this sweep: a token model at one of its γ."""
    for name in spread_cells:
        model, _, label = str(name).partition("-")
        if model not in TOKEN_MODELS or not label:
            raise refuse("spread_cells", name)
        try:
            gamma = parse_gamma(label)
        except ValueError:
            raise BadInput(f"--spread_cells {name}: γ {label!r} is not {GAMMA}") from None
        if gamma not in gammas:
            running = listed(["global" if g is None else g for g in gammas])
            raise BadInput(
                f"--spread_cells {name}: γ={label} is not one of --gammas {running}: a spread cell repeats a main cell at other seeds"
            )
    check_once("spread_cells", spread_cells, label=spread_cell_name)


def spread_cell_name(name: str) -> str:
    """A spread cell as its cells are named: ``neural-inf`` and ``neural-global``, ``neural-02`` and ``neural-2`` are one."""
    model, _, label = str(name).partition("-")
    return f"{model}-{gamma_name(parse_gamma(label))}"


def check_seeds(seeds: Sequence[int]) -> None:
    for seed in seeds:
        if not is_int(seed) or not 0 <= seed <= MAX_SEED:
            raise refuse("spread_seeds", seed, got=seeds)
    check_once("spread_seeds", seeds)


def check_train_sizes(sizes: Sequence[int | None]) -> None:
    for size in sizes:
        if size is not None and not (is_int(size) and size >= 1):
            raise refuse("train_sizes", size, got=sizes)
    check_once("train_sizes", sizes)


def check_config_files(flag: str, args: Sequence[str]) -> None:
    """Every ``-c`` file of a stage's train.py arguments (``-c f``, ``--config f``, ``--config=f``) exists, from here or
    from the repository (`resolve_config_paths`); a ``-c`` with no file after it is refused too (train.py would)."""
    split = [part for arg in args for part in (arg.split("=", 1) if arg.startswith("--config=") else [arg])]
    if split and split[-1] in ("-c", "--config"):
        raise BadInput(f"{flag}: {split[-1]} ends the arguments: give the config file after it, e.g. {split[-1]} configs/presets/FILE.yaml")
    resolved = resolve_config_paths(split)
    for i, arg in enumerate(resolved[:-1]):
        if arg in ("-c", "--config") and not Path(resolved[i + 1]).expanduser().is_file():
            raise BadInput(f"{flag}: {arg} {split[i + 1]}: no such file")


def check_stage(name: str, stage: Stage) -> None:
    if not Path(resolve_config_paths(["-c", stage.config])[1]).expanduser().is_file():
        raise BadInput(f"--{name}.config {stage.config}: no such file")
    check_config_files(f"--{name}.args", stage.args)


def check_phase_args(phase_args: Mapping[str, Sequence[str]]) -> None:
    for model, args in phase_args.items():
        if model not in TOKEN_MODELS:
            raise refuse("phase_args", model)
        check_config_files(f"--phase_args {model}", args)


DEVICE_LIST = re.compile(r"\d+(,\d+)*,?")
"""A string of ``--trainer.devices`` besides auto: device indices, ``0,1`` (Lightning's ``0,``: device 0)."""


def check_overrides(data: DataOverrides, trainer: TrainerOverrides) -> None:
    """The values passed on to every cell, in the ranges train.py takes (a step budget of 0 trains nothing)."""
    check_count("trainer.max_steps", trainer.max_steps, also=(-1,))
    check_count("trainer.max_epochs", trainer.max_epochs, also=(-1,))
    if not isinstance(trainer.devices, str):
        check_count("trainer.devices", trainer.devices, also=(-1,))
    elif trainer.devices != "auto" and not DEVICE_LIST.fullmatch(trainer.devices.replace(" ", "")):
        raise refuse("trainer.devices", trainer.devices)
    check_count("trainer.num_nodes", trainer.num_nodes)
    check_count("data.image_size", data.image_size)
    check_count("data.channels", data.channels)
    check_count("data.max_train_samples", data.max_train_samples)


def check_out_dir(out_dir: str) -> None:
    """The sweep folder (created when missing) can be written: a read-only one is named before any cell starts; an
    empty path (the current folder) is refused."""
    if not str(out_dir).strip():
        raise BadInput(f"--out_dir {out_dir!r}: expected a folder (an empty path is the current folder: name the sweep's own)")
    if (problem := unwritable_because(out_dir)) is not None:
        raise BadInput(f"--out_dir {out_dir}: cannot write there ({problem}); give a folder you can write to")


def check_sweep_settings(
    out_dir: str,
    gammas: Sequence,
    blae: Stage,
    vae: Stage,
    kernel: Stage,
    neural: Stage,
    data: DataOverrides,
    trainer: TrainerOverrides,
    group: str | None = None,
    threads: int | None = None,
    workers: int = 1,
    vae_betas: Sequence | None = None,
    spread_cells: Sequence[str] = (),
    spread_seeds: Sequence[int] = (),
    train_sizes: Sequence[int | None] = (),
    phase_models: Sequence[str] = ("kernel",),
    phase_args: Mapping[str, Sequence[str]] | None = None,
    probes: Stage | None = None,
    probe_models: Sequence[str] = TOKEN_MODELS,
    blae_noises: Sequence = (),
    launcher: str = "local",
    slurm: SlurmSettings | None = None,
) -> list:
    """Every setting of a sweep (`Sweep`'s arguments), in the order of the flags; returns γ parsed (ints, None for global)."""
    parsed = check_gammas(gammas)
    check_count("threads", threads)
    check_overrides(data, trainer)  # before --workers, whose line names --trainer.devices as a valid value
    # with --launcher slurm each cell is a job of its own: --workers (cells side by side here) plays no part
    check_workers(workers, launcher == "slurm" or (str(trainer.devices or 1) == "1" and (trainer.num_nodes or 1) == 1), trainer.devices)
    if vae_betas is not None and not vae_betas:
        raise BadInput("--vae_betas is empty: give at least one β, or null for the VAE config's own")
    check_levels("--vae_betas", vae_betas, zero_allowed=True)
    check_levels("--blae_noises", blae_noises, zero_allowed=False)
    check_spread_cells(spread_cells, parsed)
    check_seeds(spread_seeds)
    check_train_sizes(train_sizes)
    check_models("phase_models", phase_models)
    check_phase_args(phase_args or {})
    check_models("probe_models", probe_models)
    for name, stage in {"blae": blae, "vae": vae, "kernel": kernel, "neural": neural, "probes": probes}.items():
        if stage is not None:
            check_stage(name, stage)
    check_out_dir(out_dir)
    # last: with --launcher slurm it asks `sbatch --test-only` about the jobs' resources
    check_launcher(launcher, slurm, {"blae": blae, "vae": vae, "kernel": kernel, "neural": neural, "probes": probes}, trainer, threads)
    return parsed
