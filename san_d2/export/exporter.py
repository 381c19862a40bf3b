"""Exporting SAN to ONNX: two graphs, CLIP's BPE vocabulary and a manifest, checked at export.

The folder written holds everything ``san_d2_runtime`` needs to segment pictures with any
vocabulary, without torch: see docs/deployment.md for its files and the manifest's fields.
"""
import contextlib
import hashlib
import json
import logging
import os
import shutil
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.modeling import build_model
from torch.nn import functional as F

from san_d2_runtime import manifest as layout
from san_d2_runtime.tokenizer import BPE_VOCAB_FILE, ClipTokenizer

from ..checkpoint import SANCheckpointer
from ..utils.cli import make_output_dir
from ..utils.io import atomic_path, atomic_write
from .graphs import ImageGraph, TextGraph

logger = logging.getLogger(__name__)

__all__ = ["ExportMismatchError", "ExportReport", "export_onnx", "DEFAULT_OPSET", "TOLERANCE"]

DEFAULT_OPSET = 18
# Largest |ONNX - torch| accepted at export, on every output of both graphs (float32).
TOLERANCE = 1e-4
CONFIG_FILE = "config.yaml"
BPE_LICENSE_FILE = "bpe_simple_vocab_16e6.LICENSE.txt"

# Padded sizes (height, width) of the image checks: the graph's example and a non-square one
# of other proportions (both multiples of 32, and neither CLIP's nor the side adapter's
# pre-trained grid, so no shape-dependent branch is traced at a special size).
EXAMPLE_SIZE = (320, 384)
CHECK_SIZES = (EXAMPLE_SIZE, (256, 480))
CHECK_VOCABULARY = ("sky", "a red double-decker bus", "grass")
# Inference options of the torch model that the runtime does not reproduce: (key, off value).
UNSUPPORTED_OPTIONS = (("MODEL.SAN.UNKNOWN_THRESHOLD", 0.0),
                       ("MODEL.SAN.UNKNOWN_IF_BACKGROUND", False),
                       ("MODEL.SAN.SLIDING_WINDOW.SIZE", 0), ("TEST.AUG.ENABLED", False))

# The vocabulary file's licence: CLIP's (OpenAI), as open_clip ships it.
_BPE_NOTICE = """\
bpe_simple_vocab_16e6.txt.gz is the byte-pair-encoding vocabulary of OpenAI's CLIP
(https://github.com/openai/CLIP), as distributed with open_clip
(https://github.com/mlfoundations/open_clip), both under the MIT License:

Copyright (c) 2021 OpenAI

Permission is hereby granted, free of charge, to any person obtaining a copy of this software
and associated documentation files (the "Software"), to deal in the Software without
restriction, including without limitation the rights to use, copy, modify, merge, publish,
distribute, sublicense, and/or sell copies of the Software, and to permit persons to whom the
Software is furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all copies or
substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING
BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM,
DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
"""


class ExportMismatchError(ValueError):
    """An exported graph that does not compute the torch model's outputs within TOLERANCE."""


@dataclass
class ExportReport:
    """What :func:`export_onnx` wrote and measured.

    Attributes:
        folder: the export folder.
        files: file name -> size in bytes.
        max_abs_diff: check name -> largest |ONNX - torch| over its outputs.
    """

    folder: Path
    files: Dict[str, int] = field(default_factory=dict)
    max_abs_diff: Dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [f"exported to {self.folder}:"]
        lines += [f"  {name:<36} {size / 2**20:9.2f} MiB" for name, size in self.files.items()]
        lines.append("max |onnxruntime - torch| (float32):")
        lines += [f"  {name:<36} {diff:.3g}" for name, diff in self.max_abs_diff.items()]
        return "\n".join(lines)


# Checks of what can be exported -----------------------------------------------------------------
def _config_value(cfg: CfgNode, key: str):
    node = cfg
    for part in key.split("."):
        if part not in node:
            return None
        node = node[part]
    return node


def _check_options(cfg: CfgNode) -> None:
    for key, off in UNSUPPORTED_OPTIONS:
        value = _config_value(cfg, key)
        if value is not None and value != off:
            raise ValueError(f"{key} is {value!r}: the exported runtime does not reproduce this "
                             f"option; export with {key} {off!r}.")
    if cfg.MODEL.SAN.INFERENCE_DTYPE != "fp32" or cfg.MODEL.SAN.COMPILE:
        logger.info("Exporting in float32, without torch.compile (MODEL.SAN.INFERENCE_DTYPE and "
                    "MODEL.SAN.COMPILE only apply to the torch model).")


