"""The SAN meta-architecture."""
import contextlib
import logging
from collections import defaultdict
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from detectron2.config import configurable
from detectron2.data import MetadataCatalog
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.modeling.postprocessing import sem_seg_postprocess
from detectron2.structures import BitMasks, ImageList
from torch import nn
from torch.nn import functional as F

from .clip_loader import load_clip
from .clip_visual import ClipVisualFeatureExtractor, RecWithAttnBiasHead
from .criterion import SetCriterion
from .matcher import HungarianMatcher
from .ov_classifier import OpenVocabClassifier, load_template_set
from .inference import rejected_pixels, window_boxes
from .postprocessing import (LabelMaps, mask_probabilities, resized_labels, semantic_labels,
                             semantic_scores)
from .side_adapter import build_side_adapter_network
from .text_cache import resolve_text_cache_dir
from .vocabulary import check_vocabulary

logger = logging.getLogger(__name__)

__all__ = ["SAN", "AUTOCAST_DTYPES", "autocast_context"]


# Label value ignored in ``sem_seg`` targets of inputs that name no dataset (detectron2's).
DEFAULT_IGNORE_LABEL = 255

# MODEL.SAN.INFERENCE_DTYPE -> autocast dtype (None: plain float32).
AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast_context(device_type: str, dtype_name: str):
    """``torch.autocast`` for a name of AUTOCAST_DTYPES; a no-op context for "fp32"."""
    dtype = AUTOCAST_DTYPES[dtype_name]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type, dtype=dtype)


def _class_probabilities(logits: torch.Tensor, with_background: bool) -> torch.Tensor:
    """(Q, K + 1) class logits -> (Q, K) probabilities, or (Q, K + 1) with "no object" last."""
    probs = logits.float().softmax(-1)
    return probs if with_background else probs[:, :-1]


