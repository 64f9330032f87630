"""Figures, the paper table, write_report and the ``tl-wavelet`` CLI, on real tiny models.

The CLI loads the planted tiny Llama from a local HuggingFace folder (save_pretrained),
exactly as a user's own model folder would be loaded.
"""
from __future__ import annotations

import math
import random
import re

import numpy as np
import pandas as pd
import pytest
import torch
from models_for_tests import tiny_llama_hf, word_tokenizer

import tl_wavelet as tlw
from tl_wavelet import figures as plots
from tl_wavelet.analysis import stream
from tl_wavelet.cli import main
from tl_wavelet.paper import COLUMNS, comparison_table, paper_numbers, paper_table
from tl_wavelet.report import write_report

SEQ_LEN = 128


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """The planted tiny Llama + its word tokenizer saved as a HuggingFace folder."""
    d = tmp_path_factory.mktemp("tiny-model")
    tiny_llama_hf(planted=True).save_pretrained(d)
    word_tokenizer(97).save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    r = random.Random(0)
    p = tmp_path_factory.mktemp("text") / "words.txt"
    # ~4 windows of 128 tokens in the word tokenizer's vocabulary (w4..w96)
    p.write_text(" ".join(f"w{r.randrange(4, 97)}" for _ in range(4 * SEQ_LEN)), encoding="utf-8")
    return p


@pytest.fixture(scope="module")
def two_reports(planted):
    """Default and paper=True reports of the planted model from one pass."""
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(4, 97, (6, SEQ_LEN), generator=g)
    accs = [tlw.HeadAccumulator(planted), tlw.HeadAccumulator(planted, paper=True)]
    stream(planted, tokens, accs, batch_size=3, progress=False)
    return {"default": accs[0].report(), "paper": accs[1].report()}


def _cli(*args):
    return main(["analyze", *map(str, args)])


# --------------------------------------------------------------------------- figures


def test_scale_heatmap_is_layers_by_heads(two_reports):
    rep = two_reports["default"]
    fig = plots.plot_scale_heatmap(rep)
    ax = fig.axes[0]
    arr = ax.images[0].get_array()
    assert arr.shape == (rep.shape.n_layers, rep.shape.n_heads)
    np.testing.assert_allclose(np.asarray(arr), rep.scale_tokens.numpy(), rtol=1e-6)
    # each cell is annotated with its dominant band, planted head 0 (previous token) is D1
    texts = [t.get_text() for t in ax.texts]
    assert len(texts) == rep.shape.n_layers * rep.shape.n_heads
    assert texts[0] == "D1"


def test_band_energy_and_rho_figures(two_reports):
    rep = two_reports["default"]
    fig = plots.plot_band_energy(rep)
    ax = fig.axes[0]
    assert len(ax.containers) == rep.config.level + 1  # one stack per band
    heights = np.array([[p.get_height() for p in c] for c in ax.containers])  # [band, layer]
    np.testing.assert_allclose(heights.sum(0), 1.0, atol=1e-5)  # shares of each layer sum to 1
    fig = plots.plot_rho(two_reports)
    assert len(fig.axes[0].containers) == 2  # one errorbar series per definitions set


def test_uncertainty_and_rope_figures(two_reports):
    rep = two_reports["default"]
    fig = plots.plot_uncertainty(rep)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    x = np.geomspace(*ax.get_xlim(), 5)
    bound = ax.lines[0]
    np.testing.assert_allclose(bound.get_ydata()[[0, -1]] * bound.get_xdata()[[0, -1]], 0.5)
    assert x[0] > 0
    fig = plots.plot_rope_usage(rep)
    assert [a.get_xscale() for a in fig.axes[:2]] == ["log", "log"]
    # right panel: one row of cells per (layer, head)
    assert len(fig.axes[1].collections) == rep.shape.n_layers * rep.shape.n_heads


