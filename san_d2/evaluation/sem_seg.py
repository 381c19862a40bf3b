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

    # Evaluators with this attribute set read only the arg-max of the scores: the trainer then
    # asks the model for labels (``labels_only``), which need far less memory.
    labels_suffice = True

    def __init__(self, dataset_name: str, **kwargs):
        super().__init__(dataset_name, **kwargs)
        self._unknown = self._num_classes
        self._num_classes += 1  # labels never hold it: it drops out of the class averages
        self._class_names = [*self._class_names, _UNKNOWN]
        if self._contiguous_id_to_dataset_id is not None:
            self._contiguous_id_to_dataset_id[self._unknown] = UNKNOWN_CATEGORY_ID

    def process(self, inputs, outputs):
        """
        Args:
            outputs: per image ``sem_seg_labels`` ((H, W) class indices, what SAN gives for
                ``labels_only`` inputs) or ``sem_seg`` ((K, H, W) scores); and optionally
                ``unknown`` ((H, W) bool).
        """
        super().process(inputs, [{"sem_seg": _KnownArgMax(self._predicted_labels(output))}
                                 for output in outputs])

    def _predicted_labels(self, output) -> torch.Tensor:
        """(H, W) int64 predicted classes on the CPU; ``unknown`` pixels get the extra class."""
        if "sem_seg_labels" in output:
            labels = output["sem_seg_labels"].to("cpu", torch.int64)
        elif "sem_seg" in output:
            labels = output["sem_seg"].argmax(dim=0).cpu()
        else:
            raise KeyError("SANSemSegEvaluator needs 'sem_seg_labels' or 'sem_seg' in the "
                           f"model's outputs, got {sorted(output)}.")
        unknown = output.get("unknown")
        if unknown is not None:
            labels = labels.masked_fill(unknown.cpu(), self._unknown)
        return labels

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


class _KnownArgMax:
    """Stands in for (K, H, W) scores whose arg-max is known: all that detectron2's
    ``SemSegEvaluator.process`` does with ``sem_seg`` is ``argmax(dim=0)``."""

    def __init__(self, labels: torch.Tensor):
        self.labels = labels

    def argmax(self, dim: int) -> torch.Tensor:
        if dim != 0:
            raise ValueError(f"Only the arg-max over classes (dim 0) is known, not dim {dim}.")
        return self.labels
