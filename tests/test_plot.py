"""Plots: each figure is titled, labelled and has a legend; no text overlaps; what is drawn is what the trace
says (AR on the edges, masked diffusion between corners, the ramp on the diagonal); bad input fails with one
``SNRPathError`` naming the problem; files are written atomically."""

import math
import types

import numpy as np
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.text import Text
from snrpaths.backends.toy import ExactToy

from snrpaths import Path, SNRPathError, TokenTable, plot, sample
from snrpaths.cli import main
from snrpaths.testing.denoisers import Tempered

TOY = ExactToy.markov(2, 4, seed=0)
CHAIN = ExactToy.markov(3, 4, seed=1, concentration=0.5)


# -- helpers -----------------------------------------------------------------------------------------------------


def rendered_texts(fig: Figure) -> list[Text]:
    """The non-empty texts a reader sees once ``fig`` is drawn with Agg."""
    FigureCanvasAgg(fig).draw()
    out = []
    for t in fig.findobj(Text):
        ax = t.axes
        if not (t.get_visible() and t.get_text().strip()) or (ax is not None and not ax.get_visible()):
            continue
        if t in _hidden_tick_labels(fig):
            continue
        out.append(t)
    return out


def _hidden_tick_labels(fig: Figure) -> set:
    """Tick labels that exist but are not drawn (outside the view, or turned off by label_outer / tick_params)."""
    hidden = set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                drawn = tick.get_visible() and lo - 1e-9 <= tick.get_loc() <= hi + 1e-9
                for label in (tick.label1, tick.label2):
                    if not (drawn and label.get_visible()):
                        hidden.add(label)
    return hidden


def overlapping(fig: Figure) -> list[tuple[str, str]]:
    texts = rendered_texts(fig)
    renderer = fig.canvas.get_renderer()
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts]
    return [(a, b) for k, (a, box_a) in enumerate(boxes) for b, box_b in boxes[k + 1:]
            if box_a.overlaps(box_b) and box_a.intersection(box_a, box_b).width > 1
            and box_a.intersection(box_a, box_b).height > 1]


def legend_texts(fig: Figure) -> list[str]:
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    return [t.get_text() for leg in legends for t in leg.get_texts()]


def assert_readable(fig: Figure) -> None:
    """Titled, every visible data axes labelled on its outer edge, a legend or colour bar, no overlapping text."""
    assert isinstance(fig, Figure)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert fig.get_suptitle() or any(ax.get_title() or ax.get_title(loc="left") for ax in visible)
    assert any(ax.get_xlabel() for ax in visible) and any(ax.get_ylabel() for ax in visible)
    assert legend_texts(fig) or len(fig.axes) > len([ax for ax in fig.axes if ax.get_label() != "<colorbar>"])
    clashes = overlapping(fig)
    assert clashes == [], clashes


def test_the_overlap_check_catches_overlapping_text():
    fig = _small_figure()
    fig.axes[0].set_title("a title")
    assert overlapping(fig) == []
    fig.axes[0].text(0.5, 1.02, "over the title", transform=fig.axes[0].transAxes, ha="center")
    assert ("a title", "over the title") in overlapping(fig) or ("over the title", "a title") in overlapping(fig)


# -- the compactified axis and the plane ---------------------------------------------------------------------


def test_compactify_puts_mask_and_clean_on_the_edges():
    u = plot.compactify(torch.tensor([0.0, 1.0, 3.0, 9.0, math.inf]))
    np.testing.assert_allclose(u, [0.0, 0.5, 0.75, 0.9, 1.0])


def test_plane_segments_classify_ramps_reveals_and_remasks():
    inf = math.inf
    gi = torch.tensor([[0.0], [1.0], [3.0], [inf], [0.0]])  # ramp, ramp, reveal, remask
    gj = torch.tensor([[0.0], [1.0], [inf], [inf], [inf]])  # ramp, reveal, -, -
    seg = plot.plane_segments(gi, gj)
    np.testing.assert_allclose(seg.continuous, [[[0, 0], [0.5, 0.5]]])
    np.testing.assert_allclose(seg.reveal, [[[0.5, 0.5], [0.75, 1]], [[0.75, 1], [1, 1]]])
    np.testing.assert_allclose(seg.remask, [[[1, 1], [0, 1]]])
    np.testing.assert_allclose(seg.start, [[0, 0]]) and np.testing.assert_allclose(seg.end, [[0, 1]])
    assert len(seg.drop) == 0


