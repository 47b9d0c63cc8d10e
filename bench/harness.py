"""Timing and Trainer plumbing shared by the benchmark files (bench_*.py import from here).

Why a harness: every comparison must time "ours" and its baseline the same way in the same
process, interleaved so that a shared, noisy machine slows both alike, and must keep one-off
costs (Trainer start-up, worker spawn, first-call allocation) out of the timed window. Keeping
that logic in one place stops the benchmark files from growing subtly different twins of it.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import os
import platform
import statistics
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterable, Sequence

import torch
from lightning.pytorch import Callback, Trainer
from torch import Tensor

from bench.common import Row

NO_GPU_NOTE = "not run: no GPU"
GPU_SUFFIX = " [gpu]"


# --------------------------------------------------------------------------------------------
# machine and devices


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo`` on Linux, else what ``platform`` knows)."""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask, which containers narrow), not the host's count."""
    with contextlib.suppress(AttributeError):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def gpu_name() -> str:
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"


def machine_description() -> str:
    """One line that says where the numbers come from: CPU, cores, torch build, GPU."""
    return f"{cpu_model()}, {usable_cores()} cores, torch {torch.__version__}, {gpu_name()}"


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels, so a wall-clock reading covers the work (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gpu_or_placeholders(build: Callable[[torch.device], list[Row]], placeholders: Sequence[tuple[str, str]]) -> list[Row]:
    """``build(cuda)`` when a GPU exists, else one "not run: no GPU" row per (name, unit) so the table keeps its shape."""
    if torch.cuda.is_available():
        return build(torch.device("cuda"))
    return [Row(name + GPU_SUFFIX, None, None, unit, note=NO_GPU_NOTE) for name, unit in placeholders]


def guarded(build: Callable[[], list[Row]], names: Sequence[tuple[str, str, float | None]]) -> list[Row]:
    """Rows of ``build()``, or one "failed: ..." row per (name, unit, goal) when it raises.

    One broken section (say the GPU path on an unusual driver) must not take the other rows of
    its file down with it; ``run_all`` catches whole modules, this catches sections.
    """
    try:
        return build()
    except Exception as err:  # noqa: BLE001 - a benchmark may fail in any way; the row says how
        traceback.print_exc(file=sys.stderr)
        return [Row(name, None, None, unit, goal, note=failure_note(err)) for name, unit, goal in names]


def failure_note(err: BaseException) -> str:
    """``failed: <Type>: <first line>``, at most 200 characters, always one line."""
    text = " ".join(str(err).split()) or "(no message)"
    return f"failed: {type(err).__name__}: {text}"[:200]


# --------------------------------------------------------------------------------------------
# timing


def interleaved_medians(candidates: dict[str, Callable[[], float]], repeats: int) -> dict[str, float]:
    """Median of the seconds each callable measures itself, calls interleaved round-robin ``repeats`` times.

    The callables time themselves because only they know which part is start-up (a loader's
    workers, a first call) and which is the steady state being compared; interleaving makes a
    burst of load from another job hit every candidate, not just the one that happened to run.
    """
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, measure in candidates.items():
            samples[name].append(measure())
    return {name: statistics.median(values) for name, values in samples.items()}


def timed(fn: Callable[[], object], device: torch.device | None = None) -> float:
    """Seconds one call of ``fn`` takes, device work included."""
    device = device or torch.device("cpu")
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def per_second(count: float, seconds: float) -> float | None:
    return count / seconds if seconds > 0 else None


# --------------------------------------------------------------------------------------------
# Lightning vs a plain loop


@contextlib.contextmanager
def quiet_lightning():
    """Silence Lightning's start-up chatter (GPU available, few workers, ...) that would bury the table."""
    loggers = [logging.getLogger(name) for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


class PlainStep:
    """One step of a plain PyTorch loop: zero_grad, forward (under autocast if asked), backward, optimizer step.

    The reference Lightning's automatic optimization is compared against: its own deep copy of
    the module (same starting weights), the same optimizer factory, no hooks and no logging.
    """

    def __init__(
        self,
        module: torch.nn.Module,
        loss_fn: Callable[[torch.nn.Module, dict], Tensor],
        make_optimizer: Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer],
        device: torch.device,
        autocast_dtype: torch.dtype | None = None,
    ) -> None:
        self.model = copy.deepcopy(module).to(device).train()
        self.optimizer = make_optimizer(p for p in self.model.parameters() if p.requires_grad)
        self.loss_fn, self.device, self.autocast_dtype = loss_fn, device, autocast_dtype

    def __call__(self, batch: dict) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
            loss = self.loss_fn(self.model, batch)
        loss.backward()
        self.optimizer.step()


class LockstepTimer(Callback):
    """Times Lightning's training steps and, interleaved with them, the plain loop's steps on the same batches.

    After every Lightning step, ``on_train_batch_end`` runs one ``PlainStep`` on that step's batch
    and times it. So the two paths alternate step by step and a drift in the load that other jobs
    put on a shared machine hits both alike (it cannot undo jitter within a step: on a loaded
    2-core box single steps still vary by ±15%).

    A Lightning step lasts from its ``on_train_batch_start`` to the next one, minus the plain step
    run in between: it covers everything the loop does per step (fetching the batch, hooks,
    ``self.log``, the optimizer closure). Trainer start-up happens before step 0 and is never
    timed; the first ``warmup`` steps of both paths (allocator, autograd first calls) are dropped,
    and so is Lightning's last step, which has no next start (its end is the epoch's end hooks).
    """

    def __init__(self, plain_step: PlainStep, warmup: int, device: torch.device) -> None:
        self.plain_step, self.warmup, self.device = plain_step, warmup, device
        self.lightning: list[float] = []
        self.plain: list[float] = []
        self._step_start: float | None = None
        self._plain_seconds = 0.0

    def _mark(self) -> float:
        synchronize(self.device)
        return time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        now = self._mark()
        if self._step_start is not None:
            self.lightning.append(now - self._step_start - self._plain_seconds)
        self._step_start = now if batch_idx >= self.warmup else None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        start = self._mark()
        self.plain_step(batch)
        end = self._mark()
        self._plain_seconds = end - start
        if batch_idx >= self.warmup:
            self.plain.append(end - start)


def lockstep_step_seconds(
    module, plain_step: PlainStep, batches: InMemoryBatches, warmup: int, device: torch.device, precision: str = "32-true"
) -> tuple[list[float], list[float]]:
    """Per-step seconds of ``Trainer.fit`` over ``batches`` and of ``plain_step`` interleaved with it (see ``LockstepTimer``).

    ``module`` is deep-copied, so every call starts Lightning from the same weights as the plain
    copy, each with a fresh optimizer.
    """
    timer = LockstepTimer(plain_step, warmup, device)
    with quiet_lightning():
        trainer = Trainer(
            accelerator=device.type,
            devices=1,
            precision=precision,
            max_steps=len(batches),
            max_epochs=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            limit_val_batches=0,
            callbacks=[timer],
        )
        trainer.fit(copy.deepcopy(module), train_dataloaders=batches)
    expected = (len(batches) - warmup - 1, len(batches) - warmup)
    if (len(timer.lightning), len(timer.plain)) != expected:
        raise RuntimeError(f"timed {len(timer.lightning)} Lightning and {len(timer.plain)} plain steps, expected {expected}")
    return timer.lightning, timer.plain


def precision_for(device: torch.device) -> tuple[str, torch.dtype | None]:
    """Lightning precision and the matching plain-loop autocast dtype: bf16-mixed on a GPU, fp32 on CPU."""
    return ("bf16-mixed", torch.bfloat16) if device.type == "cuda" else ("32-true", None)


class InMemoryBatches:
    """Prepared batches as one iterable: a plain list would be taken by Lightning for a list of dataloaders."""

    def __init__(self, batches: list[dict[str, Tensor]]) -> None:
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def cycled_batches(data: dict[str, Tensor], batch_size: int, count: int, device: torch.device) -> InMemoryBatches:
    """``count`` batches of ``batch_size`` rows, walking through ``data`` (wrapping around), already on ``device``.

    Materialized up front so that neither path pays for data loading inside the timed window.
    """
    rows = next(iter(data.values())).shape[0]
    batches = []
    for i in range(count):
        index = torch.arange(i * batch_size, (i + 1) * batch_size) % rows
        batches.append({key: value[index].to(device) for key, value in data.items()})
    return InMemoryBatches(batches)


# --------------------------------------------------------------------------------------------
# data shared by several benchmarks


@functools.lru_cache(maxsize=2)
def digits_datamodule(batch_size: int = 128):
    """The digits ``HFImageDataModule`` after setup (embedded data: no network, no disk cache)."""
    from datamodules import HFImageDataModule

    datamodule = HFImageDataModule(path="sklearn-digits", image_size=8, channels=1, batch_size=batch_size)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def digits_train_images() -> Tensor:
    """Every digits training image, decoded once: float32 (N, 1, 8, 8) in [-1, 1], exactly the loader's pixels."""
    return digits_datamodule().images_uint8("train").float().div_(127.5).sub_(1.0)
