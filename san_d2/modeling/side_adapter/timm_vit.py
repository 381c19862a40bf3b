"""The side adapter's plain ViTs, registered by name with timm's model registry.

``vit_w{W}n{H}d{D}_patch{P}``: width W, H heads, depth D, patch P, MLP ratio 4, LayerNorm eps
1e-6, qkv bias, GELU; no class token, no pooling, no head and no final norm. timm is imported,
and the names registered, when the first side adapter is built.
"""
import functools
import re
import sys

from torch import nn

__all__ = ["SIDE_VIT_NAMES", "create_side_vit"]

# The paper's four sizes, and a tiny one for tests and the quick start.
SIDE_VIT_NAMES = (
    "vit_w144n6d8_patch16",
    "vit_w192n6d8_patch16",
    "vit_w240n6d8_patch16",
    "vit_w288n6d8_patch16",
    "vit_w64n4d8_patch16",
)
_NAME = re.compile(r"vit_w(\d+)n(\d+)d(\d+)_patch(\d+)")


def _build(name: str, pretrained: bool = False, **kwargs) -> nn.Module:
    for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):  # timm's factory extras
        kwargs.pop(key, None)
    if pretrained:
        raise ValueError(f"timm has no pre-trained weights for {name}: set "
                         "MODEL.SIDE_ADAPTER.PRETRAINED False.")
    from timm.models.vision_transformer import VisionTransformer

    width, heads, depth, patch = (int(v) for v in _NAME.fullmatch(name).groups())
    return VisionTransformer(
        patch_size=patch, embed_dim=width, depth=depth, num_heads=heads, mlp_ratio=4.0,
        qkv_bias=True, norm_layer=functools.partial(nn.LayerNorm, eps=1e-6),
        class_token=False, global_pool="", num_classes=0, final_norm=False, **kwargs,
    )


def _register(name: str) -> None:
    from timm.models import register_model

    entrypoint = functools.partial(_build, name)
    functools.update_wrapper(entrypoint, _build)
    entrypoint.__name__ = entrypoint.__qualname__ = name
    entrypoint.__module__ = __name__
    setattr(sys.modules[__name__], name, entrypoint)
    register_model(entrypoint)


@functools.lru_cache(maxsize=None)
def _timm():
    """timm, with the side adapter's ViTs registered."""
    import timm

    for name in SIDE_VIT_NAMES:
        if not timm.is_model(name):
            _register(name)
    return timm


def create_side_vit(name: str, image_size: int, drop_path_rate: float,
                    pretrained: bool = False) -> nn.Module:
    """Builds a registered side-adapter ViT (timm ``VisionTransformer``) for ``image_size`` x
    ``image_size`` inputs."""
    timm = _timm()
    if not timm.is_model(name):
        raise ValueError(f"Unknown MODEL.SIDE_ADAPTER.VIT_NAME {name!r}: use one of "
                         f"{SIDE_VIT_NAMES}.")
    return timm.create_model(name, pretrained=pretrained, img_size=image_size,
                             drop_path_rate=drop_path_rate)
