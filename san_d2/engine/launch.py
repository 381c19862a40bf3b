"""One training or evaluation run in several processes, on one machine or on several.

With CUDA, detectron2's own ``launch`` starts one process per GPU with the NCCL backend. Without
CUDA, detectron2 0.6's ``launch`` cannot start any (it asserts CUDA and hard-codes NCCL; upstream
fell back to gloo later, in facebookresearch/detectron2@b4b6cc9), so this module starts the
processes itself with the gloo backend: on CPU, ``--num-gpus N`` means N processes per machine.
Either way a process that fails stops the run with one line naming the process and its error.

This does not depend on detectron2's version: a user's own detectron2 build works the same.
"""
import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable, Iterator, Optional, Sequence

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from detectron2.utils import comm

logger = logging.getLogger(__name__)

__all__ = ["LaunchPlan", "plan_launch", "launch", "DistributedRunError", "DEFAULT_TIMEOUT",
           "describe_process"]

DEFAULT_TIMEOUT = timedelta(minutes=30)  # detectron2's


class DistributedRunError(RuntimeError):
    """A process of a multi-process run failed; the others were stopped.

    Attributes:
        exit_code: what the command should exit with.
        details: the failed process's traceback, when it raised.
    """

    def __init__(self, message: str, *, exit_code: int = 1, details: str = ""):
        super().__init__(message)
        self.exit_code = exit_code
        self.details = details


@dataclass(frozen=True)
class LaunchPlan:
    """Who runs where: ``processes_per_machine`` on each of ``num_machines`` machines."""

    processes_per_machine: int
    num_machines: int
    machine_rank: int
    dist_url: str
    backend: str  # "nccl" (CUDA) or "gloo" (CPU)

    @property
    def world_size(self) -> int:
        return self.processes_per_machine * self.num_machines

    @property
    def first_rank(self) -> int:
        return self.machine_rank * self.processes_per_machine

    def describe(self) -> str:
        last = self.first_rank + self.processes_per_machine - 1
        ranks = f"rank {last}" if last == self.first_rank else f"ranks {self.first_rank}-{last}"
        return (f"{self.processes_per_machine} process(es) on machine {self.machine_rank} of "
                f"{self.num_machines} ({ranks}), backend {self.backend}, world size "
                f"{self.world_size}, rendezvous {self.dist_url}")


def plan_launch(*, processes_per_machine: int, num_machines: int = 1, machine_rank: int = 0,
                dist_url: str = "auto", use_cuda: Optional[bool] = None) -> LaunchPlan:
    """Checks a launch's arguments and picks the backend.

    Args:
        processes_per_machine: ``--num-gpus``: GPUs per machine with CUDA, else processes.
        num_machines, machine_rank: ``--num-machines``, ``--machine-rank``.
        dist_url: ``--dist-url``; "auto" picks a free local port (one machine only).
        use_cuda: whether the processes compute on CUDA (default: whether CUDA is available).

    Raises:
        ValueError: the numbers do not fit together or this machine.
    """
    use_cuda = torch.cuda.is_available() if use_cuda is None else use_cuda
    if processes_per_machine < 1 or num_machines < 1:
        raise ValueError(f"--num-gpus ({processes_per_machine}) and --num-machines "
                         f"({num_machines}) must be at least 1.")
    if not 0 <= machine_rank < num_machines:
        raise ValueError(f"--machine-rank {machine_rank} must be in 0..{num_machines - 1} "
                         f"(--num-machines {num_machines}).")
    if use_cuda and processes_per_machine > torch.cuda.device_count():
        raise ValueError(f"--num-gpus {processes_per_machine}: this machine has "
                         f"{torch.cuda.device_count()} CUDA device(s).")
    if dist_url == "auto":
        if num_machines > 1:
            raise ValueError("--dist-url auto works on one machine only: give every machine "
                             "the address of machine 0, e.g. tcp://10.0.0.1:29500.")
        dist_url = f"tcp://127.0.0.1:{_free_port()}"
    return LaunchPlan(processes_per_machine, num_machines, machine_rank, dist_url,
                      "nccl" if use_cuda else "gloo")


