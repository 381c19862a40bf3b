"""Segment pictures with a typed vocabulary and draw the result with detectron2's Visualizer.

    python -m san_d2.demo --config-file configs/san_clip_vit_res4_coco.yaml \\
        --input a.jpg photos/ "shots/*.png" --vocabulary "cat,dog,grass" --output out/ \\
        --opts MODEL.WEIGHTS san_vit_b_16.pth
"""
import argparse
import glob
import logging
import os
import sys
from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np
from detectron2.utils.logger import setup_logger
from PIL import Image
from tqdm import tqdm

from .data import load_labelset
from .predictor import SANPredictor, load_rgb_image
from .utils.visualization import draw_label_map, drawing_metadata

logger = logging.getLogger("san_d2.demo")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# --expand-vocabulary choice -> extra class names (drawn unlabelled, reported as "other").
EXPANSIONS = {
    "none": (),
    "coco": load_labelset("coco_stuff_171"),
    "coco_stuff": load_labelset("coco_stuff_171")[80:],  # the 91 stuff classes
}


def parse_vocabulary(text: str) -> List[str]:
    names = [name.strip() for name in text.split(",")]
    if not any(names):
        raise ValueError("--vocabulary is empty: give class names separated by commas, "
                         "e.g. --vocabulary \"cat,dog,grass\".")
    if not all(names):
        raise ValueError(f"--vocabulary {text!r} has an empty name between commas.")
    return names


def expand_vocabulary(names: Sequence[str], expansion: str) -> Tuple[List[str], int]:
    """The user's names followed by the expansion's (duplicates dropped); and the user's count."""
    seen = set(names)
    extra = [name for name in EXPANSIONS[expansion] if name not in seen]
    return list(names) + extra, len(names)


def collect_inputs(inputs: Sequence[str]) -> List[str]:
    """Files, folders (their images) and glob patterns -> sorted image paths."""
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


def draw(image: np.ndarray, class_map: np.ndarray, names: Sequence[str], num_user: int) -> np.ndarray:
    """Overlay of the user's classes with their names; expansion classes left undrawn."""
    return draw_label_map(image, class_map, drawing_metadata(names[:num_user]))


def summarize(shares: dict, names: Sequence[str], num_user: int) -> str:
    user = [(n, s) for n, s in shares.items() if names.index(n) < num_user]
    other = sum(s for n, s in shares.items() if names.index(n) >= num_user)
    parts = [f"{n} {100 * s:.1f}%" for n, s in user]
    if other:
        parts.append(f"other {100 * other:.1f}%")
    return ", ".join(parts)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--input", nargs="+", required=True, help="images, folders or globs")
    parser.add_argument("--vocabulary", required=True, help="class names separated by commas")
    parser.add_argument("--output", required=True, help="folder for the drawings")
    parser.add_argument("--expand-vocabulary", choices=sorted(EXPANSIONS), default="none",
                        help="add COCO-Stuff's classes (all, or the stuff ones) so that pixels "
                             "of none of your classes need not take one of them")
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[],
                        help="config overrides, e.g. MODEL.WEIGHTS path/to/model.pth")
    args = parser.parse_args(argv)
    setup_logger(name="san_d2")
    try:
        names, num_user = expand_vocabulary(parse_vocabulary(args.vocabulary), args.expand_vocabulary)
        paths = collect_inputs(args.input)
    except (ValueError, FileNotFoundError) as e:
        parser.error(str(e))
    os.makedirs(args.output, exist_ok=True)
    predictor = SANPredictor(args.config_file, opts=args.opts)
    logger.info(f"Vocabulary: {num_user} classes"
                + (f" + {len(names) - num_user} from {args.expand_vocabulary}" if len(names) > num_user else ""))
    failures = 0
    for path in tqdm(paths, desc="segmenting", unit="image"):
        try:
            image = load_rgb_image(path)
        except (ValueError, FileNotFoundError) as e:
            logger.error(str(e))
            failures += 1
            continue
        result = predictor.predict(image, names)
        drawing = draw(image, result.class_map, names, num_user)
        out_path = os.path.join(args.output, Path(path).stem + ".png")
        Image.fromarray(drawing).save(out_path)
        tqdm.write(f"{path}: {summarize(result.pixel_shares(), names, num_user)} -> {out_path}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
