"""CLIP's byte-level BPE tokenizer, giving open_clip's ``SimpleTokenizer`` ids without torch.

The vocabulary file (``bpe_simple_vocab_16e6.txt.gz``, OpenAI's CLIP release as shipped with
open_clip, MIT License) is copied into each export folder by ``san-export-onnx``.

Text is cleaned as open_clip cleans it (ftfy's ``fix_text``, HTML unescaping, whitespace
collapsing, lower case), except that mojibake (UTF-8 read as Latin-1, such as ``cafÃ©``) is
left as typed: ftfy's encoding repair is a heuristic of its own that this module does not
reproduce. Every other step of ``fix_text`` is: HTML entities (with ftfy's all-caps ones),
C1 controls read as Windows-1252, Latin ligatures, full- and half-width forms, curly quotes,
line breaks, surrogates, terminal escapes, control characters, NFC.
"""
import gzip
import html
import html.entities
import os
import re
import unicodedata
from functools import lru_cache
from typing import Dict, Iterator, List, Sequence, Tuple

import numpy as np

__all__ = ["ClipTokenizer", "clean_text", "BPE_VOCAB_FILE"]

BPE_VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"

START_OF_TEXT, END_OF_TEXT = "<start_of_text>", "<end_of_text>"
_CONTRACTIONS = ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d")
# Merges used by CLIP: the first line of the file is a header.
_NUM_MERGES = 49152 - 256 - 2


# Text cleaning ---------------------------------------------------------------------------------
def _entities() -> Dict[str, str]:
    """HTML5 entities with their semicolon, and all-caps forms of the lower-case ones that
    are no entity of their own (``&EACUTE;`` -> "É"), as ftfy decodes them."""
    table = {}
    for name, char in html.entities.html5.items():
        if not name.endswith(";"):
            continue
        table["&" + name] = char
        shouted = "&" + name.upper()
        if name == name.lower() and html.unescape(shouted) == shouted:
            table[shouted] = char.upper()
    return table


_ENTITY = re.compile(r"&#?[0-9A-Za-z]{1,24};")
_ENTITIES = _entities()


def _decode_entity(match: "re.Match") -> str:
    entity = match.group(0)
    if entity in _ENTITIES:
        return _ENTITIES[entity]
    if entity.startswith("&#"):
        decoded = html.unescape(entity)
        return entity if ";" in decoded else decoded
    return entity


def _windows_1252(match: "re.Match") -> str:
    char = match.group(0)
    try:
        return bytes([ord(char)]).decode("cp1252")
    except UnicodeDecodeError:  # the five bytes cp1252 leaves undefined stay as they are
        return char


def _surrogate_pair(match: "re.Match") -> str:
    high, low = (ord(c) for c in match.group(0))
    return chr(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))


_LIGATURES = str.maketrans({
    "Ĳ": "IJ", "ĳ": "ij", "ŉ": "ʼn", "Ǳ": "DZ", "ǲ": "Dz", "ǳ": "dz", "Ǆ": "DŽ", "ǅ": "Dž",
    "ǆ": "dž", "Ǉ": "LJ", "ǈ": "Lj", "ǉ": "lj", "Ǌ": "NJ", "ǋ": "Nj", "ǌ": "nj", "ﬀ": "ff",
    "ﬁ": "fi", "ﬂ": "fl", "ﬃ": "ffi", "ﬄ": "ffl", "ﬅ": "ſt", "ﬆ": "st"})
_WIDTHS = {0x3000: " ", **{
    code: unicodedata.normalize("NFKC", chr(code)) for code in range(0xFF01, 0xFFF0)
    if unicodedata.normalize("NFKC", chr(code)) != chr(code)}}
_CONTROLS = dict.fromkeys([*range(0x00, 0x09), 0x0B, *range(0x0E, 0x20), 0x7F,
                           *range(0x206A, 0x2070), 0xFEFF, *range(0xFFF9, 0xFFFD)])
_C1 = re.compile("[\x80-\x9f]")
_SINGLE_QUOTES, _DOUBLE_QUOTES = re.compile("[\u02bc\u2018-\u201b]"), re.compile("[\u201c-\u201f]")
_LINE_BREAKS = re.compile("\r\n|[\r\u2028\u2029\x85]")
_PAIR, _SURROGATE = re.compile("[\ud800-\udbff][\udc00-\udfff]"), re.compile("[\ud800-\udfff]")
_TERMINAL_ESCAPE = re.compile("\033\\[((?:\\d|;)*)([a-zA-Z])")


def _fix_segment(text: str, unescape: bool) -> str:
    """ftfy's fixes, bar the encoding repair, repeated until nothing changes."""
    while True:
        before = text
        if unescape:
            text = _ENTITY.sub(_decode_entity, text)
        text = _C1.sub(_windows_1252, text)
        text = text.translate(_LIGATURES).translate(_WIDTHS)
        text = _SINGLE_QUOTES.sub("'", _DOUBLE_QUOTES.sub('"', text))
        text = _LINE_BREAKS.sub("\n", text)
        if _SURROGATE.search(text):
            text = _SURROGATE.sub("\ufffd", _PAIR.sub(_surrogate_pair, text))
        text = _TERMINAL_ESCAPE.sub("", text).translate(_CONTROLS)
        text = unicodedata.normalize("NFC", text)
        if text == before:
            return text


