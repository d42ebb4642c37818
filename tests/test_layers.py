"""The core never reaches a backend (DESIGN.md section 3): a walk over the imports of ``snrpaths/``, read from the
source (AST), not by executing it.

The boundary: the core (every module of ``snrpaths/`` below) knows the :class:`snrpaths.Denoiser` protocol only.
Application layers that put a concrete model in a user's hands may import ``snrpaths.backends``, lazily inside a
function, so that ``import snrpaths`` never loads one: the trainer (``train.py``), the command line (``cli*.py``,
``__main__.py``) and the hypothesis strategies of ``snrpaths.testing``, which build exact toys by design.
"""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "snrpaths"
APPLICATION = ("train.py", "cli.py", "cli_bench.py", "cli_check.py", "cli_model.py", "cli_nll.py", "cli_tune.py", "__main__.py",
               "testing/")
#: Core modules that still reach a backend, each with the issue that removes it: this set may only shrink.
def _backend_imports(path: pathlib.Path) -> list[tuple[int, bool]]:
    """``(line, at_module_level)`` of every import of ``snrpaths.backends`` in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    relative_parts = path.relative_to(PACKAGE).parts
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # from ..backends import x, from . import backends
                package = ["snrpaths", *relative_parts[:-1]][: len(relative_parts) - node.level + 1]
                base = ".".join(package + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        if any(n == "snrpaths.backends" or n.startswith("snrpaths.backends.") for n in names):
            found.append((node.lineno, node.col_offset == 0))
    return found


def _modules():
    return sorted(p for p in PACKAGE.rglob("*.py"))


def _rel(path: pathlib.Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


@pytest.mark.parametrize("path", _modules(), ids=_rel)
def test_core_modules_never_import_a_backend(path):
    rel = _rel(path)
    found = _backend_imports(path)
    if rel.startswith(APPLICATION):
        assert not [line for line, top in found if top], f"{rel}: application layers import backends lazily"
    else:
        assert not found, f"{rel} (core) imports snrpaths.backends at lines {[line for line, _ in found]}"


def test_the_walk_sees_imports_inside_functions():
    """``cli.py`` imports the toy inside functions, ``testing/strategies.py`` too: both are found."""
    assert _backend_imports(PACKAGE / "cli.py") and all(not top for _, top in _backend_imports(PACKAGE / "cli.py"))
    assert all(not top for _, top in _backend_imports(PACKAGE / "testing" / "strategies.py"))