def test_uncertainty_marks_infinite_spread_on_top_edge(two_reports):
    # Softmax attention is never an exact spike, so take the real report and give two heads
    # the value a pure spike has (delta_w = inf, docs/metrics.md section 8).
    import dataclasses

    rep = two_reports["default"]
    stats = dict(rep.stats)
    mean, se = stats[(0, "delta_w")]
    mean = mean.clone()
    mean[[0, 2]] = math.inf
    stats[(0, "delta_w")] = (mean, se)
    spiky = dataclasses.replace(rep, stats=stats)
    ax = plots.plot_uncertainty(spiky).axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("top edge" in s and "2 heads" in s for s in labels), labels
    top = ax.collections[-1].get_offsets()
    assert len(top) == 2 and np.allclose(top[:, 1], ax.get_ylim()[1])
    assert not any("top edge" in s for s in (t.get_text() for t in plots.plot_uncertainty(rep).axes[0].get_legend().get_texts()))


def test_sweep_figure_one_centered_panel_per_band():
    # band_sweep's output format, on a 2 x 3 head grid with one unmeasured cell
    rows = []
    for L in range(2):
        for h in range(3):
            for j, b in enumerate(["A2", "D2", "D1"]):
                if (L, h, b) != (1, 2, "D1"):
                    rows.append({"layer": L, "head": h, "band": b, "delta_loss": (j - 1) * 0.1 * (L + h + 1), "se": 0.01})
    df = pd.DataFrame(rows)
    fig = plots.plot_sweep(df)
    panels = [a for a in fig.axes if a.images]
    assert [a.get_title() for a in panels] == ["A2", "D2", "D1"]
    for a in panels:
        assert a.images[0].get_array().shape == (2, 3)
        norm = a.images[0].norm
        assert norm.vcenter == 0 and math.isclose(norm.vmin, -norm.vmax)
    assert np.ma.is_masked(panels[2].images[0].get_array()[1, 2])
    with pytest.raises(ValueError, match="lacks columns"):
        plots.plot_sweep(df.drop(columns="band"))


def test_plots_reject_non_reports():
    with pytest.raises(TypeError, match="HeadReport"):
        plots.plot_scale_heatmap(pd.DataFrame())


# --------------------------------------------------------------------------- paper table


def test_paper_numbers_are_the_published_ones():
    p = paper_numbers()
    rho = p[p.metric == "rho"].set_index("model")["value"]
    assert rho["Llama-3.2-1B"] == -0.510 and rho["Pythia-2.8B"] == -0.737 and rho["Qwen2.5-0.5B"] == -0.438
    we = p[(p.model == "Llama-3.2-1B") & p.metric.str.startswith("wavelet_entropy")]["value"].tolist()
    assert we == [0.694, 0.331, 0.562, 0.671, 0.343, 0.235]
    rng = p[(p.model == "RoPE models (typical)") & (p.metric == "scale_sensitivity_0.5")].iloc[0]
    assert math.isnan(rng.value) and (rng.low, rng.high) == (0.03, 0.08)
    assert p["source"].str.contains("2410.18067").all()
    assert list(paper_table().columns) == COLUMNS


def test_comparison_table_has_our_rows_beside_the_papers(two_reports):
    t = comparison_table({"tiny [default]": two_reports["default"], "tiny [paper]": two_reports["paper"]})
    assert list(t.columns) == COLUMNS
    ours = t[t.source == "tl_wavelet"].set_index("model")
    assert len(ours) == 2 and (t.source == "paper").sum() == len(paper_table())
    d = two_reports["default"]
    df = d.to_dataframe()
    assert math.isclose(ours.loc["tiny [default]", "band_low_pct"], 100 * df["spec_low"].mean(), rel_tol=1e-9)
    assert math.isclose(ours.loc["tiny [default]", "spectral_entropy"], df["spectral_entropy"].mean(), rel_tol=1e-9)
    assert math.isclose(ours.loc["tiny [default]", "wavelet_entropy_s0"], df["wavelet_entropy_A5"].mean(), rel_tol=1e-9)
    lr = d.layer_summary()["rho"]
    expect = lr[lr.notna()].mean() if lr.notna().any() else math.nan
    got = ours.loc["tiny [default]", "rho"]
    assert (math.isnan(expect) and math.isnan(got)) or math.isclose(got, expect, rel_tol=1e-9)
    assert "paper=True" in ours.loc["tiny [paper]", "definitions"]
    assert "default" in ours.loc["tiny [default]", "definitions"]
    with pytest.raises(TypeError, match="HeadReport"):
        comparison_table({"x": 1})


