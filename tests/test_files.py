import json
import os

import pytest

from snrpaths.errors import SNRPathError
from snrpaths.files import atomic_write, clean_temporaries, temporary_name, write_jsonl, write_text


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = write_text(tmp_path / "deep" / "a.txt", "old")
    assert target.read_text() == "old" and oct(target.stat().st_mode & 0o777) == "0o644"

    def dies(tmp):
        tmp.write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, dies)
    assert target.read_text() == "old" and os.listdir(target.parent) == ["a.txt"]


def test_os_errors_become_the_library_error_naming_the_file(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(SNRPathError, match="cannot write .*file/x.txt"):
        write_text(tmp_path / "file" / "x.txt", "text")  # a parent that is a file


def test_jsonl_is_whole(tmp_path):
    path = write_jsonl(tmp_path / "s.jsonl", ({"i": i} for i in range(3)))
    assert [json.loads(line)["i"] for line in path.read_text().splitlines()] == [0, 1, 2]


def test_clean_temporaries_removes_only_what_an_interrupted_write_left(tmp_path):
    keep = write_text(tmp_path / "a.json", "{}")
    (tmp_path / ".hidden").write_text("")
    left = temporary_name(tmp_path / "model.safetensors")
    left.write_text("partial")
    assert left.name.startswith(".model.safetensors.") and left.suffix == ".safetensors"
    assert clean_temporaries(tmp_path) == [left]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden", keep.name]
    assert clean_temporaries(tmp_path / "missing") == []
