"""Writing files so that no reader, and no later run, ever sees a half-written one."""
import contextlib
import glob
import os
import tempfile
from typing import IO, Iterator

__all__ = ["atomic_write", "atomic_path"]


def _process_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


# Files are given the permissions a plain open() gives (mkstemp makes them owner-only).
_FILE_MODE = 0o666 & ~_process_umask()


@contextlib.contextmanager
def atomic_write(path: os.PathLike, mode: str = "wb",
                 remove_leftovers: bool = False) -> Iterator[IO]:
    """Opens a temporary file beside ``path``; when the block succeeds, the data is flushed
    to disk and the file renamed to ``path`` in one step, else it is removed.

    A run killed mid-write leaves the previous file (or none), never a truncated one under the
    final name, so work that skips finished files resumes safely. Only its temporary file
    (``.<name>.*.tmp``) stays behind; ``remove_leftovers`` deletes those of ``path`` first, for
    files that only one process writes at a time (checkpoints can leave gigabytes).
    """
    path = os.fspath(path)
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    prefix = f".{os.path.basename(path)}."
    if remove_leftovers:
        for leftover in glob.glob(os.path.join(glob.escape(folder), glob.escape(prefix) + "*.tmp")):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=".tmp")
    with _renamed_when_done(temporary, path), os.fdopen(handle, mode) as f:
        yield f
        f.flush()
        os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_path(path: os.PathLike) -> Iterator[str]:
    """A temporary path beside ``path`` for writers that want a file name (e.g. OpenCV's
    VideoWriter); renamed to ``path`` when the block succeeds, else removed. The temporary
    name keeps the suffix, which such writers read the format from."""
    path = os.fspath(path)
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    base, suffix = os.path.splitext(os.path.basename(path))
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{base}.", suffix=f".tmp{suffix}")
    os.close(handle)
    with _renamed_when_done(temporary, path):
        yield temporary


@contextlib.contextmanager
def _renamed_when_done(temporary: str, path: str) -> Iterator[None]:
    """Renames ``temporary`` to ``path``, with the usual permissions, when the block succeeds;
    removes it when the block fails."""
    try:
        yield
        os.chmod(temporary, _FILE_MODE)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
