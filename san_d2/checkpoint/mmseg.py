"""mmsegmentation's SAN checkpoints: parameter names, tensor layouts and the file container.

mmseg (1.x, ``configs/san/``) computes the same function as SAN's code under other names:
every tensor is renamed, three change layout (``cls_token`` (1, 1, D) is the class embedding
(D); ``pos_embed`` (1, N, D) the positional embedding (N, D); the recognition head's
``proj.weight`` (E, D) is the transposed projection (D, E)), and two buffers that are
recomputed from the config are not stored (the text tower's causal mask and the loss's class
weights). The files are mmengine checkpoints: ``{"meta", "state_dict", "message_hub",
"param_schedulers"}``.
"""
import re
from collections import OrderedDict
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch

from ..modeling.san import SAN

__all__ = ["MMSEG_PREFIXES", "is_mmseg_container", "is_mmseg_san", "mmseg_to_san", "san_to_mmseg",
           "mmseg_container", "clip_architecture", "derived_buffers", "fusion_stages",
           "DEFAULT_FUSION_STAGES"]

# The first names of the tensors of an mmseg SAN model.
MMSEG_PREFIXES = ("image_encoder.", "text_encoder.", "decode_head.")
_SAN_MARKERS = ("decode_head.side_adapter_network.", "decode_head.rec_with_attnbias.")
# mmseg's SAN configs fuse CLIP features into side stages 0-3 (its fusion_index).
DEFAULT_FUSION_STAGES = (0, 1, 2, 3)

_BLOCK = {  # an open_clip residual block <- mmseg's, per family of mmseg block
    "vit": [("ln1.{p}", "ln_1.{p}"), ("ln2.{p}", "ln_2.{p}"), ("attn.attn.{p}", "attn.{p}"),
            ("ffn.layers.0.0.{p}", "mlp.c_fc.{p}"), ("ffn.layers.1.{p}", "mlp.c_proj.{p}")],
    "transformer": [("norms.0.{p}", "ln_1.{p}"), ("norms.1.{p}", "ln_2.{p}"),
                    ("attentions.0.attn.{p}", "attn.{p}"), ("ffns.0.layers.0.0.{p}", "mlp.c_fc.{p}"),
                    ("ffns.0.layers.1.{p}", "mlp.c_proj.{p}")],
    "side": [("ln1.{p}", "norm1.{p}"), ("ln2.{p}", "norm2.{p}"),
             ("attn.attn.in_proj_weight", "attn.qkv.weight"),
             ("attn.attn.in_proj_bias", "attn.qkv.bias"), ("attn.attn.out_proj.{p}", "attn.proj.{p}"),
             ("ffn.layers.0.0.{p}", "mlp.fc1.{p}"), ("ffn.layers.1.{p}", "mlp.fc2.{p}")],
}
_SIDE = "decode_head.side_adapter_network."


def _blocks(mmseg_prefix: str, san_prefix: str, family: str) -> List[Tuple[str, str]]:
    return [(f"{mmseg_prefix}{{i}}.{m}", f"{san_prefix}{{i}}.{s}") for m, s in _BLOCK[family]]


# (mmseg name pattern, san_d2 name pattern): {i} a block index (the same on both sides),
# {p} the rest of the name, {fusion} the position of a fusion layer in mmseg and its side
# stage in san_d2.
_RULES: List[Tuple[str, str]] = [
    ("image_encoder.cls_token", "clip_visual_extractor.class_embedding"),
    ("image_encoder.pos_embed", "clip_visual_extractor.positional_embedding"),
    ("image_encoder.patch_embed.projection.{p}", "clip_visual_extractor.conv1.{p}"),
    ("image_encoder.ln_pre.{p}", "clip_visual_extractor.ln_pre.{p}"),
    *_blocks("image_encoder.layers.", "clip_visual_extractor.resblocks.", "vit"),
    ("decode_head.rec_with_attnbias.ln_post.{p}", "clip_rec_head.ln_post.{p}"),
    ("decode_head.rec_with_attnbias.proj.weight", "clip_rec_head.proj"),
    *_blocks("decode_head.rec_with_attnbias.layers.", "clip_rec_head.resblocks.", "transformer"),
    *_blocks("text_encoder.transformer.", "ov_classifier.transformer.resblocks.", "transformer"),
    ("text_encoder.{p}", "ov_classifier.{p}"),  # embeddings, ln_final, bg_embed, logit_scale
    (_SIDE + "conv_clips.{fusion}.0.{p}", "side_adapter_network.fusion_layers.layer_{fusion}.input_proj.0.{p}"),
    (_SIDE + "conv_clips.{fusion}.1.conv.{p}",
     "side_adapter_network.fusion_layers.layer_{fusion}.input_proj.1.{p}"),
    *_blocks(_SIDE + "encode_layers.", "side_adapter_network.vit_model.blocks.", "side"),
    (_SIDE + "patch_embed.projection.{p}", "side_adapter_network.vit_model.patch_embed.proj.{p}"),
    (_SIDE + "pos_embed", "side_adapter_network.vit_model.pos_embed"),
    (_SIDE + "{p}", "side_adapter_network.{p}"),  # query embeddings, mask decoder
]