def test_a_renoise_is_a_drop_drawn_apart_from_the_climbs():
    """``renoise`` lowers a finite SNR without reaching an edge: neither a continuous climb nor a remask."""
    seg = plot.plane_segments(torch.tensor([[0.0], [9.0], [1.0], [3.0]]), torch.tensor([[0.0], [3.0], [1.0], [3.0]]))
    np.testing.assert_allclose(seg.drop, [[[0.9, 0.75], [0.5, 0.5]]])
    np.testing.assert_allclose(seg.continuous, [[[0, 0], [0.9, 0.75]], [[0.5, 0.5], [0.75, 0.75]]])
    assert len(seg.remask) == 0 and len(seg.reveal) == 0
    corrector = Path.ramp(4) >> Path.renoise(1.0) >> Path.ramp(4, solver="heun") >> Path.switch("commit")
    fig = plot.gamma_plane({"corrector": corrector, "ramp": Path.ramp(4) >> Path.switch("commit")},
                           denoiser=ExactToy.markov(2, 2, seed=0), runs=3)
    assert_readable(fig)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert ["drop" in {p.get_gid() for p in ax.patches} for ax in panels] == [True, False]
    assert any("renoise" in t for t in legend_texts(fig))


def _segments(path, runs=16):
    trace = sample(path, TOY, batch=runs, seed=3, trace=True).trace
    return plot.plane_segments(trace.gamma[:, :, 0], trace.gamma[:, :, 1])


def on_edge(points):
    return np.isin(points, [0.0, 1.0]).any(-1)


def test_each_sampler_takes_its_own_route():
    """AR and masked diffusion only jump, AR along the edges; the ramp only climbs the diagonal; the hybrid
    climbs it to its gamma_max and then jumps."""
    ar = _segments(Path.ar())
    assert len(ar.continuous) == 0 and len(ar.remask) == 0
    assert on_edge(ar.reveal[:, 0]).all() and on_edge(ar.reveal[:, 1]).all()
    assert ((ar.reveal[:, 0] == ar.reveal[:, 1]).sum(-1) == 1).all(), "AR moves one position at a time"
    mdm = _segments(Path.mdm(8))
    assert len(mdm.continuous) == 0 and set(np.unique(mdm.reveal)) <= {0.0, 1.0}, "MDLM moves between corners"
    ramp = _segments(Path.ramp(8) >> Path.switch("commit"))
    assert len(ramp.continuous) == 8 * 16 and np.allclose(ramp.continuous[..., 0], ramp.continuous[..., 1])
    hybrid = _segments(Path.hybrid(4, 4, gamma_max=4.0))
    assert np.allclose(hybrid.continuous[..., 0], hybrid.continuous[..., 1])
    assert np.isclose(hybrid.continuous[..., 1, 0].max(), 0.8) and len(hybrid.reveal) >= 16


def test_a_staggered_ramp_climbs_one_position_then_the_next():
    """``ramp(8, lag=1.0)`` on 4 positions moves position 0 alone for 2 steps, then position 1 alone: in the plane
    every continuous move is along one axis (the joint ramp's are all diagonal, above); at ``lag = 0.5`` the two
    overlap, so some moves change both coordinates and some only one."""
    stagger = _segments(Path.ramp(8, lag=1.0) >> Path.switch("commit"))
    moved = stagger.continuous[:, 0] != stagger.continuous[:, 1]  # [n, 2]: which coordinate each move changes
    assert len(stagger.continuous) == 4 * 16 and (moved.sum(-1) == 1).all()
    # moves come step by step (16 runs each): position 0's two steps, then position 1's
    assert (moved[:, 0].reshape(4, 16).T == [True, True, False, False]).all(), "position 0 first, then position 1"
    overlap = _segments(Path.ramp(8, lag=0.5) >> Path.switch("commit"))
    assert {1, 2} == set((overlap.continuous[:, 0] != overlap.continuous[:, 1]).sum(-1).tolist())


