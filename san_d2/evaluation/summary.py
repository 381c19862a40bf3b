"""Evaluation results over several datasets: the summary table, the JSON file, verification."""
import json
from typing import Dict, Mapping

from detectron2.evaluation import verify_results
from tabulate import tabulate

from ..utils.io import atomic_write

__all__ = ["SUMMARY_METRICS", "format_summary", "write_results_json", "verify_san_results"]

SUMMARY_METRICS = ("mIoU", "fwIoU", "mACC", "pACC")

# {dataset name: {"sem_seg": {metric: value}}}, as Trainer.test returns them.
Results = Mapping[str, Mapping[str, Mapping[str, float]]]


def format_summary(results: Results) -> str:
    """One row per dataset with its mIoU, fwIoU, mACC and pACC."""
    rows = [[name] + [res.get("sem_seg", {}).get(m, float("nan")) for m in SUMMARY_METRICS]
            for name, res in results.items()]
    return tabulate(rows, headers=["dataset", *SUMMARY_METRICS], floatfmt=".2f")


def write_results_json(path: str, results: Results) -> None:
    """Writes {dataset: {metric: value}} (atomically)."""
    with atomic_write(path, "w") as f:
        json.dump({name: {k: float(v) for k, v in res.get("sem_seg", {}).items()}
                   for name, res in results.items()}, f, indent=2)


def verify_san_results(cfg, results: Results) -> bool:
    """detectron2's ``verify_results`` (exits 1 on failure) for ``TEST.EXPECTED_RESULTS``.

    Each expectation is ``[task, metric, value, tolerance]`` where the task is a dataset name
    of ``DATASETS.TEST``, or "sem_seg" when only one dataset is evaluated.
    """
    by_task: Dict[str, Mapping[str, float]] = {name: res.get("sem_seg", {})
                                               for name, res in results.items()}
    if len(by_task) == 1:
        by_task["sem_seg"] = next(iter(by_task.values()))
    return verify_results(cfg, by_task)
