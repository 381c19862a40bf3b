"""The training data as a function of (seed, iteration): exact resume on any number of processes.

Sample ``p`` of a run (p = 0, 1, 2, ...) is record ``perm_e[p % N]`` of the N training records,
where ``perm_e`` is the permutation of epoch ``e = p // N`` drawn from (seed, e), and it is
augmented with Python's ``random``, numpy's and torch's global generators seeded from (seed, p)
(and restored afterwards). Iteration ``k`` trains on samples ``[k G, (k + 1) G)``, G being
``SOLVER.IMS_PER_BATCH`` (the global batch); process ``r`` of ``W`` takes the r-th of the W
slices of ``G / W`` samples. So which images an iteration sees, in which order and with which
augmentation, depends neither on the number of processes nor on the data-loader workers, and a run
resumed at iteration ``k`` sees exactly what the uninterrupted run saw: the stream's only state is
the seed, which the checkpoint keeps.

detectron2's ``TrainingSampler`` instead restarts its shuffled stream on resume, and each
process (and each loader worker) draws its augmentations from its own generator.
"""
import contextlib
import logging
import random
from typing import Callable, Dict, Iterator, List, Optional, Sequence

import numpy as np
import torch
from detectron2.data.build import trivial_batch_collator
from detectron2.data.common import DatasetFromList

logger = logging.getLogger(__name__)

__all__ = ["TrainingStream", "TrainingSamples", "IterationBatches", "derive_seed",
           "seed_global_rngs", "seeded_global_rngs"]

# Kinds of randomness drawn from one run seed, kept apart by a tag.
EPOCH_ORDER, SAMPLE_AUGMENTATION, STEP = 1, 2, 3


def derive_seed(seed: int, tag: int, *words: int) -> np.random.SeedSequence:
    """Independent, reproducible seed material for (run seed, kind of randomness, indices)."""
    return np.random.SeedSequence([seed, tag, *words])


def seed_global_rngs(sequence: np.random.SeedSequence) -> None:
    """Seeds Python's ``random``, numpy's and torch's global generators from ``sequence``."""
    words = sequence.generate_state(4, np.uint32)
    random.seed(int(words[0]) << 32 | int(words[1]))
    np.random.seed(words[2:])
    torch.manual_seed(int(words[2]) << 32 | int(words[3]))


@contextlib.contextmanager
def seeded_global_rngs(sequence: np.random.SeedSequence) -> Iterator[None]:
    """The global generators seeded from ``sequence`` inside the block, as before after it."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        seed_global_rngs(sequence)
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


class TrainingSamples(torch.utils.data.Dataset):
    """Sample ``p`` of the stream: its record, mapped under generators seeded from (seed, p)."""

    def __init__(self, records: Sequence[Dict], mapper: Callable[[Dict], Dict]):
        if len(records) == 0:
            raise ValueError("The training datasets (DATASETS.TRAIN) have no records.")
        self.records = DatasetFromList(list(records), copy=False)
        self.mapper = mapper
        self.seed: Optional[int] = None
        self._order = (None, None)  # ((seed, epoch), that epoch's permutation)

    def record_index(self, position: int) -> int:
        epoch, offset = divmod(position, len(self.records))
        if self._order[0] != (self.seed, epoch):
            generator = np.random.default_rng(derive_seed(self.seed, EPOCH_ORDER, epoch))
            self._order = ((self.seed, epoch), generator.permutation(len(self.records)))
        return int(self._order[1][offset])

    def __getitem__(self, position: int) -> Dict:
        if self.seed is None:
            raise RuntimeError("TrainingSamples.seed is not set: call TrainingStream.start first.")
        record = self.records[self.record_index(position)]
        with seeded_global_rngs(derive_seed(self.seed, SAMPLE_AUGMENTATION, position)):
            sample = self.mapper(record)
        if sample is None:
            raise ValueError(f"The training mapper returned no sample for "
                             f"{record.get('file_name')}.")
        return sample


class IterationBatches(torch.utils.data.Sampler):
    """This process's sample positions, one list per iteration, from ``start_iter`` on."""

    def __init__(self, *, global_batch: int, world_size: int, rank: int):
        if global_batch < 1 or global_batch % world_size:
            raise ValueError(f"SOLVER.IMS_PER_BATCH ({global_batch}) is the global batch: it must "
                             f"be a positive multiple of the number of processes ({world_size}).")
        self.global_batch, self.rank = global_batch, rank
        self.local_batch = global_batch // world_size
        self.start_iter = 0

    def positions(self, iteration: int) -> List[int]:
        first = iteration * self.global_batch + self.rank * self.local_batch
        return list(range(first, first + self.local_batch))

    def __iter__(self) -> Iterator[List[int]]:
        iteration = self.start_iter
        while True:
            yield self.positions(iteration)
            iteration += 1


class TrainingStream:
    """The training loader: an endless iterator of this process's batches (lists of samples).

    It starts at the first ``next``, from the iteration and with the seed given to
    :meth:`start` (the trainer calls it after resuming), so workers are spawned once.
    """

    def __init__(self, records: Sequence[Dict], mapper: Callable[[Dict], Dict], *,
                 global_batch: int, world_size: int, rank: int, num_workers: int):
        self.samples = TrainingSamples(records, mapper)
        self.batches = IterationBatches(global_batch=global_batch, world_size=world_size,
                                        rank=rank)
        self.num_workers = num_workers
        self._iterator = None

    def start(self, *, seed: int, start_iter: int) -> None:
        """The stream continues (or begins) with ``start_iter``'s batch of run ``seed``."""
        self.samples.seed = int(seed)
        self.batches.start_iter = int(start_iter)
        self._iterator = None

    def __iter__(self) -> "TrainingStream":
        return self

    def __next__(self) -> List[Dict]:
        if self._iterator is None:
            self._iterator = iter(torch.utils.data.DataLoader(
                self.samples, batch_sampler=self.batches, num_workers=self.num_workers,
                collate_fn=trivial_batch_collator,
                # Its own generator: creating the loader's iterator draws a seed from it, which
                # must not move the global generator the model draws from.
                generator=torch.Generator()))
        return next(self._iterator)
