"""Fetching data: the real download path against local files, checksums, and clear errors."""

from __future__ import annotations

import hashlib
import socket

import pytest

from triad.atomic import atomic_dir
from triad.data.fetch import fetch
from triad.errors import DataError, TransientError


@pytest.fixture
def payload(tmp_path):
    source = tmp_path / "source" / "train.txt"
    source.parent.mkdir()
    source.write_bytes(b"ein Hund\n" * 100)
    return source, hashlib.sha256(source.read_bytes()).hexdigest()


def test_download_verifies_and_caches(payload, tmp_path, monkeypatch):
    source, sha = payload
    monkeypatch.setenv("TRIAD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("TRIAD_DATA_MIRROR", raising=False)
    got = fetch("train.txt", [source.as_uri()], sha)
    assert got.read_bytes() == source.read_bytes()
    source.unlink()  # the second fetch must come from the cache
    assert fetch("train.txt", [source.as_uri()], sha) == got


def test_corrupt_download_is_rejected_and_not_cached(payload, tmp_path, monkeypatch):
    source, _ = payload
    monkeypatch.setenv("TRIAD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("TRIAD_DATA_MIRROR", raising=False)
    with pytest.raises(DataError, match="checksum mismatch for train.txt"):
        fetch("train.txt", [source.as_uri()], "0" * 64)
    assert not any((tmp_path / "cache").rglob("*train.txt*"))


def test_mirror_is_used_and_checked(payload, tmp_path, monkeypatch):
    source, sha = payload
    monkeypatch.setenv("TRIAD_DATA_MIRROR", str(tmp_path))
    assert fetch("train.txt", [], sha, mirror_subdir="source") == source
    with pytest.raises(DataError, match="not found in the data mirror"):
        fetch("test.txt", [], sha, mirror_subdir="source")
    source.write_bytes(b"truncated")
    with pytest.raises(DataError, match="corrupt"):
        fetch("train.txt", [], sha, mirror_subdir="source")


def test_unreachable_url_is_transient(tmp_path, monkeypatch):
    monkeypatch.setenv("TRIAD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("TRIAD_DATA_MIRROR", raising=False)
    with socket.socket() as s:  # a loopback port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(TransientError, match="could not download"):
        fetch("x.gz", [f"http://127.0.0.1:{port}/x.gz"], None)


def test_atomic_dir_keeps_the_old_output_on_failure(tmp_path):
    target = tmp_path / "out"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("first")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "a.txt").write_text("half")
            raise RuntimeError("crash mid-write")
    assert (target / "a.txt").read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