# --------------------------------------------------------------------------- write_report


def test_write_report_is_self_contained_and_atomic(two_reports, tmp_path):
    path = write_report(tmp_path / "r", model_name="tiny", reports=two_reports, sweep=None,
                        meta={"command": "pytest", "sweep_status": "skipped in this test"})
    out = path.parent
    page = path.read_text(encoding="utf-8")
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert {"scale_heatmap.png", "band_energy.png", "band_energy_paper.png", "rho.png", "uncertainty.png",
            "rope_usage.png"} == set(pngs)
    # every figure embedded, nothing fetched from outside
    assert page.count('src="data:image/png;base64,') == len(pngs)
    assert not re.search(r'(src|href)="(https?:|file:)', page)
    assert "skipped in this test" in page and "How to read this" in page
    for name in ("heads.csv", "layers.csv", "rope_usage.csv", "paper_comparison.csv", "heads_paper.csv", "meta.json"):
        assert (out / name).is_file()
    assert not (out / "sweep.csv").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left
    with pytest.raises(ValueError, match="non-empty dict"):
        write_report(tmp_path / "r2", model_name="x", reports={})


def test_head_table_follows_the_report_level(planted, tmp_path):
    # level 3: bands A3, D3, D2, D1 (the table once hard-coded A5 .. D1 and lost A3)
    g = torch.Generator().manual_seed(1)
    acc = tlw.HeadAccumulator(planted, level=3, rope=False)
    stream(planted, torch.randint(4, 97, (2, SEQ_LEN), generator=g), [acc], batch_size=2, progress=False)
    page = write_report(tmp_path / "r3", model_name="tiny", reports={"default": acc.report()}).read_text(encoding="utf-8")
    table = page[page.index("<summary>Per head"):page.index("</details>", page.index("<summary>Per head"))]
    header = re.findall(r"<th>([^<]*)</th>", table)
    assert [c for c in header if re.fullmatch(r"[AD]\d", c)] == ["A3", "D3", "D2", "D1"]
    assert "A3 = averaging over 8+ tokens" in page and "from the coarsest (A3:" in page


# --------------------------------------------------------------------------- CLI


