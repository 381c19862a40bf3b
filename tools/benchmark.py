#!/usr/bin/env python
"""Inference and training-step benchmarks of SAN.

    san-benchmark --config-file san_clip_vit_res4_coco.yaml [--device cpu|cuda] \\
        [--dtype fp32|bf16|fp16] [--compile] [--size 640] [--vocab 171] [--labels-only] \\
        [--batch-size 1] [--runs 5] [--threads 2] [--json out.json] [--op-account] \\
        [--against-cpu] [--train --batch-size 4 --crop 640]
    san-benchmark --runtime onnxruntime --export-dir export/ [--ort-optimization all] ...

Builds the model from the config (random weights unless ``--weights``; no download), times
the first call separately (it encodes the vocabulary's prompts unless they were persisted by
an earlier run), then whole ``model([input])`` calls, post-processing included: the median and
range of seconds per image, images per second, peak memory (RSS on CPU, CUDA max allocated on
GPU), the time in each stage, the FLOPs of a call with the device's measured matmul rate and
the floor they give, and for a fast mode (``--dtype bf16|fp16``, ``--compile``) how far the
outputs are from plain float32. ``--op-account`` adds where a float32 CPU call's time goes,
op by op, against each matrix product and attention shape run alone (see
``san_d2.utils.op_account``); ``--against-cpu`` compares a GPU's float32 scores with the CPU's.
``--batch-size`` images go through each call (figures are per image). ``--train`` times
optimizer steps instead.
``--runtime onnxruntime`` times ``san_d2_runtime.SANRuntime.predict`` on an export folder
(``san-export-onnx``) instead, in a process without torch, with the same image and vocabulary.
"""
import argparse
import json
import sys

import san_d2  # noqa: F401  (first: it quiets detectron2 0.6's import-time warnings)

import torch

from san_d2 import get_san_cfg
from san_d2.modeling.san import AUTOCAST_DTYPES
from san_d2.utils.benchmark import (MAX_VOCABULARY, benchmark_training, build_benchmark_model,
                                    environment, format_results, inference_report,
                                    onnxruntime_report)
from san_d2.utils.cli import add_debug_argument, positive_int, run_reporting_errors
from san_d2.utils.io import atomic_write
from san_d2_runtime.runtime import GRAPH_OPTIMIZATION_LEVELS

# CLIP sees the image at half size, in patches of 16 pixels: smaller images leave no patch.
MIN_IMAGE_SIDE = 32


def _vocabulary_size(text: str) -> int:
    size = positive_int(text)
    if size > MAX_VOCABULARY:
        raise argparse.ArgumentTypeError(f"at most {MAX_VOCABULARY} distinct class names are "
                                         f"available, got {size}")
    return size


def _image_side(text: str) -> int:
    try:
        side = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if side < MIN_IMAGE_SIDE:
        raise argparse.ArgumentTypeError(f"must be at least {MIN_IMAGE_SIDE} pixels (CLIP sees "
                                         f"the image at half size in patches of 16), got {side}")
    return side


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--config-file", default=None,
                        help="config path or shipped name (required for --runtime torch)")
    parser.add_argument("--runtime", choices=["torch", "onnxruntime"], default="torch",
                        help="torch: the model of the config; onnxruntime: san_d2_runtime on "
                             "--export-dir")
    parser.add_argument("--export-dir", default=None, help="export folder (--runtime onnxruntime)")
    parser.add_argument("--ort-optimization", choices=GRAPH_OPTIMIZATION_LEVELS, default="all",
                        help="onnxruntime graph optimisation level")
    parser.add_argument("--ort-provider", action="append", default=[],
                        help="onnxruntime execution provider, repeatable (default: the CPU's)")
    parser.add_argument("--weights", default="", help="checkpoint (empty: random weights)")
    parser.add_argument("--device", choices=["cpu", "cuda"],
                        default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=sorted(AUTOCAST_DTYPES), default="fp32",
                        help="inference: MODEL.SAN.INFERENCE_DTYPE; training: autocast (AMP)")
    parser.add_argument("--compile", action="store_true",
                        help="inference: MODEL.SAN.COMPILE (torch.compile CLIP, side adapter)")
    parser.add_argument("--size", type=_image_side, default=640, help="inference image side")
    parser.add_argument("--vocab", type=_vocabulary_size, default=171,
                        help="inference vocabulary size")
    parser.add_argument("--labels-only", action="store_true",
                        help="inference: ask for arg-max labels instead of per-class scores, "
                             "as evaluation, the demo and the app do")
    parser.add_argument("--op-account", action="store_true",
                        help="inference, CPU, fp32: also profile a call op by op and replay "
                             "each matrix product and attention shape alone")
    parser.add_argument("--against-cpu", action="store_true",
                        help="inference on --device cuda: also compare the float32 scores with "
                             "the same weights' on the CPU")
    parser.add_argument("--runs", type=positive_int, default=5, help="timed calls or steps")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--train", action="store_true", help="time training steps instead")
    parser.add_argument("--batch-size", type=positive_int, default=None,
                        help="images per call or training step (default: 1 for inference, "
                             "4 for --train)")
    parser.add_argument("--crop", type=_image_side, default=640, help="training crop side")
    parser.add_argument("--json", default=None, help="also write the results here")
    add_debug_argument(parser)
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[],
                        help="config overrides, KEY VALUE ...")
    return parser