# san_d2 name -> (mmseg layout from san_d2's, san_d2 layout from mmseg's).
_LAYOUTS: Dict[str, Tuple[Callable, Callable]] = {
    "clip_visual_extractor.class_embedding": (lambda t: t.reshape(1, 1, -1), lambda t: t.reshape(-1)),
    "clip_visual_extractor.positional_embedding": (lambda t: t[None], lambda t: t[0]),
    "clip_rec_head.proj": (lambda t: t.t().contiguous(), lambda t: t.t().contiguous()),
}


def _compile(pattern: str) -> re.Pattern:
    regex = re.escape(pattern)
    for group, expression in (("i", r"\d+"), ("fusion", r"\d+"), ("p", r".+")):
        regex = regex.replace(re.escape("{" + group + "}"), f"(?P<{group}>{expression})")
    return re.compile(regex + "$")


_MMSEG_TO_SAN = [(_compile(m), s) for m, s in _RULES]
_SAN_TO_MMSEG = [(_compile(s), m) for m, s in _RULES]


def _rename(name: str, rules, fusion: Callable[[int], int]) -> Optional[str]:
    for pattern, template in rules:
        match = pattern.match(name)
        if match:
            groups = match.groupdict()
            if "fusion" in groups:
                groups["fusion"] = fusion(int(groups["fusion"]))
            return template.format(**groups)
    return None


def is_mmseg_container(checkpoint) -> bool:
    """An mmengine checkpoint: a dict with ``state_dict`` and ``meta`` (no ``model``)."""
    return (isinstance(checkpoint, Mapping) and "state_dict" in checkpoint and "meta" in checkpoint
            and "model" not in checkpoint)


def is_mmseg_san(weights: Mapping[str, torch.Tensor]) -> bool:
    return any(name.startswith(_SAN_MARKERS) for name in weights)


def mmseg_to_san(weights: Mapping[str, torch.Tensor],
                 stages: Sequence[int] = DEFAULT_FUSION_STAGES) -> "OrderedDict[str, torch.Tensor]":
    """mmseg SAN weights -> san_d2's names and layouts (the derived buffers are not added);
    mmseg's j-th fusion layer goes to side stage ``stages[j]``.

    Raises:
        ValueError: a tensor no rule names.
    """
    converted = OrderedDict()
    for name, tensor in weights.items():
        target = _rename(name, _MMSEG_TO_SAN, lambda j: stages[j] if j < len(stages) else j)
        if target is None:
            raise ValueError(f"mmseg tensor {name} has no san_d2 name.")
        converted[target] = _LAYOUTS[target][1](tensor) if target in _LAYOUTS else tensor
    return converted


_FUSION_LAYER = re.compile(r"side_adapter_network\.fusion_layers\.layer_(\d+)\.")


def fusion_stages(weights: Mapping[str, torch.Tensor]) -> List[int]:
    """The side stages with a fusion layer in san_d2-named weights, in order."""
    return sorted({int(m.group(1)) for m in map(_FUSION_LAYER.match, weights) if m})


def san_to_mmseg(weights: Mapping[str, torch.Tensor]) -> "OrderedDict[str, torch.Tensor]":
    """san_d2 SAN weights -> mmseg's names and layouts; the derived buffers are dropped."""
    stages = fusion_stages(weights)
    converted = OrderedDict()
    for name, tensor in weights.items():
        if name in SAN.DERIVED_STATE_KEYS:
            continue
        target = _rename(name, _SAN_TO_MMSEG, stages.index)
        if target is None:
            raise ValueError(f"san_d2 tensor {name} has no mmseg name.")
        converted[target] = _LAYOUTS[name][0](tensor) if name in _LAYOUTS else tensor
    return converted


def derived_buffers(weights: Mapping[str, torch.Tensor], num_classes: int,
                    no_object_weight: float) -> Dict[str, torch.Tensor]:
    """The two buffers mmseg does not store, as san_d2's model computes them: the text tower's
    causal mask (-inf above the diagonal) and the loss's class weights (1, last
    ``no_object_weight``)."""
    context = weights["ov_classifier.positional_embedding"].shape[0]
    empty_weight = torch.ones(num_classes + 1)
    empty_weight[-1] = no_object_weight
    return {"ov_classifier.attn_mask": torch.full((context, context), float("-inf")).triu_(1),
            "criterion.empty_weight": empty_weight}


def mmseg_container(weights: "OrderedDict[str, torch.Tensor]", meta: Optional[Dict] = None) -> Dict:
    """The mmengine checkpoint layout mmseg loads: ``{"meta", "state_dict"}``."""
    return {"meta": dict(meta or {}), "state_dict": weights}


_CLIP_BLOCK = re.compile(r"clip_(visual_extractor|rec_head)\.resblocks\.(\d+)\.")


def clip_architecture(weights: Mapping[str, torch.Tensor]) -> Optional[Tuple[int, int, int]]:
    """(blocks, width, patch size) of the CLIP visual tower in san_d2-named SAN weights (its
    extractor and recognition head together), or None for weights of another model."""
    conv = weights.get("clip_visual_extractor.conv1.weight")
    if conv is None:
        return None
    blocks = {m.groups() for m in map(_CLIP_BLOCK.match, weights) if m}
    return len(blocks), conv.shape[0], conv.shape[-1]
