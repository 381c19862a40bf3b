"""The pieces of multi-process training and exact resume, without training: the data stream,
the launch plan, the loss check and the resumable writers."""
import json
import random

import numpy as np
import pytest
import torch
from detectron2.utils.events import EventStorage

from san_d2.engine.launch import plan_launch
from san_d2.engine.loop import check_losses_are_finite
from san_d2.engine.stream import IterationBatches, TrainingSamples, TrainingStream
from san_d2.engine.writers import DeferredWriter, resumable_writers, trim_metrics_file
from san_d2_tools.train_net import cli, parse_args

from .conftest import TINY_CONFIG

RECORDS = [{"index": i} for i in range(5)]


def _draws(record):
    """A mapper that reports its record and one draw of each global generator."""
    return {"index": record["index"],
            "draws": (random.random(), float(np.random.rand()), float(torch.rand(1)))}


def _stream(*, world_size=1, rank=0, global_batch=4, num_workers=0, start_iter=0):
    stream = TrainingStream(RECORDS, _draws, global_batch=global_batch, world_size=world_size,
                            rank=rank, num_workers=num_workers)
    stream.start(seed=3, start_iter=start_iter)
    return stream


def _take(stream, count):
    return [next(stream) for _ in range(count)]


def test_the_processes_take_the_slices_of_each_global_batch():
    alone = IterationBatches(global_batch=4, world_size=1, rank=0)
    halves = [IterationBatches(global_batch=4, world_size=2, rank=r) for r in (0, 1)]
    for iteration in range(3):
        assert halves[0].positions(iteration) + halves[1].positions(iteration) == \
            alone.positions(iteration) == list(range(4 * iteration, 4 * iteration + 4))
    with pytest.raises(ValueError, match=r"IMS_PER_BATCH \(3\) is the global batch"):
        IterationBatches(global_batch=3, world_size=2, rank=0)


def test_each_epoch_shows_every_record_once_in_a_new_order():
    samples = TrainingSamples(RECORDS, _draws)
    samples.seed = 3
    epochs = [[samples.record_index(p) for p in range(e * 5, e * 5 + 5)] for e in range(3)]
    assert all(sorted(order) == list(range(5)) for order in epochs)
    assert len({tuple(order) for order in epochs}) > 1


def test_a_sample_depends_on_its_position_only_and_leaves_the_generators_alone():
    samples = TrainingSamples(RECORDS, _draws)
    samples.seed = 3
    torch.manual_seed(0)
    before = torch.get_rng_state()
    first = samples[7]
    assert torch.equal(torch.get_rng_state(), before)  # restored after the sample
    random.seed(9), np.random.seed(5), torch.manual_seed(123)
    assert samples[7] == first and samples[8] != first


def test_two_processes_together_see_what_one_process_sees():
    alone = _take(_stream(), 3)
    ranks = [_take(_stream(world_size=2, rank=r), 3) for r in (0, 1)]
    assert [a + b for a, b in zip(*ranks)] == alone


@pytest.mark.parametrize("num_workers", [0, 2])
def test_a_stream_started_at_iteration_k_continues_the_uninterrupted_one(num_workers):
    whole = _take(_stream(), 6)
    assert _take(_stream(start_iter=4, num_workers=num_workers), 2) == whole[4:]


def test_a_non_finite_loss_is_reported_with_iteration_and_losses():
    check_losses_are_finite({"loss_ce": torch.tensor(1.0)}, iteration=2)
    with pytest.raises(FloatingPointError, match=r"at iteration=3: loss_dict = \{'loss_ce': 1.0, "
                                                 r"'loss_dice': nan\}"):
        check_losses_are_finite({"loss_ce": torch.tensor(1.0),
                                 "loss_dice": torch.tensor(float("nan"))}, iteration=3)


def _metrics(path, lines):
    path.write_text("".join(json.dumps({"iteration": i, "loss": 1.0}) + "\n" for i in lines))


def test_a_resumed_run_drops_partial_and_repeated_metrics(tmp_path):
    path = tmp_path / "metrics.json"
    _metrics(path, [19, 39, 59])
    with open(path, "a") as f:
        f.write('{"iteration": 79, "lo')  # killed mid-line
    trim_metrics_file(str(path), start_iter=40)
    assert [json.loads(line)["iteration"] for line in path.read_text().splitlines()] == [19, 39]
    _metrics(path, [19, 39])
    trim_metrics_file(str(path), start_iter=0)  # a fresh run appends, as detectron2's does
    assert len(path.read_text().splitlines()) == 2


def test_writers_are_built_when_training_has_started(tmp_path):
    _metrics(tmp_path / "metrics.json", [0, 1, 2, 3])
    start = {"iter": 0}
    printer, metrics, tensorboard = resumable_writers(str(tmp_path), max_iter=10,
                                                      start_iter=lambda: start["iter"])
    assert isinstance(metrics, DeferredWriter) and not list(tmp_path.glob("events.*"))
    start["iter"] = 2
    with EventStorage(2) as storage:
        storage.put_scalar("loss", 0.5)
        metrics.write(), tensorboard.write()
    metrics.close(), tensorboard.close()
    lines = [json.loads(line) for line in (tmp_path / "metrics.json").read_text().splitlines()]
    assert [line["iteration"] for line in lines] == [0, 1, 2] and lines[-1]["loss"] == 0.5
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 1


def test_launch_plans_on_cpu_are_gloo_processes():
    plan = plan_launch(processes_per_machine=3, use_cuda=False)
    assert (plan.backend, plan.world_size) == ("gloo", 3)
    assert plan.dist_url.startswith("tcp://127.0.0.1:")
    machine = plan_launch(processes_per_machine=2, num_machines=2, machine_rank=1,
                          dist_url="tcp://127.0.0.1:1234", use_cuda=False)
    assert machine.describe() == ("2 process(es) on machine 1 of 2 (ranks 2-3), backend gloo, "
                                  "world size 4, rendezvous tcp://127.0.0.1:1234")


@pytest.mark.parametrize("arguments, message", [
    ({"processes_per_machine": 0}, "must be at least 1"),
    ({"processes_per_machine": 1, "num_machines": 2, "machine_rank": 2}, r"in 0\.\.1"),
    ({"processes_per_machine": 1, "num_machines": 2}, "auto works on one machine only"),
])
def test_launch_plans_that_cannot_work_are_refused(arguments, message):
    with pytest.raises(ValueError, match=message):
        plan_launch(use_cuda=False, **arguments)


def test_num_gpus_on_cpu_is_a_number_of_processes():
    _, args = parse_args(["--config-file", str(TINY_CONFIG), "--num-gpus", "4"])
    assert args.num_gpus == 4 and args.dist_url == "auto" and args.dist_timeout == 1800
    _, args = parse_args(["--num-machines", "2", "--dist-url", "tcp://10.0.0.1:29500"])
    assert args.dist_url == "tcp://10.0.0.1:29500"


def test_a_launch_that_cannot_work_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli(["--config-file", str(TINY_CONFIG), "--num-machines", "2", "--machine-rank", "2",
             "--dist-url", "tcp://127.0.0.1:1234"])
    assert exit_info.value.code == 2
    assert "--machine-rank 2 must be in 0..1 (--num-machines 2)" in capsys.readouterr().err
