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


def test_replace_folder_swaps_a_whole_folder_or_nothing(tmp_path):
    from snrpaths.files import replace_folder

    target = tmp_path / "model"
    replace_folder(target, lambda d: (d / "a.txt").write_text("1"))
    replace_folder(target, lambda d: (d / "b.txt").write_text("2"))
    assert [p.name for p in target.iterdir()] == ["b.txt"] and os.listdir(tmp_path) == ["model"]

    def dies(d):
        (d / "c.txt").write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        replace_folder(target, dies)
    assert [p.name for p in target.iterdir()] == ["b.txt"] and os.listdir(tmp_path) == ["model"]
    (tmp_path / "file").write_text("")
    with pytest.raises(SNRPathError, match="cannot write the folder .*file/model"):
        replace_folder(tmp_path / "file" / "model", lambda d: None)


def test_a_swap_cut_between_its_renames_is_rolled_back_on_the_next_start(tmp_path):
    """What a kill leaves at each moment of replace_folder, and what clean_temporaries makes of it."""
    from snrpaths.files import SWAPPED_OUT, replace_folder

    target, old = tmp_path / "model", tmp_path / f".model{SWAPPED_OUT}"
    staging = temporary_name(target)
    replace_folder(target, lambda d: (d / "w").write_text("old"))
    # killed after the first rename: no model/, the old folder aside, the new one staged
    target.rename(old)
    staging.mkdir()
    (staging / "w").write_text("new")
    assert sorted(p.name for p in clean_temporaries(tmp_path)) == [staging.name]
    assert (target / "w").read_text() == "old" and os.listdir(tmp_path) == ["model"]
    # killed after the commit, while the old folder was being removed: the new folder stands
    old.mkdir()
    (old / "w").write_text("old")
    clean_temporaries(tmp_path)
    assert (target / "w").read_text() == "old" and os.listdir(tmp_path) == ["model"]
    # replace_folder itself repairs a cut swap before it starts
    target.rename(old)
    replace_folder(target, lambda d: (d / "w").write_text("newer"))
    assert (target / "w").read_text() == "newer" and os.listdir(tmp_path) == ["model"]