def test_gamma_plane_is_readable_and_draws_every_run():
    paths = {"AR": Path.ar(), "MDLM": Path.mdm(8, remask="cap", eta=0.3), "ramp": Path.ramp(8) >> Path.switch("commit"),
             "hybrid": Path.hybrid(4, 4, gamma_max=4.0)}
    fig = plot.gamma_plane(paths, denoiser=ExactToy.markov(2, 2, seed=0), runs=6, seed=1)
    assert_readable(fig)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title().split("\n")[0] for ax in panels] == list(paths)
    assert "ramp(8) >> switch('commit')" in panels[2].get_title()
    heading = " ".join(fig.get_suptitle().split())
    assert "6 runs per panel" in heading and "[MASK]" in heading and "\\gamma/(1+\\gamma)" in heading
    assert {"start", "end"} <= set(legend_texts(fig)) and any("remask" in t for t in legend_texts(fig))
    assert "position 0" in panels[2].get_xlabel() and "position 1" in panels[0].get_ylabel()
    kinds = [{p.get_gid() for p in ax.patches} | {c.get_gid() for c in ax.collections} for ax in panels]
    assert "continuous" not in kinds[0] and "continuous" in kinds[2] and "reveal" in kinds[3]


def test_path_plot_draws_the_path_on_the_denoiser_it_is_given():
    fig = Path.mdm(4).plot(ExactToy.markov(2, 3, seed=0), runs=2, positions=(1, 2))
    assert "mdm(4)" in fig.axes[0].get_title() and "position 2" in fig.axes[0].get_ylabel()
    assert "2 runs" in fig.get_suptitle()


def test_gamma_plane_accepts_results_traces_and_strings_and_never_shows(monkeypatch):
    import matplotlib.pyplot as plt

    monkeypatch.setattr(plt, "show", lambda *a, **k: pytest.fail("a plot called plt.show()"))
    result = sample(Path.roar(), TOY, batch=3, seed=0, trace=True)
    fig = plot.gamma_plane([result, result.trace, "mdm(4)"], positions=(2, 3), denoiser=TOY)
    assert [ax.get_title() for ax in fig.axes if ax.get_visible()] == ["trace 0", "trace 1", "mdm(4)"]


# -- generation order ------------------------------------------------------------------------------------------


def test_order_image_of_ar_is_a_staircase():
    trace = sample(Path.ar(), TOY, batch=1, seed=0, trace=True).trace
    image = plot.order_image(trace.gamma[:, 0, :])
    assert image.shape == (4, 5)
    clean = image > 1
    assert (clean == (np.arange(5)[None, :] > np.arange(4)[:, None])).all()


def test_generation_order_is_readable_and_marks_stage_changes():
    toy = ExactToy.markov(2, 6, seed=0)
    fig = plot.generation_order({"AR": Path.ar(), "DSL hybrid": Path.hybrid(3, 3)}, denoiser=toy, seed=2)
    assert_readable(fig)
    heatmaps = [ax for ax in fig.axes if ax.get_ylabel() == "position"]
    assert len(heatmaps) == 2 and "AR: ar()" in heatmaps[0].get_title(loc="left")
    assert "6 steps" in heatmaps[1].get_title(loc="left") and "denoiser calls" in heatmaps[1].get_title(loc="left")
    assert len(heatmaps[0].lines) == 0 and len(heatmaps[1].lines) == 1, "one stage change: ramp -> mdm"
    trace = sample(Path.hybrid(3, 3), toy, batch=1, seed=2, trace=True).trace
    drawn = heatmaps[1].collections[0].get_array().reshape(6, 7)
    np.testing.assert_allclose(drawn, plot.order_image(trace.gamma[:, 0, :]))
    assert any("clean" in t.get_text() for ax in fig.axes for t in ax.get_xticklabels())


def test_generation_order_counts_the_positions_each_step_revealed():
    """Adaptive reveals reveal different numbers per step: the figure labels each column with its count (the counts
    add up to the free positions), the title gives their range, and blocks are marked like stages."""
    toy = ExactToy.markov(2, 8, seed=0, concentration=0.3)
    path = Path.blocks(2, Path.reveal(4, order="confidence", threshold=0.7))
    fig = plot.generation_order({"blocks": path}, denoiser=toy, seed=1)
    assert_readable(fig)
    trace = sample(path, toy, batch=1, seed=1, trace=True).trace
    counts = plot.revealed_per_step(trace.gamma[:, 0, :])
    assert sum(counts) == 8 and len(counts) == 8
    heatmap = next(ax for ax in fig.axes if ax.get_ylabel() == "position")
    top = [t.get_text() for ax in heatmap.child_axes for t in ax.get_xticklabels()]
    assert top == [str(c) for c in counts if c]
    assert len(heatmap.lines) == 1, "one boundary between the two blocks"
    if len(set(c for c in counts if c)) > 1:
        assert "revealed per step" in heatmap.get_title(loc="left").replace("\n", " ")