def test_cli_writes_everything_and_heads_csv_equals_analyze_heads(model_dir, text_file, tmp_path, capsys):
    out = tmp_path / "run"
    rc = _cli("--model", model_dir, "--out", out, "--text", text_file, "--seq-len", SEQ_LEN, "--no-sweep",
              "--batch-size", 3, "--quiet")
    assert rc == 0
    assert str(out / "report.html") in capsys.readouterr().out
    for name in ("report.html", "heads.csv", "layers.csv", "rope_usage.csv", "paper_comparison.csv",
                 "scale_heatmap.png", "band_energy.png", "rho.png", "uncertainty.png", "rope_usage.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert "--no-sweep" in (out / "report.html").read_text(encoding="utf-8")

    # the same numbers as the library on the same tokens
    from tl_wavelet import models
    from tl_wavelet.corpus import chunk_tokens, read_text_files

    model = models.load(model_dir)
    tokens = chunk_tokens(model, read_text_files(text_file), SEQ_LEN)
    expect = tlw.analyze_heads(model, tokens, batch_size=3, progress=False).to_dataframe()
    got = pd.read_csv(out / "heads.csv")
    assert list(got.columns) == list(expect.columns)
    pd.testing.assert_frame_equal(got, expect, check_dtype=False, rtol=1e-9, atol=0)
    layers = pd.read_csv(out / "layers.csv")
    assert len(layers) == model.cfg.n_layers

    # the folder is now occupied: refused without --force, accepted with it
    rc = _cli("--model", model_dir, "--out", out, "--text", text_file, "--seq-len", SEQ_LEN, "--no-sweep", "--quiet")
    err = capsys.readouterr().err
    assert rc == 2 and "--force" in err and "Traceback" not in err
    (out / "notes.txt").write_text("mine")
    (out / "sweep.csv").write_text("stale,from,an,earlier,run\n")
    rc = _cli("--model", model_dir, "--out", out, "--text", text_file, "--seq-len", SEQ_LEN, "--no-sweep",
              "--quiet", "--force", "--n-sequences", 2)
    assert rc == 0
    assert pd.read_csv(out / "heads.csv")["n_sequences"].eq(2).all()
    assert (out / "notes.txt").read_text() == "mine"  # --force replaces only report files
    assert not (out / "sweep.csv").exists()  # ... and removes stale ones this run does not write


def test_cli_sweep_step(model_dir, text_file, tmp_path):
    pytest.importorskip("tl_wavelet.ablation")
    out = tmp_path / "sweep"
    rc = _cli("--model", model_dir, "--out", out, "--text", text_file, "--seq-len", SEQ_LEN, "--quiet",
              "--sweep-layers", -2, "--top-k", 3, "--sweep-sequences", 2)
    assert rc == 0
    sweep = pd.read_csv(out / "sweep.csv")
    # -2 counts from the end, as layers=[-2] does in the library: layer 0 of this 2-layer model
    assert {"layer", "head", "band"} <= set(sweep.columns) and set(sweep["layer"]) == {0}
    assert (out / "sweep.png").is_file()
    # the drill-down: the verified heads on two passages, CircuitsVis inlined once
    page = (out / "report.html").read_text(encoding="utf-8")
    top = sweep.dropna(subset=["delta_loss"]).sort_values("delta_loss", key=abs, ascending=False).iloc[0]
    assert 'id="drilldown"' in page and page.count('<script type="module">') == 1
    assert f"L{int(top['layer'])}H{int(top['head'])}" in page and "Passage 2" in page


def test_cli_unknown_model_exits_2_listing_known_names(tmp_path, capsys, monkeypatch):
    import huggingface_hub.constants as hc

    # --offline sets these; monkeypatch restores them after the test
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", hc.HF_HUB_OFFLINE)
    rc = _cli("--model", "no-such-model-xyz", "--out", tmp_path / "o", "--offline", "--quiet")
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("tl-wavelet: error:") and "Traceback" not in err
    assert "smollm2-135m" in err and "gemma3-270m" in err
    assert not (tmp_path / "o").exists()  # nothing written for a failed run


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--seq-len", "32"], "--seq-len"),  # db2 level 5 needs >= 96 positions
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (["--wavelet", "nosuchwavelet"], "nosuchwavelet"),
        (["--text", "/nonexistent/file.txt"], "not found"),
        (["--sweep-layers", "7"], "--sweep-layers: layer 7 is out of range; there are 2 (0..1, or -2..-1 from the end)"),
        (["--sweep-layers", "-3"], "--sweep-layers: layer -3 is out of range"),
        (["--sweep-layers", "0", "--no-sweep"], "--sweep-layers chooses the layers of the sweep, which --no-sweep skips"),
    ],
)
def test_cli_bad_options_fail_fast_without_traceback(model_dir, tmp_path, capsys, extra, message):
    rc = _cli("--model", model_dir, "--out", tmp_path / "o", "--quiet", *extra)
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err, err


