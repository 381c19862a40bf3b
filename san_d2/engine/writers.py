"""metrics.json and TensorBoard events that stay consistent across kills and resumes.

detectron2's writers append: a run killed mid-line leaves a partial JSON line that the resumed
run's records then follow, and the iterations between the last checkpoint and the kill are
logged twice (by the killed run and again by the resumed one). Here, when training starts at
iteration ``k``, ``metrics.json`` first loses its partial line and (when resuming) the records of
iterations ``>= k``, rewritten atomically; TensorBoard is told to hide the events at steps
``>= k`` of earlier files (``purge_step``). A partial record at the end of a killed run's events
file is TensorBoard's own business: it stops reading that file there, and each run writes a new
file.
"""
import json
import logging
import os
from typing import Callable, List, Optional

from detectron2.utils.events import (CommonMetricPrinter, EventWriter, JSONWriter,
                                     TensorboardXWriter)

from ..utils.io import atomic_write

logger = logging.getLogger(__name__)

__all__ = ["resumable_writers", "trim_metrics_file", "DeferredWriter"]


class DeferredWriter(EventWriter):
    """Builds its writer at the first write, once the trainer knows where it started."""

    def __init__(self, build: Callable[[], EventWriter]):
        self._build = build
        self._writer: Optional[EventWriter] = None

    def write(self):
        if self._writer is None:
            self._writer = self._build()
        self._writer.write()

    def close(self):
        if self._writer is not None:
            self._writer.close()


def _record_iteration(line: str) -> Optional[int]:
    """The iteration of a complete metrics.json line, else None."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record.get("iteration") if isinstance(record, dict) else None


def trim_metrics_file(path: str, *, start_iter: int) -> None:
    """Keeps the complete records of ``path``, and only those before ``start_iter`` when the run
    resumes (``start_iter > 0``)."""
    if not os.path.isfile(path):
        return
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines(keepends=True)
    kept = [line for line in lines if line.endswith("\n")
            and (iteration := _record_iteration(line)) is not None
            and (start_iter == 0 or iteration < start_iter)]
    if len(kept) == len(lines):
        return
    logger.info(f"{path}: kept {len(kept)} of {len(lines)} records (the others were partial or "
                f"of iterations from {start_iter} on, which this run logs again).")
    with atomic_write(path, "w") as f:
        f.writelines(kept)


def _json_writer(output_dir: str, start_iter: int) -> JSONWriter:
    path = os.path.join(output_dir, "metrics.json")
    trim_metrics_file(path, start_iter=start_iter)
    return JSONWriter(path)


def _tensorboard_writer(output_dir: str, start_iter: int) -> TensorboardXWriter:
    return TensorboardXWriter(output_dir, **({"purge_step": start_iter} if start_iter else {}))


def resumable_writers(output_dir: str, *, max_iter: int,
                      start_iter: Callable[[], int]) -> List[EventWriter]:
    """detectron2's default writers (console, metrics.json, TensorBoard), made resume-safe."""
    os.makedirs(output_dir, exist_ok=True)
    return [CommonMetricPrinter(max_iter),
            DeferredWriter(lambda: _json_writer(output_dir, start_iter())),
            DeferredWriter(lambda: _tensorboard_writer(output_dir, start_iter()))]
