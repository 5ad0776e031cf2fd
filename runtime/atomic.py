"""Writing files a user keeps so that a failure never destroys what was there.

Checkpoints, ONNX graphs, engines and their sidecars, zips, benchmark JSON, dataset index files: each
is written to a temporary file in the same folder, flushed and fsynced, then renamed over the target
(a rename within one file system is atomic). If anything fails on the way (a full disk, an
exception, Ctrl-C) the temporary is removed and the old file is untouched. ``check_writable`` finds
a path that cannot be written before hours of work are spent on what goes there.
"""
from __future__ import annotations

import contextlib
import io
import os
import stat
import tempfile
from pathlib import Path
from typing import IO, Iterator, Mapping

import numpy as np
from PIL import Image

from .errors import OutputError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: read once, in the importing (main) thread: os.umask can only be read by setting it
_UMASK = _umask()


def _mode_for(path: Path) -> int:
    """The permissions a plain ``open(path, "w")`` would give: the old file's, or 0666 less the umask
    (mkstemp's temporaries are 0600, which would hide a shared model from its other users)."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return 0o666 & ~_UMASK


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (where the file system lets a folder be fsynced)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


_UNCHANGED = "the file there before, if any, is unchanged"


def _cannot_write(path: Path, error: OSError, left: str = _UNCHANGED) -> OutputError:
    """One line: which file, the system's reason, and what is left on disk (``left``)."""
    return OutputError(f"{path}: cannot write ({error.strerror or error}); {left}")


@contextlib.contextmanager
def _temporary_beside(path: Path) -> Iterator[tuple[IO[bytes], Path]]:
    """A binary temporary in ``path``'s folder, flushed and fsynced when the block ends; removed on error.
    Failures to write it (a full disk, a read-only folder) become one ``OutputError`` naming ``path``."""
    if path.is_dir():
        raise OutputError(f"{path}: is a folder; expected a file path")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    except OSError as e:
        raise _cannot_write(path, e) from None
    temporary = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            try:
                yield f, temporary
            except OSError as e:
                if e.filename is None:  # a write to the temporary failed; errors naming other files pass
                    raise _cannot_write(path, e) from None
                raise
            try:
                f.flush()
                os.fsync(f.fileno())
            except OSError as e:
                raise _cannot_write(path, e) from None
        os.chmod(temporary, _mode_for(path))
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _rename(temporary: Path, path: Path, left: str = _UNCHANGED) -> None:
    try:
        os.replace(temporary, path)
    except OSError as e:
        temporary.unlink(missing_ok=True)
        raise _cannot_write(path, e, left) from None


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[IO[bytes]]:
    """A binary file object whose content replaces ``path`` only when the block ends without an error."""
    path = Path(path)
    temporary = None
    try:
        with _temporary_beside(path) as (f, temporary):
            yield f
        _rename(temporary, path)
    except BaseException:  # a signal between the two steps must not leave the temporary behind either
        if temporary is not None:
            temporary.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def atomic_write(path: str | os.PathLike, data: bytes | str) -> Path:
    """Replace ``path`` by ``data`` (str: UTF-8) atomically; returns ``path``."""
    with atomic_file(path) as f:
        f.write(data.encode() if isinstance(data, str) else data)
    return Path(path)


def atomic_save_image(path: str | os.PathLike, image: np.ndarray | Image.Image) -> Path:
    """Save an image in the format its name says (``.png``, ``.jpg`` ...), atomically."""
    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise OutputError(f"{path}: unknown image type {path.suffix!r}; expected a name such as out.png")
    encoded = io.BytesIO()
    (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(encoded, format=fmt)
    return atomic_write(path, encoded.getvalue())


def atomic_write_all(contents: Mapping[str | os.PathLike, bytes]) -> None:
    """Several files that belong together, the last of which describes the others (an engine, then its sidecar).

    Every temporary is written first, so a failure while writing leaves every old file as it was. The renames
    that follow are one at a time, so the old description is removed before them and the new one renamed last:
    a failure or a crash on the way leaves files without a description (of unknown origin to their readers),
    never a description beside files it does not describe."""
    written: list[tuple[Path, Path]] = []
    try:
        for path, data in contents.items():
            with _temporary_beside(Path(path)) as (f, temporary):
                written.append((temporary, Path(path)))  # first: from here on the finally removes it
                f.write(data)
        description, several = written[-1][1], len(written) > 1
        left = _UNCHANGED  # one file alone is replaced atomically by its rename
        if several:
            try:
                description.unlink(missing_ok=True)
            except OSError as e:
                raise _cannot_write(description, e) from None
            _fsync_folder(description.parent)  # gone for good before anything it might describe arrives
            left = f"{description} was removed first: what it described is of unknown origin now"
        for temporary, path in written:
            _rename(temporary, path, left)
            if several:  # on disk in this order: a crash never leaves the description beside older files
                _fsync_folder(path.parent)
    finally:  # the temporaries of files already complete when a later one failed
        for temporary, _ in written:
            temporary.unlink(missing_ok=True)
    for folder in {path.parent for _, path in written}:
        _fsync_folder(folder)


def check_writable(path: str | os.PathLike, flag: str) -> Path:
    """Fail now, in one line naming ``flag``, where the file ``path`` could not be written later: a folder in
    its place, a file where a folder must be, a read-only file system, no permission."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{flag} {path}: is a folder; expected a file path")
    _check_folder(path.parent, flag, path)
    return path


def check_folder_writable(folder: str | os.PathLike, flag: str) -> Path:
    """As ``check_writable``, for a folder that files will be written into (created if missing)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{flag} {folder}: is a file; expected a folder")
    _check_folder(folder, flag, folder)
    return folder


def _check_folder(folder: Path, flag: str, shown: Path) -> None:
    while not folder.exists():  # folders still to be created are fine if their first existing parent is
        folder = folder.parent
    if not folder.is_dir():
        raise OutputError(f"{flag} {shown}: {folder} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".dannet-write-check.", dir=folder)
    except OSError as e:
        raise OutputError(f"{flag} {shown}: cannot write in {folder} ({e.strerror})") from None
    os.close(fd)
    os.unlink(probe)
