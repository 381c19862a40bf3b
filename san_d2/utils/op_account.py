"""Where the time of a CPU inference call goes, op by op, against the same ops run alone.

One profiled call is split into matrix products, attention kernels and everything else
(element-wise work, copies, reductions, convolutions). Each product and attention shape is
then replayed on its own with random inputs of that shape. The sum of those stand-alone
times, plus the rest as measured, is what the call would take if every kernel ran inside the
model as fast as it does alone. Set against the FLOP floor, it tells the cost of the kernels
themselves apart from what running them inside the model adds.

The replay knows each operand's shape only: it uses contiguous float32 tensors (a linear
layer's ``addmm`` sees a transposed weight in the model) and a float mask of the recorded
shape for masked attention (the model's may be boolean), and it leaves out an attention mask
of another rank than the queries. Convolutions are counted among the other ops.
"""
import time
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from tabulate import tabulate
from torch.profiler import ProfilerActivity, profile

__all__ = ["op_account", "format_op_account"]

Shapes = Sequence[Sequence[int]]
# (FLOPs of one call, the op as a function, the shapes of the operands it takes)
Replay = Tuple[int, Callable, Shapes]


def _mm(shapes: Shapes) -> Replay:
    (m, k), (_, n) = shapes[0], shapes[1]
    return 2 * m * k * n, torch.mm, shapes[:2]


def _addmm(shapes: Shapes) -> Replay:
    (m, k), (_, n) = shapes[1], shapes[2]
    return 2 * m * k * n, torch.addmm, shapes[:3]


def _bmm(shapes: Shapes) -> Replay:
    (b, m, k), (_, _, n) = shapes[0], shapes[1]
    return 2 * b * m * k * n, torch.bmm, shapes[:2]


def _baddbmm(shapes: Shapes) -> Replay:
    (b, m, k), (_, _, n) = shapes[1], shapes[2]
    return 2 * b * m * k * n, torch.baddbmm, shapes[:3]


def _attention(shapes: Shapes) -> Replay:
    query, key, value = shapes[:3]
    mask = next((s for s in shapes[3:] if len(s) == len(query)), None)
    rows = 1
    for size in query[:-1]:
        rows *= size
    flops = 2 * rows * key[-2] * (query[-1] + value[-1])  # Q K^T, then the weights times V
    return flops, _sdpa, [query, key, value] + ([mask] if mask is not None else [])


def _sdpa(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
          mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    return F.scaled_dot_product_attention(query, key, value, attn_mask=mask)


# profiler op name -> its recorded input shapes -> Replay
PRODUCTS: Dict[str, Callable[[Shapes], Replay]] = {
    "aten::mm": _mm, "aten::addmm": _addmm, "aten::bmm": _bmm, "aten::baddbmm": _baddbmm}
ATTENTION: Dict[str, Callable[[Shapes], Replay]] = {
    "aten::_scaled_dot_product_flash_attention_for_cpu": _attention}


def _seconds_alone(function: Callable, shapes: Shapes, repeats: int = 5) -> float:
    """Best time of ``function`` on random float32 operands of ``shapes``."""
    operands = [torch.randn(*shape) for shape in shapes]
    for _ in range(2):
        function(*operands)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function(*operands)
        best = min(best, time.perf_counter() - start)
    return best


def _profiled_ops(model: torch.nn.Module, inputs: List[Dict],
                  calls: int) -> Iterator[Tuple[str, Shapes, int, float]]:
    """(name, input shapes, calls per model call, self seconds per model call) of each op."""
    with torch.inference_mode():
        model(inputs)
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            for _ in range(calls):
                model(inputs)
    for event in prof.key_averages(group_by_input_shape=True):
        yield event.key, event.input_shapes, event.count // calls, \
            event.self_cpu_time_total / 1e6 / calls


def op_account(model: torch.nn.Module, inputs: List[Dict], *, matmul_flops_per_second: float,
               calls: int = 3, largest: int = 8) -> Dict:
    """Profiles ``calls`` calls of a float32 CPU model on ``inputs`` (after one warm-up call)
    and replays each product and attention shape alone.

    Returns:
        ``seconds_per_call`` (profiled, profiler overhead included); for ``products`` and
        ``attention``: GFLOP, seconds in the model and seconds alone; ``other_seconds``;
        ``floor_seconds`` (their FLOPs over ``matmul_flops_per_second``);
        ``seconds_if_alone`` and the ``largest`` ops by time.
    """
    if next(model.parameters()).device.type != "cpu":
        raise ValueError("The op account profiles CPU calls: run it with --device cpu.")
    groups = {"products": PRODUCTS, "attention": ATTENTION}
    totals = {group: {"gflop": 0.0, "seconds": 0.0, "seconds_alone": 0.0} for group in groups}
    other = total = 0.0
    rows = []
    with torch.inference_mode():
        for name, shapes, count, seconds in _profiled_ops(model, inputs, calls):
            total += seconds
            group = next((g for g, ops in groups.items() if name in ops), None)
            if group is None:
                other += seconds
                continue
            flops, function, operands = groups[group][name](shapes)
            alone = _seconds_alone(function, operands) * count
            for key, value in (("gflop", flops * count / 1e9), ("seconds", seconds),
                               ("seconds_alone", alone)):
                totals[group][key] += value
            rows.append({"op": name.replace("aten::", ""), "shapes": str(operands),
                         "calls": count, "gflop": flops * count / 1e9, "seconds": seconds,
                         "seconds_alone": alone})
    gflop = sum(t["gflop"] for t in totals.values())
    rows.sort(key=lambda row: -row["seconds"])
    return {"seconds_per_call": total, **totals, "other_seconds": other,
            "matmul_tflops": matmul_flops_per_second / 1e12,
            "floor_seconds": gflop * 1e9 / matmul_flops_per_second,
            "seconds_if_alone": sum(t["seconds_alone"] for t in totals.values()) + other,
            "largest": rows[:largest]}


def format_op_account(account: Dict) -> str:
    """The account as two tables: the groups, then the largest ops."""
    rate = account["matmul_tflops"] * 1e3
    groups = [[group, f"{t['gflop']:.1f}", f"{t['seconds']:.3f}", f"{t['seconds_alone']:.3f}",
               f"{t['gflop'] / rate:.3f}"] for group, t in
              ((g, account[g]) for g in ("products", "attention"))]
    groups.append(["other ops", "", f"{account['other_seconds']:.3f}",
                   f"{account['other_seconds']:.3f}", ""])
    groups.append(["call", "", f"{account['seconds_per_call']:.3f}",
                   f"{account['seconds_if_alone']:.3f}", f"{account['floor_seconds']:.3f}"])
    ops = [[row["op"], row["shapes"][:60], row["calls"], f"{row['gflop']:.2f}",
            f"{1e3 * row['seconds']:.1f}", f"{1e3 * row['seconds_alone']:.1f}",
            f"{row['gflop'] / row['seconds']:.0f}" if row["seconds"] else ""]
           for row in account["largest"]]
    return "\n\n".join([
        tabulate(groups, headers=["op account", "GFLOP", "s in the model", "s alone",
                                  f"floor at {rate:.0f} GFLOP/s"]),
        tabulate(ops, headers=["largest ops", "shapes", "calls", "GFLOP", "ms in the model",
                               "ms alone", "GFLOP/s"])])
