"""SAN's trainer: the paper's recipe on detectron2's DefaultTrainer, multi-process on CPU or
CUDA, with exact resume."""
import inspect
import logging
import os
import weakref
from collections import OrderedDict
from typing import Dict, List

import torch
from detectron2.data import DatasetCatalog, DatasetMapper
from detectron2.data.build import trivial_batch_collator
from detectron2.data.common import DatasetFromList, MapDataset
from detectron2.data.samplers import InferenceSampler
from detectron2.engine import DefaultTrainer, TrainerBase, create_ddp_model
from detectron2.evaluation import inference_on_dataset
from detectron2.modeling import build_model
from detectron2.projects.deeplab import build_lr_scheduler
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger
from torch.nn.parallel import DistributedDataParallel

from ..checkpoint import SANCheckpointer
from ..data import build_test_resize, build_train_mapper, dataset_class_names
from ..evaluation import (SANSemSegEvaluator, format_summary, verify_san_results,
                          write_results_json)
from ..modeling.test_time_augmentation import build_tta_model
from .loop import SANAMPTrainer, SANSimpleTrainer, StepSeeds
from .optim import build_optimizer
from .stream import TrainingStream
from .writers import resumable_writers

logger = logging.getLogger(__name__)

__all__ = ["Trainer", "records_with_dataset_name", "InferenceMapper"]

def records_with_dataset_name(names) -> List[Dict]:
    """The datasets' records, each tagged ``meta: {"dataset_name": ...}`` (its vocabulary)."""
    records = []
    for name in names:
        for record in DatasetCatalog.get(name):
            records.append({**record, "meta": {"dataset_name": name}})
    return records


def wrap_for_ddp(model: torch.nn.Module, cfg):
    """detectron2's ``create_ddp_model(model, broadcast_buffers=False)``, on CPU too (detectron2
    would pass the local GPU as ``device_ids``, which DDP refuses for a CPU model) and without
    torch's deprecated argument (buffers are then also synchronised once at the start: SAN's are
    recomputed from the config, the same on every process)."""
    devices = [comm.get_local_rank()] if cfg.MODEL.DEVICE.startswith("cuda") else None
    no_forward_sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in
                       inspect.signature(DistributedDataParallel).parameters
                       else {"broadcast_buffers": False})
    return create_ddp_model(model, device_ids=devices, **no_forward_sync)


class InferenceMapper(DatasetMapper):
    """detectron2's test-time mapper, without reading the label (the evaluator reads it)."""

    def __call__(self, dataset_dict):
        return super().__call__({k: v for k, v in dataset_dict.items() if k != "sem_seg_file_name"})