def clean_text(text: str) -> str:
    """open_clip's "lower" cleaning: fixed text, HTML unescaped twice, whitespace runs made
    one space, stripped, lower case."""
    fixed, unescape = [], True
    for line in text.splitlines(keepends=True) if "\n" in text else [text]:
        # ftfy works line by line; from the first line holding "<" on, it leaves entities.
        unescape = unescape and "<" not in line
        fixed.append(_fix_segment(line, unescape))
    text = html.unescape(html.unescape("".join(fixed))).strip()
    return " ".join(text.split()).lower()


# Pre-tokenisation ------------------------------------------------------------------------------
@lru_cache(maxsize=4096)
def _kind(char: str) -> str:
    """"L" letter, "N" number, " " skipped (white space), "P" anything else (by Unicode
    category)."""
    if char.isspace():
        return " "
    category = unicodedata.category(char)[0]
    if category in "LN":
        return category
    # Under the pattern's IGNORECASE, a mark whose other cases are letters (U+0345, whose
    # upper case is a Greek iota) fits none of the alternatives: the regex engine skips it.
    if any(unicodedata.category(c)[0] in "LN" for c in char.upper() + char.casefold()):
        return " "
    return "P"


def _words(text: str) -> Iterator[str]:
    """The pieces of CLIP's pattern ``<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|
    \\p{L}+|\\p{N}|[^\\s\\p{L}\\p{N}]+``, scanned as the regex engine scans it: each piece
    starts where the last ended, and the first alternative that fits wins."""
    i, n = 0, len(text)
    while i < n:
        special = next((s for s in (START_OF_TEXT, END_OF_TEXT, *_CONTRACTIONS)
                        if text.startswith(s, i)), None)
        kind = _kind(text[i])
        if special is not None:
            end = i + len(special)
        elif kind == " ":
            i += 1
            continue
        elif kind == "N":
            end = i + 1
        else:
            end = i + 1
            while end < n and _kind(text[end]) == kind:
                end += 1
        yield text[i:end]
        i = end


# Byte-level BPE --------------------------------------------------------------------------------
@lru_cache(maxsize=None)
def _byte_alphabet() -> Tuple[str, ...]:
    """The printable character standing for each byte: printable Latin-1 bytes stand for
    themselves, the 68 others for code points from 256 on, in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    others = iter(range(256, 512))
    return tuple(chr(b) if b in printable else chr(next(others)) for b in range(256))


class ClipTokenizer:
    """``tokenizer(texts)`` -> (N, context_length) int64 ids: start-of-text, the text's BPE
    ids, end-of-text, zeros; texts too long are cut, their last id made end-of-text."""

    def __init__(self, vocab_file: os.PathLike, *, context_length: int = 77):
        """
        Args:
            vocab_file: CLIP's ``bpe_simple_vocab_16e6.txt.gz``.
            context_length: ids per text (77 for every CLIP).
        """
        with gzip.open(vocab_file, "rt", encoding="utf-8") as f:
            lines = f.read().split("\n")[1:_NUM_MERGES + 1]
        merges = [tuple(line.split()) for line in lines]
        # Single symbols in code-point order: the printable bytes', then the stand-ins'.
        alphabet = sorted(_byte_alphabet())
        symbols = [*alphabet, *(c + "</w>" for c in alphabet), *("".join(m) for m in merges),
                   START_OF_TEXT, END_OF_TEXT]
        self.ids = {symbol: i for i, symbol in enumerate(symbols)}
        self.ranks = {merge: rank for rank, merge in enumerate(merges)}
        self.start_id, self.end_id = self.ids[START_OF_TEXT], self.ids[END_OF_TEXT]
        self.context_length = context_length
        self._cache: Dict[str, Tuple[int, ...]] = {}

    def _bpe(self, word: str) -> Tuple[int, ...]:
        """The ids of one pre-tokenised piece: its bytes as symbols, the last one marked as
        the end of a word, then the best-ranked adjacent pair merged until none is ranked."""
        cached = self._cache.get(word)
        if cached is not None:
            return cached
        if word in (START_OF_TEXT, END_OF_TEXT):
            return (self.ids[word],)
        alphabet = _byte_alphabet()
        parts = [alphabet[b] for b in word.encode("utf-8")]
        parts[-1] += "</w>"
        while len(parts) > 1:
            ranked = [(self.ranks.get(pair, len(self.ranks)), pair)
                      for pair in zip(parts, parts[1:])]
            rank, (first, second) = min(ranked, key=lambda item: item[0])
            if rank == len(self.ranks):
                break
            merged, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and parts[i] == first and parts[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        ids = tuple(self.ids[p] for p in parts)
        self._cache[word] = ids
        return ids

    def encode(self, text: str) -> List[int]:
        """The BPE ids of a text, without start- and end-of-text."""
        return [i for word in _words(clean_text(text)) for i in self._bpe(word)]

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        if isinstance(texts, str):
            texts = [texts]
        tokens = np.zeros((len(texts), self.context_length), dtype=np.int64)
        for row, text in enumerate(texts):
            ids = [self.start_id, *self.encode(text)][:self.context_length - 1] + [self.end_id]
            tokens[row, :len(ids)] = ids
        return tokens
