"""The stage graph of a path, as a networkx DiGraph (for inspection and drawing)."""

from __future__ import annotations

import itertools

import networkx as nx

from .path import Alias, On, Parallel, Path, Then, provide


def path_graph(path: Path) -> nx.DiGraph:
    """Nodes ``"start"``, ``"end"`` and one integer node per stage with attributes ``label`` (its expression),
    ``kind`` (reveal / remask / ramp / switch / a sampler name) and ``positions`` (``on(...)`` restrictions, or
    None for all). Edges run from each stage to the stages that follow it; parallel branches fork and join."""
    graph = nx.DiGraph()
    graph.add_node("start", label="start")
    graph.add_node("end", label="end")
    counter = itertools.count()
    exits = _add(graph, path, ["start"], None, counter)
    graph.add_edges_from((e, "end") for e in exits)
    return graph


provide("graph", path_graph)  # Path.graph


def _add(graph: nx.DiGraph, path: Path, entries: list, positions, counter) -> list:
    if isinstance(path, Then):
        for part in path.parts:
            entries = _add(graph, part, entries, positions, counter)
        return entries
    if isinstance(path, Parallel):
        return [e for part in path.parts for e in _add(graph, part, entries, positions, counter)]
    if isinstance(path, On):
        return _add(graph, path.path, entries, path.positions, counter)
    node = next(counter)
    kind = path.name if isinstance(path, Alias) else type(path).__name__.lower()
    graph.add_node(node, label=repr(path), kind=kind, positions=positions)
    graph.add_edges_from((e, node) for e in entries)
    return [node]
