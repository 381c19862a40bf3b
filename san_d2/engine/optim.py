"""The paper's optimiser recipe: per-parameter groups and full-model gradient clipping."""
import itertools
import logging
from typing import Any, Dict, List, Type

import torch
from detectron2.solver.build import maybe_add_gradient_clipping
from tabulate import tabulate
from torch import nn

logger = logging.getLogger(__name__)

__all__ = ["build_param_groups", "build_optimizer", "with_full_model_clipping"]

NORM_MODULES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.GroupNorm,
                nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.LayerNorm,
                nn.LocalResponseNorm)


def build_param_groups(model: nn.Module, *, base_lr: float, weight_decay: float,
                       weight_decay_norm: float, weight_decay_embed: float,
                       embed_fragments: List[str], backbone_multiplier: float,
                       clip_multiplier: float) -> List[Dict[str, Any]]:
    """One group per trainable parameter with its learning rate and weight decay.

    ``side_adapter_network`` parameters get ``backbone_multiplier`` x LR, parameters under a
    module whose name contains "clip" get ``clip_multiplier`` x LR; parameters whose own name
    contains an ``embed_fragments`` entry get ``weight_decay_embed``, then those of torch's
    normalisation layers ``weight_decay_norm`` and of ``nn.Embedding`` ``weight_decay_embed``,
    as in the paper's code.
    """
    groups, seen = [], set()
    for module_name, module in model.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or param in seen:
                continue
            seen.add(param)
            full_name = f"{module_name}.{param_name}" if module_name else param_name
            lr, decay = base_lr, weight_decay
            if "side_adapter_network" in module_name:
                lr *= backbone_multiplier
            if "clip" in module_name:
                lr *= clip_multiplier
            # The paper's order: a norm module's parameters take WEIGHT_DECAY_NORM even when
            # their names contain an embedding fragment.
            if any(fragment in param_name for fragment in embed_fragments):
                decay = weight_decay_embed
            if isinstance(module, NORM_MODULES):
                decay = weight_decay_norm
            if isinstance(module, nn.Embedding):
                decay = weight_decay_embed
            groups.append({"params": [param], "lr": lr, "weight_decay": decay, "name": full_name})
    return groups


def with_full_model_clipping(optimizer_type: Type[torch.optim.Optimizer], max_norm: float,
                             norm_type: float) -> Type[torch.optim.Optimizer]:
    """An optimizer class that clips the global gradient norm of all its parameters first."""

    class FullModelGradientClipping(optimizer_type):
        def step(self, closure=None):
            params = itertools.chain(*[group["params"] for group in self.param_groups])
            torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type)
            return super().step(closure=closure)

    FullModelGradientClipping.__name__ = f"{optimizer_type.__name__}WithFullModelClipping"
    return FullModelGradientClipping


# SOLVER.OPTIMIZER -> (optimizer class, its extra arguments from SOLVER).
OPTIMIZERS = {
    "ADAMW": (torch.optim.AdamW, lambda solver: {}),
    "SGD": (torch.optim.SGD, lambda solver: {"momentum": solver.MOMENTUM,
                                             "nesterov": solver.NESTEROV}),
}


def build_optimizer(cfg, model: nn.Module) -> torch.optim.Optimizer:
    """AdamW or SGD over :func:`build_param_groups`, with the configured gradient clipping."""
    solver = cfg.SOLVER
    name = solver.OPTIMIZER.upper()
    if name not in OPTIMIZERS:
        raise ValueError(f"Unknown SOLVER.OPTIMIZER {solver.OPTIMIZER!r}: use ADAMW or SGD.")
    groups = build_param_groups(
        model, base_lr=solver.BASE_LR, weight_decay=solver.WEIGHT_DECAY,
        weight_decay_norm=solver.WEIGHT_DECAY_NORM, weight_decay_embed=solver.WEIGHT_DECAY_EMBED,
        embed_fragments=list(solver.WEIGHT_DECAY_EMBED_GROUP),
        backbone_multiplier=solver.BACKBONE_MULTIPLIER, clip_multiplier=solver.CLIP_MULTIPLIER)
    _log_groups(groups)
    optimizer_type, extra_arguments = OPTIMIZERS[name]
    clip = solver.CLIP_GRADIENTS
    if clip.ENABLED and clip.CLIP_TYPE == "full_model":
        optimizer_type = with_full_model_clipping(optimizer_type, clip.CLIP_VALUE, clip.NORM_TYPE)
    else:
        optimizer_type = maybe_add_gradient_clipping(cfg, optimizer_type)
    return optimizer_type(groups, lr=solver.BASE_LR, **extra_arguments(solver))


def _log_groups(groups: List[Dict[str, Any]]) -> None:
    summary: Dict[tuple, List[int]] = {}
    for group in groups:
        top = group["name"].split(".")[0]
        key = (top, group["lr"], group["weight_decay"])
        summary.setdefault(key, [0, 0])
        summary[key][0] += 1
        summary[key][1] += group["params"][0].numel()
    rows = [(*key, *value) for key, value in sorted(summary.items())]
    total = sum(row[-1] for row in rows)
    logger.info("Optimiser parameter groups:\n" + tabulate(
        rows, headers=["module", "lr", "weight decay", "tensors", "parameters"]) +
        f"\nTrainable parameters: {total:,}")
