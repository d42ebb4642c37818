"""The evidence curve: a denoiser's cross-entropy at each SNR beside the context-free Bayes rule's."""

from __future__ import annotations

from matplotlib.figure import Figure

from ..diagnostics import EvidenceCurve
from ..errors import SNRTypeError
from ._common import new_figure


def evidence(curve: EvidenceCurve, *, title: str | None = None) -> Figure:
    """Cross-entropy (bits per scored position) against gamma on a log axis, one panel per layout: the model with
    error bars of one standard error, the context-free rule ``softmax_v(z_i . x_v + log p(v))`` dashed. Where the
    model's curve lies above the rule's, it ignores evidence a network-free classifier uses
    (:func:`snrpaths.diagnostics.evidence_curve`)."""
    if not isinstance(curve, EvidenceCurve):
        raise SNRTypeError(f"evidence: 'curve' must be an EvidenceCurve from evidence_curve(...) "
                           f"(got {type(curve).__name__})")
    layouts = list(dict.fromkeys(r.layout for r in curve.rows))
    fig = new_figure(4.2 * len(layouts), 3.4)
    axes = fig.subplots(1, len(layouts), squeeze=False)[0]
    names = {"all": "every position at gamma", "half": "half at gamma, half clean"}
    for ax, layout in zip(axes, layouts):
        rows = [r for r in curve.rows if r.layout == layout]
        g = [r.gamma for r in rows]
        ax.errorbar(g, [r.model.mean for r in rows], yerr=[r.model.se for r in rows], marker="o", capsize=3,
                    label="denoiser")
        ax.plot(g, [r.rule.mean for r in rows], "k--", marker="x", label="context-free Bayes rule")
        below = [r for r in rows if r.verdict == "below the context-free rule"]
        if below:
            ax.plot([r.gamma for r in below], [r.model.mean for r in below], "rs", fillstyle="none", markersize=11,
                    label="above the rule (2 s.e.)")
        ax.set_xscale("log")
        ax.set_xlabel(r"SNR $\gamma$")
        ax.set_ylabel("cross-entropy (bits per position)")
        ax.set_title(names.get(layout, layout), fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title or f"Does the denoiser read its evidence? ({curve.windows} windows)", fontsize=11)
    return fig
