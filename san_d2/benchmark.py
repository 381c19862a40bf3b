"""Inference and training-step benchmarks of SAN.

    python -m san_d2.benchmark --config-file configs/san_clip_vit_res4_coco.yaml \\
        [--device cpu|cuda] [--dtype fp32|bf16|fp16] [--size 640] [--vocab 171] [--runs 5] \\
        [--threads 2] [--json out.json] [--train --batch-size 4 --crop 640]

Builds the model from the config (random weights unless ``--weights``; no download), warms
up (the first call, which encodes the vocabulary's prompts, is timed separately), then times
whole ``model([input])`` calls, post-processing included, and reports the median and range of
seconds per image, images per second, peak memory (RSS on CPU, CUDA max allocated on GPU) and
the time spent in each stage (CLIP features, side adapter, recognition head, text
classifier, the rest = pre/post-processing). ``--train`` times optimizer steps instead.
"""
import argparse
import contextlib
import json
import resource
import statistics
import sys
import time
from collections import defaultdict
from typing import Dict, List

import torch
from detectron2.modeling import build_model
from tabulate import tabulate

from .config import get_san_cfg
from .data import load_labelset

__all__ = ["benchmark_inference", "benchmark_training", "main"]

STAGES = {
    "CLIP features": "clip_visual_extractor",
    "side adapter": "side_adapter_network",
    "recognition head": "clip_rec_head",
    "text classifier": "ov_classifier",
}
DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StageTimer:
    """Accumulates wall time spent in named sub-modules through forward hooks."""

    def __init__(self, model: torch.nn.Module, device: torch.device):
        self.device = device
        self.totals: Dict[str, float] = defaultdict(float)
        self._starts: Dict[str, float] = {}
        self._handles = []
        for stage, attribute in STAGES.items():
            module = getattr(model, attribute)
            self._handles.append(module.register_forward_pre_hook(self._pre(stage)))
            self._handles.append(module.register_forward_hook(self._post(stage)))

    def _pre(self, stage):
        def hook(module, args):
            _sync(self.device)
            self._starts[stage] = time.perf_counter()
        return hook

    def _post(self, stage):
        def hook(module, args, output):
            _sync(self.device)
            self.totals[stage] += time.perf_counter() - self._starts.pop(stage)
        return hook

    def reset(self) -> None:
        self.totals.clear()

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def _vocabulary(size: int) -> List[str]:
    names = list(load_labelset("coco_stuff_171")) + [n for n in load_labelset("ade20k_847")
                                                       if n not in load_labelset("coco_stuff_171")]
    if size > len(names):
        raise ValueError(f"--vocab {size}: at most {len(names)} distinct class names available.")
    return names[:size]


def _autocast(device: torch.device, dtype_name: str):
    dtype = DTYPES[dtype_name]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _peak_memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def benchmark_inference(model, *, size: int, vocab: int, runs: int, dtype: str) -> Dict:
    """Times ``runs`` calls on one size x size image; returns a dict of the measurements."""
    device = model.device
    image = torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    inputs = [{"image": image, "vocabulary": _vocabulary(vocab)}]
    timer = StageTimer(model, device)
    with torch.inference_mode(), _autocast(device, dtype):
        _sync(device)
        start = time.perf_counter()
        model(inputs)
        _sync(device)
        first_call = time.perf_counter() - start
        seconds, stages = [], defaultdict(list)
        for _ in range(runs):
            timer.reset()
            start = time.perf_counter()
            model(inputs)
            _sync(device)
            seconds.append(time.perf_counter() - start)
            for stage in STAGES:
                stages[stage].append(timer.totals[stage])
    timer.remove()
    median = statistics.median(seconds)
    breakdown = {stage: statistics.median(values) for stage, values in stages.items()}
    breakdown["pre/post-processing"] = median - sum(breakdown.values())
    return {"seconds_per_image_median": median, "seconds_min": min(seconds),
            "seconds_max": max(seconds), "images_per_second": 1.0 / median,
            "first_call_seconds": first_call, "peak_memory_gb": _peak_memory_gb(device),
            "stages_seconds": breakdown, "runs": runs}


def benchmark_training(model, cfg, *, batch_size: int, crop: int, runs: int, dtype: str) -> Dict:
    """Times optimizer steps on random batch_size x crop x crop images with random labels."""
    device = model.device
    num_classes = cfg.MODEL.SAN.NUM_CLASSES
    generator = torch.Generator().manual_seed(0)
    vocabulary = _vocabulary(num_classes)
    batch = [{"image": torch.randint(0, 256, (3, crop, crop), dtype=torch.uint8, generator=generator),
              "sem_seg": torch.randint(0, num_classes, (crop // 32, crop // 32), generator=generator)
              .repeat_interleave(32, 0).repeat_interleave(32, 1),
              "vocabulary": vocabulary} for _ in range(batch_size)]
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == "fp16")
    seconds = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for step in range(runs + 1):  # the first step also encodes the prompts: not timed
        _sync(device)
        start = time.perf_counter()
        with _autocast(device, dtype):
            loss = sum(model(batch).values())
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        _sync(device)
        if step:
            seconds.append(time.perf_counter() - start)
    median = statistics.median(seconds)
    return {"seconds_per_iteration_median": median, "seconds_min": min(seconds),
            "seconds_max": max(seconds), "batch_size": batch_size, "crop": crop,
            "peak_memory_gb": _peak_memory_gb(device), "runs": runs}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--weights", default="", help="checkpoint (default: random weights)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--size", type=int, default=640)
    parser.add_argument("--vocab", type=int, default=171)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--train", action="store_true", help="time training steps instead")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--crop", type=int, default=640)
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[])
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available here.")
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = get_san_cfg(args.config_file, ["MODEL.DEVICE", args.device, "MODEL.SAN.CLIP_PRETRAINED_NAME",
                                         "", "MODEL.WEIGHTS", args.weights, *args.opts])
    torch.manual_seed(0)
    model = build_model(cfg)
    if args.weights:
        from .checkpoint import SANCheckpointer

        SANCheckpointer(model).load(args.weights)
    if args.train:
        results = benchmark_training(model, cfg, batch_size=args.batch_size, crop=args.crop,
                                     runs=args.runs, dtype=args.dtype)
        rows = [[k, f"{v:.4g}" if isinstance(v, float) else v] for k, v in results.items()]
    else:
        results = benchmark_inference(model.eval(), size=args.size, vocab=args.vocab,
                                      runs=args.runs, dtype=args.dtype)
        rows = [[k, f"{v:.4g}" if isinstance(v, float) else v] for k, v in results.items()
                if k != "stages_seconds"]
        rows += [[f"  {stage}", f"{value:.4g} s"] for stage, value in results["stages_seconds"].items()]
    results.update(config=args.config_file, device=str(model.device), dtype=args.dtype,
                   size=args.size, vocab=args.vocab, threads=torch.get_num_threads(),
                   torch=torch.__version__,
                   gpu=torch.cuda.get_device_name() if model.device.type == "cuda" else None)
    print(tabulate(rows, headers=["measure", "value"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
