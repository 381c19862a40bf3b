#!/usr/bin/env python3
"""Convert ADE20K (2021_17_01 release) to the 847-class detectron2 layout used by san_d2.

Raw file to download and where to unpack it:
  ADE20K_2021_17_01.zip from the ADE20K site (ade20k.csail.mit.edu, registration required).
  Unzip it into the datasets root so that <root>/ADE20K_2021_17_01/index_ade20k.pkl and
  <root>/ADE20K_2021_17_01/images/ADE/ exist (or pass --ade-root).

Writes, under <root>/ADE20K_2021_17_01/ (or --output), for every image of the index:
  images_detectron2/{training,validation}/<filename>        the image, shorter side at most 512,
                                                            re-encoded as JPEG (PIL's quality 75)
  annotations_detectron2/{training,validation}/<stem>.tif   16-bit TIFF: train ids 0..846,
                                                            65535 = ignore
The class of a pixel is decoded from <stem>_seg.png; the 847 classes and their order come from
ade20k_847_classes.json next to this script, a copy of the table in MaskFormer's
datasets/prepare_ade20k_full_sem_seg.py, whose rules this script follows.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import sys
from functools import partial
from pathlib import Path, PurePosixPath
from typing import NamedTuple

import cv2
import numpy as np
from PIL import Image

# The helper sits next to this script; put it on the path also when the script is loaded by path.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _prepare_common import (  # noqa: E402
    Conversion, PrepareError, atomic_save, convert_splits, reading, require, require_all,
    script_main,
)

ADE_DIRNAME = "ADE20K_2021_17_01"
SPLITS = ("training", "validation")
CLASS_TABLE = Path(__file__).resolve().with_name("ade20k_847_classes.json")
NUM_CLASSES = 847
# A checksum of MaskFormer's table (its 847 raw ids in train-id order, as decimals joined by
# ","), so that an edited or truncated copy is refused.
RAW_IDS_SHA256 = "bcfc1752c4119012ed706b14f893526e479b90d0a6c2fe32ecaa1ad61e87bd0b"
MAX_SIZE = 512
IGNORE = 65535
# int32(R / 10) * 256 + G with 8-bit R and G is at most 25 * 256 + 255.
RAW_ID_LIMIT = 25 * 256 + 256
ZIP_DOWNLOAD = (f"download {ADE_DIRNAME}.zip from the ADE20K site and unzip it into the "
                "datasets root (or pass --ade-root)")


def raw_ids_sha256(raw_ids: list[int]) -> str:
    """The hex SHA-256 of the raw ids as decimals joined by ","."""
    return hashlib.sha256(",".join(str(i) for i in raw_ids).encode("utf-8")).hexdigest()


def load_class_table(path: Path = CLASS_TABLE) -> list[tuple[str, int]]:
    """The 847 (name, raw id) pairs in train-id order, checked against RAW_IDS_SHA256.

    Raises:
        PrepareError: The file is missing, malformed, or its raw-id checksum is wrong.
    """
    require(path, "it ships with this script; restore it")
    with reading(path), open(path, encoding="utf-8") as f:
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
    """The uint16 table raw id -> train id, 65535 for the raw ids not in ``table``."""
    lut = np.full(RAW_ID_LIMIT, IGNORE, dtype=np.uint16)
    for train_id, (_, raw) in enumerate(table):
        lut[raw] = train_id
    return lut


def ade_class_map(seg_rgb: np.ndarray) -> np.ndarray:
    """The int32 raw ids of a ``_seg.png``: ``int32(R / 10) * 256 + G``; B (instances) is unused."""
    r = seg_rgb[:, :, 0]
    g = seg_rgb[:, :, 1]
    return (r / 10).astype(np.int32) * 256 + g.astype(np.int32)


def target_size(w: int, h: int) -> tuple[int, int]:
    """The output (width, height): the shorter side becomes 512 when it exceeds 512.

    That is h = 512 and w = round(w / h * 512) when w >= h > 512, w = 512 and
    h = round(h / w * 512) when h >= w > 512; otherwise the size is kept.
    """
    if w >= h > MAX_SIZE:
        return round(w / float(h) * MAX_SIZE), MAX_SIZE
    if h >= w > MAX_SIZE:
        return MAX_SIZE, round(h / float(w) * MAX_SIZE)
    return w, h


def map_to_train_ids(class_map: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Looks the raw ids up in ``lut``.

    Raises:
        ValueError: A raw id lies outside the table.
    """
    if class_map.size and (class_map.min() < 0 or class_map.max() >= len(lut)):
        raise ValueError(f"raw ids out of range: {class_map.min()}..{class_map.max()}")
    return lut[class_map]


def split_of(filename: str) -> str:
    """The split of an image: ``validation`` if the filename's second "_" token is ``val``."""
    parts = filename.split("_")
    return "validation" if len(parts) > 1 and parts[1] == "val" else "training"


def input_path(ade_root: Path, folder: str, filename: str) -> Path:
    """``folder/filename`` under ``ade_root``.

    The index's folders are relative to the datasets root, so their first component
    (ADE20K_2021_17_01) is replaced by ``ade_root``.
    """
    parts = PurePosixPath(str(folder).replace("\\", "/")).parts
    if parts and parts[0] in (ADE_DIRNAME, ade_root.name):
        parts = parts[1:]
    return ade_root.joinpath(*parts, filename)


