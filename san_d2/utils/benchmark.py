"""Measuring SAN: inference time per stage, FLOPs and the floor they give, training steps.

The benchmark command (``san-benchmark``) is built from these functions.
"""
import contextlib
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from typing import Dict, List, Optional

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.modeling import build_model
from tabulate import tabulate
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from ..checkpoint import SANCheckpointer
from ..data import load_labelset
from ..modeling.san import AUTOCAST_DTYPES, autocast_context
from .op_account import format_op_account, op_account

__all__ = ["MAX_VOCABULARY", "STAGES", "StageTimer", "benchmark_inference", "benchmark_training", "segment",
           "deviation", "cpu_deviation", "count_flops", "matmul_flops_per_second", "build_benchmark_model",
           "inference_report", "onnxruntime_report", "environment", "format_results"]

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


def _benchmark_names() -> List[str]:
    """COCO-Stuff's 171 class names, then ADE-847's that are not among them."""
    coco = load_labelset("coco_stuff_171")
    seen = set(coco)
    return list(coco) + [n for n in load_labelset("ade20k_847") if n not in seen]


MAX_VOCABULARY = len(_benchmark_names())


def _vocabulary(size: int) -> List[str]:
    if not 1 <= size <= MAX_VOCABULARY:
        raise ValueError(f"A benchmark vocabulary has 1 to {MAX_VOCABULARY} classes, not {size}.")
    return _benchmark_names()[:size]


def _peak_memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def _benchmark_inputs(size: int, vocab: int, labels_only: bool = False,
                      batch: int = 1) -> List[Dict]:
    generator = torch.Generator().manual_seed(0)
    vocabulary = _vocabulary(vocab)
    return [{"image": torch.randint(0, 256, (3, size, size), dtype=torch.uint8,
                                    generator=generator),
             "vocabulary": vocabulary, "labels_only": labels_only} for _ in range(batch)]


def benchmark_inference(model, *, size: int, vocab: int, runs: int,
                        labels_only: bool = False, batch: int = 1) -> Dict:
    """Times ``runs`` calls on ``batch`` size x size images after a separately timed first
    call; ``labels_only`` asks for the arg-max labels instead of the scores (see ``SAN``).

    The model runs as configured (``MODEL.SAN.INFERENCE_DTYPE``); returns a dict of the
    times per image (a call's time over ``batch``), with the time per stage, and the whole
    first call's time, how many prompts it encoded (0 when the vocabulary's text embeddings
    were persisted by an earlier run) and the process's peak memory.
    """
    device = model.device
    inputs = _benchmark_inputs(size, vocab, labels_only, batch)
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
            seconds.append((time.perf_counter() - start) / batch)
            for stage in STAGES:
                stages[stage].append(timer.totals[stage] / batch)
    timer.remove()
    median = statistics.median(seconds)
    breakdown = {stage: statistics.median(values) for stage, values in stages.items()}
    breakdown["pre/post-processing"] = median - sum(breakdown.values())
    return {"seconds_per_image_median": median, "seconds_min": min(seconds),
            "seconds_max": max(seconds), "images_per_second": 1.0 / median, "batch_size": batch,
            "first_call_seconds": first_call,
            "first_call_prompts_encoded": model.ov_classifier.num_prompts_encoded - prompts_before,
            "peak_memory_gb": _peak_memory_gb(device), "stages_seconds": breakdown, "runs": runs,
            "labels_only": labels_only}


def segment(model, *, size: int, vocab: int) -> torch.Tensor:
    """The model's ``sem_seg`` for the benchmark input."""
    with torch.inference_mode():
        return model(_benchmark_inputs(size, vocab))[0]["sem_seg"]


def deviation(fast: torch.Tensor, exact: torch.Tensor, *, against: str = "fp32") -> Dict:
    """Max abs difference of two (K, H, W) score maps and the share of pixels whose arg-max
    class agrees, named ``..._vs_<against>``."""
    exact = exact.to(fast.device)
    return {f"max_abs_diff_vs_{against}": (fast - exact).abs().max().item(),
            f"argmax_agreement_vs_{against}":
                (fast.argmax(0) == exact.argmax(0)).float().mean().item()}


def _plain_cfg(cfg: CfgNode, *, device: Optional[str] = None,
               own_text_embeddings: bool = False) -> CfgNode:
    """``cfg`` in float32 and eager; on ``device`` if given; with ``own_text_embeddings``,
    encoding its prompts itself (no embeddings persisted by another run or device)."""
    plain = cfg.clone()
    plain.defrost()
    plain.merge_from_list(["MODEL.SAN.INFERENCE_DTYPE", "fp32", "MODEL.SAN.COMPILE", False])
    if device is not None:
        plain.MODEL.DEVICE = device
    if own_text_embeddings:
        plain.MODEL.SAN.TEXT_EMBEDDING_CACHE = ""
    return plain


def cpu_deviation(cfg: CfgNode, *, weights: str, size: int, vocab: int) -> Dict:
    """:func:`deviation` of the float32 scores of ``cfg``'s device from those of the same
    weights on the CPU, both with their own text embeddings (``..._vs_cpu``)."""
    scores = []
    for device in (cfg.MODEL.DEVICE, "cpu"):
        model = build_benchmark_model(_plain_cfg(cfg, device=device, own_text_embeddings=True),
                                      weights).eval()
        scores.append(segment(model, size=size, vocab=vocab))
        del model
    return deviation(*scores, against="cpu")


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




