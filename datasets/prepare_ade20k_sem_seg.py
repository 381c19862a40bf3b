#!/usr/bin/env python3
"""Convert ADE20K-150 (SceneParsing) label maps to the detectron2 format used by san_d2.

Standalone apart from _prepare_common.py next to it: needs only numpy, Pillow and tqdm. Run with
--help for the downloads.
"""
import sys
from pathlib import Path

import numpy as np

# The helper sits next to this script; put it on the path also when the script is loaded by path.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _prepare_common import (  # noqa: E402
    SplitCounts, compare_with_images, convert_splits, converted_any, list_pngs,
    parse_root_and_overwrite, print_counts, run_reporting_errors,
)

SPLITS = ("training", "validation")
IGNORE_LABEL = 255

ADE_HINT = (
    "ADEChallengeData2016.zip (http://data.csail.mit.edu/places/ADEchallenge/"
    "ADEChallengeData2016.zip, linked from http://sceneparsing.csail.mit.edu/) and unzip it into "
    "{root}"
)

DESCRIPTION = """\
Convert ADE20K-150 label maps to the detectron2 format used by san_d2.

Download, unzipped into DATASETS_ROOT/:
  ADEChallengeData2016.zip   http://sceneparsing.csail.mit.edu/
                             http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip
                             -> ADEChallengeData2016/images/{training,validation}/*.jpg
                                ADEChallengeData2016/annotations/{training,validation}/*.png

Reads ADEChallengeData2016/annotations/{training,validation}/*.png (uint8, 0 = other,
1..150 = classes) and writes ADEChallengeData2016/annotations_detectron2/{training,validation}/
with the same names: value - 1, so the classes become 0..149 and "other" becomes 255 (ignore).
Every label is written, including entirely ignored ones.
"""


def convert_label(label: np.ndarray) -> np.ndarray:
    """Maps a raw ADE20K annotation to train ids.

    Args:
        label: uint8 array (0 = other, 1..150 = classes).

    Returns:
        label - 1 as uint8 with wraparound: 0 becomes 255, k becomes k - 1.

    Raises:
        ValueError: The array is not uint8.
    """
    label = np.asarray(label)
    if label.dtype != np.uint8:
        raise ValueError(f"ADE20K annotations must be uint8, got dtype {label.dtype}")
    return label - np.uint8(1)


def list_annotations(ade_dir: Path, split: str, datasets_root: Path) -> list:
    """Lists the raw annotation PNGs of a split, failing clearly when there are none.

    Args:
        ade_dir: DATASETS_ROOT/ADEChallengeData2016.
        split: "training" or "validation".
        datasets_root: Where the zip is to be unpacked, for the error message.

    Returns:
        The sorted PNG paths.

    Raises:
        PrepareError: The folder is missing or holds no PNG.
    """
    return list_pngs(ade_dir / "annotations" / split, ADE_HINT.format(root=datasets_root))


def report_split(split: str, counts: SplitCounts, annotations: list, ade_dir: Path) -> bool:
    """Prints the summary of one split and checks its counts.

    Args:
        split: The split name.
        counts: What the conversion did.
        annotations: The raw annotation files of the split.
        ade_dir: DATASETS_ROOT/ADEChallengeData2016, where the images are looked for.

    Returns:
        True when the split has at least one converted label.
    """
    print_counts(split, counts, "annotations", len(annotations))
    image_dir = ade_dir / "images" / split
    if image_dir.is_dir():
        compare_with_images(image_dir, annotations, "annotation", "annotations")
    else:
        print(f"  warning: {image_dir} not found, images not checked "
              "(ADEChallengeData2016.zip holds both; was it fully unzipped?)")
    return converted_any(counts, f"no annotation of {split} was converted")


def parse_args(argv):
    """Parses ``[datasets_root] [--overwrite]``.

    Args:
        argv: Arguments without the program name, or None for sys.argv[1:].

    Returns:
        The namespace: ``datasets_root`` (the folder holding ADEChallengeData2016/) and
        ``overwrite``.
    """
    return parse_root_and_overwrite(argv, DESCRIPTION, "ADEChallengeData2016/")


def run(args) -> int:
    """Converts ADEChallengeData2016/annotations into annotations_detectron2/.

    Prints the summary of each split.

    Args:
        args: The namespace of ``parse_args``.

    Returns:
        The exit code: 0, or 1 when a split converted nothing.

    Raises:
        PrepareError: An input is missing or malformed.
    """
    ade_dir = args.datasets_root / "ADEChallengeData2016"
    annotations = {
        split: list_annotations(ade_dir, split, args.datasets_root) for split in SPLITS
    }
    output_dir = ade_dir / "annotations_detectron2"
    pairs = {split: [(path, output_dir / split / path.name) for path in annotations[split]]
             for split in SPLITS}
    # No skip_all: entirely ignored labels are written too, as detectron2's own script does.
    return convert_splits(
        pairs, convert_label, args.overwrite,
        lambda split, counts: report_split(split, counts, annotations[split], ade_dir))


def main(argv=None) -> int:
    """Converts both splits and prints the count check.

    Args:
        argv: Arguments without the program name, or None for sys.argv[1:].

    Returns:
        0 on success, 1 when an input is missing or malformed or a split converted nothing.
    """
    args = parse_args(argv)
    return run_reporting_errors(lambda: run(args), error_code=1)


if __name__ == "__main__":
    sys.exit(main())