def seg_path_for(image_path: Path) -> Path:
    """``.../ADE_train_00000001_seg.png`` for ``.../ADE_train_00000001.jpg``."""
    return image_path.with_name(image_path.stem + "_seg.png")


def load_index(index_path: Path) -> list[tuple[str, str]]:
    """The (folder, filename) pairs of ``index_ade20k.pkl``, in index order.

    Raises:
        PrepareError: The pickle lacks equal-length ``folder`` and ``filename`` lists.
    """
    with reading(index_path), open(index_path, "rb") as f:
        index = pickle.load(f)
    if not isinstance(index, dict) or "folder" not in index or "filename" not in index:
        raise PrepareError(f"{index_path} lacks the 'folder'/'filename' lists")
    folders, files = list(index["folder"]), list(index["filename"])
    if len(folders) != len(files):
        raise PrepareError(f"{index_path}: {len(folders)} folders but {len(files)} filenames")
    return [(str(d), str(n)) for d, n in zip(folders, files)]


def read_rgb_or_gray(path: Path) -> np.ndarray:
    """The image as decoded (RGB or grayscale), like MaskFormer's script.

    Other modes (CMYK, palette, ...), which that script could not have written as JPEG, are
    converted to RGB.
    """
    with Image.open(path) as im:
        if im.mode not in ("RGB", "L"):
            im = im.convert("RGB")
        return np.asarray(im)


class IndexedImage(NamedTuple):
    """One image of the index and where its outputs go."""

    source: Path
    image_out: Path
    label_out: Path


def indexed_image(ade_root: Path, out_root: Path, folder: str, filename: str) -> IndexedImage:
    """The paths of the image ``folder/filename`` of the index."""
    split = split_of(filename)
    return IndexedImage(input_path(ade_root, folder, filename),
                        out_root / "images_detectron2" / split / filename,
                        out_root / "annotations_detectron2" / split / f"{Path(filename).stem}.tif")


def convert_one(image: IndexedImage, lut: np.ndarray) -> bool:
    """Resizes, re-encodes and labels one image; returns True (none is left out).

    Raises:
        PrepareError: The segmentation is malformed or its size differs from the image's.
    """
    seg_path = seg_path_for(image.source)
    with reading(image.source):
        img = read_rgb_or_gray(image.source)
    with reading(seg_path), Image.open(seg_path) as seg_im:
        seg = np.asarray(seg_im if seg_im.mode == "RGB" else seg_im.convert("RGB"))
    if seg.shape[:2] != img.shape[:2]:
        raise PrepareError(f"{seg_path} is {seg.shape[1]}x{seg.shape[0]} but {image.source} is "
                           f"{img.shape[1]}x{img.shape[0]}")
    class_map = ade_class_map(seg)
    h, w = img.shape[:2]
    new_w, new_h = target_size(w, h)
    if (new_w, new_h) != (w, h):
        img = cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        class_map = cv2.resize(class_map, (new_w, new_h), interpolation=cv2.INTER_NEAREST)
    with reading(seg_path):
        label = map_to_train_ids(class_map, lut)
    atomic_save(Image.fromarray(img), image.image_out, "JPEG")
    atomic_save(Image.fromarray(label), image.label_out, "TIFF")
    return True


def add_options(parser: argparse.ArgumentParser) -> None:
    """Adds the input and output options."""
    parser.add_argument("--ade-root", type=Path, metavar="DIR",
                        help=f"unpacked {ADE_DIRNAME} folder (default: <root>/{ADE_DIRNAME})")
    parser.add_argument("--index", type=Path, metavar="FILE",
                        help="index_ade20k.pkl (default: <ade-root>/index_ade20k.pkl)")
    parser.add_argument("--output", type=Path, metavar="DIR",
                        help=f"output folder (default: <root>/{ADE_DIRNAME})")
    parser.add_argument("--class-table", type=Path, metavar="FILE", default=CLASS_TABLE,
                        help="847-entry [name, raw_id] JSON (default: ade20k_847_classes.json "
                             "next to this script)")


def list_images(args: argparse.Namespace) -> dict[str, list[IndexedImage]]:
    """The images of the index by split, after checking that they and their labels exist."""
    ade_root = args.ade_root or args.datasets_root / ADE_DIRNAME
    require(ade_root, ZIP_DOWNLOAD, kind="folder")
    index_path = args.index or ade_root / "index_ade20k.pkl"
    require(index_path, ZIP_DOWNLOAD)
    out_root = args.output or args.datasets_root / ADE_DIRNAME
    images = {split: [] for split in SPLITS}
    for folder, filename in load_index(index_path):
        images[split_of(filename)].append(indexed_image(ade_root, out_root, folder, filename))
    sources = [image.source for split_images in images.values() for image in split_images]
    require_all((path for source in sources for path in (source, seg_path_for(source))),
                f"files listed in {index_path} are missing", f"unzip {ADE_DIRNAME}.zip fully")
    return images


def run(args: argparse.Namespace) -> int:
    """Converts every image of the index."""
    lut = build_lut(load_class_table(args.class_table))
    conversion = Conversion(outputs=lambda image: (image.image_out, image.label_out),
                            convert=partial(convert_one, lut=lut), inputs="images")
    return convert_splits(list_images(args), conversion, args.overwrite)


main = script_main(__doc__, run, add_options)

if __name__ == "__main__":
    sys.exit(main())