@META_ARCH_REGISTRY.register()
class SAN(nn.Module):
    """Side Adapter Network (Xu et al., CVPR 2023) for open-vocabulary semantic segmentation.

    Inputs are detectron2 dicts: ``image`` (uint8 (3, H, W) in the config's format), optional
    ``height``/``width`` of the output, and either ``vocabulary`` (class names) or ``meta``
    ``{"dataset_name": ...}`` naming a registered dataset whose ``stuff_classes`` are used. In
    training also ``instances`` (``gt_classes``, ``gt_masks``) or ``sem_seg`` (labels equal
    to the dataset's ``ignore_label`` metadata are ignored; 255 when the input names no
    dataset). Inference returns ``[{"sem_seg": (K, height, width)}]`` per image, independent
    of the rest of the batch; an input with ``labels_only: True`` gets ``sem_seg_labels``
    ((height, width) int64 arg-max) instead, computed without holding the (K, height, width)
    scores.
    """

    # State-dict entries recomputed from the config, never learned: a checkpoint may lack them
    # (mmsegmentation's files do) or hold another shape (trained with another NUM_CLASSES).
    DERIVED_STATE_KEYS = ("criterion.empty_weight", "ov_classifier.attn_mask")

    @configurable
    def __init__(
        self,
        *,
        clip_visual_extractor: ClipVisualFeatureExtractor,
        clip_rec_head: RecWithAttnBiasHead,
        side_adapter_network: nn.Module,
        ov_classifier: OpenVocabClassifier,
        criterion: SetCriterion,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        size_divisibility: int = 32,
        asymmetric_input: bool = True,
        clip_resolution: float = 0.5,
        sem_seg_postprocess_before_inference: bool = True,
        inference_dtype: str = "fp32",
        compile_networks: bool = False,
        unknown_threshold: float = 0.0,
        unknown_if_background: bool = False,
        sliding_window: Tuple[int, int] = (0, 0),
    ):
        """
        Args:
            clip_visual_extractor: CLIP's stem and first blocks.
            clip_rec_head: CLIP's remaining blocks with attention bias.
            side_adapter_network: predicts mask logits and attention biases.
            ov_classifier: text tower + background embedding.
            criterion: training losses.
            pixel_mean: per-channel mean (0-255 scale) of CLIP's pre-processing.
            pixel_std: per-channel std (0-255 scale).
            size_divisibility: images are padded to a multiple of this.
            asymmetric_input: CLIP sees the padded batch scaled by ``clip_resolution``.
            clip_resolution: scale factor of CLIP's input.
            sem_seg_postprocess_before_inference: resize masks to the output size before
                combining them with class scores (else combine, then resize).
            inference_dtype: "fp32", or "bf16"/"fp16" to run the networks under autocast at
                inference (post-processing and text embeddings stay in float32).
            compile_networks: ``torch.compile`` the forward of CLIP's two parts and of the side
                adapter (the first call of each input size compiles).
            unknown_threshold: pixels whose best class score is below it are "unknown" (0: off).
            unknown_if_background: pixels whose "no object" mass is at least their best class
                score are "unknown" (see :func:`rejected_pixels`).
            sliding_window: (size, stride): images larger than size x size (after the test
                resize) run in overlapping windows whose scores are averaged; (0, 0): off.
        """
        super().__init__()
        self.clip_visual_extractor = clip_visual_extractor
        self.clip_rec_head = clip_rec_head
        self.side_adapter_network = side_adapter_network
        self.ov_classifier = ov_classifier
        self.criterion = criterion
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)
        self.size_divisibility = size_divisibility
        self.asymmetric_input = asymmetric_input
        self.clip_resolution = clip_resolution
        self.sem_seg_postprocess_before_inference = sem_seg_postprocess_before_inference
        if inference_dtype not in AUTOCAST_DTYPES:
            raise ValueError(f"Unknown MODEL.SAN.INFERENCE_DTYPE {inference_dtype!r}: use one of "
                             f"{sorted(AUTOCAST_DTYPES)}.")
        self.inference_dtype = inference_dtype
        if compile_networks:
            for network in (clip_visual_extractor, side_adapter_network, clip_rec_head):
                network.forward = torch.compile(network.forward)
        self.unknown_threshold = unknown_threshold
        self.unknown_if_background = unknown_if_background
        window, stride = sliding_window
        if window < 0 or stride < 0 or (window and window % max(size_divisibility, 1)):
            raise ValueError(f"MODEL.SAN.SLIDING_WINDOW {sliding_window}: the size must be 0 (off) "
                             f"or a multiple of MODEL.SAN.SIZE_DIVISIBILITY ({size_divisibility}), "
                             "the stride 0 (two thirds of the size) or positive.")
        self.sliding_window = (window, stride or window * 2 // 3)

    @classmethod
    def from_config(cls, cfg):
        san = cfg.MODEL.SAN
        clip = load_clip(san.CLIP_MODEL_NAME, san.CLIP_PRETRAINED_NAME)
        visual = clip.model.visual
        clip_heads = visual.transformer.resblocks[0].attn.num_heads
        if cfg.MODEL.SIDE_ADAPTER.ATTN_BIAS.NUM_HEADS not in (1, clip_heads):
            raise ValueError(
                f"MODEL.SIDE_ADAPTER.ATTN_BIAS.NUM_HEADS is "
                f"{cfg.MODEL.SIDE_ADAPTER.ATTN_BIAS.NUM_HEADS} but {san.CLIP_MODEL_NAME} has "
                f"{clip_heads} heads: set it to {clip_heads}.")
        matcher = HungarianMatcher(cost_class=san.CLASS_WEIGHT, cost_mask=san.MASK_WEIGHT,
                                   cost_dice=san.DICE_WEIGHT, num_points=san.TRAIN_NUM_POINTS)
        criterion = SetCriterion(
            num_classes=san.NUM_CLASSES,
            matcher=matcher,
            weight_dict={"loss_ce": san.CLASS_WEIGHT, "loss_mask": san.MASK_WEIGHT,
                         "loss_dice": san.DICE_WEIGHT},
            no_object_weight=san.NO_OBJECT_WEIGHT,
            num_points=san.TRAIN_NUM_POINTS,
            oversample_ratio=san.OVERSAMPLE_RATIO,
            importance_sample_ratio=san.IMPORTANCE_SAMPLE_RATIO,
        )
        logger.info(
            f"SAN on {cfg.MODEL.DEVICE} (float32 weights): CLIP {san.CLIP_MODEL_NAME} with "
            f"{clip.weights} weights, side adapter {cfg.MODEL.SIDE_ADAPTER.VIT_NAME}, "
            f"{cfg.MODEL.SIDE_ADAPTER.NUM_QUERIES} queries, training vocabulary of "
            f"{san.NUM_CLASSES} classes, prompt templates '{san.CLIP_TEMPLATE_SET}'.")
        return {
            "clip_visual_extractor": ClipVisualFeatureExtractor(
                visual, san.FEATURE_LAST_LAYER_IDX, san.CLIP_FROZEN_EXCLUDE),
            "clip_rec_head": RecWithAttnBiasHead(
                visual, san.FEATURE_LAST_LAYER_IDX, san.CLIP_DEEPER_FROZEN_EXCLUDE,
                num_queries=cfg.MODEL.SIDE_ADAPTER.NUM_QUERIES,
                sos_token_format=san.SOS_TOKEN_FORMAT,
                downsample_method=san.REC_DOWNSAMPLE_METHOD, cross_attn=san.REC_CROSS_ATTN),
            "side_adapter_network": build_side_adapter_network(cfg, visual.transformer.width),
            "ov_classifier": OpenVocabClassifier(
                clip.model, clip.tokenizer, load_template_set(san.CLIP_TEMPLATE_SET),
                cache_dir=resolve_text_cache_dir(san.TEXT_EMBEDDING_CACHE)),
            "criterion": criterion,
            "pixel_mean": clip.pixel_mean,
            "pixel_std": clip.pixel_std,
            "size_divisibility": san.SIZE_DIVISIBILITY,
            "asymmetric_input": san.ASYMETRIC_INPUT,
            "clip_resolution": san.CLIP_RESOLUTION,
            "sem_seg_postprocess_before_inference": san.SEM_SEG_POSTPROCESS_BEFORE_INFERENCE,
            "inference_dtype": san.INFERENCE_DTYPE,
            "compile_networks": san.COMPILE,
            "unknown_threshold": san.UNKNOWN_THRESHOLD,
            "unknown_if_background": san.UNKNOWN_IF_BACKGROUND,
            "sliding_window": (san.SLIDING_WINDOW.SIZE, san.SLIDING_WINDOW.STRIDE),
        }

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    # ------------------------------------------------------------------------------------------
    def forward(self, batched_inputs: List[Dict]) -> List[Dict[str, torch.Tensor]]:
        if not batched_inputs:
            raise ValueError("SAN got an empty batch.")
        vocabulary = self._vocabulary(batched_inputs)
        images = [self._checked_image(x, i) for i, x in enumerate(batched_inputs)]
        if self.training:
            image_list = self._preprocess(images, min_size=self._target_size(batched_inputs))
            outputs = self._predict(image_list.tensor, vocabulary)
            return self.criterion(outputs, self._targets(batched_inputs, image_list))

        results: List[Optional[Dict[str, torch.Tensor]]] = [None] * len(images)
        windowed = [i for i, image in enumerate(images) if self._needs_windows(image)]
        whole = [i for i in range(len(images)) if i not in windowed]
        # Images of one padded size run together, so no image is padded for another's sake.
        for group in self._groups_by_padded_size([images[i] for i in whole]):
            indices = [whole[g] for g in group]
            image_list = self._preprocess([images[i] for i in indices])
            with autocast_context(self.device.type, self.inference_dtype):
                output = self._predict(image_list.tensor, vocabulary)[-1]
            for j, i in enumerate(indices):
                results[i] = self._image_result(
                    batched_inputs[i], output["pred_logits"][j], output["pred_masks"][j],
                    image_list.tensor.shape[-2:], image_list.image_sizes[j],
                    self._output_size(batched_inputs[i], images[i]))
        for i in windowed:
            results[i] = self._sliding_window_result(batched_inputs[i], images[i], vocabulary)
        return results

    def _predict(self, images: torch.Tensor, vocabulary: Sequence[str]) -> List[Dict[str, torch.Tensor]]:
        """(B, 3, H, W) normalised, padded -> per decoded stage ``pred_logits``, ``pred_masks``."""
        clip_input = images
        if self.asymmetric_input:
            clip_input = F.interpolate(images, scale_factor=self.clip_resolution, mode="bilinear",
                                       align_corners=False, recompute_scale_factor=False)
        clip_features = self.clip_visual_extractor(clip_input)
        mask_preds, attn_biases = self.side_adapter_network(images, clip_features)
        outputs = []
        for masks, biases in zip(mask_preds, attn_biases):
            mask_embeddings = self.clip_rec_head(clip_features[-1], biases)
            outputs.append({"pred_logits": self.ov_classifier(mask_embeddings, vocabulary),
                            "pred_masks": masks})
        return outputs

    def _semantic_inference(self, logits: torch.Tensor, masks: torch.Tensor,
                            padded_size: Tuple[int, int], image_size: Tuple[int, int],
                            output_size: Tuple[int, int], with_background: bool = False
                            ) -> torch.Tensor:
        """(Q, K + 1) logits and (Q, hs, ws) mask logits -> (K, height, width) scores, or
        (K + 1, height, width) with the "no object" mass last."""
        class_probs = _class_probabilities(logits, with_background)
        if self.sem_seg_postprocess_before_inference:
            return semantic_scores(class_probs, masks.float(), padded_size, image_size,
                                   output_size)
        scores = semantic_scores(class_probs, masks.float(), padded_size, padded_size,
                                 padded_size)
        return sem_seg_postprocess(scores, image_size, *output_size)

    def _labels_inference(self, logits: torch.Tensor, masks: torch.Tensor,
                          padded_size: Tuple[int, int], image_size: Tuple[int, int],
                          output_size: Tuple[int, int], with_background: bool = False
                          ) -> LabelMaps:
        """The arg-max of :meth:`_semantic_inference` without its (K, height, width) scores.
        Resizing after combining, the scores exist at the padded input size only."""
        class_probs = _class_probabilities(logits, with_background)
        if self.sem_seg_postprocess_before_inference:
            return semantic_labels(class_probs, masks.float(), padded_size, image_size,
                                   output_size, with_background=with_background)
        scores = semantic_scores(class_probs, masks.float(), padded_size, padded_size,
                                 padded_size)
        return resized_labels(scores, image_size, output_size, with_background=with_background)

    def _image_result(self, record: Dict, logits: torch.Tensor, masks: torch.Tensor,
                      padded_size: Tuple[int, int], image_size: Tuple[int, int],
                      output_size: Tuple[int, int]) -> Dict[str, torch.Tensor]:
        """``sem_seg`` (or, for ``labels_only``, ``sem_seg_labels``); ``background`` and
        ``unknown`` when asked or configured; ``proposal_masks`` (Q, H, W) and
        ``proposal_classes`` (Q, K + 1) when asked."""
        with_background = self._wants_background(record)
        if record.get("labels_only", False):
            maps = self._labels_inference(logits, masks, padded_size, image_size, output_size,
                                          with_background)
            result = self._label_result(record, maps)
        else:
            scores = self._semantic_inference(logits, masks, padded_size, image_size,
                                              output_size, with_background)
            result = self._split_scores(record, scores, with_background)
        if record.get("proposals", False):
            result["proposal_classes"] = logits.float().softmax(-1)
            result["proposal_masks"] = mask_probabilities(masks.float(), padded_size, image_size,
                                                          output_size)
        return result

    def _label_result(self, record: Dict, maps: LabelMaps) -> Dict[str, torch.Tensor]:
        """``sem_seg_labels``, and ``background`` / ``unknown`` as :meth:`_split_scores`."""
        result = {"sem_seg_labels": maps.labels}
        if maps.background is None:
            return result
        result["background"] = maps.background
        return self._with_unknown(record, result, maps.best[None])

    def _split_scores(self, record: Dict, scores: torch.Tensor,
                      with_background: bool) -> Dict[str, torch.Tensor]:
        if not with_background:
            return {"sem_seg": scores}
        result = {"sem_seg": scores[:-1], "background": scores[-1]}
        return self._with_unknown(record, result, result["sem_seg"])

    def _with_unknown(self, record: Dict, result: Dict[str, torch.Tensor],
                      scores: torch.Tensor) -> Dict[str, torch.Tensor]:
        """``result`` with ``unknown`` when the record's rejection is on; ``scores``: the
        (K, H, W) class scores, or their (1, H, W) maximum."""
        threshold, if_background = self._rejection(record)
        if threshold > 0 or if_background:
            result["unknown"] = rejected_pixels(scores, result["background"],
                                                threshold=threshold, if_background=if_background)
        return result

    def _rejection(self, record: Dict) -> Tuple[float, bool]:
        """(threshold, if_background) of a record: its own keys, else the config's."""
        return (float(record.get("unknown_threshold", self.unknown_threshold)),
                bool(record.get("unknown_if_background", self.unknown_if_background)))

    def _wants_background(self, record: Dict) -> bool:
        threshold, if_background = self._rejection(record)
        return bool(record.get("background", False)) or threshold > 0 or if_background

    # ------------------------------------------------------------------------------------------
    def _needs_windows(self, image: torch.Tensor) -> bool:
        window = self.sliding_window[0]
        return window > 0 and max(image.shape[-2:]) > window

    def _sliding_window_result(self, record: Dict, image: torch.Tensor,
                               vocabulary) -> Dict[str, torch.Tensor]:
        """Scores of overlapping windows, averaged where they overlap, then resized to the
        output size: memory for the networks grows with the window, not with the image."""
        if record.get("proposals", False):
            raise ValueError("Mask proposals are per window under MODEL.SAN.SLIDING_WINDOW: ask "
                             "for them on images that fit one window.")
        with_background = self._wants_background(record)
        normalized = (image.float() - self.pixel_mean) / self.pixel_std
        height, width = image.shape[-2:]
        total, count = None, torch.zeros(height, width, device=self.device)
        for top, left, bottom, right in window_boxes(height, width, *self.sliding_window):
            window = ImageList.from_tensors([normalized[:, top:bottom, left:right]],
                                            self.size_divisibility)
            with autocast_context(self.device.type, self.inference_dtype):
                output = self._predict(window.tensor, vocabulary)[-1]
            size = window.image_sizes[0]
            scores = self._semantic_inference(output["pred_logits"][0], output["pred_masks"][0],
                                              window.tensor.shape[-2:], size, size,
                                              with_background)
            if total is None:
                total = scores.new_zeros((scores.shape[0], height, width))
            total[:, top:bottom, left:right] += scores
            count[top:bottom, left:right] += 1
        total /= count
        if record.get("labels_only", False):
            maps = resized_labels(total, (height, width), self._output_size(record, image),
                                  with_background=with_background)
            return self._label_result(record, maps)
        scores = sem_seg_postprocess(total, (height, width), *self._output_size(record, image))
        return self._split_scores(record, scores, with_background)

    @staticmethod
    def _output_size(record: Dict, image: torch.Tensor) -> Tuple[int, int]:
        return record.get("height", image.shape[-2]), record.get("width", image.shape[-1])

    # ------------------------------------------------------------------------------------------
    def _checked_image(self, record: Dict, index: int) -> torch.Tensor:
        image = record.get("image") if isinstance(record, dict) else None
        if not isinstance(image, torch.Tensor):
            raise TypeError(f"Input {index} has no 'image' tensor: SAN takes a list of dicts "
                            "with 'image' as a uint8 (3, H, W) tensor.")
        if image.dtype != torch.uint8 or image.dim() != 3 or image.shape[0] != 3:
            raise ValueError(f"Input {index}: 'image' must be a uint8 tensor of shape (3, H, W), "
                             f"got {tuple(image.shape)} {image.dtype}.")
        return image.to(self.device, non_blocking=True)

    def _vocabulary(self, batched_inputs: List[Dict]) -> Tuple[str, ...]:
        vocabularies = {self._vocabulary_of(x, i) for i, x in enumerate(batched_inputs)}
        if len(vocabularies) > 1:
            raise ValueError("All images of a batch must share one vocabulary (one dataset).")
        return vocabularies.pop()

    @staticmethod
    def _vocabulary_of(record: Dict, index: int) -> Tuple[str, ...]:
        if "vocabulary" in record:
            return check_vocabulary(record["vocabulary"])
        dataset_name = (record.get("meta") or {}).get("dataset_name")
        if dataset_name is None:
            raise ValueError(f"Input {index} has neither 'vocabulary' (a list of class names) nor "
                             "'meta': {'dataset_name': ...} naming a registered dataset.")
        classes = MetadataCatalog.get(dataset_name).get("stuff_classes", None)
        if classes is None:
            raise ValueError(f"Dataset {dataset_name!r} has no 'stuff_classes' metadata to use "
                             "as the vocabulary.")
        return check_vocabulary(classes)

    def _preprocess(self, images: List[torch.Tensor],
                    min_size: Tuple[int, int] = (0, 0)) -> ImageList:
        """Normalised images, zero-padded to a multiple of the size divisibility and to at
        least ``min_size`` (labels padded beyond their image, mmseg's training recipe)."""
        normalized = [(x.float() - self.pixel_mean) / self.pixel_std for x in images]
        image_list = ImageList.from_tensors(normalized, self.size_divisibility)
        height, width = image_list.tensor.shape[-2:]
        extra_h, extra_w = max(min_size[0] - height, 0), max(min_size[1] - width, 0)
        if extra_h or extra_w:
            image_list.tensor = F.pad(image_list.tensor, (0, extra_w, 0, extra_h))
        return image_list

    @staticmethod
    def _target_size(batched_inputs: List[Dict]) -> Tuple[int, int]:
        """The largest label size of a training batch."""
        sizes = [record["sem_seg"].shape[-2:] for record in batched_inputs if "sem_seg" in record]
        sizes += [record["instances"].image_size for record in batched_inputs
                  if "instances" in record]
        return (max((s[0] for s in sizes), default=0), max((s[1] for s in sizes), default=0))

    def _groups_by_padded_size(self, images: List[torch.Tensor]) -> List[List[int]]:
        groups = defaultdict(list)
        d = max(self.size_divisibility, 1)
        for i, image in enumerate(images):
            groups[tuple(-(-s // d) * d for s in image.shape[-2:])].append(i)
        return list(groups.values())

    def _targets(self, batched_inputs: List[Dict], image_list: ImageList) -> List[Dict[str, torch.Tensor]]:
        """Per image ``labels`` (T,) and ``masks`` (T, H_pad, W_pad), zero-padded."""
        padded_h, padded_w = image_list.tensor.shape[-2:]
        targets = []
        for i, record in enumerate(batched_inputs):
            labels, masks = self._class_masks(record, i)
            padded = masks.new_zeros((masks.shape[0], padded_h, padded_w))
            padded[:, : masks.shape[1], : masks.shape[2]] = masks
            targets.append({"labels": labels.to(self.device), "masks": padded.to(self.device)})
        return targets

    def _class_masks(self, record: Dict, index: int) -> Tuple[torch.Tensor, torch.Tensor]:
        if "instances" in record:
            instances = record["instances"]
            masks = instances.gt_masks
            masks = masks.tensor if isinstance(masks, BitMasks) else masks
            return instances.gt_classes.long(), masks.bool()
        if "sem_seg" in record:
            label = record["sem_seg"]
            classes = label.unique()
            classes = classes[classes != self._ignore_label(record)].long()
            return classes, label[None] == classes[:, None, None]
        raise ValueError(f"Training input {index} has neither 'instances' nor 'sem_seg'.")

    @staticmethod
    def _ignore_label(record: Dict) -> int:
        dataset_name = (record.get("meta") or {}).get("dataset_name")
        if dataset_name is None:
            return DEFAULT_IGNORE_LABEL
        return MetadataCatalog.get(dataset_name).get("ignore_label", DEFAULT_IGNORE_LABEL)
