"""Data sources: one module per dataset; NumPy only, no JAX inside."""

import hashlib
import os


class DataError(ValueError):
    """Missing, corrupt or malformed data; the message says how to fix it."""


def sha256_of_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()
