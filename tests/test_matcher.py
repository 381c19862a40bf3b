"""Hungarian matching: float32 costs whatever autocast region it is called in."""
import pytest
import torch

from san_d2.modeling.matcher import HungarianMatcher

NUM_POINTS = 112 * 112  # the published configs' TRAIN_NUM_POINTS


def _confident_misses():
    """Proposals sure of the wrong pixels (|logit| 30) against one target covering most of
    the image: each point's BCE is about 30, so a cost's sum over 12,544 points is about 3.8e5,
    beyond float16's maximum of 65,504."""
    generator = torch.Generator().manual_seed(0)
    queries, size = 5, 32
    target = torch.zeros(1, size, size, dtype=torch.bool)
    target[0, 2:, 2:] = True
    pred_masks = torch.where(target, -30.0, 30.0).expand(queries, -1, -1).clone()
    pred_masks += torch.rand(queries, size, size, generator=generator)
    pred_logits = torch.randn(1, queries, 4, generator=generator)
    return pred_logits, pred_masks[None], [{"labels": torch.tensor([2]), "masks": target}]


def _match(matcher, inputs):
    torch.manual_seed(0)  # the matcher's random points
    return matcher(*inputs)


def test_costs_are_float32_under_float16_autocast():
    matcher = HungarianMatcher(cost_class=2.0, cost_mask=5.0, cost_dice=5.0, num_points=NUM_POINTS)
    inputs = _confident_misses()
    expected = _match(matcher, inputs)
    with torch.autocast("cpu", dtype=torch.float16):
        matched = _match(matcher, inputs)
    assert [tuple(map(torch.Tensor.tolist, pair)) for pair in matched] == \
        [tuple(map(torch.Tensor.tolist, pair)) for pair in expected]


def test_cost_matrix_is_finite_under_float16_autocast():
    matcher = HungarianMatcher(cost_class=2.0, cost_mask=5.0, cost_dice=5.0, num_points=NUM_POINTS)
    pred_logits, pred_masks, targets = _confident_misses()
    torch.manual_seed(0)
    with torch.autocast("cpu", dtype=torch.float16):
        costs = matcher.cost_matrices(pred_logits, pred_masks, targets)
    assert costs[0].dtype == torch.float32 and torch.isfinite(costs[0]).all()
    assert costs[0].min() > 5.0 * 25  # the BCE term alone: about 30 per point on average


@pytest.mark.parametrize("num_targets", [0, 3])
def test_one_pair_per_target(num_targets):
    matcher = HungarianMatcher(cost_class=1.0, cost_mask=1.0, cost_dice=1.0, num_points=64)
    masks = torch.zeros(num_targets, 16, 16, dtype=torch.bool)
    for t in range(num_targets):
        masks[t, 4 * t:4 * t + 4] = True
    targets = [{"labels": torch.arange(num_targets), "masks": masks}]
    rows, cols = matcher(torch.randn(1, 6, 5), torch.randn(1, 6, 8, 8), targets)[0]
    assert rows.dtype == cols.dtype == torch.int64
    assert len(rows) == len(set(rows.tolist())) == num_targets
    assert sorted(cols.tolist()) == list(range(num_targets))
