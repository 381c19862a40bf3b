"""Fonts for class names in any script: matplotlib's default font lacks CJK and many others,
which it draws as boxes."""
import contextlib
import functools
import logging
import shutil
import subprocess
from typing import Iterator, Optional, Sequence

logger = logging.getLogger(__name__)

__all__ = ["fonts_for_names", "font_file_for_names"]


@functools.lru_cache(maxsize=None)
def _charmap(font_file: str) -> frozenset:
    from matplotlib.ft2font import FT2Font

    try:
        return frozenset(FT2Font(font_file).get_charmap())
    except (OSError, RuntimeError):
        return frozenset()


def _default_font_file() -> str:
    from matplotlib import font_manager

    return font_manager.findfont(font_manager.FontProperties(family=["sans-serif"]))


@functools.lru_cache(maxsize=None)
def _font_file_for(char: str) -> Optional[str]:
    """An installed font with a glyph for ``char``: one matplotlib knows, else one fontconfig
    finds (fonts installed after matplotlib built its font list)."""
    from matplotlib import font_manager

    code = ord(char)
    for entry in font_manager.fontManager.ttflist:
        # matplotlib's "Last Resort" font maps every character to a box.
        if "LastResort" not in entry.fname and code in _charmap(entry.fname):
            return entry.fname
    if shutil.which("fc-list"):
        found = subprocess.run(["fc-list", f":charset={code:x}", "file"], capture_output=True,
                               text=True, timeout=30).stdout.split()
        for font_file in (f.rstrip(":") for f in found):
            if code in _charmap(font_file):
                font_manager.fontManager.addfont(font_file)
                return font_file
    return None


def font_file_for_names(names: Sequence[str]) -> str:
    """The font file to draw ``names`` with: matplotlib's default when it has their glyphs,
    else the installed font that has most of the missing ones (a warning names those that
    none has)."""
    default = _default_font_file()
    covered = _charmap(default)
    missing = {c for name in names for c in name
               if c.isprintable() and not c.isspace() and ord(c) not in covered}
    if not missing:
        return default
    candidates = {f for f in map(_font_file_for, sorted(missing)) if f is not None}
    best = max(candidates, key=lambda f: len(missing & {chr(c) for c in _charmap(f)}),
               default=None)
    lacking = missing - ({chr(c) for c in _charmap(best)} if best else set())
    if lacking:
        _warn_missing_glyphs("".join(sorted(lacking)))
    return best or default


@contextlib.contextmanager
def fonts_for_names(names: Sequence[str]) -> Iterator[None]:
    """Draws matplotlib text (within the block) with :func:`font_file_for_names`' font."""
    from matplotlib import font_manager, rc_context, rcParams

    font_file = font_file_for_names(names)
    if font_file == _default_font_file():
        yield
        return
    # Detectron2's Visualizer asks for the generic "sans-serif", which matplotlib resolves to
    # the first installed family of rcParams["font.sans-serif"]: put the font first.
    family = font_manager.FontProperties(fname=font_file).get_name()
    with rc_context({"font.sans-serif": [family, *rcParams["font.sans-serif"]]}):
        yield


@functools.lru_cache(maxsize=None)
def _warn_missing_glyphs(chars: str) -> None:
    logger.warning(f"No installed font has glyphs for {chars!r}: those class names are drawn as "
                   "boxes. Install a font that has them (e.g. Debian's fonts-noto-cjk or "
                   "fonts-wqy-microhei for Chinese, Japanese and Korean).")
