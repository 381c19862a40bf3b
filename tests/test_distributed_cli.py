"""`san-train` and `python train_net.py` as two "machines" on 127.0.0.1 (gloo, one process each)."""
import signal
import subprocess
import time

import pytest
import torch

from san_d2.data.synthetic import generate_synthetic_dataset
from san_d2.engine.launch import _free_port

from .conftest import REPO_ROOT
from .training_helpers import train_net_command

ITERS = 4


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("datasets")
    generate_synthetic_dataset(str(root / "san_synthetic"), num_train=8, num_val=3, size=64)
    return root


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _machine(rank: int, port: int, output, datasets, *, iters: int = ITERS, opts=(),
             timeout_s: int = 120, as_background_job: bool = False) -> subprocess.Popen:
    """Machine 0 runs the checkout's train_net.py, machine 1 the installed module;
    ``as_background_job``: SIGINT ignored, as for ``nohup ... &`` from a script."""
    entry = [str(REPO_ROOT / "train_net.py")] if rank == 0 else ["-m", "san_d2_tools.train_net"]
    flags = ["--num-machines", "2", "--machine-rank", str(rank),
             "--dist-url", f"tcp://127.0.0.1:{port}", "--dist-timeout", str(timeout_s)]
    return subprocess.Popen(**train_net_command(
        output, datasets, flags=flags, opts=opts, iters=iters, entry=entry,
        console=output.parent / f"machine{rank}.txt"),
        preexec_fn=_ignore_sigint if as_background_job else None)


def _finish(machines, timeout: float):
    """Their exit codes; all are killed if one is not done within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    try:
        return [m.wait(timeout=max(1.0, deadline - time.monotonic())) for m in machines]
    finally:
        for machine in machines:
            if machine.poll() is None:
                machine.kill()


def _wait_for(path, text: str, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not (path.is_file() and text in path.read_text()):
        assert time.monotonic() < deadline and process.poll() is None, f"no {text!r} in {path}"
        time.sleep(0.5)


def test_two_machines_train_together(tmp_path, datasets):
    output, port = tmp_path / "run", _free_port()
    codes = _finish([_machine(r, port, output, datasets) for r in (0, 1)], timeout=400)
    console = [(tmp_path / f"machine{r}.txt").read_text() for r in (0, 1)]
    assert codes == [0, 0], console
    assert "1 process(es) on machine 0 of 2 (rank 0), backend gloo, world size 2" in console[0]
    assert "1 process(es) on machine 1 of 2 (rank 1), backend gloo, world size 2" in console[1]
    assert "Process 0 of world size 2" in (output / "log.txt").read_text()
    assert "Process 1 of world size 2" in (output / "log.txt.rank1").read_text()
    final = torch.load(output / "model_final.pth", weights_only=False)
    assert final["iteration"] == ITERS - 1


@pytest.mark.slow
def test_a_machine_that_dies_stops_the_other(tmp_path, datasets):
    output, port = tmp_path / "run", _free_port()
    # Machine 1 ignores SIGINT, which torch's spawn asks the kernel to send its workers when
    # their launcher dies: its worker must die all the same, or it trains on with machine 0.
    machines = [_machine(r, port, output, datasets, iters=100000, timeout_s=60,
                         opts=["SOLVER.CHECKPOINT_PERIOD", "100000"], as_background_job=r == 1)
                for r in (0, 1)]
    try:
        _wait_for(output / "log.txt", "iter: 19", machines[0], timeout=300)
    finally:
        machines[1].send_signal(signal.SIGKILL)  # the kernel then kills its worker
    killed = time.monotonic()
    codes = _finish(machines, timeout=120)
    console = (tmp_path / "machine0.txt").read_text()
    print(f"\nmachine 0 stopped {time.monotonic() - killed:.1f} s after machine 1 was killed")
    assert codes[0] == 1 and "error: process 0 of 2 failed: " in console, console[-3000:]
