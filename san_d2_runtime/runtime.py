"""SANRuntime: segment pictures with a typed vocabulary from an export folder, without torch."""
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from .images import ImageInput, network_input, read_rgb, resize
from .manifest import read_manifest
from .postprocessing import semantic_scores
from .tokenizer import ClipTokenizer
from .vocabulary import ClassEntry, check_vocabulary, class_names, synonyms

__all__ = ["SANRuntime", "SegmentationResult", "GRAPH_OPTIMIZATION_LEVELS"]

# onnxruntime's graph optimisation levels by name.
GRAPH_OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "layout", "all")


@dataclass
class SegmentationResult:
    """What :meth:`SANRuntime.predict` returns (``SANPredictor.predict``'s fields, in numpy).

    Attributes:
        class_map: (H, W) int64 index into ``vocabulary`` per pixel.
        scores: (K, H, W) float32 per-class scores.
        vocabulary: the K class names (a class given as synonyms goes by its first name).
    """

    class_map: np.ndarray
    scores: np.ndarray
    vocabulary: Tuple[str, ...]

    def pixel_shares(self) -> Dict[str, float]:
        """{class name: share of the pixels} of the classes present, largest first."""
        ids, counts = np.unique(self.class_map, return_counts=True)
        ranked = sorted(zip(ids.tolist(), counts.tolist()), key=lambda pair: (-pair[1], pair[0]))
        return {self.vocabulary[i]: n / self.class_map.size for i, n in ranked}

    def describe(self, num_named: Optional[int] = None) -> str:
        """"floor 52.0%, sofa 31.0%, other 17.0%": classes present, largest first, the ones
        from index ``num_named`` on (an expansion of the vocabulary) summed up as "other"."""
        named = set(self.vocabulary[:len(self.vocabulary) if num_named is None else num_named])
        shares = self.pixel_shares()
        words = [f"{name} {100 * share:.1f}%" for name, share in shares.items() if name in named]
        rest = sum(share for name, share in shares.items() if name not in named)
        return ", ".join(words + ([f"other {100 * rest:.1f}%"] if rest else []))


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _session_options(ort, optimization: str, threads: Optional[int]):
    if optimization not in GRAPH_OPTIMIZATION_LEVELS:
        raise ValueError(f"Unknown graph optimisation level {optimization!r}: use one of "
                         f"{GRAPH_OPTIMIZATION_LEVELS}.")
    levels = ort.GraphOptimizationLevel
    options = ort.SessionOptions()
    options.graph_optimization_level = {
        "disable": levels.ORT_DISABLE_ALL, "basic": levels.ORT_ENABLE_BASIC,
        "extended": levels.ORT_ENABLE_EXTENDED,
        "layout": getattr(levels, "ORT_ENABLE_LAYOUT", levels.ORT_ENABLE_EXTENDED),
        "all": levels.ORT_ENABLE_ALL}[optimization]
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: constant folding notes are not for users
    return options


