"""Parsed specs kept on disk (``spec/files.py: quick_load`` with ``cache_dir``): a new
process (each CLI run) reads what an earlier one parsed instead of parsing every spec
again; an entry is keyed by the bytes and the loading code, and is never the truth."""

from __future__ import annotations

import os

import pytest

from reconciler.spec import files

SPEC = b"apiVersion: modelops/v1alpha1\nmetadata: {name: fraud}\nspec: {environments: {prod: {}}}\n"


@pytest.fixture
def new_process(monkeypatch):
    """Forget what this process parsed, as a new process would start."""

    def forget():
        monkeypatch.setattr(files, "_QUICK", files.OrderedDict())
        monkeypatch.setattr(files, "_PRUNED", set())

    forget()
    return forget


def test_a_new_process_reads_the_parsed_spec_from_disk(tmp_path, monkeypatch, new_process):
    folder = tmp_path / "cache" / "quick"
    first = files.quick_load(SPEC, folder)
    assert first["metadata"]["name"] == "fraud"
    (entry,) = folder.glob("*.pickle")
    new_process()

    def no_parse(*args, **kwargs):
        raise AssertionError("parsed again")

    monkeypatch.setattr(files, "load_yaml", no_parse)
    assert files.quick_load(SPEC, folder) == first
    # without the disk cache the same bytes would be parsed
    new_process()
    with pytest.raises(AssertionError, match="parsed again"):
        files.quick_load(SPEC)
    # an unreadable entry is a miss: parsed again and rewritten
    monkeypatch.undo()
    new_process()
    entry.write_bytes(b"not a pickle")
    assert files.quick_load(SPEC, folder) == first
    assert entry.read_bytes() != b"not a pickle"


def test_entries_are_keyed_by_the_loading_code_and_bounded(tmp_path, monkeypatch, new_process):
    folder = tmp_path / "quick"
    files.quick_load(SPEC, folder)
    new_process()
    monkeypatch.setattr(files, "code_digest", lambda: "another reader")
    files.quick_load(SPEC, folder)
    assert len(list(folder.glob("*.pickle"))) == 2  # a changed reader never reads old ones
    monkeypatch.setattr(files, "QUICK_DISK_ENTRIES", 3)
    for i in range(4):
        new_process()  # each "process" prunes once, before its first write
        files.quick_load(SPEC + f"# {i}\n".encode(), folder)
        for n, old in enumerate(sorted(folder.glob("*.pickle"), key=os.path.getmtime)):
            os.utime(old, ns=(n, n))  # distinct ages, oldest first
    assert len(list(folder.glob("*.pickle"))) <= 4  # 3 kept + the one just written
    assert not list(folder.glob("*.tmp"))  # written atomically
    # unreadable YAML is not cached as a spec
    assert files.quick_load(b"a: [", folder) is None
