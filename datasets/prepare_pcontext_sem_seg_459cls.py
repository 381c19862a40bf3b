#!/usr/bin/env python3
"""Prepare Pascal Context 459 (``pcontext_full``) for san_d2.

Writes, under the datasets root::

    pcontext_full/{train,val}/image/<name>.jpg   copies of VOC2010/JPEGImages/<name>.jpg
    pcontext_full/{train,val}/label/<name>.tif   16-bit TIFF (PIL mode I;16),
                                                 0..458 and 65535 = ignore

Label rule (DATASETS.md section 4): ``LabelMap - 1`` in uint16 with wraparound, so unlabeled 0
becomes 65535 and class k (labels.txt id k, 1..459) becomes k - 1. All 459 classes are kept.

Inputs and assumptions:

* Labels come from the Pascal-Context ``trainval/<name>.mat`` files (``LabelMap``, uint16,
  0 = unlabeled, 1..459), as in the published pipeline.
* The published pipeline lists the train/val images through the ``detail`` API (not on PyPI)
  over ``trainval_merged.json``. ASSUMPTION: that file is a JSON object whose ``images`` list
  has one dict per image with ``file_name`` (e.g. ``"2008_000002.jpg"``), ``image_id`` (int,
  e.g. 2008000002) and ``phase`` (``"train"``/``"val"``), which is what Detail's ``getImgs``
  filters on (checked against the detail API source, not against the file). Images of any other
  phase are ignored. Plain ``--train-list``/``--val-list`` text files (one image name per line)
  can be used instead.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image
from tqdm import tqdm

NUM_RAW_CLASSES = 459
IGNORE = 65535
SPLITS = ("train", "val")

DESCRIPTION = """\
Convert Pascal Context to the 459-class detectron2 layout
(pcontext_full/{train,val}/{image,label}, 16-bit TIFF labels, ignore 65535).

Raw files to download and where to unpack them (defaults shown; all are overridable):
  1. VOCtrainval_03-May-2010.tar (PASCAL VOC 2010, host.robots.ox.ac.uk): extract it into the
     datasets root so that <root>/VOCdevkit/VOC2010/JPEGImages/ exists (--voc-root).
  2. trainval_merged.json (PASCAL in Detail annotations, the codalab link used by the
     PASCAL-in-Detail API): put it next to JPEGImages, i.e. <root>/VOCdevkit/VOC2010/ (--json).
     It lists the train/val split; --train-list/--val-list text files can replace it.
  3. trainval.tar.gz from the Pascal-Context site (cs.stanford.edu/~roozbeh/pascal-context/):
     extract it into <root>/VOCdevkit/VOC2010/ so that trainval/<name>.mat exists (--mat-dir).
