"""The configs shipped with san_d2, by name, wherever san_d2 is installed.

``get_config_file("san_clip_vit_res4_coco.yaml")`` is the path of the packaged file, as
detectron2's ``model_zoo.get_config_file`` is for detectron2's. Every command's
``--config-file`` accepts such a name (also written ``configs/<name>``, as in a checkout of the
repository) as well as a path.
"""
import os
from importlib import resources
from pathlib import Path
from typing import List

__all__ = ["CONFIG_ROOT", "list_configs", "get_config_file", "resolve_config_file",
           "shipped_config_ending"]

CONFIG_ROOT = Path(str(resources.files(__name__).joinpath("configs")))
_CHECKOUT_PREFIX = "configs/"


def list_configs() -> List[str]:
    """Names of the shipped configs, relative to the config root (e.g. ``tiny/san_tiny.yaml``)."""
    return sorted(p.relative_to(CONFIG_ROOT).as_posix() for p in CONFIG_ROOT.rglob("*.yaml"))


def get_config_file(name: str) -> str:
    """The path of the shipped config ``name``.

    Raises:
        FileNotFoundError: naming the shipped configs.
    """
    relative = name[len(_CHECKOUT_PREFIX):] if name.startswith(_CHECKOUT_PREFIX) else name
    path = CONFIG_ROOT / relative
    if not path.is_file():
        raise FileNotFoundError(f"{name!r} is not one of san_d2's configs: "
                                f"{', '.join(list_configs())}.")
    return str(path)


def resolve_config_file(config_file: str) -> str:
    """A config file path as given if it exists, else the shipped config of that name.

    Raises:
        FileNotFoundError: neither a file nor a shipped config.
    """
    if os.path.isfile(config_file):
        return config_file
    try:
        return get_config_file(config_file)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"Config file {config_file} not found: give the path of a YAML file or the name of "
            f"one of san_d2's configs ({', '.join(list_configs())}).") from None


def shipped_config_ending(path: str) -> str:
    """The shipped config whose name ``path`` ends with (e.g. a ``_BASE_`` resolved beside a
    config of your own: ``my/configs/san_clip_vit_res4_coco.yaml``), or "" if none does."""
    normalized = "/" + path.replace(os.sep, "/")
    for name in sorted(list_configs(), key=len, reverse=True):
        if normalized.endswith("/" + name):
            return get_config_file(name)
    return ""
