"""Cached, checksum-verified downloads (standard library only)."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
import urllib.request

from brfjax.data import DataError

DEFAULT_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "brfjax")


def cache_dir(name: str, root: str | None = None) -> str:
    """``$BRFJAX_CACHE/<name>`` (default ``~/.cache/brfjax/<name>``), created if needed.

    Args:
      name: the dataset's folder name, e.g. ``"mnist"``.
      root: the cache root instead of ``$BRFJAX_CACHE`` or ``~/.cache/brfjax``.

    Returns:
      The folder's path.

    Raises:
      OSError: the folder cannot be created.
    """
    path = os.path.join(root or os.environ.get("BRFJAX_CACHE", DEFAULT_CACHE), name)
    os.makedirs(path, exist_ok=True)
    return path


def damaged_file_fix(path: str, source: str) -> str:
    """The fix to name for a damaged data file: a downloaded one (in the cache) is
    deleted and downloaded again; a user's (``--data-dir``) is replaced.

    Args:
      path: the damaged file.
      source: where intact copies are, for the message.

    Returns:
      The fix, a clause for the end of a message.
    """
    root = os.path.realpath(os.environ.get("BRFJAX_CACHE", DEFAULT_CACHE))
    if os.path.realpath(path).startswith(root + os.sep):
        return "delete it and run again: it is downloaded again"
    return f"replace it with an intact copy ({source}), or omit --data-dir to download one"


def _temporary_beside(destination: str) -> tuple[int, str]:
    """A new file with a unique name in ``destination``'s folder: concurrent writers
    (the processes of one multi-host run) never share a temporary file."""
    folder = os.path.dirname(destination) or "."
    return tempfile.mkstemp(dir=folder, prefix=os.path.basename(destination) + ".", suffix=".part")


def fetch(url: str, destination: str, timeout: float = 60.0) -> None:
    """Download ``url`` to ``destination`` atomically (a partial download never remains).

    Args:
      url: the address to download.
      destination: the file to write; its folder must exist.
      timeout: seconds to wait for the server.

    Raises:
      DataError: the download failed; the message says to download by hand and pass
        ``--data-dir``.
    """
    handle, partial = _temporary_beside(destination)
    try:
        with (
            os.fdopen(handle, "wb") as out,
            urllib.request.urlopen(url, timeout=timeout) as response,
        ):
            shutil.copyfileobj(response, out)
        os.replace(partial, destination)
    except OSError as error:
        raise DataError(
            f"could not download {url}: {error}; download it by hand and pass --data-dir"
        ) from None
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def gunzip(source: str, destination: str) -> None:
    """Decompress a ``.gz`` file atomically.

    A unique temporary file, then one rename: a reader sees no file or the whole file.

    Args:
      source: the ``.gz`` file.
      destination: the file to write.

    Raises:
      DataError: ``source`` is not a valid gzip file.
    """
    handle, partial = _temporary_beside(destination)
    try:
        with gzip.open(source, "rb") as compressed, os.fdopen(handle, "wb") as out:
            shutil.copyfileobj(compressed, out)
        os.replace(partial, destination)
    except (OSError, EOFError) as error:
        raise DataError(
            f"{source!r} is not a valid gzip file ({error}); delete it and retry"
        ) from None
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` atomically.

    Args:
      path: the file to write.
      text: its content.

    Raises:
      OSError: the file cannot be written.
    """
    handle, partial = _temporary_beside(path)
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def file_digest(path: str, algorithm: str = "sha256") -> str:
    """The hex digest of a file's bytes.

    Args:
      path: the file.
      algorithm: a ``hashlib`` name (default ``"sha256"``).

    Returns:
      The lowercase hex digest.

    Raises:
      OSError: the file cannot be read.
    """
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
