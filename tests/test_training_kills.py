"""`san-train --resume` after SIGKILLs at random moments, many of them while a checkpoint is
being written: every resume loads a complete checkpoint, and the run ends with the weights of the
run that was never killed."""
import json
import random
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from san_d2.data.synthetic import generate_synthetic_dataset

from .training_helpers import max_abs_difference, train_net_command

ITERS = 40
KILLS = 8


def _start(output: Path, datasets: Path, *flags: str) -> subprocess.Popen:
    return subprocess.Popen(**train_net_command(
        output, datasets, flags=flags, iters=ITERS, console=output.parent / "console.txt",
        opts=["SOLVER.CHECKPOINT_PERIOD", "2"]))


def _wait_for_training(process: subprocess.Popen, console: Path, starts: int) -> None:
    """Until this run has logged "Starting training" (the ``starts``-th run of the console)."""
    deadline = time.monotonic() + 300
    while console.read_text().count("Starting training from iteration") < starts:
        assert process.poll() is None and time.monotonic() < deadline, console.read_text()[-3000:]
        time.sleep(0.05)


def _wait_for_checkpoints(process: subprocess.Popen, output: Path, count: int) -> None:
    """Until ``last_checkpoint`` has named ``count`` new checkpoints (or the run ended)."""
    def last():
        path = output / "last_checkpoint"
        return path.read_text() if path.is_file() else ""

    seen = last()
    while count and process.poll() is None:
        if last() != seen:
            seen, count = last(), count - 1
        time.sleep(0.005)


def _kill(process: subprocess.Popen, output: Path, rng: random.Random, during_write: bool) -> bool:
    """SIGKILLs the run after one or two new checkpoints, a random moment later or a few
    milliseconds after the next checkpoint's temporary file appears; False if it ended first."""
    _wait_for_checkpoints(process, output, rng.randint(1, 2))
    if during_write:
        while process.poll() is None and not list(output.glob(".model_*.tmp")):
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, 0.005))
    else:
        time.sleep(rng.uniform(0.0, 0.5))
    process.send_signal(signal.SIGKILL)
    return process.wait(timeout=60) == -signal.SIGKILL


def _resumed_iterations(console: str):
    return [int(k) for k in re.findall(r"Resuming at iteration (\d+) of", console)]


@pytest.mark.slow
def test_runs_killed_at_random_moments_resume_to_the_uninterrupted_weights(tmp_path):
    datasets = tmp_path / "datasets"
    generate_synthetic_dataset(str(datasets / "san_synthetic"), num_train=8, num_val=0, size=64)
    (tmp_path / "whole").mkdir(), (tmp_path / "killed").mkdir()
    whole, killed = tmp_path / "whole" / "run", tmp_path / "killed" / "run"
    assert _start(whole, datasets).wait(timeout=600) == 0

    rng, console = random.Random(0), killed.parent / "console.txt"
    kills = partial_files = 0
    for start in range(1, KILLS + 1):
        process = _start(killed, datasets, "--resume")
        _wait_for_training(process, console, starts=start)
        if not _kill(process, killed, rng, during_write=start % 2 == 0):
            break
        kills += 1
        partial_files += bool(list(killed.glob(".model_*.tmp")))
        if (killed / "last_checkpoint").is_file():  # what the next run resumes from is whole
            torch.load(killed / (killed / "last_checkpoint").read_text(), weights_only=False)
    final = _start(killed, datasets, "--resume")
    assert final.wait(timeout=600) == 0, console.read_text()[-3000:]

    text = console.read_text()
    resumes = _resumed_iterations(text)
    difference = max_abs_difference(
        torch.load(whole / "model_final.pth", weights_only=False)["model"],
        torch.load(killed / "model_final.pth", weights_only=False)["model"])
    print(f"\n{kills} kills ({partial_files} while a checkpoint was being written), "
          f"{len(resumes)} resumes, at iterations {resumes}; final weights vs the run never "
          f"killed: max abs difference {difference}")
    assert kills >= KILLS - 1 and partial_files >= 2 and len(resumes) >= kills - 1
    assert "error:" not in text and "Traceback" not in text
    assert resumes == sorted(resumes)
    assert difference == 0.0
    assert not list(killed.glob(".*.tmp"))  # the resumed saves removed what the kills left
    iterations = [json.loads(line)["iteration"] for line in (killed / "metrics.json").open()]
    assert iterations == sorted(set(iterations))  # no partial or repeated records
