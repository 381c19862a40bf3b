"""Open-vocabulary classifier: CLIP's text tower turns class names into classifier weights."""
import json
import logging
from importlib import resources
from typing import Callable, Dict, List, Sequence, Tuple

import torch
from torch import nn
from torch.nn import functional as F

logger = logging.getLogger(__name__)

__all__ = ["OpenVocabClassifier", "load_template_set", "check_vocabulary"]


def load_template_set(name: str) -> Tuple[str, ...]:
    """Prompt templates by set name ("vild": 14, "imagenet": 80); ``{}`` takes the class name."""
    text = resources.files("san_d2.data.reference").joinpath("templates.json").read_text()
    sets = json.loads(text)
    if name not in sets:
        raise ValueError(f"Unknown CLIP_TEMPLATE_SET {name!r}: choose one of {sorted(sets)}.")
    return tuple(sets[name])


def check_vocabulary(names: Sequence[str]) -> Tuple[str, ...]:
    """Strips each class name and rejects what would make class ids ambiguous.

    Raises:
        ValueError: for an empty vocabulary, a name that is not a non-empty string, or
            duplicate names (their ids would be indistinguishable).
    """
    if isinstance(names, str) or not isinstance(names, Sequence) or len(names) == 0:
        raise ValueError(f"The vocabulary must be a non-empty list of class names, got {names!r}.")
    stripped = []
    for i, name in enumerate(names):
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"Vocabulary entry {i} is {name!r}: class names must be non-empty "
                             "strings.")
        stripped.append(name.strip())
    first_seen: Dict[str, int] = {}
    for i, name in enumerate(stripped):
        if name in first_seen:
            raise ValueError(f"Duplicate class name {name!r} at positions {first_seen[name]} and "
                             f"{i} of the vocabulary: class ids must name distinct classes.")
        first_seen[name] = i
    return tuple(stripped)


class OpenVocabClassifier(nn.Module):
    """CLIP text tower + learned background embedding (state-dict prefix ``ov_classifier.``).

    Text embeddings depend only on (vocabulary, templates) and the text weights; they are
    computed once and cached. Loading weights clears the cache.
    """

    def __init__(self, clip_model: nn.Module, tokenizer: Callable, templates: Sequence[str],
                 text_batch_size: int = 256):
        """
        Args:
            clip_model: open_clip ``CLIP``; its text modules are taken (shared, not copied).
            tokenizer: open_clip tokenizer of that model.
            templates: prompt templates, each with one ``{}``.
            text_batch_size: prompts encoded per text-tower call.
        """
        super().__init__()
        self.token_embedding = clip_model.token_embedding
        self.positional_embedding = clip_model.positional_embedding
        self.transformer = clip_model.transformer
        self.ln_final = clip_model.ln_final
        self.text_projection = clip_model.text_projection
        self.logit_scale = clip_model.logit_scale
        # Persistent here (open_clip's is not): the released checkpoints store it.
        self.register_buffer("attn_mask", clip_model.attn_mask.clone(), persistent=True)
        embed_dim = self.text_projection.shape[1]
        self.bg_embed = nn.Parameter(torch.randn(1, embed_dim) * embed_dim ** -0.5)
        self.tokenizer = tokenizer
        self.templates = tuple(templates)
        self.text_batch_size = text_batch_size
        self._cache: Dict[Tuple[Tuple[str, ...], Tuple[str, ...]], torch.Tensor] = {}
        for name, param in self.named_parameters():
            param.requires_grad = name == "bg_embed"

    def train(self, mode: bool = True):
        """The text tower stays in eval mode; only ``bg_embed`` trains."""
        super().train(mode)
        for module in (self.token_embedding, self.transformer, self.ln_final):
            module.eval()
        return self

    def _load_from_state_dict(self, *args, **kwargs):
        self._cache.clear()
        super()._load_from_state_dict(*args, **kwargs)

    @torch.no_grad()
    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """(N, context_length) token ids -> (N, E) unnormalised text embeddings."""
        eot = tokens.argmax(dim=-1)
        # Under the causal mask nothing after the last end-of-text token reaches any EOT
        # position, so the padding beyond it is cut (several times faster, same function).
        length = int(eot.max()) + 1
        tokens = tokens[:, :length]
        x = self.token_embedding(tokens) + self.positional_embedding[:length]
        x = self.transformer(x, attn_mask=self.attn_mask[:length, :length])
        x = self.ln_final(x)
        x = x[torch.arange(x.shape[0], device=x.device), eot]
        return x @ self.text_projection

    @torch.no_grad()
    def text_embeddings(self, vocabulary: Sequence[str]) -> torch.Tensor:
        """(K, E) L2-normalised class embeddings, averaged over the templates (cached)."""
        names = check_vocabulary(vocabulary)
        key = (names, self.templates)
        cached = self._cache.get(key)
        device = self.bg_embed.device
        if cached is None or cached.device != device:
            cached = self._compute_text_embeddings(names).to(device)
            self._cache[key] = cached
        return cached

    def _compute_text_embeddings(self, names: Tuple[str, ...]) -> torch.Tensor:
        prompts = [template.format(name) for name in names for template in self.templates]
        tokens = self.tokenizer(prompts).to(self.bg_embed.device)
        chunks = [self.encode_text(chunk) for chunk in tokens.split(self.text_batch_size)]
        embeddings = F.normalize(torch.cat(chunks).float(), dim=-1)
        embeddings = embeddings.reshape(len(names), len(self.templates), -1).mean(dim=1)
        logger.info(f"Encoded {len(prompts)} prompts for a {len(names)}-class vocabulary "
                    "(cached for later calls).")
        return F.normalize(embeddings, dim=-1)

    def forward(self, mask_embeddings: torch.Tensor, vocabulary: Sequence[str]) -> torch.Tensor:
        """
        Args:
            mask_embeddings: (B, Q, E) L2-normalised.
            vocabulary: K class names.
        Returns:
            (B, Q, K + 1) logits; the last column is "no object".
        """
        text = self.text_embeddings(vocabulary)
        classifier = torch.cat([text.to(self.bg_embed.dtype), self.bg_embed], dim=0)
        classifier = F.normalize(classifier, dim=-1) * self.logit_scale.exp()
        return torch.einsum("bqc,nc->bqn", mask_embeddings, classifier.to(mask_embeddings.dtype))
