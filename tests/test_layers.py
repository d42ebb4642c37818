"""The package's import graph is its layer picture (ARCHITECTURE.md): read from the source (AST), every import
counted, those inside functions included, never by executing it.

Two rules. The core never reaches a backend: only the application layers that put a concrete model in a user's hands
(the command line ``cli*.py``, ``__main__.py``) and the hypothesis strategies of ``snrpaths.testing``, which build
exact toys by design, may import ``snrpaths.backends``, and only lazily, inside a function, so that ``import
snrpaths`` never loads one. And imports point down: every module of ``snrpaths/`` sits on one layer of ``LAYERS``
(listed from the bottom), imports only modules of its own layer or below, and the graph has no circle at all.
"""

import ast
import fnmatch
import pathlib

import networkx as nx
import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "snrpaths"
ROOT = "snrpaths"
APPLICATION = ("cli", "__main__.py", "testing/")
#: Installed under the package's name but outside ``snrpaths/``: the backends (the first rule) and the benchmarks.
OUTSIDE = ("snrpaths.backends", "snrpaths.benchmarks")

#: The layers, bottom first: ``(name, module patterns)``. A module may import its own layer and the layers listed before
#: it. A new module must be placed here (the test says so), which is where its place is decided.
LAYERS = (
    ("foundation", ("errors", "reprs", "limits", "validate", "files", "integrity", "progress")),
    ("tensors", ("streams", "draw", "geometry", "channel", "state", "denoiser")),
    ("policies", ("orders", "schedules", "forms")),
    ("path language", ("path", "parse", "graph", "samplers")),
    ("compiler", ("compile",)),
    ("runner", ("runner", "shards", "blockcache")),
    ("measures", ("nll", "nll.*", "diagnostics", "quality", "data", "testing", "testing.stats")),
    ("plots", ("plot", "plot.*")),
    ("applications", ("objectives", "train", "tuning", "comparison")),
    ("testing", ("testing.denoisers", "testing.conformance", "testing.strategies")),
    ("facade", ("",)),  # snrpaths/__init__.py: the public names, from every layer below
    ("command line", ("cli_*",)),
    ("entry points", ("cli", "__main__")),
)


