#!/usr/bin/env python3
"""Prepare ADE20K-847 (``ADE20K_2021_17_01``, "ADE-full") for san_d2.

Writes, under ``<datasets root>/ADE20K_2021_17_01``::

    images_detectron2/{training,validation}/<filename>        JPEG re-encoded by PIL (quality 75)
    annotations_detectron2/{training,validation}/<stem>.tif   uint16 TIFF: trainId 0..846,
                                                              65535 = ignore

Rules (DATASETS.md section 6):

1. ``index_ade20k.pkl`` holds the lists ``folder`` and ``filename``; image i is
   ``<folder[i]>/<filename[i]>``. The folders start with ``ADE20K_2021_17_01/`` (they are
   relative to the datasets root); that first component is replaced by ``--ade-root``. The
   split is ``validation`` when the second "_"-separated token of the filename is ``val``,
   otherwise ``training``.
2. Class map from ``<stem>_seg.png``: ``int32(R / 10) * 256 + G`` (float division, then
   truncation); the B channel and the part files are ignored.
3. Resize: if ``w >= h > 512`` the new size is h = 512, w = round(w / h * 512); if
   ``h >= w > 512`` it is w = 512, h = round(h / w * 512); otherwise unchanged. cv2
   INTER_LINEAR for the image, INTER_NEAREST for the int32 class map.
4. The output starts as uint16 65535; each raw id in the 847-entry table gets its trainId.
5. Every image is re-encoded through PIL with its default JPEG settings; the label is saved
   as a 16-bit TIFF.

Images are used as decoded (RGB or grayscale), like the published script; an image in any
other mode (CMYK, palette, ...), which that script could not have written as JPEG, is converted
to RGB first.

The 847-entry (name, raw id) table in trainId order is read from ``ade20k_847_classes.json``
next to this script; it was copied from MaskFormer's ``prepare_ade20k_full_sem_seg.py`` and is
checked at start-up against the SHA-256 of its raw ids (DATASETS.md section 8).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import sys
from collections import Counter
from pathlib import Path, PurePosixPath

import cv2
import numpy as np
from PIL import Image

# The helper sits next to this script; put it on the path also when the script is loaded by path.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _prepare_common import (  # noqa: E402
    PrepareError, add_datasets_root_option, atomic_save, convert_items, new_parser,
    report_totals, require, require_all, run_reporting_errors,
)

ADE_DIRNAME = "ADE20K_2021_17_01"
CLASS_TABLE = Path(__file__).resolve().with_name("ade20k_847_classes.json")
NUM_CLASSES = 847
# SHA-256 of the 847 raw ids in trainId order, as decimals joined by "," (DATASETS.md section 8).
RAW_IDS_SHA256 = "bcfc1752c4119012ed706b14f893526e479b90d0a6c2fe32ecaa1ad61e87bd0b"
MAX_SIZE = 512
IGNORE = 65535
# int32(R / 10) * 256 + G with 8-bit R and G is at most 25 * 256 + 255.
RAW_ID_LIMIT = 25 * 256 + 256

DESCRIPTION = """\
Convert ADE20K (2021_17_01 release) to the 847-class detectron2 layout
(ADE20K_2021_17_01/{images,annotations}_detectron2/{training,validation}).

Raw file to download and where to unpack it:
  ADE20K_2021_17_01.zip from the ADE20K site (ade20k.csail.mit.edu, registration
  required). Unzip it into the datasets root so that
  <root>/ADE20K_2021_17_01/index_ade20k.pkl and <root>/ADE20K_2021_17_01/images/ADE/ exist
  (or pass --ade-root). Outputs go next to them, under <root>/ADE20K_2021_17_01/ (--output).
