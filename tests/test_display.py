"""Rich display: HeadReport._repr_html_, its plot methods, the df.sweep accessor, rope band wavelengths."""
from __future__ import annotations

import base64
import subprocess
import sys
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

import tl_wavelet as tlw
from tl_wavelet import figures
from tl_wavelet.ablation import band_sweep, rope_bands

_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class _Strict(HTMLParser):
    """Collects tags and checks that every non-void element is closed in order."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.errors, self.tags, self.imgs, self.text = [], [], [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.imgs.append(dict(attrs))
        if tag not in _VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.stack.pop()

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def parse_html(s: str) -> _Strict:
    p = _Strict()
    p.feed(s)
    p.close()
    assert not p.errors, p.errors[:3]
    assert not p.stack, f"unclosed: {p.stack}"
    return p


@pytest.fixture(scope="module")
def report(planted):
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(4, 97, (4, 64), generator=g)
    return tlw.analyze_heads(planted, tokens, level=4, progress=False, batch_size=4)


def test_repr_html_has_summary_table_and_image(report):
    s = report._repr_html_()
    p = parse_html(s)
    assert "table" in p.tags and "img" in p.tags
    text = " ".join(p.text)
    # the model's name, its shape and the tokens are in the summary
    assert "planted-llama" in text and f"{report.n_sequences} sequences × {report.seq_len} tokens" in text
    # one table row per measured layer, with the layer summary's rho in it
    lsum = report.layer_summary()
    assert p.tags.count("tr") == len(lsum) + 1  # header row + one per layer
    # the image is a real PNG, inline
    src = p.imgs[0]["src"]
    assert src.startswith("data:image/png;base64,")
    assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_methods_are_the_figures(report):
    for name, fn in [("plot_scales", figures.plot_scale_heatmap), ("plot_bands", figures.plot_band_energy),
                     ("plot_rho", figures.plot_rho), ("plot_uncertainty", figures.plot_uncertainty),
                     ("plot_rope_usage", figures.plot_rope_usage)]:
        fig = getattr(report, name)()
        assert isinstance(fig, Figure), name
        assert len(fig.axes) == len(fn(report).axes), name
    heat = report.plot_scales().axes[0].images[0].get_array()
    np.testing.assert_allclose(np.ma.filled(heat, np.nan), report.scale_tokens.numpy(), rtol=1e-6)


def test_import_does_not_load_matplotlib():
    code = "import sys, tl_wavelet; assert 'matplotlib' not in sys.modules, 'matplotlib imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_sweep_accessor_top_and_plot():
    df = pd.DataFrame({"layer": [0, 0, 1, 1], "head": [0, 1, 0, 1], "band": ["A5", "A5", "A5", "A5"],
                       "delta_loss": [0.01, -0.3, np.nan, 0.2], "estimate": [0.02, -0.25, 0.05, 0.1],
                       "verified": [True, True, False, True], "delta_loss_pos_0_0": [0.0, 0.0, 0.0, 0.0]})
    assert df.sweep.value == "estimate"  # delta_loss is not measured everywhere
    top = df.sweep.top(3)
    assert top["estimate"].tolist() == [-0.25, 0.1, 0.05]
    assert "delta_loss_pos_0_0" not in top.columns
    assert df.sweep.top(2, by="delta_loss")["delta_loss"].tolist() == [-0.3, 0.2]
    fig = df.sweep.plot()
    assert isinstance(fig, Figure)
    with pytest.raises(AttributeError, match="layer, head, band"):
        pd.DataFrame({"x": [1]}).sweep.top()
    with pytest.raises(ValueError, match="n must be >= 1"):
        df.sweep.top(0)


def test_rope_sweep_has_wavelength_ranges(random_model):
    g = torch.Generator().manual_seed(0)
    toks = torch.randint(4, 97, (2, 32), generator=g)
    df = band_sweep(random_model, toks, target="rope", layers=[1], heads=[0], progress=False)
    assert list(df.columns[:5]) == ["layer", "head", "band", "wavelength_min", "wavelength_max"]
    for b in rope_bands(random_model, 1):
        row = df[df["band"] == b.name].iloc[0]
        assert row["wavelength_min"] == pytest.approx(b.wavelength_min)
        assert row["wavelength_max"] == pytest.approx(b.wavelength_max)
    df2 = band_sweep(random_model, toks, target="rope", layers=[1], heads=[0], bands=[0, 2], progress=False)
    w = tlw.rope_frequencies(random_model, layers=[1])[1]["wavelength"][[0, 2]].double()
    assert df2["wavelength_min"].iloc[0] == pytest.approx(float(w.min()))
    assert df2["wavelength_max"].iloc[0] == pytest.approx(float(w.max()))


# --------------------------------------------------------------------------- the HTML report, as read


def test_every_layer_has_a_tick_label(report):
    import dataclasses

    # 30 layers (relabelled copies of the two measured ones): no label may be hidden
    many = dataclasses.replace(report, layers=list(range(30)), shape=dataclasses.replace(report.shape, n_layers=30),
                               stats={(L, k): report.stats[(L % 2, k)] for L in range(30) for (_, k) in
                                      [key for key in report.stats if key[0] == 0]})
    ax = many.plot_scales().axes[0]
    labels = [t for t in ax.get_yticklabels() if t.get_visible() and t.get_text()]
    assert [t.get_text() for t in labels] == [str(L) for L in range(30)]
    assert min(t.get_fontsize() for t in ax.texts) >= 8  # cell text readable


def test_rho_line_does_not_cross_unmeasured_layers(report):
    import dataclasses

    # measured layers 0 and 3 only (rho set to known values): dots, not a line from 0 to 3
    stats = {((3 if L == 1 else L), k): v for (L, k), v in report.stats.items()}
    n_h = report.shape.n_heads
    stats[(0, "rho")] = (torch.full((n_h,), -0.5), torch.full((n_h,), 0.05))
    stats[(3, "rho")] = (torch.full((n_h,), 0.4), torch.full((n_h,), 0.05))
    gap = dataclasses.replace(report, layers=[0, 3], stats=stats, rope=None,
                              shape=dataclasses.replace(report.shape, n_layers=4))  # layers a report may hold
    ax = gap.plot_rho(reference=False).axes[0]
    pts = [ln for ln in ax.lines if ln.get_linestyle() != "None" and len(ln.get_xdata()) > 1]
    assert not any({0.0, 3.0} <= set(np.round(ln.get_xdata(), 6)) for ln in pts), "a line joins layer 0 to layer 3"
    # the same report with layers 0 and 1 is joined (the check above can fail)
    stats1 = {((1 if L == 3 else L), k): v for (L, k), v in stats.items()}
    near = dataclasses.replace(report, layers=[0, 1], stats=stats1, rope=None)
    ax = near.plot_rho(reference=False).axes[0]
    assert any({0.0, 1.0} <= set(np.round(ln.get_xdata(), 6)) for ln in ax.lines if len(ln.get_xdata()) > 1)


def _sweep_table(n_layers=6, n_heads=4):
    rows = []
    for L in range(n_layers):
        for h in range(n_heads):
            for b in ("A5", "D1"):
                rows.append({"layer": L, "head": h, "band": b, "estimate": 0.001 * (L - h) + (0.5 if (L, h, b) == (1, 3, "A5") else 0)})
    df = pd.DataFrame(rows)
    df["delta_loss"] = np.nan
    df["verified"] = False
    for i in (0, 5, 9):
        df.loc[i, ["delta_loss", "verified"]] = [df.loc[i, "estimate"] * 1.1, True]
    df.loc[len(df) - 1, "estimate"] = np.nan  # one cell not measured
    return df


def test_sweep_heatmap_marks_verified_cells_and_shows_more_than_the_outlier():
    from matplotlib.patches import Rectangle

    df = _sweep_table()
    fig = df.sweep.plot()
    panels = [a for a in fig.axes if a.images]
    outlines = [p for a in panels for p in a.patches if isinstance(p, Rectangle) and p.get_edgecolor()[:3] == (0, 0, 0)
                and not p.get_fill()]
    assert len(outlines) == int(df["verified"].sum())
    # the colour limit is set by the bulk, not by the one 0.5-nat cell
    assert panels[0].images[0].norm.vmax < 0.1
    # the unmeasured cell is transparent over a hatched background, not a colour near zero
    assert any(p.get_hatch() for p in panels[1].patches)
    assert np.ma.is_masked(panels[1].images[0].get_array()[-1, -1])
    assert min(t.get_fontsize() for t in panels[0].get_yticklabels()) >= 8


def test_small_sweep_title_is_not_clipped():
    df = pd.DataFrame({"layer": [0], "head": [0], "band": ["A5"], "delta_loss": [0.1]})
    fig = df.sweep.plot()
    fig.canvas.draw()
    box = fig._suptitle.get_window_extent()
    assert box.x0 >= 0 and box.x1 <= fig.bbox.width + 0.5


def test_report_states_findings_and_drills_down(report, planted, tmp_path):
    import re

    from tl_wavelet.paper import comparison_table
    from tl_wavelet.report import write_report

    views = tlw.view.compare_heads(planted, torch.arange(4, 70), [(0, 1), (1, 0)], bands=["A5"], ablate=True)
    df = _sweep_table(n_layers=2, n_heads=4)
    path = write_report(tmp_path / "r", model_name="tiny", reports={"default": report}, sweep=df,
                        drilldown=[("Passage 1", views)])
    page = path.read_text(encoding="utf-8")
    parse_html(page.split("<body>", 1)[1].rsplit("</body>", 1)[0])
    rho = float(comparison_table({"x": report}).query("source != 'paper'")["rho"].iloc[0])
    if np.isfinite(rho):
        assert f"<b>{rho:+.2f}</b> with the default definitions" in page
        assert ("opposite sign" in page) == (rho > 0)
    assert "Low-frequency dominance" in page and "RoPE usage" in page and "Causal effects" in page
    # the drill-down: its table, two CircuitsVis widgets, one bundle, nothing from the network
    assert "Drill-down" in page and page.count("CircuitsVis.render(") == 2 and page.count('<script type="module">') == 1
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//|from\s*["'](?:https?:)?//""", page)
