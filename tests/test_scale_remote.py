"""Staged output directories behind filesystem URIs (file:// here; s3:// etc. use the same code)."""
from __future__ import annotations

from pathlib import Path

import pytest

from speechunits.errors import SpeechUnitsError
from speechunits.scale.remote import StagedDirectory, is_uri


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_stage_resume_upload_and_delete(tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    (remote / "sub").mkdir(parents=True)
    (remote / "a.parquet").write_bytes(b"A")
    (remote / "sub" / "b.parquet").write_bytes(b"B")
    (remote / ".meta.json").write_text("{}")
    with StagedDirectory(remote.as_uri()) as staged:
        assert tree(staged.local) == tree(remote)  # resumed from what was uploaded before
        (staged.local / "c.parquet").write_bytes(b"C")
        (staged.local / ".c.parquet.tmp").write_bytes(b"half")  # a writer's temp file: never uploaded
        (staged.local / "sub" / "b.parquet").unlink()  # e.g. a corrupt shard the writer moved aside
        (staged.local / ".meta.json").write_text('{"k": 1}')
        assert staged.sync() == 2
        assert tree(remote) == {".meta.json": b'{"k": 1}', "a.parquet": b"A", "c.parquet": b"C"}
        assert staged.sync() == 0  # nothing changed since
        (staged.local / "d.parquet").write_bytes(b"D")
        local_dir = staged.local
    assert tree(remote)["d.parquet"] == b"D"  # uploaded on exit
    assert not local_dir.exists()


def test_new_remote_directory_is_created(tmp_path: Path) -> None:
    target = tmp_path / "new" / "store"
    with StagedDirectory(target.as_uri() + "/") as staged:
        assert tree(staged.local) == {}
        (staged.local / "x.parquet").write_bytes(b"X")
    assert tree(target) == {"x.parquet": b"X"}


def test_bad_uris(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(SpeechUnitsError, match="is a file"):
        StagedDirectory((tmp_path / "file").as_uri()).__enter__()
    with pytest.raises(SpeechUnitsError, match="unsupported or unreachable"):
        StagedDirectory("nosuchscheme://bucket/x")
    assert is_uri("s3://b/x") and is_uri("file:///tmp/x") and not is_uri("/tmp/x") and not is_uri("rel/dir")
