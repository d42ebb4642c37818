"""Path values: constructors validate, repr reproduces the expression, parse_path inverts repr, graphs."""

import pytest
from hypothesis import given

from snrpaths import Path, PathSyntaxError, SNRPathError, SNRTypeError, parse_path
from snrpaths.testing import strategies as sst


def test_repr_reads_like_the_expression():
    assert repr(Path.ramp(16) >> Path.mdm(32, remask="confidence")) == "ramp(16) >> mdm(32, remask='confidence')"
    assert repr(Path.on(slice(0, 64), Path.ar()) | Path.on(slice(64, 128), Path.mdm(32))) == \
        "on(slice(0, 64), ar()) | on(slice(64, 128), mdm(32))"
    assert repr(Path.remask("cap", eta=0.01) & Path.reveal(8, schedule="cosine")) == \
        "remask('cap', eta=0.01) & reveal(8, schedule='cosine')"
    assert repr(Path.ramp(4) >> (Path.remask("cap") & Path.reveal(8, schedule="linear"))) == \
        "ramp(4) >> (remask('cap') & reveal(8, schedule='linear'))"
    assert repr(Path.blocks(4, Path.mdm(8))) == "blocks(4, mdm(8))"
    assert repr(Path.reveal(32, order="confidence", threshold=0.9)) == "reveal(32, order='confidence', threshold=0.9)"
    assert repr(Path.reveal(order="entropy", count=1, entropy_bound=0.5)) == \
        "reveal(order='entropy', count=1, entropy_bound=0.5)"


@given(path=sst.paths())
def test_parse_inverts_repr(path):
    parsed = parse_path(repr(path))
    assert parsed == path and hash(parsed) == hash(path) and repr(parsed) == repr(path)


def test_parse_accepts_python_spelling_and_precedence():
    assert parse_path("Path.ramp(16) >> Path.mdm(32, remask=\"cap\")") == Path.ramp(16) >> Path.mdm(32, remask="cap")
    a, b, c = Path.ar(), Path.mdm(4), Path.roar()
    assert parse_path("ar() >> mdm(4) >> roar()") == (a >> b) >> c == a >> (b >> c)
    assert parse_path("(on([0, 1], ar()) | on([2], mdm(4)))") == Path.on([0, 1], a) | Path.on([2], b)


def test_samplers_are_compositions_of_primitives():
    mdm = Path.mdm(32, remask="loop", alpha_on=0.8)
    assert mdm.body == Path.remask("loop", alpha_on=0.8) & Path.reveal(32, schedule="linear")
    assert Path.ar().body == Path.reveal(order="left-to-right", count=1)
    assert Path.roar().body == Path.reveal(count=1)
    assert Path.hybrid(16, 32, switch="commit").body == \
        Path.ramp(16) >> Path.switch("commit") >> Path.mdm(32)
    assert Path.mdm(8) == Path.mdm(8, remask=None, schedule="linear")


@pytest.mark.parametrize("make, message", [
    (lambda: Path.mdm(32, remask="confdence"), r"'remask' must be one of \('cap', 'rescale', 'confidence', 'loop'\) \(got 'confdence'\)"),
    (lambda: Path.mdm(0), "'steps' must be a positive integer"),
    (lambda: Path.mdm(8, eta=0.1), "without a remask policy"),
    (lambda: Path.mdm(8, remask="cap", t_on=0.7), "belong to the 'loop' policy"),
    (lambda: Path.mdm(8, remask="confidence", eta=0.1), "takes no eta"),
    (lambda: Path.reveal(4), "exactly one of count=k or schedule"),
    (lambda: Path.reveal(count=1, schedule="linear", steps=2), "exactly one of count=k or schedule"),
    (lambda: Path.reveal(order="sideways", count=1), "'order' must be one of"),
    (lambda: Path.reveal(order=(0, 2), count=1), "permutation"),
    (lambda: Path.reveal(count=1, top_p=0.0), r"'top_p' must lie in \(0.0, 1.0\]"),
    (lambda: Path.reveal(count=1, exact=True), "exact=True applies"),
    (lambda: Path.ramp(4, form="median"), "'form' must be one of"),
    (lambda: Path.ramp(4, gamma_max=-1), "'gamma_max'"),
    (lambda: Path.switch("drop"), "'mode' must be one of"),
    (lambda: Path.remask(), "exactly one of a policy"),
    (lambda: Path.hybrid(4, 4, swich="keep"), "unexpected keyword"),
    (lambda: Path.ar() & Path.mdm(4), "'&' puts a remask policy"),
    (lambda: Path.reveal(8, order="confidence", threshold=1.01), r"'threshold' must lie in \[0.0, 1.0\]"),
    (lambda: Path.reveal(count=1, entropy_bound=-1), r"'entropy_bound' must lie in \[0.0, inf\)"),
    (lambda: Path.blocks(0, Path.ar()), "'n' must be a positive integer"),
])
def test_bad_arguments_fail_at_construction(make, message):
    with pytest.raises(SNRPathError, match=message):
        make()