# -- posterior fields ------------------------------------------------------------------------------------------


def test_two_bit_field_shows_the_joint_boundary_and_the_pull_back():
    fig = plot.posterior_field(ExactToy.two_bit(), resolution=61, steps=20, runs=4)
    assert_readable(fig)
    ax = fig.axes[0]
    texts = legend_texts(fig)
    assert {"most likely (0, 0)", "most likely (1, 1)", "decision boundary"} <= set(texts)
    assert "z_0" in ax.get_xlabel() and "z_1" in ax.get_ylabel()
    assert any(t.get_text().startswith("locally inconsistent") for t in ax.texts)
    drift = next(line for line in ax.lines if line.get_gid() == "drift").get_xydata()
    assert drift[0, 0] < 0 < drift[0, 1] and (drift[-1] > 0).all(), "the drift pulls the draft across z_0 = 0"
    runs = [line.get_xydata()[-1] for line in ax.lines if line.get_gid() == "localization"]
    ends = next(t for t in texts if t.startswith("ends:"))
    assert len(runs) == 4 and ends == f"ends: {sum(x + y > 0 for x, y in runs)} at (1, 1), " \
                                     f"{sum(x + y < 0 for x, y in runs)} at (0, 0)"


def test_token_plane_field_shows_one_region_per_token():
    angles = torch.arange(4, dtype=torch.float64) * math.pi / 2 + 0.2
    toy = ExactToy(torch.full((4,), 0.25, dtype=torch.float64),
                   TokenTable.from_embeddings(torch.stack([angles.cos(), angles.sin()], 1)))
    fig = plot.posterior_field(toy, resolution=61, steps=10, runs=3)
    assert_readable(fig)
    texts = legend_texts(fig)
    assert {f"most likely token {v}" for v in range(4)} <= set(texts)
    assert any("anchors" in t for t in texts) and "direction = identity" in fig.axes[0].get_title()


@pytest.mark.parametrize("toy, match", [
    (ExactToy.markov(2, 3, seed=0), "L = 3, d = 8"),
    (Tempered(ExactToy.two_bit(), 1.0), "needs an exact toy"),
])
def test_posterior_field_rejects_what_it_cannot_draw(toy, match):
    with pytest.raises(SNRPathError, match=match):
        plot.posterior_field(toy)


# -- calibration -----------------------------------------------------------------------------------------------

HELD_OUT = CHAIN.sample(2500, torch.Generator().manual_seed(5))


def test_exact_denoiser_is_calibrated_and_a_tempered_one_is_not():
    """For a calibrated model ``E|acc_b - conf_b| <= sqrt(acc (1 - acc) / n_b) <= 1 / (2 sqrt(n_b))``, so
    ``E[ECE] <= sum_b (n_b / n) / (2 sqrt(n_b)) <= sqrt(B / n) / 2``; the seeds are fixed and the exact toy stays
    below that bound while an over-confident version of it (logits x 2) is several times above it."""
    exact = plot.reliability(CHAIN, HELD_OUT, bins=10, seed=0)
    bound = 0.5 * math.sqrt(10 / exact.n)
    assert exact.n == int(exact.count.sum()) > 2500 and exact.ece <= bound
    sharp = plot.reliability(Tempered(CHAIN, 0.5), HELD_OUT, bins=10, seed=0)
    assert sharp.n == exact.n and sharp.ece > 4 * bound
    seen = exact.count > 0
    assert ((exact.accuracy[seen] >= 0) & (exact.accuracy[seen] <= 1)).all()
    lo, hi = exact.edges[:-1][seen], exact.edges[1:][seen]
    assert ((exact.confidence[seen] >= lo) & (exact.confidence[seen] <= hi)).all()


def test_reliability_at_a_finite_snr_scores_every_position():
    rel = plot.reliability(CHAIN, HELD_OUT[:100], gamma=2.0, bins=5)
    assert rel.n == 100 * CHAIN.seq_len and len(rel.count) == 5


