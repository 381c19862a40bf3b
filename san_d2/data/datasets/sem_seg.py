"""Loading semantic-segmentation datasets in detectron2's format, with checks."""
import os
from typing import Callable, Dict, List, Optional

from detectron2.data import DatasetCatalog, MetadataCatalog

__all__ = ["load_paired_sem_seg", "register_sem_seg"]

DATASETS_README = "datasets/README.md"


def _files_by_stem(folder: str, ext: str) -> Dict[str, str]:
    suffix = "." + ext
    with os.scandir(folder) as entries:
        return {e.name[: -len(suffix)]: e.path for e in entries
                if e.is_file() and e.name.endswith(suffix)}


def load_paired_sem_seg(dataset_name: str, image_root: str, gt_root: str, gt_ext: str,
                        image_ext: str, prepare_hint: str) -> List[Dict]:
    """Pairs every label file with the image of the same name (detectron2 records).

    Images without a label are left out (label files of empty images are not written by the
    preparation scripts, and VOC's image folder holds more images than its splits), but a
    label without its image is an error: images and labels are paired by name, never by
    position.

    Raises:
        FileNotFoundError: a folder is missing or holds no label, with what to run.
        ValueError: labels without a matching image.
    """
    for kind, folder in (("images", image_root), ("labels", gt_root)):
        if not os.path.isdir(folder):
            raise FileNotFoundError(
                f"Dataset '{dataset_name}' expects its {kind} in {folder}, which does not exist. "
                f"Prepare it with {prepare_hint} (see {DATASETS_README}); the datasets root is "
                f"$DETECTRON2_DATASETS (default ./datasets).")
    labels = _files_by_stem(gt_root, gt_ext)
    if not labels:
        raise FileNotFoundError(f"Dataset '{dataset_name}': no *.{gt_ext} labels in {gt_root}. "
                                f"Prepare it with {prepare_hint}.")
    images = _files_by_stem(image_root, image_ext)
    unmatched = sorted(set(labels) - set(images))
    if unmatched:
        raise ValueError(
            f"Dataset '{dataset_name}': {len(unmatched)} of {len(labels)} labels in {gt_root} have "
            f"no image {image_root}/<name>.{image_ext} (e.g. {', '.join(unmatched[:5])}). Images "
            f"and labels must correspond by file name; re-run {prepare_hint}.")
    return [{"file_name": images[stem], "sem_seg_file_name": labels[stem]}
            for stem in sorted(labels)]


def register_sem_seg(name: str, image_root: str, gt_root: str, *, stuff_classes, ignore_label: int,
                     gt_ext: str = "png", image_ext: str = "jpg", prepare_hint: str,
                     check_records: Optional[Callable[[List[Dict]], None]] = None,
                     **extra_metadata) -> None:
    """Registers a checked semantic-segmentation dataset and its metadata.

    A dataset that detectron2 already registered (ADE20K-150) keeps its metadata; only its
    loader is replaced by the checked one, reading the same folders. ``check_records``, if
    given, is called with the records on each load and raises on what it refuses.
    """
    def load() -> List[Dict]:
        records = load_paired_sem_seg(name, image_root, gt_root, gt_ext, image_ext, prepare_hint)
        if check_records is not None:
            check_records(records)
        return records

    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
    DatasetCatalog.register(name, load)
    previous = MetadataCatalog.get(name).as_dict()
    previous.pop("name", None)
    MetadataCatalog.remove(name)  # metadata values cannot be changed in place
    MetadataCatalog.get(name).set(**{
        "stuff_classes": list(previous.get("stuff_classes") or stuff_classes),
        "image_root": image_root,
        "sem_seg_root": gt_root,
        "evaluator_type": "sem_seg",
        "ignore_label": ignore_label,
        **extra_metadata,
    })
