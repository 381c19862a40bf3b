#!/usr/bin/env python
"""Export SAN to ONNX, with the vocabulary chosen at run time.

    san-export-onnx --config-file san_clip_vit_res4_coco.yaml --weights san_vit_b_16.pth \\
        --output export/ [--opts KEY VALUE ...]

Writes the image graph (normalised padded image + class embeddings -> class and mask logits),
the text graph (token ids -> embeddings), CLIP's BPE vocabulary and manifest.json, checks both
graphs with onnx.checker and against the torch model on onnxruntime (max |difference| printed;
above 1e-4 the export fails). ``san_d2_runtime.SANRuntime(output)`` then segments pictures
without torch; see docs/deployment.md.
"""
import argparse
import sys

import san_d2  # noqa: F401  (first: it quiets detectron2 0.6's import-time warnings)
from san_d2 import get_san_cfg
from san_d2.model_zoo import resolve_config_file
from san_d2.utils.cli import add_debug_argument, positive_int, run_reporting_errors


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_debug_argument(parser)
    parser.add_argument("--config-file", required=True, help="config path or shipped name")
    parser.add_argument("--weights", default=None,
                        help="checkpoint (default: the config's MODEL.WEIGHTS; none: random)")
    parser.add_argument("--output", required=True, help="export folder to write")
    parser.add_argument("--opset", type=positive_int, default=None,
                        help="ONNX opset (default: san_d2.export.DEFAULT_OPSET)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the weights a checkpoint does not set (random CLIP)")
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[],
                        help="config overrides, KEY VALUE ...")
    return parser


def run(args) -> int:
    import torch

    from san_d2.export import DEFAULT_OPSET, export_onnx

    overrides = list(args.opts) + (["MODEL.WEIGHTS", args.weights] if args.weights else [])
    cfg = get_san_cfg(args.config_file, overrides)
    torch.manual_seed(args.seed)
    report = export_onnx(cfg, output_dir=args.output, config_file=resolve_config_file(args.config_file),
                         opset=args.opset or DEFAULT_OPSET)
    print(report.summary())
    return 0


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    return run_reporting_errors(lambda: run(args), args.debug)


if __name__ == "__main__":
    sys.exit(main())
