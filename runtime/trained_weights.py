"""``validate``, ``test`` and ``predict`` measure or sample a trained model: with no checkpoint they would report
the numbers of random weights (a uniform nll, noise samples) as a result, exit code 0.

Whether a model needs training is what it is, not a list of classes: a model with trainable parameters
(``requires_grad``) gets its weights from ``fit``, so these commands need ``--ckpt_path``; a model
without any (the kernel γ-ARVM: its state is the training data, read in ``setup``) runs as it is.
Checked once the model is built and before the Trainer, so nothing is written.
"""

from __future__ import annotations

from torch import nn

from runtime.errors import BadInput
from runtime.resume import LIGHTNING_CKPT_KEYWORDS

MEASURING_SUBCOMMANDS = ("validate", "test", "predict")


def trainable_weights(model: nn.Module) -> int:
    """How many weights ``fit`` would set: the elements of the parameters that require a gradient."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def require_trained_weights(subcommand: str, model: nn.Module, class_path: str, ckpt_path: object) -> None:
    """Refuse ``validate``/``test``/``predict`` of a model with trainable weights unless ``--ckpt_path`` names a file.

    ``last``/``best``/``hpc`` name a checkpoint only to a Trainer that has fitted in the same process; in a new
    one Lightning warns and goes on with the random weights.
    """
    if subcommand not in MEASURING_SUBCOMMANDS or not (count := trainable_weights(model)):
        return
    untrained = f"its {count:,} trainable weights would be random (untrained)"
    if not ckpt_path:
        raise BadInput(f"{subcommand} of {class_path} needs --ckpt_path PATH.ckpt (a checkpoint of a fit): {untrained}")
    if str(ckpt_path) in LIGHTNING_CKPT_KEYWORDS:
        raise BadInput(
            f"{subcommand} of {class_path} needs --ckpt_path PATH.ckpt: --ckpt_path {ckpt_path} names no checkpoint"
            f" in a new process, and {untrained}"
        )
