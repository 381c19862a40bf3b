"""Building CLIP through open_clip, with the weights the user has, or failing clearly."""
import logging
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Tuple

import open_clip
import torch
from torch import nn

logger = logging.getLogger(__name__)

# Small CLIP architectures shipped with san_d2 (tests, quick start), known to open_clip by name.
CLIP_CONFIG_DIR = Path(__file__).parent / "clip_configs"
open_clip.add_model_config(CLIP_CONFIG_DIR)

__all__ = ["LoadedCLIP", "load_clip"]


@dataclass
class LoadedCLIP:
    """An open_clip CLIP model with what san_d2 needs beside it.

    Attributes:
        model: the open_clip ``CLIP`` module (visual tower in ``model.visual``).
        tokenizer: callable turning a list of strings into (N, context_length) token ids.
        pixel_mean: per-channel mean of the model's pre-processing, on the 0-255 scale.
        pixel_std: per-channel std of the model's pre-processing, on the 0-255 scale.
        quick_gelu: whether the towers use QuickGELU.
        weights: a description of where the weights came from, for the log.
    """

    model: nn.Module
    tokenizer: Callable
    pixel_mean: Tuple[float, float, float]
    pixel_std: Tuple[float, float, float]
    quick_gelu: bool
    weights: str


def _resolve_model_name(name: str) -> str:
    """Registers a model-config JSON with open_clip and returns the name it is known by."""
    if name.endswith(".json"):
        path = Path(name)
        if not path.is_file():
            raise FileNotFoundError(f"CLIP model config {name} (MODEL.SAN.CLIP_MODEL_NAME) not found.")
        open_clip.add_model_config(path)
        return path.stem
    cleaned = name.replace("/", "-")  # "ViT-B/16" is open_clip's "ViT-B-16"
    if open_clip.get_model_config(cleaned) is None:
        raise ValueError(
            f"Unknown CLIP model {name!r} (MODEL.SAN.CLIP_MODEL_NAME): give an open_clip model name "
            f"(e.g. 'ViT-B/16', 'ViT-L-14-336') or the path of an open_clip model-config JSON."
        )
    return cleaned


def _is_torchscript_archive(path: str) -> bool:
    """OpenAI's own CLIP release files are TorchScript archives (trained with QuickGELU)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(n.endswith("constants.pkl") or "/code/" in n for n in zf.namelist())


def _read_state_dict(path: str) -> Dict[str, torch.Tensor]:
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        state_dict = load_file(path)
    elif _is_torchscript_archive(path):
        state_dict = torch.jit.load(path, map_location="cpu").state_dict()
        for key in ("input_resolution", "context_length", "vocab_size"):
            state_dict.pop(key, None)
    else:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state_dict, dict) and "state_dict" in state_dict:
            state_dict = state_dict["state_dict"]
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state_dict.items()}


def _weights_file_and_quick_gelu(model_name: str, pretrained: str) -> Tuple[str, bool]:
    """Finds (downloading if needed) the weights of a tag, or checks a local file.

    Returns:
        The local path of the weights and whether they were trained with QuickGELU.
    """
    if os.path.isfile(pretrained):
        return pretrained, _is_torchscript_archive(pretrained)
    tag_cfg = open_clip.get_pretrained_cfg(model_name, pretrained)
    if not tag_cfg:
        raise ValueError(
            f"MODEL.SAN.CLIP_PRETRAINED_NAME {pretrained!r} is neither a local file nor an open_clip "
            f"tag of {model_name} (tags: {open_clip.list_pretrained_tags_by_model(model_name)})."
        )
    try:
        path = open_clip.download_pretrained(tag_cfg)
    except Exception as e:  # network errors come in many types
        raise RuntimeError(
            f"Could not download the {model_name} CLIP weights for tag {pretrained!r} ({e}). "
            "Without network access, copy the weights file to this machine and set "
            "MODEL.SAN.CLIP_PRETRAINED_NAME to its path (OpenAI's .pt release files and open_clip "
            "checkpoints both work), or set it to \"\" for random weights (testing only)."
        ) from e
    return path, bool(tag_cfg.get("quick_gelu", False))


def load_clip(model_name: str, pretrained: str) -> LoadedCLIP:
    """Builds an open_clip CLIP model and loads its weights.

    Args:
        model_name: open_clip model name or alias ("ViT-B/16"), or a model-config JSON path.
        pretrained: open_clip pretrained tag ("openai"), a local weights file, or "" for
            random weights.
    """
    name = _resolve_model_name(model_name)
    config_quick_gelu = bool(open_clip.get_model_config(name).get("quick_gelu", False))
    if pretrained:
        path, weights_quick_gelu = _weights_file_and_quick_gelu(name, pretrained)
        # Weights trained with QuickGELU must run with it, whatever the config says.
        quick_gelu = config_quick_gelu or weights_quick_gelu
    else:
        path, quick_gelu = None, config_quick_gelu

    model = open_clip.create_model(name, pretrained=None, force_quick_gelu=quick_gelu,
                                   device=torch.get_default_device())
    if path is not None:
        hint = f"CLIP weights {path} do not fit open_clip model {name}"
        try:
            missing, unexpected = model.load_state_dict(_read_state_dict(path), strict=False)
        except RuntimeError as e:  # shape mismatches
            raise RuntimeError(f"{hint}: {e}\nCheck MODEL.SAN.CLIP_MODEL_NAME.") from e
        if missing or unexpected:
            raise RuntimeError(f"{hint}: missing {missing[:5]}, unexpected {unexpected[:5]}. "
                               "Check MODEL.SAN.CLIP_MODEL_NAME.")
        weights = f"{pretrained} ({path})" if path != pretrained else path
    else:
        weights = "random (MODEL.SAN.CLIP_PRETRAINED_NAME is empty)"
    preprocess = open_clip.get_model_preprocess_cfg(model)
    logger.info(f"CLIP {name}: weights {weights}, {'QuickGELU' if quick_gelu else 'GELU'}.")
    return LoadedCLIP(
        model=model,
        tokenizer=open_clip.get_tokenizer(name),
        pixel_mean=tuple(255.0 * m for m in preprocess["mean"]),
        pixel_std=tuple(255.0 * s for s in preprocess["std"]),
        quick_gelu=quick_gelu,
        weights=weights,
    )
