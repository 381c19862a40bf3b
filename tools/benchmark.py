#!/usr/bin/env python
"""Inference and training-step benchmarks of SAN.

    san-benchmark --config-file san_clip_vit_res4_coco.yaml [--device cpu|cuda] \\
        [--dtype fp32|bf16|fp16] [--compile] [--size 640] [--vocab 171] [--runs 5] \\
        [--threads 2] [--json out.json] [--train --batch-size 4 --crop 640]

Builds the model from the config (random weights unless ``--weights``; no download), times
the first call separately (it encodes the vocabulary's prompts unless they were persisted by
an earlier run), then whole ``model([input])`` calls, post-processing included: the median and
range of seconds per image, images per second, peak memory (RSS on CPU, CUDA max allocated on
GPU), the time in each stage, the FLOPs of a call with the device's measured matmul rate and
the floor they give, and for a fast mode (``--dtype bf16|fp16``, ``--compile``) how far the
outputs are from plain float32. ``--train`` times optimizer steps instead.
"""
import argparse
import json
import sys

import torch

from san_d2 import get_san_cfg
from san_d2.modeling.san import AUTOCAST_DTYPES
from san_d2.utils.benchmark import (benchmark_training, build_benchmark_model, environment,
                                    format_results, inference_report)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", required=True, help="config path or shipped name")
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
        results = benchmark_training(build_benchmark_model(cfg, args.weights), cfg,
                                     batch_size=args.batch_size, crop=args.crop, runs=args.runs,
                                     dtype=args.dtype)
    else:
        results = inference_report(cfg, weights=args.weights, size=args.size, vocab=args.vocab,
                                   runs=args.runs)
    results.update(config=args.config_file, dtype=args.dtype, compiled=args.compile,
                   size=args.size, vocab=args.vocab, **environment(cfg.MODEL.DEVICE))
    print(format_results(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
