"""What the distributed and resume tests share: a dataset, the run's options, and the main
function that every process of a run executes (importable, so that spawned processes find it)."""
import contextlib
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np
import pytest
import torch
from PIL import Image

from .conftest import TINY_CONFIG

STRIPE_CLASSES = ("left", "middle", "right", "other")


def write_stripe_dataset(root: Path, *, num_train: int, num_val: int, size: int = 72) -> Path:
    """Pictures of three vertical stripes of three of the four classes, random widths and
    colours: after any 64x64 crop and flip every picture still shows exactly 3 classes, so
    every process's cross-entropy weights sum to the same (see test_distributed)."""
    rng = np.random.default_rng(0)
    for split, count in (("train", num_train), ("val", num_val)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            first, second = int(rng.integers(20, 28)), int(rng.integers(44, 52))
            classes = rng.permutation(4)[:3]
            label = np.empty((size, size), np.uint8)
            label[:, :first], label[:, first:second], label[:, second:] = classes
            colours = rng.integers(0, 256, (4, 3))
            image = colours[label] + rng.normal(0, 12, (size, size, 3))
            Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(
                root / "images" / split / f"{i:03d}.jpg", quality=95)
            Image.fromarray(label).save(root / "labels" / split / f"{i:03d}.png")
    return root


def register_stripe_dataset(root: str, prefix: str) -> None:
    from san_d2.data.datasets.sem_seg import register_sem_seg

    for split in ("train", "val"):
        register_sem_seg(f"{prefix}_{split}", os.path.join(root, "images", split),
                         os.path.join(root, "labels", split), stuff_classes=STRIPE_CLASSES,
                         ignore_label=255, prepare_hint="tests.training_helpers")


def train_options(output_dir: Path, prefix: str, *, iters: int, batch: int = 4,
                  checkpoint_period: int = 2, eval_period: int = 0) -> List[str]:
    """The tiny SAN with the paper's recipe (AdamW, poly LR, full-model clipping that is
    active, SSD colour augmentation, random crops and flips), 64x64 crops, no loader workers."""
    return [
        "OUTPUT_DIR", str(output_dir), "MODEL.DEVICE", "cpu", "SEED", "7",
        "DATASETS.TRAIN", f"('{prefix}_train',)", "DATASETS.TEST", f"('{prefix}_val',)",
        "DATALOADER.NUM_WORKERS", "0", "SOLVER.IMS_PER_BATCH", str(batch),
        "SOLVER.BASE_LR", "1e-3", "SOLVER.MAX_ITER", str(iters),
        "SOLVER.CHECKPOINT_PERIOD", str(checkpoint_period), "TEST.EVAL_PERIOD", str(eval_period),
        "SOLVER.LR_SCHEDULER_NAME", "WarmupPolyLR", "SOLVER.WARMUP_ITERS", "0",
        "SOLVER.CLIP_GRADIENTS.ENABLED", "True", "SOLVER.CLIP_GRADIENTS.CLIP_TYPE", "full_model",
        "SOLVER.CLIP_GRADIENTS.CLIP_VALUE", "0.01", "MODEL.SAN.TRAIN_NUM_POINTS", "256",
        "INPUT.MIN_SIZE_TRAIN", "(72,)", "INPUT.MAX_SIZE_TRAIN", "144",
        "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "128", "INPUT.CROP.ENABLED", "True",
        "INPUT.CROP.TYPE", "absolute", "INPUT.CROP.SIZE", "(64, 64)",
        "INPUT.SIZE_DIVISIBILITY", "64", "INPUT.COLOR_AUG_SSD", "True",
    ]


def train_net_command(output: Path, datasets: Path, *, flags: Sequence[str] = (),
                      opts: Sequence[str] = (), iters: int, console: Path,
                      entry: Sequence[str] = ("-m", "san_d2_tools.train_net")) -> Dict:
    """Popen arguments of a `san-train` run of the tiny SAN on the synthetic scenes in
    ``datasets`` (see :func:`san_d2.data.synthetic.generate_synthetic_dataset`), one CPU thread
    per process, stdout and stderr appended to ``console``."""
    command = [sys.executable, *entry, "--config-file", str(TINY_CONFIG), *flags,
               "OUTPUT_DIR", str(output), "MODEL.DEVICE", "cpu", "MODEL.SAN.NUM_CLASSES", "6",
               "DATASETS.TRAIN", "('san_synthetic_train',)", "DATASETS.TEST", "()",
               "DATALOADER.NUM_WORKERS", "0", "SOLVER.IMS_PER_BATCH", "4",
               "SOLVER.MAX_ITER", str(iters), "INPUT.MIN_SIZE_TRAIN", "(64,)",
               "INPUT.CROP.ENABLED", "False", "INPUT.SIZE_DIVISIBILITY", "64", "SEED", "1", *opts]
    env = {**os.environ, "DETECTRON2_DATASETS": str(datasets), "OMP_NUM_THREADS": "1"}
    return {"args": command, "cwd": console.parent, "env": env, "text": True,
            "stdout": open(console, "a"), "stderr": subprocess.STDOUT}


def train_net_args(*argv: str):
    from san_d2_tools.train_net import parse_args

    return parse_args(["--config-file", str(TINY_CONFIG), *argv])[1]


# ------------------------------------------------------------------ per-image random draws

def _content_seed(*tensors: torch.Tensor) -> int:
    digest = hashlib.sha256(b"".join(t.detach().cpu().numpy().tobytes() for t in tensors))
    return int.from_bytes(digest.digest()[:8], "little")


@contextlib.contextmanager
def per_image_random_points() -> Iterator[None]:
    """The matcher's and the mask losses' random points drawn per image, from a generator
    seeded by that image's ground truth, instead of from the process's generator in batch
    order: one process with 4 images then draws what 2 processes with 2 images each draw."""
    from san_d2.modeling.criterion import SetCriterion
    from san_d2.modeling.matcher import HungarianMatcher

    cost, loss_masks = HungarianMatcher._cost, SetCriterion.loss_masks

    def seeded_cost(self, logits, masks, labels, target_masks):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_content_seed(labels, target_masks))
            return cost(self, logits, masks, labels, target_masks)

    def per_image_loss_masks(self, pred_masks, targets, indices, num_masks):
        total: Dict[str, torch.Tensor] = {}
        for b, target in enumerate(targets):  # the losses are sums over masks / num_masks
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(_content_seed(target["labels"], target["masks"]))
                losses = loss_masks(self, pred_masks[b:b + 1], [target], [indices[b]], num_masks)
            total = {k: total[k] + v if k in total else v for k, v in losses.items()}
        return total

    HungarianMatcher._cost, SetCriterion.loss_masks = seeded_cost, per_image_loss_masks
    try:
        yield
    finally:
        HungarianMatcher._cost, SetCriterion.loss_masks = cost, loss_masks