def _check_tokenizer_kind(tokenizer) -> None:
    clean = getattr(getattr(tokenizer, "clean_fn", None), "__name__", "")
    if (type(tokenizer).__name__ != "SimpleTokenizer" or clean != "_clean_lower"
            or getattr(tokenizer, "reduction_fn", None) is not None):
        raise ValueError(f"This CLIP's tokenizer ({type(tokenizer).__name__}) is not CLIP's BPE "
                         "tokenizer with lower-case cleaning, the only one the runtime has.")


def _build_model(cfg: CfgNode):
    cfg = cfg.clone()
    cfg.defrost()
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.SAN.INFERENCE_DTYPE", "fp32",
                         "MODEL.SAN.COMPILE", False])
    cfg.freeze()
    model = build_model(cfg).eval()
    if cfg.MODEL.WEIGHTS:
        SANCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    else:
        logger.warning("No MODEL.WEIGHTS given: exporting SAN with random weights.")
    return model


# Tracing -----------------------------------------------------------------------------------------
@contextlib.contextmanager
def _exporting():
    """Plain attention for nn.MultiheadAttention (its fused fast path has no ONNX form), and
    quiet exporter warnings about things that are not the user's to fix."""
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)


def _write_graph(module: torch.nn.Module, args: Tuple, path: Path, *, input_names: List[str],
                 output_names: List[str], dynamic_shapes: Dict, opset: int) -> None:
    program = torch.onnx.export(module, args, dynamo=True, input_names=input_names,
                                output_names=output_names, dynamic_shapes=dynamic_shapes,
                                opset_version=opset, external_data=False, verbose=False)
    with atomic_path(path) as temporary:
        program.save(temporary, external_data=False)


def _prompts(classifier, names: Sequence[str]) -> List[str]:
    return [template.format(name) for name in names for template in classifier.templates]


def _tokens(classifier, names: Sequence[str]) -> torch.Tensor:
    """open_clip's ids of the prompts of ``names``, cut after the longest prompt."""
    tokens = classifier.tokenizer(_prompts(classifier, names))
    return tokens[:, :int(tokens.argmax(-1).max()) + 1]


def _export_graphs(model, folder: Path, opset: int) -> None:
    dim = torch.export.Dim.DYNAMIC
    classifier = model.ov_classifier
    example_images = torch.zeros(1, 3, *EXAMPLE_SIZE)
    example_text = classifier.text_embeddings(list(CHECK_VOCABULARY))
    with _exporting():
        _write_graph(ImageGraph(model).eval(), (example_images, example_text),
                     folder / layout.IMAGE_GRAPH_FILE, input_names=["images", "text_embeddings"],
                     output_names=["class_logits", "mask_logits"],
                     dynamic_shapes={"images": {2: dim, 3: dim}, "text_embeddings": {0: dim}},
                     opset=opset)
        _write_graph(TextGraph(classifier).eval(), (_tokens(classifier, CHECK_VOCABULARY),),
                     folder / layout.TEXT_GRAPH_FILE, input_names=["tokens"],
                     output_names=["text_embeddings"], dynamic_shapes={"tokens": {0: dim, 1: dim}},
                     opset=opset)


# Checks of what was exported ---------------------------------------------------------------------
def _max_abs_diff(onnx_outputs: Sequence[np.ndarray], torch_outputs: Sequence[torch.Tensor]) -> float:
    return max(float(np.abs(o - t.numpy()).max()) for o, t in zip(onnx_outputs, torch_outputs))


