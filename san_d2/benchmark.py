"""Inference and training-step benchmarks of SAN.

    python -m san_d2.benchmark --config-file configs/san_clip_vit_res4_coco.yaml \\
        [--device cpu|cuda] [--dtype fp32|bf16|fp16] [--compile] [--size 640] [--vocab 171] \\
        [--runs 5] [--threads 2] [--json out.json] [--train --batch-size 4 --crop 640]

Builds the model from the config (random weights unless ``--weights``; no download), warms
up (the first call, which encodes the vocabulary's prompts, is timed separately), then times
whole ``model([input])`` calls, post-processing included, and reports the median and range of
seconds per image, images per second, peak memory (RSS on CPU, CUDA max allocated on GPU) and
the time spent in each stage (CLIP features, side adapter, recognition head, text
classifier, the rest = pre/post-processing). With ``--dtype bf16|fp16`` or ``--compile`` it
also reports how far the outputs are from plain float32. ``--train`` times optimizer steps.
"""
import argparse
import contextlib
import datetime
import json
import os
import platform
import resource
import statistics
import sys
import time
from collections import defaultdict
from typing import Dict, List

import torch
from detectron2.modeling import build_model
from tabulate import tabulate
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from .checkpoint import SANCheckpointer
from .config import get_san_cfg
from .data import load_labelset
from .modeling.san import AUTOCAST_DTYPES, autocast_context

__all__ = ["benchmark_inference", "benchmark_training", "main"]

STAGES = {
    "CLIP features": "clip_visual_extractor",
    "side adapter": "side_adapter_network",
    "recognition head": "clip_rec_head",
    "text classifier": "ov_classifier",
}


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
    coco = load_labelset("coco_stuff_171")
    seen = set(coco)
    names = list(coco) + [n for n in load_labelset("ade20k_847") if n not in seen]
    if size > len(names):
        raise ValueError(f"--vocab {size}: at most {len(names)} distinct class names available.")
    return names[:size]


def _peak_memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def _benchmark_inputs(size: int, vocab: int) -> List[Dict]:
    generator = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=generator)
    return [{"image": image, "vocabulary": _vocabulary(vocab)}]


def benchmark_inference(model, *, size: int, vocab: int, runs: int) -> Dict:
    """Times ``runs`` calls on one size x size image after a separately timed first call.

    The model runs as configured (``MODEL.SAN.INFERENCE_DTYPE``); returns a dict of the
    measurements, with the time per stage and how many prompts the first call encoded (0 when
    the vocabulary's text embeddings were persisted by an earlier run).
    """
    device = model.device
    inputs = _benchmark_inputs(size, vocab)
    timer = StageTimer(model, device)
    prompts_before = model.ov_classifier.num_prompts_encoded
    with torch.inference_mode():
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
            "first_call_seconds": first_call,
            "first_call_prompts_encoded": model.ov_classifier.num_prompts_encoded - prompts_before,
            "peak_memory_gb": _peak_memory_gb(device), "stages_seconds": breakdown, "runs": runs}


def segment(model, *, size: int, vocab: int) -> torch.Tensor:
    """The model's ``sem_seg`` for the benchmark input."""
    with torch.inference_mode():
        return model(_benchmark_inputs(size, vocab))[0]["sem_seg"]


def deviation(fast: torch.Tensor, exact: torch.Tensor) -> Dict:
    """Max abs difference of two (K, H, W) score maps and the share of pixels whose arg-max
    class agrees."""
    return {"max_abs_diff_vs_fp32": (fast - exact).abs().max().item(),
            "argmax_agreement_vs_fp32": (fast.argmax(0) == exact.argmax(0)).float().mean().item()}


@contextlib.contextmanager
def _decomposed_attention():
    """Attention as plain matrix products (no fused kernels), so that every product is seen."""
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with sdpa_kernel(SDPBackend.MATH):
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)


def count_flops(model, *, size: int, vocab: int) -> float:
    """FLOPs (2 per multiply-add) of the matrix products, convolutions and attention of one
    inference call (text embeddings already cached); element-wise work is not counted."""
    inputs = _benchmark_inputs(size, vocab)
    with torch.inference_mode(), _decomposed_attention():
        model(inputs)  # encodes the vocabulary if needed, outside the count
        with FlopCounterMode(display=False) as counter:
            model(inputs)
    return float(counter.get_total_flops())


