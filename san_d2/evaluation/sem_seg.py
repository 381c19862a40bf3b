"""detectron2's SemSegEvaluator, with SAN's pixels rejected as "unknown" counted as wrong."""
import numpy as np
import torch
from detectron2.evaluation import SemSegEvaluator

__all__ = ["SANSemSegEvaluator", "UNKNOWN_CATEGORY_ID"]

# The category id of unknown pixels in the saved predictions (sem_seg_predictions.json).
UNKNOWN_CATEGORY_ID = -1
_UNKNOWN = "unknown"


class SANSemSegEvaluator(SemSegEvaluator):
    """A pixel the model marks ``unknown`` is predicted as an extra class that no label
    holds: it is wrong wherever the label names a class (it stays in that class's
    denominator and in the pixel accuracy's), never ignored. The extra class itself is
    left out of the metrics; its pixels are saved with category id -1."""

    def __init__(self, dataset_name: str, **kwargs):
        super().__init__(dataset_name, **kwargs)
        self._unknown = self._num_classes
        self._num_classes += 1  # labels never hold it: it drops out of the class averages
        self._class_names = [*self._class_names, _UNKNOWN]
        if self._contiguous_id_to_dataset_id is not None:
            self._contiguous_id_to_dataset_id[self._unknown] = UNKNOWN_CATEGORY_ID

    def process(self, inputs, outputs):
        super().process(inputs, [self._unknown_as_extra_class(output) for output in outputs])

    def _unknown_as_extra_class(self, output):
        """Scores with one more channel that wins (argmax) exactly at the unknown pixels."""
        scores = output["sem_seg"]
        unknown = output.get("unknown")
        if unknown is None:
            unknown = torch.zeros(scores.shape[-2:], dtype=torch.bool)
        extra = torch.where(unknown.to(scores.device), float("inf"), float("-inf"))
        return {**output, "sem_seg": torch.cat([scores, extra[None].to(scores.dtype)])}

    def encode_json_sem_seg(self, sem_seg: np.ndarray, input_file_name: str):
        entries = super().encode_json_sem_seg(sem_seg, input_file_name)
        if self._contiguous_id_to_dataset_id is None:  # ids are the labels themselves
            for entry in entries:
                if entry["category_id"] == self._unknown:
                    entry["category_id"] = UNKNOWN_CATEGORY_ID
        return entries

    def evaluate(self):
        results = super().evaluate()
        if results is not None:
            metrics = results["sem_seg"]
            for key in (f"IoU-{_UNKNOWN}", f"ACC-{_UNKNOWN}"):
                metrics.pop(key, None)
        return results
