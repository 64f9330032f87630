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
    with pytest.raises(ValueError, match="positive int"):
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