The datasets root is $DETECTRON2_DATASETS, else ./datasets (--datasets-root).
"""


def raw_ids_sha256(raw_ids: list[int]) -> str:
    """Hash a raw-id sequence the way DATASETS.md section 8 does.

    Args:
        raw_ids: raw ADE ids in trainId order.

    Returns:
        Hex SHA-256 of the decimal ids joined by ",".
    """
    return hashlib.sha256(",".join(str(i) for i in raw_ids).encode("utf-8")).hexdigest()


def load_class_table(path: Path = CLASS_TABLE) -> list[tuple[str, int]]:
    """Load and verify the 847-entry (name, raw id) table in trainId order.

    Args:
        path: JSON file holding a list of ``[name, raw_id]`` pairs.

    Returns:
        The table as a list of (name, raw id) tuples.

    Raises:
        PrepareError: if the file is missing, malformed, or its raw-id hash is wrong.
    """
    if not path.is_file():
        raise PrepareError(f"missing class table {path} (ships with this script)")
    with open(path, encoding="utf-8") as f:
        rows = json.load(f)
    try:
        table = [(str(name), int(raw)) for name, raw in rows]
    except (TypeError, ValueError) as e:
        raise PrepareError(f"{path}: expected a list of [name, raw_id] pairs ({e})") from e
    if len(table) != NUM_CLASSES:
        raise PrepareError(f"{path}: expected {NUM_CLASSES} entries, found {len(table)}")
    digest = raw_ids_sha256([raw for _, raw in table])
    if digest != RAW_IDS_SHA256:
        raise PrepareError(f"{path}: raw-id SHA-256 {digest} != expected {RAW_IDS_SHA256}")
    return table


def build_lut(table: list[tuple[str, int]]) -> np.ndarray:
    """Build the raw id -> trainId lookup table.

    Args:
        table: (name, raw id) pairs in trainId order.

    Returns:
        uint16 array of length ``RAW_ID_LIMIT``: raw id -> trainId, 65535 elsewhere.
    """
    lut = np.full(RAW_ID_LIMIT, IGNORE, dtype=np.uint16)
    for train_id, (_, raw) in enumerate(table):
        lut[raw] = train_id
    return lut


def ade_class_map(seg_rgb: np.ndarray) -> np.ndarray:
    """Decode the object classes of an ADE ``_seg.png``.

    Args:
        seg_rgb: H x W x 3 uint8 array (R, G, B) of the ``_seg.png``.

    Returns:
        int32 H x W array ``int32(R / 10) * 256 + G``.
    """
    r = seg_rgb[:, :, 0]
    g = seg_rgb[:, :, 1]
    return (r / 10).astype(np.int32) * 256 + g.astype(np.int32)


def target_size(w: int, h: int) -> tuple[int, int]:
    """Return the output (width, height) of an image of size w x h.

    Args:
        w: width.
        h: height.

    Returns:
        (new_w, new_h): the shorter side becomes 512 when both sides exceed 512, else unchanged.
    """
    if w >= h > MAX_SIZE:
        return round(w / float(h) * MAX_SIZE), MAX_SIZE
    if h >= w > MAX_SIZE:
        return MAX_SIZE, round(h / float(w) * MAX_SIZE)
    return w, h


def map_to_train_ids(class_map: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Map raw ADE ids to trainIds.

    Args:
        class_map: int32 raw-id map.
        lut: table from ``build_lut``.

    Returns:
        uint16 map: trainId where the raw id is in the table, 65535 elsewhere.

    Raises:
        ValueError: if a raw id lies outside the table's range.
    """
    if class_map.size and (class_map.min() < 0 or class_map.max() >= len(lut)):
        raise ValueError(f"raw ids out of range: {class_map.min()}..{class_map.max()}")
    return lut[class_map]


def split_of(filename: str) -> str:
    """Return the output split of an ADE image.

    Args:
        filename: e.g. ``ADE_val_00000001.jpg``.

    Returns:
        ``"validation"`` if the second "_"-separated token is ``val``, else ``"training"``.
    """
    parts = filename.split("_")
    return "validation" if len(parts) > 1 and parts[1] == "val" else "training"


def input_path(ade_root: Path, folder: str, filename: str) -> Path:
    """Locate an image listed in the index.

    Args:
        ade_root: the unpacked ``ADE20K_2021_17_01`` folder.
        folder: ``folder[i]`` of the index, e.g. ``ADE20K_2021_17_01/images/ADE/training/...``.
        filename: ``filename[i]`` of the index.

    Returns:
        The image path; a leading ``ADE20K_2021_17_01`` component is replaced by ``ade_root``.
    """
    parts = PurePosixPath(str(folder).replace("\\", "/")).parts
    if parts and parts[0] in (ADE_DIRNAME, ade_root.name):
        parts = parts[1:]
    return ade_root.joinpath(*parts, filename)


def seg_path_for(image_path: Path) -> Path:
    """Return the ``_seg.png`` of an ADE image.

    Args:
        image_path: ``.../ADE_train_00000001.jpg``.

    Returns:
        ``.../ADE_train_00000001_seg.png``.
    """
    return image_path.with_name(image_path.stem + "_seg.png")


def load_index(index_path: Path) -> list[tuple[str, str]]:
    """Read the (folder, filename) pairs of ``index_ade20k.pkl``.

    Args:
        index_path: the index pickle.

    Returns:
        List of (folder, filename) pairs in index order.

    Raises:
        PrepareError: if the pickle lacks equal-length ``folder`` and ``filename`` lists.
    """
    with open(index_path, "rb") as f:
        index = pickle.load(f)
    if not isinstance(index, dict) or "folder" not in index or "filename" not in index:
        raise PrepareError(f"{index_path} lacks the 'folder'/'filename' lists")
    folders, files = list(index["folder"]), list(index["filename"])
    if len(folders) != len(files):
        raise PrepareError(f"{index_path}: {len(folders)} folders but {len(files)} filenames")
    return [(str(d), str(n)) for d, n in zip(folders, files)]


