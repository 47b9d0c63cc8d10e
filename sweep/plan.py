"""The plan of a sweep: every cell its settings call for, each with the cells it waits on, and the order
they start in (the longest chain of waiting cells first).

  blae              the BL-AE (fit); every token cell reads its tokens and decodes with it
  blae-noise-<r>    the same BL-AE at another training noise rate r, once per --blae_noises (fit; the MEPS
                    frontier's BL-AE points beside the main cell's; no cell waits on them)
  vae[-beta-<β>]    the Gaussian VAE baseline (fit), once per --vae_betas
  <model>-gamma-<γ> kernel (validate) and neural (fit) γ-ARVM, for every γ (`report/cells.py` names them)
  ...-seed<s>, ...-n<N>, probes-...   seed spread, phase diagram and probe cells on a main cell
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path

from networks.gamma_mask import gamma_name, parse_gamma
from report.cells import TOKEN_MODELS, token_cell_name
from sweep.argument_checks import check_levels
from sweep.cells import (
    SUBCOMMAND,
    Cell,
    DataOverrides,
    Planned,
    Skip,
    Stage,
    TrainerOverrides,
    override_args,
    resolve_config_paths,
    size_label,
)

# Rough CPU seconds of each stage's cell in the digits demo (one thread), for the start order alone: the
# longest chain first (the BL-AE, then the neural global cell, whose seed-spread cell waits on it), so that
# no long cell is left to run alone at the end. Other data only shifts the order, never a result.
EXPECTED_CPU_S = {"blae": 60.0, "vae": 45.0, "kernel": 15.0, "neural": 150.0, "probes": 15.0}


def critical_paths(pending: list[Planned]) -> dict[str, float]:
    """name -> the cell's cost plus the longest chain of pending cells that wait on it (needs come before
    the cells that need them in a plan, so one pass from the end settles every chain)."""
    chain: dict[str, float] = {}
    for planned in reversed(pending):
        waiting = [chain[p.name] for p in pending if planned.name in p.needs and p.name in chain]
        chain[planned.name] = planned.cost + max(waiting, default=0.0)
    return chain


class SweepPlan:
    """The cells of a sweep's settings (checked already, `sweep/argument_checks.py`; `gammas` parsed: ints, None for global;
    `vae_betas` and `blae_noises` as floats through `check_levels`)."""

    def __init__(
        self,
        out_dir: str,
        gammas: list,
        stages: dict[str, Stage],
        data: DataOverrides,
        trainer: TrainerOverrides,
        group: str | None,
        vae_betas: list[float] | None,
        spread_cells: Sequence[str],
        spread_seeds: Sequence[int],
        train_sizes: Sequence[int | None],
        phase_models: Sequence[str],
        phase_args: dict[str, list[str]] | None,
        probes: Stage | None,
        probe_models: Sequence[str],
        blae_noises: Sequence[float | str] | None = None,
    ):
        betas = check_levels("--vae_betas", vae_betas, zero_allowed=True)
        self.blae_noises = check_levels("--blae_noises", blae_noises, zero_allowed=False)
        self.gammas = gammas
        self.out_dir = Path(out_dir).resolve()
        self.stages = stages
        self.data, self.trainer = data, trainer
        self.group = group or f"sweep-{self.out_dir.name}"
        self.vae_betas: list[float | None] = list(betas) if betas else [None]
        self.spread_cells, self.spread_seeds = list(spread_cells), list(spread_seeds)
        self.train_sizes, self.phase_models = list(train_sizes), list(phase_models)
        self.phase_args = phase_args or {}
        self.probes, self.probe_models = probes, list(probe_models)

    def cell(self, name: str, stage: str, extra: Sequence[str] = (), role: dict | None = None) -> Cell:
        folder = self.out_dir / "cells" / name
        spec = self.stages[stage]
        args = [
            *resolve_config_paths(["-c", spec.config, *spec.args]),
            *override_args("data.init_args", self.data),
            *override_args("trainer", self.trainer),
            *resolve_config_paths(list(extra)),
            "--trainer.logger.init_args.save_dir",
            str(self.out_dir / "runs"),
            "--trainer.logger.init_args.group",
            self.group,
            "--trainer.logger.init_args.name",
            name,
            "--trainer.callbacks+=callbacks.run.results_file.ResultsFile",
            "--trainer.callbacks.init_args.path",
            str(folder / "results.json.partial"),
            "--trainer.callbacks+=callbacks.run.image_logger.ImageLogger",
            "--trainer.callbacks.init_args.local_dir",
            str(folder / "images"),
            "--trainer.callbacks.init_args.max_images",
            "64",
        ]
        return Cell(name, SUBCOMMAND[stage], args, folder, {"stage": stage, **(role or {})})

    def token_cell(self, results: dict, model: str, gamma, name: str, extra: Sequence[str] = (), **role) -> Cell:
        blae = results["blae"]
        checkpoint = blae["best_checkpoint"] or blae["last_checkpoint"]
        args = ["--data.init_args.autoencoder", checkpoint, "--model.init_args.gamma", gamma_name(gamma), *extra]
        return self.cell(name, model, args, {"model": model, "gamma": gamma_name(gamma), **role})

    def first_cell(self, results: dict, name: str, stage: str, extra: Sequence[str] = (), role: dict | None = None) -> Cell:
        """A cell that needs no other cell's results (the autoencoders): ``cell`` as a `Planned.build`."""
        return self.cell(name, stage, extra, role)

    def plan(self) -> list[Planned]:
        """Every cell of the sweep, needs before the cells that need them (`next_ready` picks the start order)."""
        cost = EXPECTED_CPU_S
        plan = [Planned("blae", (), partial(self.first_cell, name="blae", stage="blae", role={"kind": "autoencoder"}), cost["blae"])]
        for noise in self.blae_noises:
            name = f"blae-noise-{noise:g}"
            extra = ["--model.init_args.binarizer.init_args.noise_rate", str(noise)]
            role = {"kind": "autoencoder_noise", "noise": noise}
            plan.append(Planned(name, (), partial(self.first_cell, name=name, stage="blae", extra=extra, role=role), cost["blae"]))
        for beta in self.vae_betas:
            name = "vae" if beta is None else f"vae-beta-{beta:g}"
            extra = [] if beta is None else ["--model.init_args.kl_weight", str(beta)]
            build = partial(self.first_cell, name=name, stage="vae", extra=extra, role={"kind": "vae", "beta": beta})
            plan.append(Planned(name, (), build, cost["vae"]))
        # kernel cells before neural ones (the order among equals): the first computes the held-out features the others reuse
        for model in TOKEN_MODELS:
            for gamma in self.gammas:
                name = token_cell_name(model, gamma)
                plan.append(
                    Planned(name, ("blae",), partial(self.token_cell, model=model, gamma=gamma, name=name, kind="gamma"), cost[model])
                )
        for spread in self.spread_cells:
            model, label = spread.split("-", 1)
            gamma = parse_gamma(label)
            main = token_cell_name(model, gamma)
            for seed in self.spread_seeds:
                name = f"{main}-seed{seed}"
                plan.append(
                    Planned(
                        name,
                        ("blae", main),
                        partial(self.spread_cell, model=model, gamma=gamma, name=name, seed=seed, main=main),
                        cost[model],
                    )
                )
        for model in self.phase_models:
            for gamma in self.gammas:
                main = token_cell_name(model, gamma)
                for size in self.train_sizes:
                    name = f"{main}-n{size_label(size)}"
                    plan.append(
                        Planned(
                            name,
                            ("blae", main),
                            partial(self.phase_cell, model=model, gamma=gamma, name=name, size=size, main=main),
                            cost[model],
                        )
                    )
        for model in self.probe_models if self.probes is not None else ():
            for gamma in self.gammas:
                main = token_cell_name(model, gamma)
                plan.append(
                    Planned(f"probes-{main}", ("blae", main), partial(self.probe_cell, model=model, gamma=gamma, main=main), cost["probes"])
                )
        return plan

    def probe_cell(self, results: dict, model: str, gamma, main: str) -> Cell:
        """`validate` with the probes on the main cell's model: the kernel estimator of the same data, the neural
        model from the main cell's final checkpoint (the fitted model its memorization was measured on)."""
        assert self.probes is not None  # probe cells are planned only with --probes
        extra = resolve_config_paths(["-c", self.probes.config, *self.probes.args])
        if model == "neural":
            extra += ["--ckpt_path", results[main].get("last_checkpoint") or results[main]["best_checkpoint"]]
        cell = self.token_cell(results, model, gamma, f"probes-{main}", extra, kind="probe", of=main)
        return replace(cell, subcommand="validate")

    def spread_cell(self, results: dict, model: str, gamma, name: str, seed: int, main: str) -> Cell | Skip:
        """The main cell from another seed, unless the main cell did not fit (a spread of unfitted models says nothing)."""
        plateaued = results[main].get("metrics", {}).get("fit/plateaued")
        if model == "neural" and plateaued is not None and plateaued < 1:
            return Skip(f"{main} did not plateau within its budget")
        return self.token_cell(results, model, gamma, name, ["--seed_everything", str(seed)], kind="spread", seed=seed)

    def phase_cell(self, results: dict, model: str, gamma, name: str, size: int | None, main: str) -> Cell | str:
        """A cell of the phase diagram, or the main cell's name where that one already learned from `size` images."""
        main_size = results[main].get("metrics", {}).get("mem/train_size")
        if size is not None and main_size is not None and int(main_size) == size:
            return main
        extra = ["--data.init_args.max_train_samples", "null" if size is None else str(size), *self.phase_args.get(model, [])]
        return self.token_cell(results, model, gamma, name, extra, kind="phase", train_size=size)
