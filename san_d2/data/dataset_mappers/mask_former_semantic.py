"""The ``mask_former_semantic`` training mapper of the paper's code (after Mask2Former's)."""
import copy
import logging
from typing import Dict, List, Sequence, Union

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import MetadataCatalog
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.projects.point_rend import ColorAugSSDTransform
from detectron2.structures import Instances
from torch.nn import functional as F

logger = logging.getLogger(__name__)

__all__ = ["MaskFormerSemanticDatasetMapper"]

IMAGE_PAD_VALUE = 128


def training_ignore_label(dataset_names: Sequence[str]) -> int:
    """The ``ignore_label`` the training datasets' metadata share (255 for 8-bit labels,
    65535 for PC-459 and ADE-847)."""
    values = {name: MetadataCatalog.get(name).get("ignore_label", None) for name in dataset_names}
    missing = [name for name, value in values.items() if value is None]
    if missing:
        raise ValueError(f"Training datasets {missing} have no 'ignore_label' metadata: set it "
                         "when registering them.")
    if len(set(values.values())) > 1:
        raise ValueError(f"The training datasets ignore different label values {values}: one "
                         "mapper pads and crops with one ignore value, so train on datasets "
                         "that share it.")
    return next(iter(values.values()))


class MaskFormerSemanticDatasetMapper:
    """Turns a semantic-segmentation record into a padded training sample with class masks.

    Output: ``image`` (3, H, W) uint8, ``sem_seg`` (H, W) int64, and ``instances`` with
    ``gt_classes`` (the label values present, ignore excluded) and ``gt_masks`` (bool
    (K, H, W), ``sem_seg == c``). Labels may be 8- or 16-bit.
    """

    @configurable
    def __init__(self, is_train: bool = True, *, augmentations: List[Union[T.Augmentation, T.Transform]],
                 image_format: str, ignore_label: int, size_divisibility: int,
                 pad_image: bool = True):
        """
        Args:
            is_train: must be True: this mapper is for training only.
            augmentations: applied in order to the image and its label.
            image_format: format of the returned image ("RGB" for SAN).
            ignore_label: label value excluded from the masks and used to pad labels.
            size_divisibility: pad to exactly this size (right and bottom) when > 0.
            pad_image: pad the image too, with 128 (the paper's code); else only the label, and
                the model pads the normalised image with 0 to the label's size (mmseg's).
        """
        if not is_train:
            raise ValueError("MaskFormerSemanticDatasetMapper is for training; use detectron2's "
                             "DatasetMapper(cfg, is_train=False) for evaluation.")
        self.augmentations = T.AugmentationList(augmentations)
        self.image_format = image_format
        self.ignore_label = ignore_label
        self.size_divisibility = size_divisibility
        self.pad_image = pad_image
        logger.info(f"[MaskFormerSemanticDatasetMapper] augmentations: {augmentations}")

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        ignore_label = training_ignore_label(cfg.DATASETS.TRAIN)
        augmentations = [T.ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN,
                                              cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING)]
        if cfg.INPUT.CROP.ENABLED:
            augmentations.append(T.RandomCrop_CategoryAreaConstraint(
                cfg.INPUT.CROP.TYPE, cfg.INPUT.CROP.SIZE, cfg.INPUT.CROP.SINGLE_CATEGORY_MAX_AREA,
                ignore_label))
        if cfg.INPUT.COLOR_AUG_SSD:
            augmentations.append(ColorAugSSDTransform(img_format=cfg.INPUT.FORMAT))
        augmentations.append(T.RandomFlip())
        return {
            "is_train": is_train,
            "augmentations": augmentations,
            "image_format": cfg.INPUT.FORMAT,
            "ignore_label": ignore_label,
            "size_divisibility": cfg.INPUT.SIZE_DIVISIBILITY,
            "pad_image": not cfg.INPUT.PAD_AFTER_NORMALIZATION,
        }

    def __call__(self, dataset_dict: Dict) -> Dict:
        dataset_dict = copy.deepcopy(dataset_dict)
        if "annotations" in dataset_dict:
            raise ValueError("The mask_former_semantic mapper takes semantic labels "
                             "('sem_seg_file_name'), not instance 'annotations'.")
        image = utils.read_image(dataset_dict["file_name"], format=self.image_format)
        utils.check_image_size(dataset_dict, image)
        if "sem_seg_file_name" not in dataset_dict:
            raise ValueError(f"{dataset_dict['file_name']}: a training record needs "
                             "'sem_seg_file_name'.")
        # Read without conversion (16-bit labels stay 16-bit); as float so that torch can
        # resize it (nearest) where uint16 is not supported.
        sem_seg = utils.read_image(dataset_dict.pop("sem_seg_file_name")).astype("double")

        aug_input = T.AugInput(image, sem_seg=sem_seg)
        self.augmentations(aug_input)
        image = torch.as_tensor(np.ascontiguousarray(aug_input.image.transpose(2, 0, 1)))
        sem_seg = torch.as_tensor(aug_input.sem_seg.astype("long"))

        if self.size_divisibility > 0:
            height, width = image.shape[-2:]
            padding = [0, self.size_divisibility - width, 0, self.size_divisibility - height]
            if self.pad_image:
                image = F.pad(image, padding, value=IMAGE_PAD_VALUE)
            sem_seg = F.pad(sem_seg, padding, value=self.ignore_label)

        dataset_dict["image"] = image
        dataset_dict["sem_seg"] = sem_seg
        dataset_dict["instances"] = self._class_masks(sem_seg)
        return dataset_dict

    def _class_masks(self, sem_seg: torch.Tensor) -> Instances:
        instances = Instances(tuple(sem_seg.shape))
        classes = sem_seg.unique()
        classes = classes[classes != self.ignore_label]
        instances.gt_classes = classes.to(torch.int64)
        instances.gt_masks = sem_seg[None] == classes[:, None, None]
        return instances