def _check_graphs(model, folder: Path) -> Dict[str, float]:
    """Runs both graphs on onnxruntime beside the torch model; |difference| per check."""
    import onnx
    import onnxruntime as ort

    for name in (layout.IMAGE_GRAPH_FILE, layout.TEXT_GRAPH_FILE):
        onnx.checker.check_model(str(folder / name))
    sessions = {name: ort.InferenceSession(str(folder / name), providers=["CPUExecutionProvider"])
                for name in (layout.IMAGE_GRAPH_FILE, layout.TEXT_GRAPH_FILE)}
    classifier = model.ov_classifier
    diffs = {}
    with torch.no_grad():
        names = ["cat", "an unusually long class name, with punctuation & digits 42"]
        tokens = _tokens(classifier, names)
        text = sessions[layout.TEXT_GRAPH_FILE].run(None, {"tokens": tokens.numpy()})
        diffs[f"text graph, {len(tokens)} prompts"] = _max_abs_diff(
            text, [F.normalize(classifier.encode_text(tokens).float(), dim=-1)])
        generator = torch.Generator().manual_seed(0)
        graph = ImageGraph(model).eval()
        for (height, width), vocabulary in zip(CHECK_SIZES, (CHECK_VOCABULARY, names)):
            images = torch.randn(1, 3, height, width, generator=generator)
            embeddings = classifier.text_embeddings(list(vocabulary))
            onnx_out = sessions[layout.IMAGE_GRAPH_FILE].run(
                None, {"images": images.numpy(), "text_embeddings": embeddings.numpy()})
            diffs[f"image graph, {height}x{width}, K={len(vocabulary)}"] = _max_abs_diff(
                onnx_out, graph(images, embeddings))
    worst = max(diffs, key=diffs.get)
    if diffs[worst] > TOLERANCE:
        raise ExportMismatchError(f"The exported {worst} differs from the torch model by "
                                  f"{diffs[worst]:.3g} (more than {TOLERANCE}): the export is "
                                  f"not trustworthy; files left in {folder} for inspection.")
    return diffs


def _check_tokenizer(classifier, vocab_file: Path) -> None:
    """The runtime's tokenizer gives the model's ids on the check prompts."""
    prompts = _prompts(classifier, [*CHECK_VOCABULARY, "Ångström & “quotes”"])
    ours = ClipTokenizer(vocab_file, context_length=classifier.tokenizer.context_length)(prompts)
    if not np.array_equal(ours, classifier.tokenizer(prompts).numpy()):
        raise ExportMismatchError("The runtime's tokenizer does not reproduce open_clip's ids "
                                  f"with {vocab_file}: this open_clip is not supported.")


# Files ------------------------------------------------------------------------------------------
def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _copy_bpe_vocab(folder: Path) -> Path:
    from open_clip.tokenizer import default_bpe

    target = folder / BPE_VOCAB_FILE
    with atomic_write(target) as f, open(default_bpe(), "rb") as source:
        shutil.copyfileobj(source, f)
    with atomic_write(folder / BPE_LICENSE_FILE, "w") as f:
        f.write(_BPE_NOTICE)
    return target


def _versions(opset: int) -> Dict[str, str]:
    import onnx

    from .. import __version__

    versions = {"san_d2": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
                "onnx_opset": opset}
    with contextlib.suppress(metadata.PackageNotFoundError):
        versions["open_clip_torch"] = metadata.version("open_clip_torch")
    with contextlib.suppress(metadata.PackageNotFoundError):
        versions["onnxruntime_checked_with"] = metadata.version("onnxruntime")
    return versions


