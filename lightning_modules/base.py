"""What the trainable LightningModules share: optimizer/scheduler injection.

LightningCLI's ``OptimizerCallable`` / ``LRSchedulerCallable``: the config names the class, the module builds it.
"""

from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable


class InjectedOptimizers:
    """Mixin: builds the optimizer (and an optional per-step scheduler) from callables LightningCLI fills."""

    optimizer_factory: OptimizerCallable
    scheduler_factory: LRSchedulerCallable | None = None

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(p for p in self.parameters() if p.requires_grad)
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer), "interval": "step"}}
