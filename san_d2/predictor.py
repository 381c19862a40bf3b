"""SANPredictor: segment pictures with any vocabulary."""
import logging
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.modeling import build_model

from .checkpoint import SANCheckpointer
from .config import get_san_cfg
from .data.transforms import build_test_resize
from .modeling.vocabulary import check_vocabulary, class_names
from .utils import fall_back_to_cpu_without_cuda
from .utils.images import ImageInput, load_rgb_image

logger = logging.getLogger(__name__)

__all__ = ["SANPredictor", "SegmentationResult", "Proposals", "load_rgb_image"]


@dataclass
class Proposals:
    """SAN's mask proposals for one image.

    Attributes:
        masks: (Q, H, W) float32 mask probabilities at the image's size.
        class_probs: (Q, K + 1) float32 class probabilities; the last column is "no object".
    """

    masks: torch.Tensor
    class_probs: torch.Tensor

    def ranked(self, top_k: Optional[int] = None) -> List[Tuple[int, int, float]]:
        """(proposal, its best class, that class's probability), most confident first."""
        probs, classes = self.class_probs[:, :-1].max(dim=1)
        order = probs.argsort(descending=True)[:top_k]
        return [(int(q), int(classes[q]), float(probs[q])) for q in order]


@dataclass
class SegmentationResult:
    """What :meth:`SANPredictor.predict` returns.

    Attributes:
        class_map: (H, W) int64 index into ``vocabulary`` per pixel; -1 where ``unknown``.
        scores: (K, H, W) float32 per-class scores (sums over proposals of class x mask
            probabilities); None when not asked for (``predict(..., scores=False)``).
        vocabulary: the K class names (a class given as synonyms goes by its first name).
        unknown: (H, W) bool, pixels rejected as none of the classes, when rejection is on.
        background: (H, W) float32 "no object" mass, when rejection is on or it is asked for.
        proposals: the mask proposals, when asked for.
    """

    class_map: np.ndarray
    scores: Optional[torch.Tensor]
    vocabulary: Tuple[str, ...]
    unknown: Optional[np.ndarray] = None
    background: Optional[torch.Tensor] = None
    proposals: Optional[Proposals] = None

    def pixel_shares(self) -> dict:
        """{class name: share of the pixels} for the classes present, largest first; pixels
        rejected as none of them count as "unknown"."""
        counts = np.bincount(self.class_map.ravel() + 1, minlength=len(self.vocabulary) + 1)
        names = ("unknown", *self.vocabulary)
        order = np.argsort(-counts, kind="stable")
        return {names[i]: counts[i] / self.class_map.size for i in order if counts[i]}

    def describe(self, num_named: Optional[int] = None) -> str:
        """"sky 52.0%, sofa 31.0%, other 17.0%": the classes present, largest first; classes
        from index ``num_named`` on (a vocabulary expansion) are summed up as "other"."""
        num_named = len(self.vocabulary) if num_named is None else num_named
        named = {name: i < num_named for i, name in enumerate(self.vocabulary)}
        named["unknown"] = True
        shares = self.pixel_shares()
        parts = [f"{name} {100 * share:.1f}%" for name, share in shares.items() if named[name]]
        other = sum(share for name, share in shares.items() if not named[name])
        if other:
            parts.append(f"other {100 * other:.1f}%")
        return ", ".join(parts)


class SANPredictor:
    """Builds SAN from a config, loads weights, and segments images with a vocabulary.

    Example::

        predictor = SANPredictor("configs/san_clip_vit_res4_coco.yaml", "san_vit_b_16.pth")
        result = predictor.predict("street.jpg", ["car", "road", "tree", "sky"])
    """

    def __init__(self, config: Union[str, CfgNode], weights: Optional[str] = None,
                 opts: Sequence[str] = ()):
        """
        Args:
            config: a config file or a built config (SAN keys included).
            weights: checkpoint to load (default ``MODEL.WEIGHTS``; none: random weights).
            opts: ``KEY VALUE`` overrides.
        """
        cfg = get_san_cfg(config, opts) if isinstance(config, (str, os.PathLike)) else config.clone()
        cfg.defrost()
        if opts and not isinstance(config, (str, os.PathLike)):
            cfg.merge_from_list(list(opts))
        if weights is not None:
            cfg.MODEL.WEIGHTS = weights
        fall_back_to_cpu_without_cuda(cfg)
        cfg.freeze()
        self.cfg = cfg
        self.model = build_model(cfg).eval()
        if cfg.MODEL.WEIGHTS:
            SANCheckpointer(self.model).load(cfg.MODEL.WEIGHTS)
        else:
            logger.warning("No MODEL.WEIGHTS given: SAN runs with random side-adapter weights.")
        self.resize = build_test_resize(cfg)  # INPUT.TEST_RESIZE
        self.input_format = cfg.INPUT.FORMAT

    @torch.inference_mode()
    def predict(self, image: Union[ImageInput, Sequence[ImageInput]], vocabulary: Sequence, *,
                unknown_threshold: Optional[float] = None,
                unknown_if_background: Optional[bool] = None,
                proposals: bool = False, scores: bool = True
                ) -> Union[SegmentationResult, List[SegmentationResult]]:
        """Segments an image, or a list of images (of any sizes, one model call), into the
        classes of ``vocabulary``: names, or lists of synonyms (averaged into one class).

        Args:
            unknown_threshold, unknown_if_background: rejection of pixels that are none of the
                classes (default: MODEL.SAN.UNKNOWN_THRESHOLD / UNKNOWN_IF_BACKGROUND).
            proposals: also return the mask proposals.
            scores: also return the (K, H, W) per-class scores. Without them the labels are
                computed in bands of rows, in memory that does not grow with K x H x W (the
                same labels; what drawing a large photo with many classes needs).
        Returns:
            One result per image (a list for a list).
        """
        classes = check_vocabulary(vocabulary)
        options = {"vocabulary": list(classes), "proposals": proposals, "labels_only": not scores}
        if unknown_threshold is not None:
            options["unknown_threshold"] = unknown_threshold
        if unknown_if_background is not None:
            options["unknown_if_background"] = unknown_if_background
        batch = isinstance(image, (list, tuple))
        records = [{**self._model_input(load_rgb_image(i)), **options}
                   for i in (image if batch else [image])]
        outputs = self.model(records)
        results = [_result(output, class_names(classes)) for output in outputs]
        return results if batch else results[0]

    def _model_input(self, rgb: np.ndarray) -> Dict:
        height, width = rgb.shape[:2]
        resized = self.resize.get_transform(rgb).apply_image(rgb)
        if self.input_format == "BGR":
            resized = resized[:, :, ::-1]
        tensor = torch.as_tensor(np.ascontiguousarray(resized.transpose(2, 0, 1)))
        return {"image": tensor, "height": height, "width": width}


def _result(output: Dict[str, torch.Tensor], names: Tuple[str, ...]) -> SegmentationResult:
    scores = output.get("sem_seg")
    labels = output["sem_seg_labels"] if scores is None else scores.argmax(0)  # on the device
    scores = None if scores is None else scores.cpu()
    class_map = labels.cpu().numpy()
    unknown = output.get("unknown")
    if unknown is not None:
        unknown = unknown.cpu().numpy()
        class_map[unknown] = -1
    proposals = None
    if "proposal_masks" in output:
        proposals = Proposals(output["proposal_masks"].cpu(), output["proposal_classes"].cpu())
    background = output.get("background")
    return SegmentationResult(class_map, scores, names, unknown,
                              None if background is None else background.cpu(), proposals)
