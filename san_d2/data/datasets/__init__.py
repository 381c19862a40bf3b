from . import builtin  # noqa: F401  (registers the benchmarks)
from .builtin import coco_stuff_id_map, register_all_benchmarks
from .folder import check_label_values, register_dataset_file, register_folder_dataset
from .sem_seg import load_paired_sem_seg, register_sem_seg

__all__ = ["coco_stuff_id_map", "register_all_benchmarks", "load_paired_sem_seg",
           "register_sem_seg", "register_folder_dataset", "register_dataset_file",
           "check_label_values"]
