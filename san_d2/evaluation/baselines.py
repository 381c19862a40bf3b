"""Reference levels to read an mIoU against."""
import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image

__all__ = ["chance_miou"]


def chance_miou(dataset_name: str) -> float:
    """Expected mIoU (x100) of guessing every pixel's class uniformly at random.

    With K classes and n_c labelled pixels of class c out of N, uniform guessing gets
    n_c / K true positives and predicts c on N / K pixels: IoU_c = (n_c / K) / (n_c + N / K
    - n_c / K), averaged over the classes present.
    """
    metadata = MetadataCatalog.get(dataset_name)
    num_classes = len(metadata.stuff_classes)
    counts = np.zeros(num_classes, dtype=np.int64)
    for record in DatasetCatalog.get(dataset_name):
        label = np.asarray(Image.open(record["sem_seg_file_name"])).ravel()
        label = label[label != metadata.ignore_label]
        counts += np.bincount(label, minlength=num_classes)[:num_classes]
    total = counts.sum()
    true_positive = counts / num_classes
    ious = true_positive / (counts + total / num_classes - true_positive)
    return 100.0 * float(ious[counts > 0].mean())