def test_self_correction_counts_a_handmade_trace():
    tokens = torch.tensor([[-1, -1], [1, -1], [-1, 0], [0, 0], [0, -1], [0, 0]])[:, None, :]  # [S + 1, B, L]
    trace = types.SimpleNamespace(tokens=tokens)  # any object with the fields works
    assert plot.self_correction(trace) == plot.SelfCorrection(events=2, unchanged=1, changed=1, pending=0)
    prefers_zero = lambda s: (s[:, 0] == 0).to(torch.float64)  # position 0 = token 0 is "more likely"
    judged = plot.self_correction(trace, prefers_zero)
    assert (judged.better, judged.worse, judged.tied) == (1, 0, 0)
    ends_masked = types.SimpleNamespace(tokens=torch.cat([tokens, torch.tensor([[[0, -1]]])]))
    assert plot.self_correction(ends_masked).pending == 1
    with pytest.raises(SNRPathError, match="unrevealed positions"):
        plot.self_correction(ends_masked, prefers_zero)


def test_calibration_figure_is_readable():
    remdm = sample(Path.mdm(8, remask="confidence"), CHAIN, batch=40, seed=0, trace=True)
    fig = plot.calibration({"exact": CHAIN, "sharp": Tempered(CHAIN, 0.5)}, HELD_OUT[:300], {"ReMDM": remdm},
                           log_prob=CHAIN.log_prob)
    assert_readable(fig)
    texts = legend_texts(fig)
    assert any(t.startswith("exact\nECE") for t in texts) and "perfect calibration" in texts
    assert any("more likely" in t for t in texts)
    bars = next(ax for ax in fig.axes if ax.get_title().startswith("Self-correction"))
    assert [t.get_text() for t in bars.get_yticklabels()] == ["ReMDM"] and "remask" in bars.get_xlabel()


# -- NFE curves ------------------------------------------------------------------------------------------------


def test_nfe_curves_draw_one_line_per_sampler_on_log_axes():
    fig = plot.nfe_curves({"MDLM": [(4, 0.12), (2, 0.25), (8, 0.06)], "hybrid": [(4, 0.05, 0.01)]}, floor=0.01)
    assert_readable(fig)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log" and "NFE" in ax.get_xlabel()
    assert {"MDLM", "hybrid", "sampling floor"} <= set(legend_texts(fig))
    xs = ax.lines[0].get_xdata()
    assert list(xs) == [2, 4, 8], "points are sorted by NFE"


@pytest.mark.parametrize("results, kw, match", [
    ({}, {}, "non-empty mapping"),
    ([(1, 0.5)], {}, "non-empty mapping"),
    ({"a": []}, {}, "at least one row"),
    ({"a": [(0, 0.5)]}, {}, "NFE <= 0"),
    ({"a": [(1, "x")]}, {}, "rows"),
    ({"a": [(1, 0.0)]}, {}, "logy=False"),
])
def test_nfe_curves_bad_input(results, kw, match):
    with pytest.raises(SNRPathError, match=match):
        plot.nfe_curves(results, **kw)


# -- bad input -------------------------------------------------------------------------------------------------

RESULT = sample(Path.mdm(4), TOY, batch=2, seed=0, trace=True)