class SANRuntime:
    """SAN from an export folder (``san-export-onnx``) on onnxruntime.

    Example::

        runtime = SANRuntime("export/")
        result = runtime.predict("street.jpg", ["car", "road", "tree", "sky"])
        print(result.describe())
    """

    def __init__(self, export_dir: os.PathLike, *, providers: Optional[Sequence] = None,
                 optimization: str = "all", threads: Optional[int] = None,
                 text_batch_size: int = 256):
        """
        Args:
            export_dir: the folder ``san-export-onnx`` wrote.
            providers: onnxruntime execution providers (default: the CPU).
            optimization: onnxruntime graph optimisation level, one of
                GRAPH_OPTIMIZATION_LEVELS.
            threads: onnxruntime intra-op threads (default: onnxruntime's choice).
            text_batch_size: prompts per text-graph call.

        Raises:
            FileNotFoundError, ExportFolderError: no usable export folder (see
                :func:`read_manifest`).
        """
        import onnxruntime as ort

        self.export_dir = Path(export_dir)
        self.manifest = read_manifest(self.export_dir)
        files = self.manifest["files"]
        options = _session_options(ort, optimization, threads)
        providers = list(providers or ["CPUExecutionProvider"])
        self.image_session = ort.InferenceSession(str(self.export_dir / files["image_graph"]),
                                                  options, providers=providers)
        self.text_session = ort.InferenceSession(str(self.export_dir / files["text_graph"]),
                                                 options, providers=providers)
        text = self.manifest["text"]
        self.tokenizer = ClipTokenizer(self.export_dir / files["bpe_vocab"],
                                       context_length=text["context_length"])
        self.templates = tuple(text["templates"])
        self.text_batch_size = text_batch_size
        self._embeddings: Dict[Tuple[ClassEntry, ...], np.ndarray] = {}
        self.num_prompts_encoded = 0
        self.last_timings: Dict[str, float] = {}

    # Text ------------------------------------------------------------------------------------
    def _prompt_embeddings(self, prompts: Sequence[str]) -> np.ndarray:
        """(N, E) normalised embeddings of N prompts, encoded in chunks of similar length,
        each chunk cut after its longest prompt (the same embeddings as all 77 columns)."""
        tokens = self.tokenizer(prompts)
        ends = tokens.argmax(axis=1)
        order = np.argsort(ends, kind="stable")
        out = np.empty((len(prompts), self.manifest["text"]["embedding_dim"]), dtype=np.float32)
        for start in range(0, len(prompts), self.text_batch_size):
            chunk = order[start:start + self.text_batch_size]
            length = int(ends[chunk].max()) + 1
            out[chunk] = self.text_session.run(None, {"tokens": tokens[chunk, :length]})[0]
        self.num_prompts_encoded += len(prompts)
        return out

    def text_embeddings(self, vocabulary: Sequence) -> np.ndarray:
        """(K, E) class embeddings as san_d2 makes them: each prompt's normalised embedding
        averaged over the templates and normalised; synonyms' averaged and normalised again.
        Cached per vocabulary."""
        classes = check_vocabulary(vocabulary)
        cached = self._embeddings.get(classes)
        if cached is None:
            names = [name for entry in classes for name in synonyms(entry)]
            prompts = [template.format(name) for name in names for template in self.templates]
            per_name = _normalise(self._prompt_embeddings(prompts).reshape(
                len(names), len(self.templates), -1).mean(axis=1))
            rows, start = [], 0
            for entry in classes:
                count = len(synonyms(entry))
                group = per_name[start:start + count]
                rows.append(group[0] if count == 1 else _normalise(group.mean(axis=0)))
                start += count
            cached = self._embeddings[classes] = np.stack(rows).astype(np.float32)
        return cached

    # Images ----------------------------------------------------------------------------------
    def predict(self, image: ImageInput, vocabulary: Sequence) -> SegmentationResult:
        """Segments one picture (a path, PIL image or array) into the classes of
        ``vocabulary`` (names, or lists of synonyms). ``last_timings`` then holds the seconds
        spent in each step."""
        clock = [time.perf_counter()]

        def lap(step: str) -> None:
            clock.append(time.perf_counter())
            self.last_timings[step] = clock[-1] - clock[-2]

        classes = check_vocabulary(vocabulary)
        embeddings = self.text_embeddings(classes)
        lap("text embeddings")
        rgb = read_rgb(image)
        preprocessing = self.manifest["preprocessing"]
        resized = resize(rgb, preprocessing["resize"])
        batch = network_input(resized, preprocessing)
        lap("pre-processing")
        class_logits, mask_logits = self.image_session.run(
            None, {"images": batch, "text_embeddings": embeddings})
        lap("image graph")
        scores = semantic_scores(
            class_logits[0], mask_logits[0], padded_size=batch.shape[-2:],
            image_size=resized.shape[:2], output_size=rgb.shape[:2],
            before=self.manifest["postprocessing"]["sem_seg_postprocess_before_inference"])
        result = SegmentationResult(scores.argmax(axis=0), scores, class_names(classes))
        lap("post-processing")
        return result