def _modules() -> list[pathlib.Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _rel(path: pathlib.Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def _name(path: pathlib.Path) -> str:
    """``snrpaths.nll.curves`` for ``nll/curves.py``; a package's ``__init__.py`` is the package itself."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(path: pathlib.Path) -> list[tuple[str, int, bool]]:
    """``(absolute name, line, at module level)`` of everything ``path`` imports: a ``from x import y`` gives
    ``x.y`` (a submodule, or a name of ``x``: the caller resolves which)."""
    tree = ast.parse(path.read_text(), str(path))
    package = _name(path).split(".") if path.name == "__init__.py" else _name(path).split(".")[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # from ..backends import x, from . import backends
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        found += [(n, node.lineno, node.col_offset == 0) for n in names]
    return found


def _backend_imports(path: pathlib.Path) -> list[tuple[int, bool]]:
    """``(line, at_module_level)`` of every import of ``snrpaths.backends`` in ``path``."""
    return [(line, top) for name, line, top in _imported(path)
            if name == "snrpaths.backends" or name.startswith("snrpaths.backends.")]


def import_graph() -> nx.DiGraph:
    """Module -> the modules of ``snrpaths/`` it imports. ``from x import y`` points at ``x.y`` when that is a
    module, else at ``x``; importing a module of a subpackage from outside it also runs the subpackage's
    ``__init__``, so that is an edge too (never the root's: Python runs it before any module of the package)."""
    modules = {_name(p): p for p in _modules()}
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for name, path in modules.items():
        for target, line, _ in _imported(path):
            if not target.startswith(ROOT) or target.startswith(OUTSIDE):
                continue
            while target not in modules:
                target = target.rpartition(".")[0]
            parts = target.split(".")
            for k in range(2, len(parts) + 1):
                ancestor = ".".join(parts[:k])
                if ancestor != name and not name.startswith(ancestor + "."):
                    graph.add_edge(name, ancestor, line=line)
    return graph


def layer_of(module: str) -> int:
    """The index in ``LAYERS`` of the layer ``module`` (``snrpaths.x.y``) sits on."""
    short = module.removeprefix(ROOT).removeprefix(".")
    hits = [k for k, (_, patterns) in enumerate(LAYERS) if any(fnmatch.fnmatchcase(short, p) for p in patterns)]
    assert len(hits) == 1, (f"{module} matches layers {[LAYERS[k][0] for k in hits]}; place it on exactly one layer "
                            f"of tests/test_layers.py LAYERS (and ARCHITECTURE.md)")
    return hits[0]


@pytest.mark.parametrize("path", _modules(), ids=_rel)
def test_core_modules_never_import_a_backend(path):
    rel = _rel(path)
    found = _backend_imports(path)
    if rel.startswith(APPLICATION):
        assert not [line for line, top in found if top], f"{rel}: application layers import backends lazily"
    else:
        assert not found, f"{rel} (core) imports snrpaths.backends at lines {[line for line, _ in found]}"


def test_the_walk_sees_imports_inside_functions():
    """``cli_toys.py`` imports the toy inside functions, ``testing/strategies.py`` too: both are found."""
    assert _backend_imports(PACKAGE / "cli_toys.py") and all(not top for _, top in _backend_imports(PACKAGE / "cli_toys.py"))
    assert all(not top for _, top in _backend_imports(PACKAGE / "testing" / "strategies.py"))
    # and into the import graph: tuning reaches the plots only inside functions
    assert import_graph().has_edge("snrpaths.tuning", "snrpaths.plot")


def test_the_import_graph_has_no_circle():
    cycles = list(nx.simple_cycles(import_graph()))
    assert not cycles, "import circles: " + "; ".join(" -> ".join(c + c[:1]) for c in sorted(cycles, key=len)[:5])


def test_imports_point_down():
    graph = import_graph()
    upward = [f"{a} ({LAYERS[layer_of(a)][0]}) imports {b} ({LAYERS[layer_of(b)][0]}) at line {line}"
              for a, b, line in graph.edges(data="line") if layer_of(b) > layer_of(a)]
    assert not upward, "imports running up a layer:\n  " + "\n  ".join(sorted(upward))


def test_every_module_sits_on_one_layer():
    for module in import_graph():
        layer_of(module)


def test_the_checks_fail_on_a_circle_and_an_upward_import():
    """The two checks are not vacuous: a graph with path -> compile (upward, and a circle with compile -> path)."""
    graph = import_graph()
    graph.add_edge("snrpaths.path", "snrpaths.compile", line=0)
    assert list(nx.simple_cycles(graph))
    assert layer_of("snrpaths.compile") > layer_of("snrpaths.path")
    # and the walk resolves relative imports, submodules and subpackage inits as Python does
    assert graph.has_edge("snrpaths.nll.integral", "snrpaths.nll._common")
    assert graph.has_edge("snrpaths.cli_nll", "snrpaths.nll")
    assert not graph.has_edge("snrpaths.nll.integral", "snrpaths.nll")


def test_the_runner_asks_values_and_never_tests_their_type_or_name():
    """Behaviour lives with the op, order, policy or form that has it (ARCHITECTURE.md): the runner calls their
    methods and reads what they declare; it never compares a name (``form == "mean"``) and never tests the type of an
    order, a policy, a form, a mode or a path value (``isinstance(op.order, RandomOrder)``)."""
    tree = ast.parse((PACKAGE / "runner.py").read_text())
    values = {name for module in ("orders", "schedules", "forms", "path")
              for name, value in vars(__import__(f"snrpaths.{module}", fromlist=["_"])).items() if isinstance(value, type)}
    strings = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Compare)
               and any(isinstance(c, ast.Constant) and isinstance(c.value, str) for c in [node.left, *node.comparators])]
    typed = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Call) and getattr(node.func, "id", "") ==
             "isinstance" and {n.id for n in ast.walk(node.args[1]) if isinstance(n, ast.Name)} & (values - {"Path"})]
    assert not strings, f"runner.py compares names at lines {strings}"
    assert not typed, f"runner.py tests the type of a value at lines {typed}"
