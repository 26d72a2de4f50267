"""Atomic outputs: complete or absent, with ordinary permissions."""

from __future__ import annotations

import os

import pytest

from mbmt.io import atomic_path, read_json, write_json


def test_file_appears_only_on_success(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    write_json(target, {"a": 1})
    assert read_json(target) == {"a": 1}


def test_directory_is_replaced_whole(tmp_path):
    target = tmp_path / "dir"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target, directory=True) as tmp:
            (tmp / "new.txt").write_text("new")
            raise RuntimeError("interrupted")
    assert [p.name for p in target.iterdir()] == ["old.txt"]
    with atomic_path(target, directory=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir"]


def test_outputs_get_the_umask_mode_not_owner_only(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "f") as tmp:
            tmp.write_text("x")
        with atomic_path(tmp_path / "d", directory=True):
            pass
    finally:
        os.umask(old)
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755


def test_saved_tensors_are_the_same_bytes_whatever_the_file_is_called(tmp_path):
    """A republished model must be byte-identical for DVC (it hashes the file): the bytes may not
    depend on the file's (or its temporary's) name, as torch.save to a path makes them."""
    import torch

    from mbmt.io import save_torch, sha256_file

    obj = {"state_dict": {"weight": torch.arange(6.0).reshape(2, 3)}, "name": "st_de"}
    paths = [tmp_path / "model.pt", tmp_path / "other" / "renamed.pt"]
    for path in paths:
        save_torch(obj, path)
    assert sha256_file(paths[0]) == sha256_file(paths[1])
    loaded = torch.load(paths[1], weights_only=True)
    assert torch.equal(loaded["state_dict"]["weight"], obj["state_dict"]["weight"]) and loaded["name"] == "st_de"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "other"]  # no temporary left behind