def build_benchmark_model(cfg, weights: str = ""):
    """The model of ``cfg`` with seeded random weights (the same for every build), or
    ``weights``."""
    torch.manual_seed(0)
    model = build_model(cfg)
    if weights:
        SANCheckpointer(model).load(weights)
    return model


def inference_report(cfg, *, weights: str, size: int, vocab: int, runs: int,
                     labels_only: bool = False, batch: int = 1, with_op_account: bool = False,
                     against_cpu: bool = False) -> Dict:
    """Timings of the model as configured, ``batch`` images per call; for a fast mode
    (``MODEL.SAN.INFERENCE_DTYPE`` other than fp32, or ``MODEL.SAN.COMPILE``) the deviation
    from a plain float32 model with the same weights; the FLOP floor (FLOPs per image over the
    measured matmul rate) with the median's and the fastest call's ratios to it;
    ``with_op_account``, the plain model's :func:`~san_d2.utils.op_account.op_account` (CPU)
    of one call of ``batch`` images; ``against_cpu``, :func:`cpu_deviation` (for a GPU)."""
    dtype_name = cfg.MODEL.SAN.INFERENCE_DTYPE
    model = build_benchmark_model(cfg, weights).eval()
    results = benchmark_inference(model, size=size, vocab=vocab, runs=runs,
                                  labels_only=labels_only, batch=batch)
    plain = model
    if dtype_name != "fp32" or cfg.MODEL.SAN.COMPILE:
        fast = segment(model, size=size, vocab=vocab)
        del model
        plain = build_benchmark_model(_plain_cfg(cfg), weights).eval()
        results.update(deviation(fast, segment(plain, size=size, vocab=vocab)))
    flops = count_flops(plain, size=size, vocab=vocab)
    rate = matmul_flops_per_second(plain.device, AUTOCAST_DTYPES[dtype_name] or torch.float32)
    floor = flops / rate
    results.update(gflops_per_image=flops / 1e9, device_matmul_tflops=rate / 1e12,
                   floor_seconds_per_image=floor,
                   floor_ratio=results["seconds_per_image_median"] / floor,
                   floor_ratio_fastest=results["seconds_min"] / floor)
    if against_cpu:
        results.update(cpu_deviation(cfg, weights=weights, size=size, vocab=vocab))
    if with_op_account:
        inputs = _benchmark_inputs(size, vocab, labels_only, batch)
        results["op_account"] = op_account(plain, inputs, matmul_flops_per_second=rate)
    return results


def onnxruntime_report(export_dir: str, *, size: int, vocab: int, runs: int,
                       threads: int = None, optimization: str = "all",
                       providers: List[str] = ()) -> Dict:
    """Timings of ``san_d2_runtime.SANRuntime`` on an export folder, for the benchmark's image
    and vocabulary, measured in a process of its own (no torch loaded: its peak RSS is the
    runtime's). ``threads`` bounds onnxruntime's and numpy's threads."""
    from san_d2_runtime import read_manifest

    read_manifest(export_dir)  # a missing or unusable folder fails here, with its message
    image = _benchmark_inputs(size, vocab)[0]["image"].permute(1, 2, 0).numpy()
    env = dict(os.environ)
    if threads:
        env.update({name: str(threads) for name in
                    ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
    with tempfile.TemporaryDirectory() as scratch:
        files = {name: os.path.join(scratch, name)
                 for name in ("image.npy", "vocabulary.json", "results.json")}
        np.save(files["image.npy"], image)
        with open(files["vocabulary.json"], "w", encoding="utf-8") as f:
            json.dump(_vocabulary(vocab), f)
        command = [sys.executable, "-m", "san_d2_runtime.benchmark", "--export-dir", export_dir,
                   "--image", files["image.npy"], "--vocabulary", files["vocabulary.json"],
                   "--runs", str(runs), "--optimization", optimization,
                   "--json", files["results.json"]]
        command += ["--threads", str(threads)] if threads else []
        for provider in providers:
            command += ["--provider", provider]
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            lines = (done.stderr.strip() or "no output").splitlines()
            raise ChildProcessError(f"The onnxruntime benchmark failed: {lines[-1]}")
        with open(files["results.json"], encoding="utf-8") as f:
            results = json.load(f)
    results["threads"] = threads
    return results


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: str) -> Dict:
    """What a result was measured on: versions, threads, CPU, GPU and date."""
    cuda = device.startswith("cuda")
    return {"device": device, "threads": torch.get_num_threads(), "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name() if cuda else None,
            # TF32 makes float32 products and convolutions on recent GPUs less exact.
            "cuda_tf32": {"matmul": torch.backends.cuda.matmul.allow_tf32,
                          "cudnn": torch.backends.cudnn.allow_tf32} if cuda else None,
            "cpu": _cpu_name(), "cpu_count": os.cpu_count(),
            "date": datetime.date.today().isoformat()}


def format_results(results: Dict) -> str:
    """A two-column table of the measures, with the stages indented."""
    rows = [[k, f"{v:.4g}" if isinstance(v, float) else v] for k, v in results.items()
            if k not in ("stages_seconds", "op_account")]
    for stage, value in results.get("stages_seconds", {}).items():
        rows.append([f"  {stage}", f"{value:.4g} s"])
    table = tabulate(rows, headers=["measure", "value"])
    if "op_account" in results:
        table += "\n\n" + format_op_account(results["op_account"])
    return table
