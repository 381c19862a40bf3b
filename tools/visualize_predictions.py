#!/usr/bin/env python
"""Draw saved evaluation predictions next to the ground truth.

``--eval-only`` writes ``OUTPUT_DIR/inference/<dataset>/sem_seg_predictions.json`` (detectron2's
``SemSegEvaluator``: one RLE mask per predicted class and image). This draws, for each image,
the ground truth and the prediction side by side:

    san-visualize-predictions --dataset ade20k_sem_seg_val \\
        --predictions output/inference/ade20k_sem_seg_val/sem_seg_predictions.json \\
        --output output/vis [--max-images 20]
"""
import argparse
import sys

import san_d2  # noqa: F401  (registers the datasets; quiets detectron2's import warnings)
from san_d2.utils.cli import add_debug_argument, positive_int, run_reporting_errors
from san_d2.utils.visualization import draw_saved_predictions


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--predictions", required=True, help="sem_seg_predictions.json")
    parser.add_argument("--dataset", required=True, help="registered dataset it was made on")
    parser.add_argument("--output", required=True, help="folder for the drawings")
    parser.add_argument("--max-images", type=positive_int, default=None,
                        help="draw at most this many (default: all)")
    add_debug_argument(parser)
    args = parser.parse_args(argv)

    def run() -> int:
        count = draw_saved_predictions(args.predictions, args.dataset, args.output,
                                       args.max_images)
        print(f"{count} drawings in {args.output}")
        return 0

    return run_reporting_errors(run, args.debug)


if __name__ == "__main__":
    sys.exit(main())