class Trainer(DefaultTrainer):
    """DefaultTrainer with SAN's optimiser, schedule, data, evaluation and checkpoints.

    * On a machine without CUDA, ``SOLVER.AMP.ENABLED`` (detectron2's AMP trainer needs CUDA) is
      turned off and training runs in float32; the log says so.
    * Multi-process (see :mod:`san_d2.engine.launch`): the model is wrapped in
      ``DistributedDataParallel`` on CPU as on CUDA, ``SOLVER.IMS_PER_BATCH`` is the global
      batch, and a non-finite loss on any process stops every process.
    * Exact resume: the data is a function of (seed, iteration) (:mod:`san_d2.engine.stream`),
      the global random generators are seeded before each step from (seed, iteration, rank),
      and checkpoints hold the optimizer, the schedule and the seed.
    """

    def __init__(self, cfg):
        if cfg.SOLVER.AMP.ENABLED and not cfg.MODEL.DEVICE.startswith("cuda"):
            logger.warning("SOLVER.AMP.ENABLED is set but the device is %s: mixed precision "
                           "needs CUDA, training in float32.", cfg.MODEL.DEVICE)
            cfg = cfg.clone()
            cfg.defrost()
            cfg.SOLVER.AMP.ENABLED = False
            cfg.freeze()
        # DefaultTrainer.__init__'s steps, with a DDP that also works on CPU, the inner trainer
        # that checks losses on every process, and the strict checkpointer.
        TrainerBase.__init__(self)
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
        self.seed = cfg.SEED if cfg.SEED >= 0 else int(comm.shared_random_seed())
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        model = wrap_for_ddp(model, cfg)
        inner = SANAMPTrainer if cfg.SOLVER.AMP.ENABLED else SANSimpleTrainer
        self._trainer = inner(model, data_loader, optimizer)
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = SANCheckpointer(model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self))
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    def build_hooks(self):
        return [StepSeeds(), *super().build_hooks()]

    def build_writers(self):
        return resumable_writers(self.cfg.OUTPUT_DIR, max_iter=self.max_iter,
                                 start_iter=lambda: self.start_iter)

    def resume_or_load(self, resume=True):
        super().resume_or_load(resume=resume)
        starts = comm.all_gather(self.start_iter)
        if len(set(starts)) > 1:
            raise ValueError(f"The processes would start at different iterations {starts} (by "
                             "rank): each reads OUTPUT_DIR/last_checkpoint, so every machine must "
                             "see the same OUTPUT_DIR (a shared folder) to resume.")
        if self.start_iter:
            logger.info(f"Resuming at iteration {self.start_iter} of {self.max_iter} from "
                        f"{self.checkpointer.get_checkpoint_file()} (seed {self.seed}).")

    def state_dict(self):
        # detectron2 0.6 saves only the iteration and hook states; --resume also needs the
        # optimizer (and AMP's grad scaler), kept by the inner trainer, and the run's seed.
        state = super().state_dict()
        state["_trainer"] = self._trainer.state_dict()
        state["seed"] = self.seed
        return state

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        if "_trainer" in state_dict:
            self._trainer.load_state_dict(state_dict["_trainer"])
        else:
            logger.warning("The checkpoint holds no optimizer state; the optimizer starts afresh.")
        if "seed" in state_dict:
            self.seed = int(state_dict["seed"])
        else:
            logger.warning(f"The checkpoint holds no seed; the data continues with seed "
                           f"{self.seed}, not the earlier run's.")

    @classmethod
    def build_model(cls, cfg):
        """The model, with one log line of its size (detectron2 logs the whole module tree)."""
        model = build_model(cfg)
        total = sum(p.numel() for p in model.parameters())
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        logger.info(f"Model {type(model).__name__}: {total:,} parameters, {trainable:,} "
                    "trainable.")
        return model

    @classmethod
    def build_optimizer(cls, cfg, model):
        return build_optimizer(cfg, model)

    @classmethod
    def build_lr_scheduler(cls, cfg, optimizer):
        return build_lr_scheduler(cfg, optimizer)

    @classmethod
    def build_train_loader(cls, cfg) -> TrainingStream:
        """This process's share of each global batch, a function of (seed, iteration)."""
        if cfg.DATALOADER.SAMPLER_TRAIN != "TrainingSampler":
            raise ValueError(f"DATALOADER.SAMPLER_TRAIN {cfg.DATALOADER.SAMPLER_TRAIN!r} is not "
                             "supported: san_d2's resumable stream takes the place of "
                             "detectron2's TrainingSampler (set it to TrainingSampler).")
        if cfg.DATALOADER.ASPECT_RATIO_GROUPING:
            logger.info("Training batches are not grouped by aspect ratio "
                        "(DATALOADER.ASPECT_RATIO_GROUPING): each iteration's batch is fixed by "
                        "the seed, so that a resumed run sees the same batches.")
        return TrainingStream(records_with_dataset_name(cfg.DATASETS.TRAIN),
                              build_train_mapper(cfg), global_batch=cfg.SOLVER.IMS_PER_BATCH,
                              world_size=comm.get_world_size(), rank=comm.get_rank(),
                              num_workers=cfg.DATALOADER.NUM_WORKERS)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name, labels_only: bool = False):
        """The dataset's records resized by INPUT.TEST_RESIZE, with DATASETS.CLASS_NAMES' names
        as the vocabulary; with ``labels_only`` the model is asked for arg-max labels instead
        of per-class scores (enough for evaluators with ``labels_suffice``, such as
        :class:`SANSemSegEvaluator`, in far less memory)."""
        records = records_with_dataset_name([dataset_name])
        extra = {"labels_only": True} if labels_only else {}
        if cfg.DATASETS.CLASS_NAMES != "paper":
            extra["vocabulary"] = list(dataset_class_names(dataset_name, cfg.DATASETS.CLASS_NAMES))
        if extra:
            records = [{**record, **extra} for record in records]
        mapper = InferenceMapper(cfg, False, augmentations=[build_test_resize(cfg)])
        dataset = MapDataset(DatasetFromList(records, copy=False), mapper)
        return torch.utils.data.DataLoader(
            dataset, batch_size=cfg.SOLVER.TEST_IMS_PER_BATCH,
            sampler=InferenceSampler(len(dataset)), num_workers=cfg.DATALOADER.NUM_WORKERS,
            collate_fn=trivial_batch_collator)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return SANSemSegEvaluator(dataset_name, distributed=True, output_dir=output_folder)

    @classmethod
    def test(cls, cfg, model, evaluators=None) -> "OrderedDict[str, Dict]":
        """Evaluates every dataset of ``DATASETS.TEST``, each with its own vocabulary.

        Returns {dataset: {"sem_seg": metrics}} (also for a single dataset), logs a summary
        table and writes ``OUTPUT_DIR/eval_results.json``.
        """
        return cls._evaluate(cfg, model, evaluators, "eval_results.json")

    @classmethod
    def test_with_TTA(cls, cfg, model) -> "OrderedDict[str, Dict]":
        """Evaluates with TEST.AUG's recipe, scales and flip; results go to ``inference_TTA``."""
        logger.info("Running inference with test-time augmentation ...")
        evaluators = [cls.build_evaluator(cfg, name, os.path.join(cfg.OUTPUT_DIR, "inference_TTA", name))
                      for name in cfg.DATASETS.TEST]
        results = cls._evaluate(cfg, build_tta_model(cfg, model), evaluators,
                                "eval_results_TTA.json")
        return OrderedDict((k + "_TTA", v) for k, v in results.items())

    @classmethod
    def _evaluate(cls, cfg, model, evaluators, file_name: str) -> "OrderedDict[str, Dict]":
        if evaluators is not None and len(evaluators) != len(cfg.DATASETS.TEST):
            raise ValueError(f"{len(evaluators)} evaluators for {len(cfg.DATASETS.TEST)} datasets.")
        results = OrderedDict()
        for i, name in enumerate(cfg.DATASETS.TEST):
            evaluator = evaluators[i] if evaluators is not None else cls.build_evaluator(cfg, name)
            labels_only = getattr(evaluator, "labels_suffice", False)  # else it gets scores
            loader = cls.build_test_loader(cfg, name, labels_only=labels_only)
            results[name] = inference_on_dataset(model, loader, evaluator)
        if comm.is_main_process() and results:
            cls._report(cfg, results, file_name)
        return results

    @staticmethod
    def _report(cfg, results, file_name: str) -> None:
        logger.info("Evaluation summary:\n" + format_summary(results))
        path = os.path.join(cfg.OUTPUT_DIR, file_name)
        write_results_json(path, results)
        logger.info(f"Evaluation results written to {path}")

    def train(self):
        """Trains; with ``TEST.EXPECTED_RESULTS``, checks the last evaluation against them."""
        if isinstance(self._trainer.data_loader, TrainingStream):
            self._trainer.data_loader.start(seed=self.seed, start_iter=self.start_iter)
        super(DefaultTrainer, self).train(self.start_iter, self.max_iter)
        if len(self.cfg.TEST.EXPECTED_RESULTS) and comm.is_main_process():
            if not hasattr(self, "_last_eval_results"):
                raise RuntimeError("TEST.EXPECTED_RESULTS is set but training ran no evaluation.")
            verify_san_results(self.cfg, self._last_eval_results)
            return self._last_eval_results
