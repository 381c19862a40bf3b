"""Timing SANRuntime.predict (``python -m san_d2_runtime.benchmark``; ``san-benchmark
--runtime onnxruntime`` runs it in a process of its own, so that its peak memory is the
runtime's, without torch).

    python -m san_d2_runtime.benchmark --export-dir export/ --image image.npy \\
        --vocabulary names.json [--runs 5] [--threads 2] [--optimization all] [--json out.json]
"""
import argparse
import json
import resource
import statistics
import sys
import time
from collections import defaultdict
from typing import Dict, Optional, Sequence

import numpy as np

from .runtime import GRAPH_OPTIMIZATION_LEVELS, SANRuntime

__all__ = ["benchmark_runtime"]


def _peak_rss_gb() -> float:
    """This process's peak RSS. Linux's ``ru_maxrss`` survives ``exec`` (a process started by
    a large one reports the parent's peak), its ``VmHWM`` does not."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**20  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def benchmark_runtime(export_dir, *, image: np.ndarray, vocabulary: Sequence[str], runs: int,
                      threads: Optional[int] = None, optimization: str = "all",
                      providers: Optional[Sequence[str]] = None) -> Dict:
    """Seconds to load the export, for the first call (the vocabulary's prompts encoded), and
    per call after it (median, range, per step), with the process's peak RSS."""
    start = time.perf_counter()
    runtime = SANRuntime(export_dir, threads=threads, optimization=optimization,
                         providers=providers)
    load = time.perf_counter() - start
    start = time.perf_counter()
    runtime.predict(image, vocabulary)
    first = time.perf_counter() - start
    seconds, steps = [], defaultdict(list)
    for _ in range(runs):
        start = time.perf_counter()
        runtime.predict(image, vocabulary)
        seconds.append(time.perf_counter() - start)
        for step, value in runtime.last_timings.items():
            steps[step].append(value)
    median = statistics.median(seconds)
    return {"runtime": "onnxruntime", "optimization": optimization,
            "providers": runtime.image_session.get_providers(),
            "seconds_per_image_median": median, "seconds_min": min(seconds),
            "seconds_max": max(seconds), "images_per_second": 1.0 / median,
            "load_seconds": load, "first_call_seconds": first,
            "first_call_prompts_encoded": runtime.num_prompts_encoded,
            "peak_memory_gb": _peak_rss_gb(),
            "stages_seconds": {step: statistics.median(v) for step, v in steps.items()},
            "runs": runs}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--export-dir", required=True)
    parser.add_argument("--image", required=True, help=".npy of an (H, W, 3) uint8 RGB image")
    parser.add_argument("--vocabulary", required=True, help="JSON list of class names")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--optimization", choices=GRAPH_OPTIMIZATION_LEVELS, default="all")
    parser.add_argument("--provider", action="append", default=None,
                        help="onnxruntime execution provider (repeatable; default: CPU)")
    parser.add_argument("--json", default=None, help="write the results here (else stdout)")
    args = parser.parse_args(argv)
    with open(args.vocabulary, encoding="utf-8") as f:
        vocabulary = json.load(f)
    results = benchmark_runtime(args.export_dir, image=np.load(args.image), vocabulary=vocabulary,
                                runs=args.runs, threads=args.threads,
                                optimization=args.optimization, providers=args.provider)
    text = json.dumps(results, indent=2)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
