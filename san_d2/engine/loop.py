"""The training step on every process: its random draws and its check of the losses."""
import math
from typing import Mapping

import torch
from detectron2.engine import AMPTrainer, HookBase, SimpleTrainer
from detectron2.utils import comm

from .stream import STEP, derive_seed, seed_global_rngs

__all__ = ["StepSeeds", "SANSimpleTrainer", "SANAMPTrainer", "check_losses_are_finite"]


class StepSeeds(HookBase):
    """Before each step, seeds Python's, numpy's and torch's global generators from (run seed,
    iteration, rank): the model's own draws (the matcher's and the losses' random points) are
    then the same in a resumed run as in the uninterrupted one."""

    def before_step(self):
        seed_global_rngs(derive_seed(self.trainer.seed, STEP, self.trainer.iter, comm.get_rank()))


def check_losses_are_finite(loss_dict: Mapping[str, torch.Tensor], *, iteration: int) -> None:
    """Raises FloatingPointError on every process when a loss is not finite on any of them.

    detectron2 checks on the main process only, so the others ran on into the next collective
    operation and waited there for one that had stopped.
    """
    total = float(sum(v.detach().double().sum() for v in loss_dict.values()))  # one sync
    every_rank = comm.all_gather(total)
    bad = [rank for rank, value in enumerate(every_rank) if not math.isfinite(value)]
    if bad:  # every process is here: the losses themselves are gathered for the message
        losses = comm.all_gather({k: float(v.detach().cpu().item()) for k, v in loss_dict.items()})
        where = f" on rank(s) {bad} of {len(every_rank)}" if len(every_rank) > 1 else ""
        raise FloatingPointError(f"Loss became infinite or NaN at iteration={iteration}{where}: "
                                 f"loss_dict = {losses[bad[0]]}")


class _CheckedLosses:
    """Checks the losses on every process before detectron2 logs them (and steps)."""

    def _write_metrics(self, loss_dict: Mapping[str, torch.Tensor], data_time: float,
                       prefix: str = "") -> None:
        check_losses_are_finite(loss_dict, iteration=self.iter)
        super()._write_metrics(loss_dict, data_time, prefix)


class SANSimpleTrainer(_CheckedLosses, SimpleTrainer):
    """detectron2's SimpleTrainer; a non-finite loss stops every process."""


class SANAMPTrainer(_CheckedLosses, AMPTrainer):
    """detectron2's AMPTrainer (CUDA); a non-finite loss stops every process."""