@pytest.mark.parametrize("call, match", [
    (lambda: plot.gamma_plane(Path.ar(), positions=(0, 5), denoiser=ExactToy.markov(2, 3, seed=0)),
     r"positions \[5\] are out of range"),
    (lambda: plot.gamma_plane(RESULT, positions=(0, 9)), r"positions \[9\] are out of range .* length 4"),
    (lambda: plot.gamma_plane(Path.ar(), positions=(1, 1)), "distinct"),
    (lambda: plot.gamma_plane(Path.ar(), positions=(0,)), "exactly 2"),
    (lambda: plot.gamma_plane(Path.ar(), positions=(-1, 0)), "non-negative"),
    (lambda: plot.gamma_plane(Path.ar(), runs=0), "'runs' must be a positive integer"),
    (lambda: plot.gamma_plane([]), "at least one"),
    (lambda: plot.gamma_plane(42), "expected a Path"),
    (lambda: plot.gamma_plane(Path.ar()), "a bare path needs a denoiser to run on: pass denoiser="),
    (lambda: plot.gamma_plane(sample(Path.ar(), TOY)), r"no trace; sample it with sample\(\.\.\., trace=True\)"),
    (lambda: plot.gamma_plane(types.SimpleNamespace(tokens=RESULT.trace.tokens)), "has no gamma tensor"),
    (lambda: plot.gamma_plane(types.SimpleNamespace(gamma=torch.zeros(3, 4))), r"\[S \+ 1, B, L\]"),
    (lambda: plot.gamma_plane(types.SimpleNamespace(gamma=-torch.ones(3, 1, 2))), "negative"),
    (lambda: plot.generation_order(RESULT, row=2), "row 2 is out of range .* 2 runs"),
    (lambda: plot.generation_order(RESULT, row=-1), "non-negative integer"),
    (lambda: plot.self_correction(Path.mdm(4)), "needs a recorded run"),
    (lambda: plot.self_correction(types.SimpleNamespace(gamma=RESULT.trace.gamma)), "has no tokens tensor"),
    (lambda: plot.reliability(CHAIN, HELD_OUT[:, :3]), r"needs \[N >= 1, 4\]"),
    (lambda: plot.reliability(CHAIN, HELD_OUT.double()), "integer tensor"),
    (lambda: plot.reliability(CHAIN, HELD_OUT + 5), "valid ids are in"),
    (lambda: plot.reliability(CHAIN, HELD_OUT, gamma=-1.0), "positive finite SNR"),
    (lambda: plot.posterior_field(ExactToy.two_bit(), gammas=(3.0, 1.0)), "gamma_start < gamma_end"),
])
def test_bad_input_is_one_clear_error(call, match):
    with pytest.raises(SNRPathError, match=match):
        call()


# -- saving and the command line -------------------------------------------------------------------------------


def _small_figure():
    fig = Figure()
    fig.subplots().plot([0, 1], [0, 1])
    return fig


def test_save_writes_atomically(tmp_path, monkeypatch):
    out = tmp_path / "deep" / "fig.png"
    assert plot.save(_small_figure(), out) == out
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and sorted(p.name for p in out.parent.iterdir()) == ["fig.png"]
    before = out.read_bytes()
    broken = _small_figure()

    def half_written(fh, **kw):
        fh.write(b"\x89PNG partial")
        raise RuntimeError("renderer died")

    monkeypatch.setattr(broken, "savefig", half_written)
    with pytest.raises(RuntimeError, match="renderer died"):
        plot.save(broken, out)
    assert out.read_bytes() == before, "a failed render leaves the old file"
    assert sorted(p.name for p in out.parent.iterdir()) == ["fig.png"], "and no temporary file"
    with pytest.raises(SNRPathError, match="must end in one of"):
        plot.save(_small_figure(), tmp_path / "fig.bmpx")


def test_cli_plots_write_images(tmp_path, capsys):
    plane, order = tmp_path / "plane.png", tmp_path / "order.svg"
    assert main(["plot", "gamma-plane", "--path", "ar()", "--path", "hybrid(2, 2)", "--runs", "3",
                 "--out", str(plane)]) == 0
    assert main(["plot", "order", "--path", "mdm(4)", "--length", "4", "--out", str(order)]) == 0
    assert plane.read_bytes()[:4] == b"\x89PNG" and b"<svg" in order.read_bytes()[:400]
    assert capsys.readouterr().out.count("wrote ") == 2