The datasets root is $DETECTRON2_DATASETS, else ./datasets (--datasets-root).
"""


class PrepareError(RuntimeError):
    """A missing or malformed input; main() prints it and exits non-zero."""


def convert_label_459(label_map: np.ndarray) -> np.ndarray:
    """Convert a Pascal-Context LabelMap to PC-459 train ids.

    Args:
        label_map: 2-D integer array, 0 = unlabeled, 1..459 = classes (labels.txt ids).

    Returns:
        uint16 array of the same shape: ``LabelMap - 1`` with wraparound (0 -> 65535).

    Raises:
        ValueError: if the array is not 2-D integer or holds values outside 0..459.
    """
    label_map = np.asarray(label_map)
    if label_map.ndim != 2 or not np.issubdtype(label_map.dtype, np.integer):
        raise ValueError(
            f"expected a 2-D integer LabelMap, got {label_map.dtype} {label_map.shape}")
    if label_map.size and (label_map.min() < 0 or label_map.max() > NUM_RAW_CLASSES):
        raise ValueError(
            f"LabelMap values must lie in 0..{NUM_RAW_CLASSES}, got "
            f"{label_map.min()}..{label_map.max()}")
    return label_map.astype(np.uint16) - np.uint16(1)


def load_label_map(mat_path: Path) -> np.ndarray:
    """Read the ``LabelMap`` field of a Pascal-Context ``.mat`` file.

    Args:
        mat_path: path of ``trainval/<name>.mat``.

    Returns:
        The LabelMap array as stored (uint16 in the official files).

    Raises:
        PrepareError: if the file has no ``LabelMap`` field.
    """
    data = scipy.io.loadmat(str(mat_path))
    if "LabelMap" not in data:
        raise PrepareError(f"{mat_path} has no 'LabelMap' field (is it a Pascal-Context .mat?)")
    return data["LabelMap"]


def image_name_from_entry(entry: dict) -> str:
    """Return the image name (``2008_000002``) of one ``images`` entry of the Detail JSON.

    Args:
        entry: dict with ``file_name`` (preferred) or an integer ``image_id`` like 2008000002.

    Returns:
        The file stem.
    """
    if "file_name" in entry:
        return Path(str(entry["file_name"])).stem
    digits = str(int(entry["image_id"]))
    return f"{digits[:4]}_{digits[4:]}"


def splits_from_detail_json(json_path: Path) -> dict[str, list[str]]:
    """Read the train/val image names from ``trainval_merged.json``.

    Args:
        json_path: the PASCAL-in-Detail annotation file.

    Returns:
        ``{"train": [...], "val": [...]}`` with sorted, de-duplicated image names.

    Raises:
        PrepareError: if the file is not a Detail-style JSON with an ``images`` list.
    """
    with open(json_path, encoding="utf-8") as f:
        data = json.load(f)
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list):
        raise PrepareError(f"{json_path} has no 'images' list; is it trainval_merged.json?")
    splits: dict[str, set] = {s: set() for s in SPLITS}
    for entry in images:
        phase = entry.get("phase")
        if phase in splits:
            splits[phase].add(image_name_from_entry(entry))
    return {s: sorted(names) for s, names in splits.items()}


def read_id_list(path: Path) -> list[str]:
    """Read a text file of image names, one per line (blank lines and extensions ignored).

    Args:
        path: the list file.

    Returns:
        Sorted, de-duplicated image names.
    """
    names = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line:
            names.add(Path(line).stem)
    return sorted(names)


def require(path: Path, what: str, kind: str = "file") -> None:
    """Fail with a message naming ``path`` and what to download when it is missing.

    Args:
        path: the expected input.
        what: how to obtain it.
        kind: ``"file"`` or ``"folder"``.

    Raises:
        PrepareError: if the path does not exist as that kind.
    """
    ok = path.is_file() if kind == "file" else path.is_dir()
    if not ok:
        raise PrepareError(f"missing {kind} {path}: {what}")


def atomic_save(image: Image.Image, dst: Path, fmt: str) -> None:
    """Save an image through a temporary file so interrupted runs leave no partial output.

    Args:
        image: the PIL image.
        dst: final path.
        fmt: PIL format name.
    """
    tmp = dst.with_name(dst.name + ".part")
    image.save(tmp, format=fmt)
    os.replace(tmp, dst)


def atomic_copy(src: Path, dst: Path) -> None:
    """Copy a file byte for byte through a temporary file.

    Args:
        src: source file.
        dst: final path.
    """
    tmp = dst.with_name(dst.name + ".part")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def convert_one(name: str, jpeg_dir: Path, mat_dir: Path, out_dir: Path, overwrite: bool) -> bool:
    """Copy one image and write its PC-459 label.

    Args:
        name: image name, e.g. ``2008_000002``.
        jpeg_dir: VOC2010 ``JPEGImages`` folder.
        mat_dir: Pascal-Context ``trainval`` folder of ``.mat`` files.
        out_dir: ``pcontext_full/<split>``.
        overwrite: rewrite outputs that already exist.

    Returns:
        True if written, False if both outputs existed and were kept.

    Raises:
        PrepareError: if the label is malformed or its size differs from the image's.
    """
    dst_img = out_dir / "image" / f"{name}.jpg"
    dst_lab = out_dir / "label" / f"{name}.tif"
    if not overwrite and dst_img.is_file() and dst_lab.is_file():
        return False
    src_img = jpeg_dir / f"{name}.jpg"
    mat_path = mat_dir / f"{name}.mat"
    try:
        label = convert_label_459(load_label_map(mat_path))
    except ValueError as e:
        raise PrepareError(f"{mat_path}: {e}") from e
    with Image.open(src_img) as im:
        size = im.size
    if label.shape != (size[1], size[0]):
        raise PrepareError(
            f"{mat_path}: LabelMap is {label.shape[1]}x{label.shape[0]} but {src_img} is "
            f"{size[0]}x{size[1]}")
    atomic_copy(src_img, dst_img)
    atomic_save(Image.fromarray(label), dst_lab, "TIFF")  # uint16 -> mode I;16
    return True


def build_parser() -> argparse.ArgumentParser:
    """Build the command-line parser.

    Returns:
        The parser.
    """
    p = argparse.ArgumentParser(description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets-root", type=Path,
                   default=Path(os.environ.get("DETECTRON2_DATASETS", "datasets")),
                   help="datasets root (default: $DETECTRON2_DATASETS or ./datasets)")
    p.add_argument("--voc-root", type=Path, default=None,
                   help="folder holding JPEGImages/ (default: <root>/VOCdevkit/VOC2010)")
    p.add_argument("--json", type=Path, default=None,
                   help="trainval_merged.json (default: <voc-root>/trainval_merged.json)")
    p.add_argument("--mat-dir", type=Path, default=None,
                   help="Pascal-Context trainval/ folder of .mat files "
                   "(default: <voc-root>/trainval)")
    p.add_argument("--train-list", type=Path, default=None,
                   help="text file of train image names; with --val-list, replaces the JSON")
    p.add_argument("--val-list", type=Path, default=None, help="text file of val image names")
    p.add_argument("--output", type=Path, default=None,
                   help="output folder (default: <root>/pcontext_full)")
    p.add_argument("--overwrite", action="store_true", help="rewrite outputs that already exist")
    return p


def resolve_splits(args: argparse.Namespace, voc_root: Path) -> dict[str, list[str]]:
    """Get the split lists from --train-list/--val-list or from the Detail JSON.

    Args:
        args: parsed arguments.
        voc_root: folder holding JPEGImages.

    Returns:
        ``{"train": names, "val": names}``.

    Raises:
        PrepareError: if an input is missing or only one list file is given.
    """
    if (args.train_list is None) != (args.val_list is None):
        raise PrepareError("give both --train-list and --val-list, or neither (to use the JSON)")
    if args.train_list is not None:
        require(args.train_list, "a text file of train image names (one per line)")
        require(args.val_list, "a text file of val image names (one per line)")
        return {"train": read_id_list(args.train_list), "val": read_id_list(args.val_list)}
    json_path = args.json or voc_root / "trainval_merged.json"
    require(json_path, "download trainval_merged.json (PASCAL in Detail) and put it next to "
            "JPEGImages, or pass --train-list/--val-list")
    return splits_from_detail_json(json_path)


def run(args: argparse.Namespace) -> int:
    """Convert every listed image; see module docstring.

    Args:
        args: parsed arguments.

    Returns:
        Process exit code.
    """
    voc_root = args.voc_root or args.datasets_root / "VOCdevkit" / "VOC2010"
    jpeg_dir = voc_root / "JPEGImages"
    require(jpeg_dir, "download VOCtrainval_03-May-2010.tar and extract it so that "
            "VOCdevkit/VOC2010/JPEGImages exists (or pass --voc-root)", kind="folder")
    mat_dir = args.mat_dir or voc_root / "trainval"
    require(mat_dir, "download trainval.tar.gz from the Pascal-Context site and extract it so "
            "that trainval/<name>.mat exists (or pass --mat-dir)", kind="folder")
    splits = resolve_splits(args, voc_root)

    missing = [p for s in SPLITS for n in splits[s]
               for p in (jpeg_dir / f"{n}.jpg", mat_dir / f"{n}.mat") if not p.is_file()]
    if missing:
        shown = "\n  ".join(str(p) for p in missing[:10])
        raise PrepareError(
            f"{len(missing)} listed input files are missing (VOCtrainval_03-May-2010.tar JPEGs / "
            f"Pascal-Context trainval.tar.gz .mat files), e.g.:\n  {shown}")

    out_root = args.output or args.datasets_root / "pcontext_full"
    seen = written = skipped = 0
    for split in SPLITS:
        out_dir = out_root / split
        (out_dir / "image").mkdir(parents=True, exist_ok=True)
        (out_dir / "label").mkdir(parents=True, exist_ok=True)
        for name in tqdm(splits[split], desc=f"pcontext_full {split}", unit="img"):
            seen += 1
            if convert_one(name, jpeg_dir, mat_dir, out_dir, args.overwrite):
                written += 1
            else:
                skipped += 1
        print(f"{split}: {len(splits[split])} images -> {out_dir}")
    print(f"inputs seen: {seen}, written: {written}, skipped (already existed): {skipped}")
    if written + skipped == 0:
        print("error: nothing was converted (empty split lists?)", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point.

    Args:
        argv: arguments (default: sys.argv[1:]).

    Returns:
        0 on success, 1 if nothing was converted, 2 on a missing or malformed input.
    """
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except PrepareError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