def launch(main_func: Callable, plan: LaunchPlan, *, args: Sequence = (),
           timeout: timedelta = DEFAULT_TIMEOUT) -> None:
    """Runs ``main_func(*args)`` in this process (world size 1) or in the plan's processes.

    ``main_func`` and ``args`` must be picklable (a module-level function) when processes are
    started. ``timeout`` bounds the rendezvous and every collective operation, so a process
    waiting for one that died stops too.

    Raises:
        DistributedRunError: a process failed; the others were stopped.
    """
    if plan.world_size == 1:
        main_func(*args)
        return
    logger.info("Starting " + plan.describe())
    try:
        if plan.backend == "nccl":  # detectron2's own launcher, as the paper's runs used
            from detectron2.engine import launch as detectron2_launch

            detectron2_launch(_cuda_main, plan.processes_per_machine,
                              num_machines=plan.num_machines, machine_rank=plan.machine_rank,
                              dist_url=plan.dist_url, args=(main_func, tuple(args)),
                              timeout=timeout)
        else:
            mp.start_processes(_gloo_worker, nprocs=plan.processes_per_machine,
                               args=(main_func, plan, tuple(args), timeout,
                                     _threads_per_process(plan)), start_method="spawn")
    except mp.ProcessRaisedException as error:
        raise DistributedRunError(_last_line(error.msg), details=error.msg) from None
    except mp.ProcessExitedException as error:
        rank = plan.first_rank + error.error_index
        if error.exit_code > 0:  # it said why itself (e.g. sys.exit(1) of a results check)
            raise DistributedRunError(f"process {rank} of {plan.world_size} exited with code "
                                      f"{error.exit_code}", exit_code=error.exit_code) from None
        raise DistributedRunError(f"process {rank} of {plan.world_size} was killed "
                                  f"({error.msg.split(' with ')[-1]})") from None


def describe_process() -> str:
    """This process's place in the run, for its log."""
    if comm.get_world_size() == 1:
        return "Single process (world size 1)."
    return (f"Process {comm.get_rank()} of world size {comm.get_world_size()} (local process "
            f"{comm.get_local_rank()} of {comm.get_local_size()} on its machine), backend "
            f"{dist.get_backend()}, {torch.get_num_threads()} CPU thread(s).")


class _ProcessFailed(Exception):
    """A worker's error in one line: the last line of the traceback the parent receives."""


@contextlib.contextmanager
def _reported_as(rank: int, world_size: int) -> Iterator[None]:
    try:
        yield
    except Exception as error:
        summary = " ".join(f"{type(error).__name__}: {error}".split())
        raise _ProcessFailed(f"process {rank} of {world_size} failed: {summary}") from error


def _cuda_main(main_func: Callable, args: tuple) -> None:
    """What detectron2's launch runs in each of its processes."""
    with _reported_as(comm.get_rank(), comm.get_world_size()):
        main_func(*args)


def _gloo_worker(local_rank: int, main_func: Callable, plan: LaunchPlan, args: tuple,
                 timeout: timedelta, threads: Optional[int]) -> None:
    rank = plan.first_rank + local_rank
    _die_with_parent()
    try:
        with _reported_as(rank, plan.world_size):
            if threads is not None:
                torch.set_num_threads(threads)
            _join_process_group(plan, rank=rank, timeout=timeout)
            comm.synchronize()
            main_func(*args)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Makes the kernel kill this worker when its launcher dies. torch's ``spawn`` asks for
    SIGINT, which a process started in the background by a shell (``nohup ... &``) ignores:
    such a worker outlived its killed launcher and kept training with the other machines."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _join_process_group(plan: LaunchPlan, *, rank: int, timeout: timedelta) -> None:
    try:
        dist.init_process_group(backend="gloo", init_method=plan.dist_url,
                                world_size=plan.world_size, rank=rank, timeout=timeout)
    except Exception as error:
        raise RuntimeError(f"could not join the process group at {plan.dist_url} as rank {rank} "
                           f"of {plan.world_size} ({error})") from error
    # detectron2's comm.get_local_rank() needs the group of this machine's processes.
    if hasattr(comm, "create_local_process_group"):  # detectron2 after 0.6
        comm.create_local_process_group(plan.processes_per_machine)
        return
    for machine in range(plan.num_machines):
        first = machine * plan.processes_per_machine
        group = dist.new_group(list(range(first, first + plan.processes_per_machine)))
        if machine == plan.machine_rank:
            comm._LOCAL_PROCESS_GROUP = group


def _threads_per_process(plan: LaunchPlan) -> Optional[int]:
    """CPU threads of each process: this machine's share (None: OMP_NUM_THREADS decides)."""
    if plan.backend != "gloo" or "OMP_NUM_THREADS" in os.environ:
        return None
    return max(1, torch.get_num_threads() // plan.processes_per_machine)


def _last_line(traceback_text: str) -> str:
    line = traceback_text.strip().splitlines()[-1]
    prefix = f"{_ProcessFailed.__module__}.{_ProcessFailed.__name__}: "
    return line[len(prefix):] if line.startswith(prefix) else line


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
