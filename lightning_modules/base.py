"""What every LightningModule of the project shares: optimizer/scheduler injection (C3)."""
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable


class InjectedOptimizers(LightningModule):
    """Builds the optimizer (and optional per-step scheduler) from callables LightningCLI fills."""

    def __init__(self, optimizer: OptimizerCallable, scheduler: LRSchedulerCallable | None = None):
        super().__init__()
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(p for p in self.parameters() if p.requires_grad)
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer), "interval": "step"}}
