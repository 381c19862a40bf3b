"""A small synthetic segmentation dataset that san_d2 generates itself (the offline quick start).

Scenes of textured backgrounds (sky, grass, sand, water) with shapes (red disc, white
square) on them, saved as real JPEG images and PNG label maps in detectron2's format:
``<root>/images/{train,val}/*.jpg`` and ``<root>/labels/{train,val}/*.png`` (ignore 255 on a
thin border around each shape, as annotators leave).
"""
import os
from pathlib import Path
from typing import Tuple

import numpy as np
from PIL import Image

from ..utils.io import atomic_write
from .datasets.sem_seg import register_sem_seg

__all__ = ["SYNTHETIC_CLASSES", "make_scene", "generate_synthetic_dataset",
           "register_synthetic_dataset"]

SYNTHETIC_CLASSES = ("sky", "grass", "sand", "water", "red disc", "white square")
IGNORE_LABEL = 255


def _texture(kind: int, shape: Tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """(H, W, 3) float RGB texture of class ``kind``."""
    h, w = shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    noise = rng.normal(0, 1, (h, w, 1))
    if kind == 0:  # sky: vertical blue gradient
        base = np.stack([90 + 40 * ys / h, 150 + 40 * ys / h, 235 + 0 * ys], -1)
        return base + 6 * noise
    if kind == 1:  # grass: green with vertical streaks
        streaks = np.sin(xs * 1.3 + rng.uniform(0, 6))[..., None]
        return np.array([50, 140, 45]) + 25 * streaks + 18 * noise
    if kind == 2:  # sand: speckled yellow
        return np.array([215, 190, 120]) + 30 * noise
    if kind == 3:  # water: blue-green horizontal waves
        waves = np.sin(ys * 0.9 + 2 * np.sin(xs * 0.2))[..., None]
        return np.array([30, 110, 150]) + 30 * waves + 8 * noise
    if kind == 4:  # red disc
        return np.array([210, 40, 35]) + 10 * noise
    return np.array([235, 235, 235]) + 8 * noise  # white square


def make_scene(size: int, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """One scene: (size, size, 3) uint8 RGB image and (size, size) uint8 label map."""
    ys, xs = np.mgrid[0:size, 0:size]
    horizon = int(rng.uniform(0.3, 0.6) * size)
    ground = int(rng.integers(1, 4))  # grass, sand or water below the horizon
    label = np.where(ys < horizon + 4 * np.sin(xs / rng.uniform(5, 12)), 0, ground).astype(np.uint8)
    if rng.random() < 0.5:  # a second ground region on one side
        other = int(rng.choice([k for k in (1, 2, 3) if k != ground]))
        label[(label != 0) & (xs > rng.uniform(0.4, 0.8) * size)] = other
    shapes = []
    for kind in rng.permutation([4, 5])[: int(rng.integers(1, 3))]:
        r = rng.uniform(0.08, 0.18) * size
        cy, cx = rng.uniform(r, size - r, 2)
        inside = (((ys - cy) ** 2 + (xs - cx) ** 2 < r * r) if kind == 4
                  else (np.abs(ys - cy) < r) & (np.abs(xs - cx) < r))
        label[inside] = kind
        shapes.append(inside)
    image = np.zeros((size, size, 3))
    for kind in np.unique(label):
        mask = label == kind
        image[mask] = _texture(int(kind), (size, size), rng)[mask]
    for inside in shapes:  # an ignored one-pixel band around each shape's outline
        border = inside ^ np.pad(inside, 1)[2:, 1:-1] & np.pad(inside, 1)[:-2, 1:-1] \
            & np.pad(inside, 1)[1:-1, 2:] & np.pad(inside, 1)[1:-1, :-2]
        label[border] = IGNORE_LABEL
    return np.clip(image, 0, 255).astype(np.uint8), label


def generate_synthetic_dataset(root: str, num_train: int = 300, num_val: int = 60,
                               size: int = 128, seed: int = 0) -> Path:
    """Writes the dataset under ``root`` (skips it if complete); returns the root."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for split, count in (("train", num_train), ("val", num_val)):
        image_dir, label_dir = root / "images" / split, root / "labels" / split
        image_dir.mkdir(parents=True, exist_ok=True)
        label_dir.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            image, label = make_scene(size, rng)  # drawn even when skipped: same data each run
            stem = f"{split}_{i:05d}"
            if not (label_dir / f"{stem}.png").is_file():
                # The label is written last and each file atomically: a scene whose label
                # exists is complete, so an interrupted run resumes where it stopped.
                with atomic_write(image_dir / f"{stem}.jpg", remove_leftovers=True) as f:
                    Image.fromarray(image).save(f, format="JPEG", quality=95)
                with atomic_write(label_dir / f"{stem}.png", remove_leftovers=True) as f:
                    Image.fromarray(label).save(f, format="PNG")
    return root


def register_synthetic_dataset(root: str, prefix: str = "san_synthetic") -> Tuple[str, str]:
    """Registers ``<prefix>_train`` and ``<prefix>_val``; returns their names."""
    names = []
    for split in ("train", "val"):
        name = f"{prefix}_{split}"
        register_sem_seg(name, os.path.join(root, "images", split), os.path.join(root, "labels", split),
                         stuff_classes=SYNTHETIC_CLASSES, ignore_label=IGNORE_LABEL,
                         prepare_hint="`san-quickstart` (or generate_synthetic_dataset)")
        names.append(name)
    return names[0], names[1]
