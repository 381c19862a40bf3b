import os
from pathlib import Path

import pytest

from san_d2.model_zoo import get_config_file

REPO_ROOT = Path(__file__).resolve().parents[1]
TEST_DATA = Path(__file__).resolve().parent / "data"


# The user's cache root, before the tests point XDG_CACHE_HOME elsewhere (None: ~/.cache).
USER_CACHE_HOME = os.environ.get("XDG_CACHE_HOME")


@pytest.fixture(scope="session", autouse=True)
def private_cache_home(tmp_path_factory):
    """Persisted text embeddings ("auto" cache) go to a temporary folder, not ~/.cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache_home")))
        yield


TINY_CONFIG = Path(get_config_file("tiny/san_tiny.yaml"))


def build_tiny_san(*opts, seed: int = 0):
    """The tiny SAN of configs/tiny/san_tiny.yaml on CPU with random weights."""
    import torch
    from detectron2.modeling import build_model

    from san_d2 import get_san_cfg

    torch.manual_seed(seed)
    cfg = get_san_cfg(str(TINY_CONFIG), ["MODEL.DEVICE", "cpu", *opts])
    return build_model(cfg), cfg