def test_cli_empty_and_too_short_text(model_dir, tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    assert _cli("--model", model_dir, "--out", tmp_path / "o", "--text", empty, "--quiet") == 2
    assert "empty" in capsys.readouterr().err
    short = tmp_path / "short.txt"
    short.write_text("w5 w6 w7 w8")
    assert _cli("--model", model_dir, "--out", tmp_path / "o", "--text", short, "--seq-len", SEQ_LEN, "--quiet") == 2
    err = capsys.readouterr().err
    assert "too short" in err and "Traceback" not in err


def test_cli_interrupt_leaves_complete_files_and_exits_130(model_dir, text_file, tmp_path, capsys, monkeypatch):
    import tl_wavelet.cli as cli

    # Ctrl-C during the sweep (after the interim analysis report was written)
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_run_sweep", interrupted)
    out = tmp_path / "int"
    rc = _cli("--model", model_dir, "--out", out, "--text", text_file, "--seq-len", SEQ_LEN, "--quiet")
    err = capsys.readouterr().err
    assert rc == 130
    assert "report.html" in err and "complete" in err
    page = (out / "report.html").read_text(encoding="utf-8")
    assert page.rstrip().endswith("</html>") and "interim report" in page
    assert len(pd.read_csv(out / "heads.csv")) == 8
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_cli_force_interrupted_keeps_the_previous_report(model_dir, text_file, tmp_path, capsys, monkeypatch):
    """issue 14.12: --force writes into a temporary folder and swaps at the end; Ctrl-C keeps the old report."""
    import tl_wavelet.cli as cli

    out = tmp_path / "prev"
    assert _cli("--model", model_dir, "--out", out, "--text", text_file, "--seq-len", SEQ_LEN, "--no-sweep",
                "--quiet", "--n-sequences", 4) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_run_sweep", interrupted)
    rc = _cli("--model", model_dir, "--out", out, "--text", text_file, "--seq-len", SEQ_LEN, "--quiet", "--force",
              "--n-sequences", 5)
    assert rc == 130 and "unchanged" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["prev"]  # no temporary folder left behind


def test_cli_binary_text_file_is_named(model_dir, tmp_path, capsys):
    """issue 14.12: a non-UTF-8 --text file is named in the error."""
    binary = tmp_path / "blob.bin"
    binary.write_bytes(b"\x00\x9f\x92\x96 binary")
    rc = _cli("--model", model_dir, "--out", tmp_path / "o", "--text", binary, "--quiet")
    err = capsys.readouterr().err
    assert rc == 2 and "blob.bin" in err and "UTF-8" in err and "Traceback" not in err


def test_cli_without_command_prints_help(capsys):
    assert main([]) == 2
    assert "analyze" in capsys.readouterr().err


def test_cli_compare_writes_the_position_encoding_table(model_dir, tmp_path):
    out = tmp_path / "compare"
    rc = main(["compare", "--models", str(model_dir), "--encoder", "none", "--out", str(out),
               "--seq-len", "64", "--n-sequences", "2", "--quiet"])
    assert rc == 0
    table = pd.read_csv(out / "position_encoding.csv")
    ours = table[table["model"] == str(model_dir)].iloc[0]
    assert ours["position_encoding"] == "rotary" and 0 <= float(ours["S_0.5"]) <= 2
    heads = pd.read_csv(out / f"heads_{model_dir.name}.csv")
    assert len(heads) == 2 * 4 and heads["causal"].all()
    assert "bert-base" in (out / "summary.md").read_text()
    # occupied folder: refused without --force
    assert main(["compare", "--models", str(model_dir), "--encoder", "none", "--out", str(out), "--quiet"]) == 2


def test_cli_compare_force_interrupted_keeps_the_earlier_files(model_dir, tmp_path, capsys, monkeypatch):
    """issue 14.12, compare: --force swaps the new files in only at the end."""
    import tl_wavelet.analysis.compare as cmp

    out = tmp_path / "cmp"
    args = ["compare", "--models", str(model_dir), "--encoder", "none", "--out", str(out), "--seq-len", "64",
            "--n-sequences", "2", "--quiet"]
    assert main(args) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(cmp, "scale_sensitivity_rerun", interrupted)
    assert main(args + ["--force"]) == 130
    assert "unchanged" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["cmp"]