@pytest.mark.parametrize("argv, match", [
    (["plot", "gamma-plane", "--path", "ar()", "--positions", "0", "7", "--length", "3"], "out of range"),
    (["plot", "order", "--path", "mdm(4, remask='confdence')"], "'remask' must be one of"),
    (["plot", "order", "--path", "ar()", "--length", "40"], "stops at L = 17"),
])
def test_cli_plot_errors_are_one_line(argv, match, tmp_path, capsys):
    out = tmp_path / "never.png"
    with pytest.raises(SystemExit) as exit_:
        main(argv + ["--out", str(out)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith("snrpaths: error: ") and match in err
    assert "Traceback" not in err and not out.exists()


def test_evidence_figure_marks_where_the_denoiser_is_above_the_rule():
    from snrpaths.diagnostics import evidence_curve, unigram_prior
    from snrpaths.testing.denoisers import Blind

    toy = ExactToy.markov(3, 4, seed=1, concentration=0.3)
    windows = toy.sample(60, torch.Generator().manual_seed(0))
    curve = evidence_curve(Blind(toy), windows, (0.5, 4.0, 32.0), prior=unigram_prior(windows, 3))
    fig = plot.evidence(curve)
    assert_readable(fig)
    assert len([ax for ax in fig.axes if ax.get_visible()]) == 2
    assert "above the rule (2 s.e.)" in legend_texts(fig)
    with pytest.raises(SNRPathError, match="'curve' must be an EvidenceCurve"):
        plot.evidence({"rows": []})


def drawn(ax) -> dict[str, list[np.ndarray]]:
    """Every point an artist of ``ax`` draws, in data coordinates, by its gid: the curves of line collections (one
    array each) and the points of scatters."""
    found: dict[str, list[np.ndarray]] = {}
    for artist in ax.collections:
        if isinstance(artist, LineCollection):
            arrays = [np.asarray(s) for s in artist.get_segments()]
        else:
            arrays = [np.asarray(artist.get_offsets())]
        found.setdefault(artist.get_gid(), []).extend(arrays)
    return found


def test_jumps_are_monotone_inside_the_axes_and_every_kind_is_in_the_legend():
    """Along a jump's whole drawn curve each coordinate moves one way only (a reveal never dips below its start; a
    remask that reveals one position while it remasks the other moves each its own way), everything lies inside the
    axis limits,
    the ramp's end at a finite gamma_max is drawn apart from clean, and every kind drawn has its legend entry."""
    paths = {"cap": Path.mdm(6, remask="cap", eta=0.4), "hybrid": Path.hybrid(4, 4, gamma_max=4.0, switch="mask"),
             "default": Path.hybrid(4, 4), "renoise": Path.ramp(4) >> Path.renoise(1.0) >> Path.ramp(4)
             >> Path.switch("commit")}
    fig = plot.gamma_plane(paths, denoiser=ExactToy.markov(2, 2, seed=0), runs=8, seed=2)
    from snrpaths.plot.plane import _KINDS

    texts = set(legend_texts(fig))
    legend = {kind for kind, (_, _, label) in _KINDS.items() if label in texts} | ({"start", "end"} & texts)
    kinds = set()
    for ax in (ax for ax in fig.axes if ax.get_visible()):
        (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
        for gid, arrays in drawn(ax).items():
            kinds.add(gid)
            for points in arrays:
                inside = (points[:, 0] >= x0) & (points[:, 0] <= x1) & (points[:, 1] >= y0) & (points[:, 1] <= y1)
                assert inside.all(), (gid, points)
                if gid in ("reveal", "remask", "drop"):  # each coordinate moves one way, from one end to the other
                    steps = np.diff(points, axis=0) * np.sign(points[-1] - points[0])
                    assert (steps >= -1e-12).all(), points
                if gid == "reveal":  # never below its start
                    assert (points >= points[0] - 1e-12).all(), points
        for patch in ax.patches:
            if patch.get_gid() is not None:
                kinds.add(patch.get_gid())
                assert patch.get_clip_on()
    assert {"reveal", "remask", "drop", "continuous", "ramp_end", "start", "end"} <= kinds
    assert kinds <= legend, kinds - legend
    ends = np.concatenate(drawn([ax for ax in fig.axes if ax.get_visible()][2])["ramp_end"])
    assert len(ends) and np.isclose(ends, 40 / 41).any(-1).all()  # the default gamma_max = 40, not clean (u = 1)


def test_a_jump_of_both_positions_bends_inside_the_box_of_its_ends():
    from snrpaths.plot.plane import jump_curve

    curve = jump_curve(np.array([0.8, 0.8]), np.array([1.0, 1.0]))
    np.testing.assert_allclose(curve[[0, -1]], [[0.8, 0.8], [1.0, 1.0]])
    assert (np.diff(curve, axis=0) >= 0).all() and (curve[1:-1, 0] > curve[1:-1, 1]).all()  # off the diagonal
    straight = jump_curve(np.array([0.0, 0.5]), np.array([0.0, 1.0]))
    assert (straight[:, 0] == 0).all() and (np.diff(straight[:, 1]) > 0).all()
