#!/usr/bin/env python
"""Segment pictures with a typed vocabulary and draw the result with detectron2's Visualizer.

    san-demo --config-file san_clip_vit_res4_coco.yaml --input a.jpg photos/ "shots/*.png" \\
        --vocabulary "cat,dog,grass" --output out/ --opts MODEL.WEIGHTS san_vit_b_16.pth
"""
import argparse
import glob
import logging
import os
import sys
from pathlib import Path
from typing import List, Sequence

from detectron2.utils.logger import setup_logger
from tqdm import tqdm

from san_d2.data.vocabulary import VOCABULARY_EXPANSIONS, expand_vocabulary, parse_vocabulary
from san_d2.predictor import SANPredictor, load_rgb_image
from san_d2.utils.visualization import draw_segmentation, save_image

logger = logging.getLogger("san_d2.demo")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def collect_inputs(inputs: Sequence[str]) -> List[str]:
    """Files, folders (their images) and glob patterns -> image paths, in the given order."""
    paths = []
    for item in inputs:
        if os.path.isdir(item):
            paths += sorted(str(p) for p in Path(item).iterdir()
                            if p.suffix.lower() in IMAGE_EXTENSIONS)
        elif os.path.isfile(item):
            paths.append(item)
        else:
            matches = sorted(glob.glob(os.path.expanduser(item)))
            if not matches:
                raise FileNotFoundError(f"--input {item}: no such file, folder or matching files.")
            paths += [m for m in matches if os.path.isfile(m)]
    if not paths:
        raise FileNotFoundError(f"--input {' '.join(inputs)}: no images found.")
    return paths


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", required=True, help="config path or shipped name")
    parser.add_argument("--input", nargs="+", required=True, help="images, folders or globs")
    parser.add_argument("--vocabulary", required=True, help="class names separated by commas")
    parser.add_argument("--output", required=True, help="folder for the drawings")
    parser.add_argument("--expand-vocabulary", choices=sorted(VOCABULARY_EXPANSIONS),
                        default="none",
                        help="add COCO-Stuff's classes (all, or the stuff ones) so that pixels "
                             "of none of your classes need not take one of them")
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[],
                        help="config overrides, e.g. MODEL.WEIGHTS path/to/model.pth")
    return parser


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    setup_logger(name="san_d2")
    try:
        names, num_user = expand_vocabulary(parse_vocabulary(args.vocabulary),
                                            args.expand_vocabulary)
        paths = collect_inputs(args.input)
    except (ValueError, FileNotFoundError) as e:
        parser.error(str(e))
    predictor = SANPredictor(args.config_file, opts=args.opts)
    extra = len(names) - num_user
    logger.info(f"Vocabulary: {num_user} classes"
                + (f" + {extra} from {args.expand_vocabulary}" if extra else ""))
    failures = 0
    for path in tqdm(paths, desc="segmenting", unit="image"):
        try:
            image = load_rgb_image(path)
        except (ValueError, FileNotFoundError) as e:
            logger.error(str(e))
            failures += 1
            continue
        result = predictor.predict(image, names)
        out_path = os.path.join(args.output, Path(path).stem + ".png")
        save_image(draw_segmentation(image, result.class_map, names, num_user), out_path)
        tqdm.write(f"{path}: {result.describe(num_user)} -> {out_path}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
