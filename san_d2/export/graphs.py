"""Export-only views of SAN's networks: the graphs written to ONNX.

They share the model's modules (no copies) and run the model's own code: the image graph is
``SAN._predict`` and ``OpenVocabClassifier.forward`` with the class embeddings given as an input
instead of looked up by name, so that the vocabulary is chosen when the graph runs.
"""
from typing import Tuple

import torch
from torch import nn
from torch.nn import functional as F

from ..modeling.ov_classifier import OpenVocabClassifier
from ..modeling.san import SAN

__all__ = ["EmbeddingClassifier", "ImageGraph", "TextGraph"]


class EmbeddingClassifier(nn.Module):
    """The classifier of :class:`OpenVocabClassifier` for given (K, E) class embeddings."""

    def __init__(self, classifier: OpenVocabClassifier):
        super().__init__()
        self.bg_embed = classifier.bg_embed
        self.logit_scale = classifier.logit_scale

    @staticmethod
    def text_embeddings(embeddings: torch.Tensor) -> torch.Tensor:
        return embeddings

    # (B, Q, E) mask embeddings, (K, E) class embeddings -> (B, Q, K + 1) logits.
    forward = OpenVocabClassifier.forward


class ImageGraph(nn.Module):
    """Normalised, padded images and class embeddings -> class and mask logits.

    Inputs: ``images`` (B, 3, H, W) float32, normalised with the pixel mean and std, zero-padded
    to multiples of the size divisibility; ``text_embeddings`` (K, E) L2-normalised class
    embeddings. Outputs: ``class_logits`` (B, Q, K + 1), the last column "no object", and
    ``mask_logits`` (B, Q, H / p, W / p) for the side adapter's patch size p.
    """

    def __init__(self, model: SAN):
        super().__init__()
        self.clip_visual_extractor = model.clip_visual_extractor
        self.side_adapter_network = model.side_adapter_network
        self.clip_rec_head = model.clip_rec_head
        self.ov_classifier = EmbeddingClassifier(model.ov_classifier)
        self.asymmetric_input = model.asymmetric_input
        self.clip_resolution = model.clip_resolution

    _predict = SAN._predict

    def forward(self, images: torch.Tensor,
                text_embeddings: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        last = self._predict(images, text_embeddings)[-1]
        return last["pred_logits"], last["pred_masks"]


class TextGraph(nn.Module):
    """(N, L) token ids, L <= the context length (77) -> (N, E) L2-normalised text embeddings.

    The text tower of :meth:`OpenVocabClassifier.encode_text` over the L columns given: under
    the causal mask nothing after a prompt's end-of-text token reaches it, so ids cut after the
    longest prompt's end-of-text token give the embeddings of the full 77 columns.
    """

    def __init__(self, classifier: OpenVocabClassifier):
        super().__init__()
        self.classifier = classifier

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        length = tokens.shape[1]
        # CLIP's causal mask (-inf above the diagonal) of this length; slicing the (77, 77)
        # buffer instead would make the exporter single out length 77.
        causal = torch.full((length, length), float("-inf"), device=tokens.device).triu(1)
        return F.normalize(self.classifier.encode_token_columns(tokens, causal), dim=-1)