def _manifest(cfg: CfgNode, model, *, config_text: str, source_sha256: Optional[str],
              opset: int, diffs: Dict[str, float]) -> Dict:
    classifier = model.ov_classifier
    side_patch = model.side_adapter_network.patch_size
    return {
        "format": layout.FORMAT,
        "format_version": layout.FORMAT_VERSION,
        "files": {"image_graph": layout.IMAGE_GRAPH_FILE, "text_graph": layout.TEXT_GRAPH_FILE,
                  "bpe_vocab": BPE_VOCAB_FILE, "bpe_vocab_license": BPE_LICENSE_FILE,
                  "config": CONFIG_FILE},
        "preprocessing": {
            "input_format": cfg.INPUT.FORMAT,
            "pixel_mean": model.pixel_mean.flatten().tolist(),
            "pixel_std": model.pixel_std.flatten().tolist(),
            "resize": {"rule": cfg.INPUT.TEST_RESIZE, "min_size_test": cfg.INPUT.MIN_SIZE_TEST,
                       "max_size_test": cfg.INPUT.MAX_SIZE_TEST},
            "size_divisibility": model.size_divisibility,
            "pad_value": 0.0,
            "clip_resolution": model.clip_resolution if model.asymmetric_input else 1.0,
        },
        "image_graph": {
            "inputs": {"images": "(1, 3, H, W) float32: (pixel - pixel_mean) / pixel_std in "
                                 "input_format channel order, zero-padded at the bottom and right "
                                 "to multiples of size_divisibility",
                       "text_embeddings": "(K, E) float32 L2-normalised class embeddings"},
            "outputs": {"class_logits": "(1, Q, K + 1) float32; the last column is 'no object'",
                        "mask_logits": f"(1, Q, H / {side_patch}, W / {side_patch}) float32"},
            "num_queries": model.side_adapter_network.num_queries,
            "mask_stride": side_patch,
        },
        "text": {
            "tokenizer": "clip_bpe_lower",
            "context_length": classifier.tokenizer.context_length,
            "templates": list(classifier.templates),
            "template_set": cfg.MODEL.SAN.CLIP_TEMPLATE_SET,
            "embedding_dim": int(classifier.text_projection.shape[1]),
            "graph": "tokens (N, L) int64, L <= context_length (cut after the longest prompt's "
                     "end-of-text id) -> text_embeddings (N, E) float32, L2-normalised",
            "class_embedding": "per class: the normalised prompt embeddings averaged over the "
                               "templates, normalised",
        },
        "classifier": {"in_image_graph": True,
                       "logit_scale": float(classifier.logit_scale.exp()),
                       "no_object_column": "last"},
        "postprocessing": {
            "sem_seg_postprocess_before_inference": model.sem_seg_postprocess_before_inference,
            "class_probabilities": "softmax over the K + 1 columns, 'no object' dropped",
            "mask_probabilities": "sigmoid of the bilinearly resized mask logits",
            "scores": "(K, height, width): sum over the Q proposals of class probability x mask "
                      "probability, at the original picture's size",
        },
        "model": {"config_sha256": _sha256(config_text.encode("utf-8")),
                  "config_file_sha256": source_sha256,
                  "clip_model_name": cfg.MODEL.SAN.CLIP_MODEL_NAME,
                  "weights": os.path.basename(cfg.MODEL.WEIGHTS) if cfg.MODEL.WEIGHTS else None},
        "versions": _versions(opset),
        "export_check": {"tolerance": TOLERANCE, "max_abs_diff": diffs},
    }


def export_onnx(cfg: CfgNode, *, output_dir: os.PathLike, config_file: Optional[os.PathLike] = None,
                opset: int = DEFAULT_OPSET) -> ExportReport:
    """Exports the SAN of ``cfg`` (weights ``MODEL.WEIGHTS``; none: random) to ``output_dir``.

    Writes the image graph, the text graph, CLIP's BPE vocabulary with its licence, the full
    config and the manifest (last: a folder without one is an interrupted export). Each graph
    is checked with ``onnx.checker`` and against the torch model on onnxruntime.

    Args:
        cfg: a SAN config.
        output_dir: folder to write (created; files of an earlier export are replaced).
        config_file: the config file ``cfg`` came from, whose SHA-256 the manifest records.
        opset: ONNX opset of the graphs.

    Raises:
        ValueError: an option the runtime does not reproduce, or an unsupported tokenizer.
        ExportMismatchError: a graph off the torch model by more than TOLERANCE.
    """
    _check_options(cfg)
    folder = make_output_dir(output_dir)
    (folder / layout.MANIFEST_FILE).unlink(missing_ok=True)  # until the new export is checked
    model = _build_model(cfg)
    _check_tokenizer_kind(model.ov_classifier.tokenizer)
    _export_graphs(model, folder, opset)
    vocab_file = _copy_bpe_vocab(folder)
    _check_tokenizer(model.ov_classifier, vocab_file)
    diffs = _check_graphs(model, folder)
    config_text = cfg.dump()
    with atomic_write(folder / CONFIG_FILE, "w") as f:
        f.write(config_text)
    source_sha256 = _sha256(Path(config_file).read_bytes()) if config_file else None
    manifest = _manifest(cfg, model, config_text=config_text, source_sha256=source_sha256,
                         opset=opset, diffs=diffs)
    with atomic_write(folder / layout.MANIFEST_FILE, "w") as f:
        json.dump(manifest, f, indent=2)
    report = ExportReport(folder, max_abs_diff=diffs)
    for name in [*manifest["files"].values(), layout.MANIFEST_FILE]:
        report.files[name] = (folder / name).stat().st_size
    return report