def run_onnxruntime(args) -> int:
    results = onnxruntime_report(args.export_dir, size=args.size, vocab=args.vocab, runs=args.runs,
                                 threads=args.threads, optimization=args.ort_optimization,
                                 providers=args.ort_provider)
    results.update(export_dir=args.export_dir, size=args.size, vocab=args.vocab,
                   **{k: v for k, v in environment("cpu").items() if k not in ("torch", "threads")})
    return _report(results, args)


def _report(results, args) -> int:
    print(format_results(results))
    if args.json:
        with atomic_write(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


def run(args) -> int:
    if args.runtime == "onnxruntime":
        return run_onnxruntime(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    mode_opts = [] if args.train else ["MODEL.SAN.INFERENCE_DTYPE", args.dtype,
                                       "MODEL.SAN.COMPILE", args.compile]
    cfg = get_san_cfg(args.config_file, ["MODEL.DEVICE", args.device,
                                         "MODEL.SAN.CLIP_PRETRAINED_NAME", "", *mode_opts,
                                         *args.opts])
    if args.train:
        results = benchmark_training(build_benchmark_model(cfg, args.weights), cfg,
                                     batch_size=args.batch_size or 4, crop=args.crop,
                                     runs=args.runs, dtype=args.dtype)
    else:
        results = inference_report(cfg, weights=args.weights, size=args.size, vocab=args.vocab,
                                   runs=args.runs, labels_only=args.labels_only,
                                   batch=args.batch_size or 1, with_op_account=args.op_account,
                                   against_cpu=args.against_cpu)
    results.update(config=args.config_file, dtype=args.dtype, compiled=args.compile,
                   size=args.size, vocab=args.vocab, **environment(cfg.MODEL.DEVICE))
    return _report(results, args)


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available here.")
    if args.runtime == "torch" and not args.config_file:
        parser.error("--config-file is required (for --runtime torch).")
    if args.runtime == "onnxruntime" and (not args.export_dir or args.train):
        parser.error("--runtime onnxruntime needs --export-dir, and times inference only.")
    if args.labels_only and (args.train or args.runtime == "onnxruntime"):
        parser.error("--labels-only is for inference with --runtime torch.")
    if args.op_account and (args.train or args.runtime == "onnxruntime" or args.device != "cpu"
                            or args.dtype != "fp32" or args.compile):
        parser.error("--op-account profiles float32 inference on the CPU with --runtime torch "
                     "(no --train, --dtype, --compile or --device cuda).")
    if args.against_cpu and (args.train or args.runtime == "onnxruntime" or args.device != "cuda"):
        parser.error("--against-cpu compares inference on --device cuda with the CPU.")
    if args.batch_size and args.batch_size > 1 and args.runtime == "onnxruntime":
        parser.error("--runtime onnxruntime times one image per call (no --batch-size).")
    return run_reporting_errors(lambda: run(args), args.debug)


if __name__ == "__main__":
    sys.exit(main())
