#!/usr/bin/env python
"""Segment pictures with a typed vocabulary and draw the result with detectron2's Visualizer.

    san-demo --config-file san_clip_vit_res4_coco.yaml --input a.jpg photos/ "shots/*.png" \\
        --vocabulary "cat,dog,grass" --output out/ --opts MODEL.WEIGHTS san_vit_b_16.pth

Results keep their inputs' paths below the inputs' common folder (``photos/a/x.jpg`` ->
``out/a/x.png``; ``x.jpg`` and ``x.png`` of one folder -> ``x.jpg.png``, ``x.png.png``), and are
never written into a folder that holds inputs.
"""
import argparse
import logging
import sys

import san_d2  # noqa: F401  (first: it quiets detectron2 0.6's import-time warnings)

from detectron2.utils.logger import setup_logger
from tqdm import tqdm

from san_d2.data.vocabulary import VOCABULARY_EXPANSIONS, expand_vocabulary, parse_vocabulary
from san_d2.predictor import SANPredictor, load_rgb_image
from san_d2.utils.cli import (add_debug_argument, argument_type, collect_images, output_paths,
                              run_reporting_errors)
from san_d2.utils.visualization import draw_segmentation, save_image

logger = logging.getLogger("san_d2.demo")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--config-file", required=True, help="config path or shipped name")
    parser.add_argument("--input", nargs="+", required=True, help="images, folders or globs")
    parser.add_argument("--vocabulary", required=True, type=argument_type(parse_vocabulary),
                        help="class names separated by commas")
    parser.add_argument("--output", required=True, help="folder for the drawings")
    parser.add_argument("--expand-vocabulary", choices=sorted(VOCABULARY_EXPANSIONS),
                        default="none",
                        help="add COCO-Stuff's classes (all, or the stuff ones) so that pixels "
                             "of none of your classes need not take one of them")
    add_debug_argument(parser)
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[],
                        help="config overrides, e.g. MODEL.WEIGHTS path/to/model.pth")
    return parser


def segment_all(predictor: SANPredictor, outputs, names, num_user: int) -> int:
    """Segments and draws every input; an unreadable one is reported and skipped. Returns the
    number skipped."""
    failures = 0
    for path, out_path in tqdm(outputs.items(), desc="segmenting", unit="image"):
        try:
            image = load_rgb_image(path)
        except (ValueError, OSError) as e:
            logger.error(f"Skipped: {e}")
            failures += 1
            continue
        result = predictor.predict(image, names)
        save_image(draw_segmentation(image, result.class_map, names, num_user), out_path)
        tqdm.write(f"{path}: {result.describe(num_user)} -> {out_path}")
    return failures


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        names, num_user = expand_vocabulary(args.vocabulary, args.expand_vocabulary)
        outputs = output_paths(collect_images(args.input), args.output)
    except (ValueError, FileNotFoundError) as e:
        parser.error(str(e))
    setup_logger(name="san_d2")

    def run() -> int:
        predictor = SANPredictor(args.config_file, opts=args.opts)
        extra = len(names) - num_user
        logger.info(f"Vocabulary: {num_user} classes"
                    + (f" + {extra} from {args.expand_vocabulary}" if extra else ""))
        return 1 if segment_all(predictor, outputs, names, num_user) else 0

    return run_reporting_errors(run, args.debug)


if __name__ == "__main__":
    sys.exit(main())