def read_rgb_or_gray(path: Path) -> np.ndarray:
    """Read an image as stored (RGB or grayscale); other modes are converted to RGB.

    Args:
        path: image path.

    Returns:
        uint8 array, H x W x 3 or H x W.
    """
    with Image.open(path) as im:
        if im.mode not in ("RGB", "L"):
            im = im.convert("RGB")
        return np.asarray(im)


def convert_one(src: Path, filename: str, out_root: Path, lut: np.ndarray,
                overwrite: bool) -> bool:
    """Resize, re-encode and label one ADE image.

    Args:
        src: input JPEG.
        filename: its name in the index (also the output name).
        out_root: folder receiving ``images_detectron2`` and ``annotations_detectron2``.
        lut: raw id -> trainId table.
        overwrite: rewrite outputs that already exist.

    Returns:
        True if written, False if both outputs existed and were kept.

    Raises:
        PrepareError: if the segmentation is malformed or its size differs from the image's.
    """
    split = split_of(filename)
    dst_img = out_root / "images_detectron2" / split / filename
    dst_lab = out_root / "annotations_detectron2" / split / (Path(filename).stem + ".tif")
    if not overwrite and dst_img.is_file() and dst_lab.is_file():
        return False
    seg_path = seg_path_for(src)
    img = read_rgb_or_gray(src)
    with Image.open(seg_path) as seg_im:
        seg = np.asarray(seg_im if seg_im.mode == "RGB" else seg_im.convert("RGB"))
    if seg.shape[:2] != img.shape[:2]:
        raise PrepareError(f"{seg_path} is {seg.shape[1]}x{seg.shape[0]} but {src} is "
                           f"{img.shape[1]}x{img.shape[0]}")
    class_map = ade_class_map(seg)
    h, w = img.shape[:2]
    new_w, new_h = target_size(w, h)
    if (new_w, new_h) != (w, h):
        img = cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        class_map = cv2.resize(class_map, (new_w, new_h), interpolation=cv2.INTER_NEAREST)
    try:
        label = map_to_train_ids(class_map, lut)
    except ValueError as e:
        raise PrepareError(f"{seg_path}: {e}") from e
    atomic_save(Image.fromarray(img), dst_img, "JPEG")
    atomic_save(Image.fromarray(label), dst_lab, "TIFF")
    return True


def build_parser() -> argparse.ArgumentParser:
    """Build the command-line parser.

    Returns:
        The parser.
    """
    p = new_parser(DESCRIPTION)
    add_datasets_root_option(p)
    p.add_argument("--ade-root", type=Path, default=None,
                   help=f"unpacked {ADE_DIRNAME} folder (default: <root>/{ADE_DIRNAME})")
    p.add_argument("--index", type=Path, default=None,
                   help="index_ade20k.pkl (default: <ade-root>/index_ade20k.pkl)")
    p.add_argument("--output", type=Path, default=None,
                   help=f"output folder (default: <root>/{ADE_DIRNAME})")
    p.add_argument("--class-table", type=Path, default=CLASS_TABLE,
                   help="847-entry [name, raw_id] JSON (default: the one next to this script)")
    p.add_argument("--overwrite", action="store_true", help="rewrite outputs that already exist")
    return p


def run(args: argparse.Namespace) -> int:
    """Convert every image of the index; see module docstring.

    Args:
        args: parsed arguments.

    Returns:
        Process exit code.
    """
    lut = build_lut(load_class_table(args.class_table))
    ade_root = args.ade_root or args.datasets_root / ADE_DIRNAME
    how = (f"download {ADE_DIRNAME}.zip from the ADE20K site and unzip it into the datasets root "
           f"(or pass --ade-root)")
    require(ade_root, how, kind="folder")
    index_path = args.index or ade_root / "index_ade20k.pkl"
    require(index_path, how)
    items = [(input_path(ade_root, d, n), n) for d, n in load_index(index_path)]
    require_all((p for src, _ in items for p in (src, seg_path_for(src))),
                f"files listed in {index_path} are missing "
                f"(is {ADE_DIRNAME}.zip fully unpacked?)")

    out_root = args.output or args.datasets_root / ADE_DIRNAME
    for sub in ("images_detectron2", "annotations_detectron2"):
        for split in ("training", "validation"):
            (out_root / sub / split).mkdir(parents=True, exist_ok=True)
    written, skipped = convert_items(
        items, lambda item: convert_one(*item, out_root, lut, args.overwrite), "ade20k_full")
    per_split = Counter(split_of(filename) for _, filename in items)
    print(f"training: {per_split['training']} images, validation: {per_split['validation']} "
          f"images -> {out_root}")
    return report_totals(written, skipped, f"nothing was converted ({index_path} lists no images)")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point.

    Args:
        argv: arguments (default: sys.argv[1:]).

    Returns:
        0 on success, 1 if nothing was converted, 2 on a missing or malformed input.
    """
    args = build_parser().parse_args(argv)
    return run_reporting_errors(lambda: run(args), error_code=2)


if __name__ == "__main__":
    sys.exit(main())
