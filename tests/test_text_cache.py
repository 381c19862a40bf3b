"""Text embeddings persisted on disk: reused across processes, never for other weights or names."""
import logging
from pathlib import Path

import torch

from san_d2.modeling.text_cache import resolve_text_cache_dir

from .conftest import build_tiny_san

VOCABULARY = ["cat", "dog", "grass"]


def _classifier(cache_dir, seed=0):
    model, _ = build_tiny_san("MODEL.SAN.TEXT_EMBEDDING_CACHE", str(cache_dir), seed=seed)
    return model.ov_classifier


def _count_encoder_calls(monkeypatch, classifier):
    calls = []
    encode = classifier.encode_text
    monkeypatch.setattr(classifier, "encode_text", lambda tokens: calls.append(1) or encode(tokens))
    return calls


def test_a_new_model_reuses_persisted_embeddings_without_encoding(tmp_path, monkeypatch):
    first = _classifier(tmp_path)
    expected = first.text_embeddings(VOCABULARY)
    assert len(list(tmp_path.glob("*.pt"))) == 1

    second = _classifier(tmp_path)  # same seed: same weights, as in a later process
    calls = _count_encoder_calls(monkeypatch, second)
    assert torch.equal(second.text_embeddings(VOCABULARY), expected)
    assert calls == []


def test_other_weights_or_vocabulary_are_encoded_afresh(tmp_path, monkeypatch):
    _classifier(tmp_path, seed=0).text_embeddings(VOCABULARY)

    other_weights = _classifier(tmp_path, seed=1)
    calls = _count_encoder_calls(monkeypatch, other_weights)
    fresh = other_weights.text_embeddings(VOCABULARY)
    assert calls and len(list(tmp_path.glob("*.pt"))) == 2
    no_cache = _classifier("", seed=1)
    assert no_cache.store is None
    assert torch.allclose(fresh, no_cache.text_embeddings(VOCABULARY), atol=1e-6)

    same_weights = _classifier(tmp_path, seed=0)
    calls = _count_encoder_calls(monkeypatch, same_weights)
    same_weights.text_embeddings(["cat", "dog"])
    assert calls


def test_loading_other_weights_changes_the_key(tmp_path):
    classifier = _classifier(tmp_path, seed=0)
    before = classifier.weights_hash()
    classifier.load_state_dict(_classifier("", seed=1).state_dict())
    assert classifier.weights_hash() != before


def test_unreadable_or_foreign_cache_files_are_recomputed(tmp_path, caplog):
    classifier = _classifier(tmp_path)
    expected = classifier.text_embeddings(VOCABULARY)
    (path,) = tmp_path.glob("*.pt")

    path.write_bytes(b"not a torch file")
    with caplog.at_level(logging.WARNING, logger="san_d2"):
        result = _classifier(tmp_path).text_embeddings(VOCABULARY)
    assert "unreadable" in caplog.text and torch.equal(result, expected)

    torch.save({"names": ["x", "y", "z"], "templates": [], "embeddings": expected}, path)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="san_d2"):
        result = _classifier(tmp_path).text_embeddings(VOCABULARY)
    assert "another vocabulary" in caplog.text and torch.equal(result, expected)


def test_unusable_cache_folder_only_warns(tmp_path, caplog):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the cache folder should be")
    with caplog.at_level(logging.WARNING, logger="san_d2"):
        embeddings = _classifier(blocker).text_embeddings(VOCABULARY)
    assert embeddings.shape[0] == 3 and "Could not save text embeddings" in caplog.text


def test_a_failed_write_leaves_no_file_behind(tmp_path, monkeypatch, caplog):
    classifier = _classifier(tmp_path)

    def failing_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with caplog.at_level(logging.WARNING, logger="san_d2"):
        embeddings = classifier.text_embeddings(VOCABULARY)
    assert embeddings.shape[0] == 3 and "disk full" in caplog.text
    assert list(tmp_path.iterdir()) == []


def test_cache_folder_setting(monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", "/somewhere")
    assert resolve_text_cache_dir("auto") == Path("/somewhere/san_d2/text_embeddings")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert resolve_text_cache_dir("auto") == Path.home() / ".cache/san_d2/text_embeddings"
    assert resolve_text_cache_dir("") is None
    monkeypatch.setenv("SCRATCH", "/scratch/me")
    assert resolve_text_cache_dir("$SCRATCH/emb") == Path("/scratch/me/emb")