# ------------------------------------------------------------------ what each process runs

class StopAfter(Exception):
    """Raised by the interrupting hook (a killed job, cleanly)."""


def _stop_after(iteration: int):
    from detectron2.engine import HookBase
    from detectron2.utils import comm

    class Stop(HookBase):
        def after_step(self):
            if self.trainer.iter == iteration:
                comm.synchronize()  # rank 0 has written its checkpoint
                raise StopAfter(f"stopped after iteration {iteration}")

    return Stop()


def _record_writes(output_dir: str, record: str) -> None:
    """Appends to ``record`` every file this process creates, writes, renames or removes in
    ``output_dir`` (Python's audit events), one JSON line each."""
    folder = os.path.realpath(output_dir)

    def audit(event, args):
        if event == "open" and args[0] is not None and not isinstance(args[0], int):
            path, mode, flags = args
            writes = (any(c in mode for c in "wax+") if isinstance(mode, str)
                      else bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)))
        elif event in ("os.rename", "os.replace", "os.remove"):
            path, writes = args[0], True
        else:
            return
        path = os.fspath(path) if not isinstance(path, bytes) else path.decode()
        if writes and os.path.realpath(path).startswith(folder + os.sep) and path != record:
            with open(record, "a") as f:
                f.write(json.dumps([event, os.path.relpath(os.path.realpath(path), folder)]) + "\n")

    sys.addaudithook(audit)


def process_main(args, options: Dict) -> None:
    """One process of a test run: registers the dataset, applies the options, runs train_net.

    options: ``dataset`` ((root, prefix)), ``per_image_points`` (bool), ``stop_after``
    (iteration), ``nan_on_rank`` ((rank, iteration)), ``record_writes`` (a file for the writes
    of the processes other than rank 0), each optional.
    """
    from detectron2.utils import comm

    from san_d2_tools.train_net import main

    register_stripe_dataset(*options["dataset"])
    if options.get("record_writes") and comm.get_rank() != 0:
        _record_writes(_opt(args, "OUTPUT_DIR"), options["record_writes"])
    with pytest.MonkeyPatch.context() as patch:
        if options.get("stop_after") is not None:
            _add_stop(patch, options["stop_after"])
        if options.get("nan_on_rank") is not None:
            _poison_losses(patch, *options["nan_on_rank"])
        with contextlib.ExitStack() as stack:
            if options.get("per_image_points"):
                stack.enter_context(per_image_random_points())
            main(args)


def _add_stop(patch: pytest.MonkeyPatch, iteration: int) -> None:
    from san_d2 import Trainer

    build_hooks = Trainer.build_hooks
    patch.setattr(Trainer, "build_hooks", lambda self: build_hooks(self) + [_stop_after(iteration)])


def _poison_losses(patch: pytest.MonkeyPatch, rank: int, iteration: int) -> None:
    """Makes loss_dice NaN on process ``rank`` at ``iteration``."""
    from detectron2.utils import comm
    from detectron2.utils.events import get_event_storage

    from san_d2.modeling.san import SAN

    forward = SAN.forward

    def poisoned(self, batched_inputs):
        losses = forward(self, batched_inputs)
        if self.training and comm.get_rank() == rank and get_event_storage().iter == iteration:
            losses["loss_dice"] = losses["loss_dice"] * float("nan")
        return losses

    patch.setattr(SAN, "forward", poisoned)


def _opt(args, key: str) -> Optional[str]:
    opts = list(args.opts)
    return opts[opts.index(key) + 1] if key in opts else None


def model_weights(path: Path) -> Dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=False)["model"]


def max_abs_difference(a: Dict[str, torch.Tensor], b: Dict[str, torch.Tensor]) -> float:
    """Over all entries of all tensors; equal entries count 0 (also the -inf of a mask)."""
    assert a.keys() == b.keys()
    return max(float(torch.where(a[k] == b[k], 0.0, (a[k].double() - b[k].double()).abs()).max())
               for k in a if a[k].numel())
