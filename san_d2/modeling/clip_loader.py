"""Building CLIP through open_clip, with the weights the user has, or failing clearly."""
import contextlib
import functools
import logging
import os
import socket
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple
from urllib.parse import urlparse

import torch
from torch import nn

logger = logging.getLogger(__name__)

# Small CLIP architectures shipped with san_d2 (tests, quick start), known to open_clip by name.
CLIP_CONFIG_DIR = Path(__file__).parent / "clip_configs"

# Seconds to wait for the download host before saying there is no network.
NETWORK_PROBE_TIMEOUT = 3.0

__all__ = ["LoadedCLIP", "load_clip", "CLIPWeightsError"]


class CLIPWeightsError(RuntimeError):
    """CLIP weights that cannot be had: no network for a download, or a file of another model."""


@functools.lru_cache(maxsize=None)
def _open_clip():
    """open_clip with san_d2's CLIP configs registered; imported when a model is first built
    (it brings timm and the tokenizers, which ``import san_d2`` need not load)."""
    import open_clip

    open_clip.add_model_config(CLIP_CONFIG_DIR)
    return open_clip


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
    open_clip = _open_clip()
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


def _hub_candidates(hf_hub: str):
    """(repo id, file names to look for) of an open_clip ``hf_hub`` entry, safetensors first."""
    from open_clip.pretrained import HF_WEIGHTS_NAME, _get_safe_alternatives

    repo_id, filename = os.path.split(hf_hub)
    filename = filename or HF_WEIGHTS_NAME
    return repo_id, [*_get_safe_alternatives(filename), filename]


def _cached_weights(tag_cfg: Dict) -> Optional[str]:
    """The weights of an open_clip tag if an earlier download left them on this machine."""
    if tag_cfg.get("hf_hub"):
        from huggingface_hub import try_to_load_from_cache

        repo_id, names = _hub_candidates(tag_cfg["hf_hub"])
        for name in names:
            path = try_to_load_from_cache(repo_id, name)
            if isinstance(path, str) and os.path.isfile(path):
                return path
    if tag_cfg.get("url"):  # open_clip's URL downloads land in ~/.cache/clip
        path = os.path.expanduser(os.path.join("~", ".cache", "clip",
                                               os.path.basename(urlparse(tag_cfg["url"]).path)))
        if os.path.isfile(path):
            return path
    return None


def _why_offline(tag_cfg: Dict) -> Optional[str]:
    """Why a download cannot work right now (HF_HUB_OFFLINE, host unreachable), or None."""
    from huggingface_hub import constants

    if tag_cfg.get("hf_hub") and constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    url = "https://huggingface.co" if tag_cfg.get("hf_hub") else tag_cfg.get("url", "")
    host = urlparse(url).hostname
    if host is None:
        return None
    try:
        with socket.create_connection((host, 443), timeout=NETWORK_PROBE_TIMEOUT):
            return None
    except OSError as e:
        return f"{host} is unreachable ({e})"


def _download_hint(model_name: str, pretrained: str, tag_cfg: Dict, reason: str) -> str:
    sources = []
    if tag_cfg.get("url"):
        sources.append(tag_cfg["url"])
    if tag_cfg.get("hf_hub"):
        repo_id, names = _hub_candidates(tag_cfg["hf_hub"])
        sources.append(f"{names[0]} of https://huggingface.co/{repo_id}")
    return (f"Could not download the {model_name} CLIP weights for tag {pretrained!r}: {reason}. "
            "Without network access, copy the weights file to this machine"
            + (f" ({' or '.join(sources)})" if sources else "")
            + " and set MODEL.SAN.CLIP_PRETRAINED_NAME to its path (OpenAI's .pt release files "
            "and open_clip checkpoints both work), or set it to \"\" for random weights "
            "(testing only).")


def _weights_file_and_quick_gelu(model_name: str, pretrained: str) -> Tuple[str, bool]:
    """Finds the weights of a tag (in the download cache, else downloading), or checks a
    local file; fails at once, saying what to do, when there is no network.

    Returns:
        The local path of the weights and whether they were trained with QuickGELU.
    """
    open_clip = _open_clip()
    if os.path.isfile(pretrained):
        return pretrained, _is_torchscript_archive(pretrained)
    tag_cfg = open_clip.get_pretrained_cfg(model_name, pretrained)
    if not tag_cfg:
        raise ValueError(
            f"MODEL.SAN.CLIP_PRETRAINED_NAME {pretrained!r} is neither a local file nor an open_clip "
            f"tag of {model_name} (tags: {open_clip.list_pretrained_tags_by_model(model_name)})."
        )
    quick_gelu = bool(tag_cfg.get("quick_gelu", False))
    path = _cached_weights(tag_cfg)
    if path is not None:
        return path, quick_gelu
    reason = _why_offline(tag_cfg)
    if reason is not None:
        raise CLIPWeightsError(_download_hint(model_name, pretrained, tag_cfg, reason))
    try:
        path = open_clip.download_pretrained(tag_cfg)
    except Exception as e:  # network errors come in many types
        raise CLIPWeightsError(_download_hint(model_name, pretrained, tag_cfg, str(e))) from e
    return path, quick_gelu


@contextlib.contextmanager
def _without_open_clips_random_weights_warning():
    """open_clip warns on the root logger that the model is random: we load the weights
    ourselves right after (and log where they come from)."""

    def keep(record: logging.LogRecord) -> bool:
        return "No pretrained weights loaded" not in record.getMessage()

    root = logging.getLogger()
    # A handler of our own also keeps logging.warning() from configuring the root logger.
    placeholder = logging.NullHandler()
    root.addHandler(placeholder)
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)
        root.removeHandler(placeholder)


def load_clip(model_name: str, pretrained: str) -> LoadedCLIP:
    """Builds an open_clip CLIP model and loads its weights.

    Args:
        model_name: open_clip model name or alias ("ViT-B/16"), or a model-config JSON path.
        pretrained: open_clip pretrained tag ("openai"), a local weights file, or "" for
            random weights.
    """
    open_clip = _open_clip()
    name = _resolve_model_name(model_name)
    config_quick_gelu = bool(open_clip.get_model_config(name).get("quick_gelu", False))
    if pretrained:
        path, weights_quick_gelu = _weights_file_and_quick_gelu(name, pretrained)
        # Weights trained with QuickGELU must run with it, whatever the config says.
        quick_gelu = config_quick_gelu or weights_quick_gelu
    else:
        path, quick_gelu = None, config_quick_gelu

    with _without_open_clips_random_weights_warning():
        model = open_clip.create_model(name, pretrained=None, force_quick_gelu=quick_gelu,
                                       device=torch.get_default_device())
    if path is not None:
        hint = f"CLIP weights {path} do not fit open_clip model {name}"
        try:
            missing, unexpected = model.load_state_dict(_read_state_dict(path), strict=False)
        except RuntimeError as e:  # shape mismatches
            raise CLIPWeightsError(f"{hint}: {e}\nCheck MODEL.SAN.CLIP_MODEL_NAME.") from e
        if missing or unexpected:
            raise CLIPWeightsError(f"{hint}: missing {missing[:5]}, unexpected {unexpected[:5]}. "
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