def matmul_flops_per_second(device: torch.device, dtype: torch.dtype = torch.float32,
                            n: int = 2048, repeats: int = 5) -> float:
    """The device's measured rate on large square matrix products (best of ``repeats``)."""
    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


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
        with autocast_context(device.type, dtype):
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--weights", default="", help="checkpoint (default: random weights)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=sorted(AUTOCAST_DTYPES), default="fp32",
                        help="inference: MODEL.SAN.INFERENCE_DTYPE; training: autocast (AMP)")
    parser.add_argument("--compile", action="store_true",
                        help="inference: MODEL.SAN.COMPILE (torch.compile CLIP, side adapter)")
    parser.add_argument("--size", type=int, default=640, help="inference image side")
    parser.add_argument("--vocab", type=int, default=171, help="inference vocabulary size")
    parser.add_argument("--runs", type=int, default=5, help="timed calls or steps")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--train", action="store_true", help="time training steps instead")
    parser.add_argument("--batch-size", type=int, default=4, help="training batch size")
    parser.add_argument("--crop", type=int, default=640, help="training crop side")
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[],
                        help="config overrides, KEY VALUE ...")
    return parser


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _table(results: Dict) -> str:
    rows = [[k, f"{v:.4g}" if isinstance(v, float) else v] for k, v in results.items()
            if k != "stages_seconds"]
    for stage, value in results.get("stages_seconds", {}).items():
        rows.append([f"  {stage}", f"{value:.4g} s"])
    return tabulate(rows, headers=["measure", "value"])


def _build(cfg, weights: str):
    torch.manual_seed(0)  # the same random weights for every model built from one config
    model = build_model(cfg)
    if weights:
        SANCheckpointer(model).load(weights)
    return model


def _inference_report(cfg, args) -> Dict:
    """Timings, the deviation of a fast mode from plain float32, and the FLOP floor."""
    model = _build(cfg, args.weights).eval()
    results = benchmark_inference(model, size=args.size, vocab=args.vocab, runs=args.runs)
    plain = model
    if args.dtype != "fp32" or args.compile:
        fast = segment(model, size=args.size, vocab=args.vocab)
        del model
        plain_cfg = cfg.clone()
        plain_cfg.merge_from_list(["MODEL.SAN.INFERENCE_DTYPE", "fp32", "MODEL.SAN.COMPILE", False])
        plain = _build(plain_cfg, args.weights).eval()
        results.update(deviation(fast, segment(plain, size=args.size, vocab=args.vocab)))
    flops = count_flops(plain, size=args.size, vocab=args.vocab)
    rate = matmul_flops_per_second(plain.device, AUTOCAST_DTYPES[args.dtype] or torch.float32)
    results.update(gflops_per_image=flops / 1e9, device_matmul_tflops=rate / 1e12,
                   floor_seconds_per_image=flops / rate)
    return results


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available here.")
    if args.threads:
        torch.set_num_threads(args.threads)
    mode_opts = [] if args.train else ["MODEL.SAN.INFERENCE_DTYPE", args.dtype,
                                       "MODEL.SAN.COMPILE", args.compile]
    cfg = get_san_cfg(args.config_file, ["MODEL.DEVICE", args.device,
                                         "MODEL.SAN.CLIP_PRETRAINED_NAME", "", *mode_opts,
                                         *args.opts])
    if args.train:
        results = benchmark_training(_build(cfg, args.weights), cfg, batch_size=args.batch_size,
                                     crop=args.crop, runs=args.runs, dtype=args.dtype)
    else:
        results = _inference_report(cfg, args)
    results.update(config=args.config_file, device=cfg.MODEL.DEVICE, dtype=args.dtype,
                   compiled=args.compile, size=args.size, vocab=args.vocab,
                   threads=torch.get_num_threads(), torch=torch.__version__,
                   gpu=torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
                   cpu=_cpu_name(), cpu_count=os.cpu_count(),
                   date=datetime.date.today().isoformat())
    print(_table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
