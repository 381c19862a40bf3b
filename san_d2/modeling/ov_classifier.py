"""Open-vocabulary classifier: CLIP's text tower turns class names into classifier weights."""
import hashlib
import json
import logging
import os
from importlib import resources
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from .text_cache import TextEmbeddingStore
from .vocabulary import check_vocabulary, synonyms

logger = logging.getLogger(__name__)

__all__ = ["OpenVocabClassifier", "load_template_set"]


def load_template_set(name: str) -> Tuple[str, ...]:
    """Prompt templates by set name ("vild": 14, "imagenet": 80); ``{}`` takes the class name."""
    text = resources.files("san_d2.data.reference").joinpath("templates.json").read_text()
    sets = json.loads(text)
    if name not in sets:
        raise ValueError(f"Unknown CLIP_TEMPLATE_SET {name!r}: choose one of {sorted(sets)}.")
    return tuple(sets[name])


class OpenVocabClassifier(nn.Module):
    """CLIP text tower + learned background embedding (state-dict prefix ``ov_classifier.``).

    Text embeddings depend only on (vocabulary, templates) and the text weights; they are
    computed once (in float32) and cached in memory, and, with ``cache_dir``, in a
    :class:`TextEmbeddingStore` under a key made of a hash of the text weights, the tokenizer,
    the templates and the vocabulary, so that a later process skips the text encoder for a
    vocabulary it has seen. Loading weights clears the in-memory cache and the weight hash.
    """

    def __init__(self, clip_model: nn.Module, tokenizer: Callable, templates: Sequence[str],
                 text_batch_size: int = 256, cache_dir: Optional[os.PathLike] = None):
        """
        Args:
            clip_model: open_clip ``CLIP``; its text modules are taken (shared, not copied).
            tokenizer: open_clip tokenizer of that model.
            templates: prompt templates, each with one ``{}``.
            text_batch_size: prompts encoded per text-tower call.
            cache_dir: folder of persisted text embeddings; None keeps them in memory only.
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
        self.store = TextEmbeddingStore(cache_dir) if cache_dir is not None else None
        self._cache: Dict[Tuple[Tuple[str, ...], Tuple[str, ...]], torch.Tensor] = {}
        self._weights_hash: Optional[str] = None
        self.num_prompts_encoded = 0  # through the text tower, over this module's life
        for name, param in self.named_parameters():
            param.requires_grad = name == "bg_embed"
        self.register_load_state_dict_post_hook(lambda module, keys: module._forget_weights())

    def train(self, mode: bool = True):
        """The text tower stays in eval mode; only ``bg_embed`` trains."""
        super().train(mode)
        for module in (self.token_embedding, self.transformer, self.ln_final):
            module.eval()
        return self

    def _forget_weights(self) -> None:
        self._cache.clear()
        self._weights_hash = None

    @torch.no_grad()
    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """(N, context_length) token ids -> (N, E) unnormalised text embeddings."""
        # Under the causal mask nothing after the last end-of-text token reaches any EOT
        # position, so the padding beyond it is cut (several times faster, same function).
        length = int(tokens.argmax(dim=-1).max()) + 1
        return self.encode_token_columns(tokens[:, :length], self.attn_mask[:length, :length])

    def encode_token_columns(self, tokens: torch.Tensor, causal_mask: torch.Tensor) -> torch.Tensor:
        """(N, L) token ids, L <= context_length, holding every prompt's end-of-text token,
        and their (L, L) causal mask -> (N, E) unnormalised text embeddings."""
        x = self.token_embedding(tokens) + self.positional_embedding[:tokens.shape[1]]
        x = self.ln_final(self.transformer(x, attn_mask=causal_mask))
        end_of_text = tokens.argmax(dim=-1)  # the largest id, its first occurrence
        x = x.gather(1, end_of_text[:, None, None].expand(-1, 1, x.shape[-1]))[:, 0]
        return x @ self.text_projection

    @torch.no_grad()
    def text_embeddings(self, vocabulary: Sequence) -> torch.Tensor:
        """(K, E) L2-normalised class embeddings, averaged over the templates and, for a class
        given as synonyms, over its names (cached)."""
        names = check_vocabulary(vocabulary)
        key = (names, self.templates)
        cached = self._cache.get(key)
        if cached is None:
            cached = self._load_persisted(names)
            if cached is None:
                # Full precision even under an autocast region: the result is cached and
                # persisted for every later call, whatever its precision.
                with torch.autocast(self.bg_embed.device.type, enabled=False):
                    cached = self._compute_text_embeddings(names)
                if self.store is not None:
                    self.store.save(self._store_key(names), names, self.templates, cached)
            self._cache[key] = cached
        device = self.bg_embed.device
        if cached.device != device:  # the module moved since
            cached = self._cache[key] = cached.to(device)
        return cached

    def _compute_text_embeddings(self, classes: Tuple) -> torch.Tensor:
        names = [name for entry in classes for name in synonyms(entry)]
        per_name = self._name_embeddings(names)
        if len(names) == len(classes):  # no synonyms
            return per_name
        rows, start = [], 0
        for entry in classes:
            count = len(synonyms(entry))
            rows.append(per_name[start] if count == 1 else
                        F.normalize(per_name[start:start + count].mean(dim=0), dim=-1))
            start += count
        return torch.stack(rows)

    def _name_embeddings(self, names) -> torch.Tensor:
        """(N, E) normalised embeddings of N names, each averaged over the templates."""
        prompts = [template.format(name) for name in names for template in self.templates]
        tokens = self.tokenizer(prompts).to(self.bg_embed.device)
        # Prompts of similar length share a chunk, so that little padding is encoded.
        order = tokens.argmax(dim=-1).argsort()
        chunks = [self.encode_text(chunk) for chunk in tokens[order].split(self.text_batch_size)]
        embeddings = chunks[0].new_empty((len(prompts), chunks[0].shape[-1]), dtype=torch.float32)
        embeddings[order] = F.normalize(torch.cat(chunks).float(), dim=-1)
        self.num_prompts_encoded += len(prompts)
        embeddings = embeddings.reshape(len(names), len(self.templates), -1).mean(dim=1)
        logger.info(f"Encoded {len(prompts)} prompts for {len(names)} class names "
                    "(cached for later calls).")
        return F.normalize(embeddings, dim=-1)

    # Persistence -------------------------------------------------------------------------------
    def weights_hash(self) -> str:
        """SHA-256 of the text tower's weights (names, dtypes, shapes, values); memoised."""
        if self._weights_hash is None:
            digest = hashlib.sha256()
            for name, tensor in self.state_dict().items():
                if name == "bg_embed":  # does not enter the text embeddings
                    continue
                digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
                flat = tensor.detach().cpu().contiguous().reshape(-1)
                digest.update(flat.view(torch.uint8).numpy().data)
            self._weights_hash = digest.hexdigest()
        return self._weights_hash

    def _store_key(self, names: Tuple[str, ...]) -> Dict:
        return {"weights": self.weights_hash(),
                "tokenizer": [type(self.tokenizer).__name__,
                              getattr(self.tokenizer, "context_length", None)],
                "templates": self.templates, "names": names}

    def _load_persisted(self, names: Tuple[str, ...]) -> Optional[torch.Tensor]:
        if self.store is None:
            return None
        embeddings = self.store.load(self._store_key(names), names, self.templates,
                                     self.text_projection.shape[1])
        return None if embeddings is None else embeddings.to(self.bg_embed.device)

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
