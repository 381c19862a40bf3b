"""The export folder's manifest: what the runtime needs beside the ONNX graphs.

``san-export-onnx`` writes it (from ``san_d2.export``) and :func:`read_manifest` reads it;
both use the names below, so that the writer and the reader cannot drift apart.
"""
import json
import os
from pathlib import Path
from typing import Any, Dict

__all__ = ["MANIFEST_FILE", "FORMAT", "FORMAT_VERSION", "IMAGE_GRAPH_FILE", "TEXT_GRAPH_FILE",
           "ExportFolderError", "read_manifest"]

MANIFEST_FILE = "manifest.json"
FORMAT = "san_d2-onnx-export"
# Raised whenever a field's meaning changes or a field the runtime needs is added.
FORMAT_VERSION = 1

IMAGE_GRAPH_FILE = "san_image.onnx"
TEXT_GRAPH_FILE = "san_text.onnx"

_EXPORT_HINT = ("create it with `san-export-onnx --config-file CONFIG --weights WEIGHTS "
                "--output {folder}` on a machine with san_d2 and torch")

# Fields the runtime reads, by section.
REQUIRED_FIELDS = {
    "files": ("image_graph", "text_graph", "bpe_vocab"),
    "preprocessing": ("input_format", "pixel_mean", "pixel_std", "resize", "size_divisibility"),
    "text": ("templates", "context_length", "embedding_dim"),
    "postprocessing": ("sem_seg_postprocess_before_inference",),
}


class ExportFolderError(ValueError):
    """An export folder the runtime cannot use: incomplete, or of another format version."""


def read_manifest(folder: os.PathLike) -> Dict[str, Any]:
    """The checked manifest of an export folder.

    Raises:
        FileNotFoundError: no such folder, or no manifest in it.
        ExportFolderError: a manifest that is not JSON, of another format or version, without
            a field the runtime needs, or naming a file that is missing.
    """
    folder = Path(folder)
    path = folder / MANIFEST_FILE
    if not folder.is_dir():
        raise FileNotFoundError(f"No export folder at {folder}: "
                                + _EXPORT_HINT.format(folder=folder) + ".")
    if not path.is_file():
        raise FileNotFoundError(f"{folder} has no {MANIFEST_FILE}, so it is no SAN export "
                                "folder (or an interrupted export): "
                                + _EXPORT_HINT.format(folder=folder) + ".")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise ExportFolderError(f"{path} is not valid JSON ({e}).") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ExportFolderError(f"{path} is not a SAN export manifest (no \"format\": "
                                f"\"{FORMAT}\").")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        written_by = manifest.get("versions", {}).get("san_d2", "an unknown version")
        raise ExportFolderError(
            f"{folder} holds an export of format version {version} (written by san_d2 "
            f"{written_by}); this runtime reads version {FORMAT_VERSION}: export the model "
            "again with this san_d2's san-export-onnx, or use the runtime of the san_d2 that "
            "wrote it.")
    for section, fields in REQUIRED_FIELDS.items():
        missing = [f for f in fields if f not in manifest.get(section, {})]
        if missing:
            raise ExportFolderError(f"{path} lacks {section}.{', '.join(missing)}: the export is "
                                    "incomplete; " + _EXPORT_HINT.format(folder=folder) + ".")
    for name in manifest["files"].values():
        if not (folder / name).is_file():
            raise ExportFolderError(f"{folder} lacks {name}, which its manifest names: copy the "
                                    "whole export folder, or export again.")
    return manifest
