#!/usr/bin/env python3
"""Convert Pascal Context to the 459-class detectron2 layout used by san_d2.

Writes, under the datasets root:
  pcontext_full/{train,val}/image/<name>.jpg   copies of VOC2010/JPEGImages/<name>.jpg
  pcontext_full/{train,val}/label/<name>.tif   16-bit TIFF: train ids 0..458, 65535 = ignore

Label rule: LabelMap - 1 in uint16, where LabelMap (trainval/<name>.mat) is 0 for unlabeled
and 1..459 for the classes of the dataset's labels.txt; so class k becomes k - 1 and unlabeled
wraps around to 65535. All 459 classes are kept, as in MendelXu/SAN's
datasets/prepare_pcontext_sem_seg_459cls.py.
"""
import sys
from pathlib import Path

import numpy as np

# The helper sits next to this script; put it on the path also when the script is loaded by path.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _prepare_common import PContextTarget, pcontext_main  # noqa: E402


def convert_label_459(label_map: np.ndarray) -> np.ndarray:
    """Returns ``LabelMap - 1`` in uint16, so that 0 (unlabeled) wraps around to 65535."""
    return label_map.astype(np.uint16) - np.uint16(1)


# A uint16 array saved as TIFF is a 16-bit (mode I;16) image.
main = pcontext_main(__doc__, PContextTarget("pcontext_full", convert_label_459, ".tif", "TIFF"))

if __name__ == "__main__":
    sys.exit(main())