@pytest.mark.parametrize("text, column", [
    ("ramp(16) >> mdm(32, remask='confidence'", 39),
    ("ramp(16) >> mdx(32)", 12),
    ("ramp(16) >>> mdm(32)", 11),
    ("ramp(16) $ mdm(32)", 9),
    ("mdm(32, remask='cap', remask='loop')", 22),
])
def test_parse_errors_point_at_the_offending_character(text, column):
    with pytest.raises(PathSyntaxError) as err:
        parse_path(text)
    caret_line = str(err.value).splitlines()[-1]
    assert caret_line.index("^") - 2 == column, str(err.value)


def test_parse_reports_bad_values_with_the_constructor_message():
    with pytest.raises(PathSyntaxError, match="'remask' must be one of"):
        parse_path("mdm(32, remask='confdence')")
    with pytest.raises(PathSyntaxError):
        parse_path("__import__('os')")


def test_graph_shows_stages_and_parallel_branches():
    g = (Path.ramp(4) >> Path.switch() >> Path.mdm(8)).graph()
    labels = [g.nodes[n]["label"] for n in ("start", 0, 1, 2, "end")]
    assert labels == ["start", "ramp(4)", "switch()", "mdm(8)", "end"]
    assert list(g.edges) == [("start", 0), (0, 1), (1, 2), (2, "end")]
    par = (Path.on(slice(0, 2), Path.ar()) | Path.on(slice(2, 4), Path.mdm(2))).graph()
    assert set(par.successors("start")) == {0, 1} and set(par.predecessors("end")) == {0, 1}
    assert par.nodes[0]["kind"] == "ar" and par.nodes[1]["positions"] is not None


def test_an_explicit_order_is_a_permutation_from_construction_and_its_repr_parses_back():
    from snrpaths.orders import Explicit, Ranked

    for bad in [(0, 0, 1), (0, 2), (1, 2, 3)]:
        with pytest.raises(SNRPathError, match=r"'positions' must be a permutation of 0\.\.\d") as caught:
            Explicit(bad)
        assert not isinstance(caught.value, SNRTypeError)
    with pytest.raises(SNRTypeError):
        Explicit((0, 1.0))
    path = Path.reveal(order=Explicit((2, 0, 1)), count=1)
    assert repr(path) == "reveal(order=(2, 0, 1), count=1)" and parse_path(repr(path)) == path
    # on a stage it ranks the stage's own positions, and a stage of another size is refused, naming it
    step = (Path.on([1, 2, 4], path) | Path.on([0, 3], Path.ar())).compile(5).steps[0]
    assert step.ops[0].order == Ranked((4, 1, 2))
    with pytest.raises(SNRPathError, match=r"reveal\(order=\(2, 0, 1\), count=1\): the explicit order has 3 entries"):
        Path.on([1, 2], path).compile(5)


def test_switch_modes_and_ramp_forms_are_values_of_their_registries():
    from snrpaths.forms import RAMP_FORMS
    from snrpaths.path import SWITCH_MODES

    assert Path.switch("commit").mode is SWITCH_MODES["commit"] and SWITCH_MODES["commit"].calls == 1
    assert Path.ramp(4, form="sample").form is RAMP_FORMS["sample"]
    assert [m.calls for m in SWITCH_MODES.values()] == [0, 1, 0]
    assert repr(Path.switch("mask")) == "switch('mask')" and repr(Path.ramp(2, form="sample")) == "ramp(2, form='sample')"
    with pytest.raises(SNRTypeError, match="'mode' must be one of"):
        Path.switch(1)
