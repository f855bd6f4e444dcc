"""The report on a tiny synthetic workspace: pages, escaping, table data (no browser)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from markupsafe import escape

from saelab.errors import ConfigError
from saelab.render import environment
from saelab.report import ReportConfig, run

from .diff_run import LAYER, RUN, to_old_format
from .workspace import IMG, SCRIPT, SIZES, model_view


def table(index: Path, name: str) -> dict:
    text = (index.parent / "data" / f"{name}-latents.js").read_text(encoding="utf-8")
    prefix = "window.SAELAB_TABLE = "
    assert text.startswith(prefix)
    return json.loads(text[len(prefix):].rstrip().rstrip(";"))


def all_html(index: Path) -> dict[Path, str]:
    return {p: p.read_text(encoding="utf-8") for p in index.parent.rglob("*.html")}


def test_every_stage_has_its_page(site):
    index, _ = site
    root = index.parent
    for rel in ("index.html", "narrow/index.html", "wide/index.html", "match/wide__narrow.html",
                "sfal/narrow.html", f"diff/{RUN}.html", "static/report.js", "static/report.css", "cfg.json"):
        assert (root / rel).is_file(), rel
    html = index.read_text(encoding="utf-8")
    for card in ("stage-interp-narrow", "stage-cooc-narrow", "stage-cooc-wide", "stage-match-wide__narrow",
                 f"stage-diff-{RUN}"):
        assert f'id="{card}"' in html


def test_latent_pages_follow_the_cap_and_favour_explained_latents_and_partners(site):
    index, config = site
    narrow = {int(p.stem) for p in (index.parent / "narrow" / "latents").glob("*.html")}
    wide = {int(p.stem) for p in (index.parent / "wide" / "latents").glob("*.html")}
    assert len(narrow) == len(wide) == config.max_latent_pages
    assert narrow == {0, *range(2, 11)}  # the best-scored explained latents (latent 1's explanation failed)
    assert wide == narrow  # wide latent i has the decoder row of narrow latent i: partners get pages too


def test_corpus_model_and_explanation_strings_are_escaped_everywhere(site):
    index, _ = site
    pages = all_html(index)
    for path, html in pages.items():
        scripts = re.findall(r"<script\b[^>]*>", html)
        assert all(re.fullmatch(r'<script src="[^"]+">|<script>', s) for s in scripts), (path, scripts)
        assert SCRIPT not in html and IMG not in html, path
    latent0 = pages[index.parent / "narrow" / "latents" / "0.html"]
    assert "&lt;script&gt;window.__xss = 1&lt;/script&gt;" in latent0  # corpus tokens and the explanation, as text
    assert "&lt;img src=x onerror=" in latent0


def test_table_data_has_one_row_per_latent_and_links_pages_and_partners(site):
    index, _ = site
    t = table(index, "narrow")
    cols = t["columns"]
    assert cols[:4] == ["latent", "frequency", "max", "explanation"]
    assert {"detection", "fuzz", "ndcg", "partner", "page"} <= set(cols)
    assert [r[0] for r in t["rows"]] == list(range(SIZES["narrow"]))
    row0 = dict(zip(cols, t["rows"][0]))
    assert SCRIPT in row0["explanation"]  # raw in the data; the page's JS writes it with textContent
    assert row0["partner"][:2] == ["wide", 0] and row0["partner"][3] == 1 and row0["page"] == 1
    assert row0["detection"] == pytest.approx(0.9)
    assert dict(zip(cols, t["rows"][1]))["explanation"] is None  # failed explanation: no text, not a placeholder
    assert len(table(index, "wide")["rows"]) == SIZES["wide"]


def test_latent_page_shows_coloured_tokens_histogram_logits_neighbours_and_partner(site):
    index, _ = site
    html = (index.parent / "narrow" / "latents" / "2.html").read_text(encoding="utf-8")
    assert re.search(r'class="t[^"]* on" style="--a:(0\.\d+|1\.0)" title="[\d.]+"', html)
    assert '<svg class="hist"' in html and "activation value" in html and "fires on <b>" in html
    assert "top tokens" in html and "bottom tokens" in html
    assert "by decoder cosine" in html and "by co-occurrence" in html
    assert 'href="../../wide/latents/2.html"' in html  # the one-to-one partner has a page
    assert "Scorer predictions on held-out examples" in html


def test_a_second_run_with_a_smaller_cap_removes_stale_pages(workspace, tmp_path):
    index = run(ReportConfig(max_latent_pages=10), workspace, tmp_path, model_view())
    index = run(ReportConfig(max_latent_pages=3, n_quantiles=0), workspace, tmp_path, model_view())
    assert len(list((index.parent / "narrow" / "latents").glob("*.html"))) == 3
    assert "quantile 1 of" not in (index.parent / "narrow" / "latents" / "0.html").read_text(encoding="utf-8")


def test_report_without_model_or_optional_stages(workspace, tmp_path):
    import shutil

    ws_copy = type(workspace)(tmp_path / "ws")
    shutil.copytree(workspace.root, ws_copy.root,
                    ignore=shutil.ignore_patterns("interp", "sfal", "cooc", "match", "diff"))
    index = run(ReportConfig(max_latent_pages=2), ws_copy, tmp_path / "site")
    html = (index.parent / "narrow" / "index.html").read_text(encoding="utf-8")
    assert "narrow" in html
    latent = next((index.parent / "narrow" / "latents").glob("*.html")).read_text(encoding="utf-8")
    assert "Not computed: the report was written without the model." in latent
    assert "co-occurrence not computed" in latent and "Not matched" in latent
    assert not any((index.parent / stage).exists() for stage in ("match", "sfal", "diff"))
    assert "stage-diff" not in index.read_text(encoding="utf-8")


def test_the_interp_run_shown_can_be_chosen_by_name(workspace, tmp_path):
    import os
    import shutil

    from saelab.errors import ArtifactError

    ws_copy = type(workspace)(tmp_path / "ws")
    shutil.copytree(workspace.root, ws_copy.root, ignore=shutil.ignore_patterns("diff"))
    other = ws_copy.root / "interp" / "narrow-merged"
    shutil.copytree(ws_copy.root / "interp" / "narrow-run", other)
    path = other / "explanations" / "default" / "2.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "explanation": "the chosen run's words"}))
    newest = ws_copy.root / "interp" / "narrow-run"
    os.utime(newest, (newest.stat().st_atime, other.stat().st_mtime + 10))  # the default pick: the newest
    page = lambda index: (index.parent / "narrow" / "latents" / "2.html").read_text(encoding="utf-8")  # noqa: E731
    assert "the chosen run&#39;s words" not in page(run(ReportConfig(max_latent_pages=3), ws_copy, tmp_path / "a"))
    index = run(ReportConfig(max_latent_pages=3, interp_runs=("narrow-merged",)), ws_copy, tmp_path / "b")
    assert "the chosen run&#39;s words" in page(index)
    with pytest.raises(ConfigError, match="both runs of 'narrow'"):
        run(ReportConfig(interp_runs=("narrow-merged", "narrow-run")), ws_copy, tmp_path / "c")
    with pytest.raises(ArtifactError, match="no interp run at nope"):
        run(ReportConfig(interp_runs=("nope",)), ws_copy, tmp_path / "c")


def test_autoescape_is_on_for_every_template():
    env = environment()
    for name in env.list_templates():
        src = env.loader.get_source(env, name)[0]
        assert "|safe" not in src.replace(" ", "") and "autoescape false" not in src, name
    assert env.from_string("{{ x }}").render(x="<b>") == "&lt;b&gt;"


def test_config_names_the_bad_field():
    with pytest.raises(ConfigError, match="max_latent_pages"):
        ReportConfig(max_latent_pages=-1)


def test_cli_writes_the_site_and_prints_the_path(workspace, tmp_path):
    from typer.testing import CliRunner

    from saelab.cli import app

    result = CliRunner().invoke(app, ["report", str(workspace.root), "--out", str(tmp_path), "--model", "none",
                                      "--max-latent-pages", "2"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "index.html").as_uri() in result.output.replace("\n", "")


def test_cli_on_a_directory_that_is_no_workspace_says_so(tmp_path):
    from typer.testing import CliRunner

    from saelab.cli import app
    from saelab.errors import ArtifactError

    result = CliRunner().invoke(app, ["report", str(tmp_path / "nothing")])
    assert isinstance(result.exception, ArtifactError) and "saelab demo" in str(result.exception)


def test_families_link_parent_and_members_across_dictionaries(site):
    index, _ = site
    match = (index.parent / "match" / "wide__narrow.html").read_text(encoding="utf-8")
    assert re.search(r'href="\.\./narrow/latents/3\.html">narrow #3</a>', match)
    assert "wide #30" in match and "wide #31" in match and "0.95" in match
    latent = (index.parent / "narrow" / "latents" / "3.html").read_text(encoding="utf-8")
    assert "Family: parent" in latent and "wide #30" in latent


def test_sfal_page_links_best_aligned_latents(site):
    index, _ = site
    html = (index.parent / "sfal" / "narrow.html").read_text(encoding="utf-8")
    assert "mean NDCG <b>0.410</b>" in html and "baseline 0.300" in html
    assert re.search(r'href="\.\./narrow/index\.html#q=23"[^>]*>narrow #23</a>', html)  # no page: its table row


def _diff_page(index: Path) -> tuple[Path, str]:
    path = index.parent / "diff" / f"{RUN}.html"
    return path, path.read_text(encoding="utf-8")


def _named(workspace) -> dict:
    path = workspace.root / "diff" / RUN / "features" / f"layer_{LAYER:02d}" / "naming" / "named.json"
    return json.loads(path.read_text(encoding="utf-8"))


def test_front_page_links_the_diff_run_and_says_what_it_found(site):
    index, _ = site
    html = index.read_text(encoding="utf-8")
    card = html.split(f'id="stage-diff-{RUN}"')[1].split("</div>")[0]
    assert f'href="diff/{RUN}.html"' in card and "Base tiny-base vs target tiny-target" in card
    assert f'href="../diff/{RUN}.html"' in (index.parent / "narrow" / "index.html").read_text(encoding="utf-8")  # nav
    assert not any("not built yet" in h or "does not render model diffing" in h for h in all_html(index).values())


def test_diff_page_shows_its_plots_sentences_tails_and_named_latents(site, workspace):
    index, _ = site
    path, html = _diff_page(index)
    srcs = re.findall(r'<img src="([^"]+)"', html)
    assert {Path(s).name for s in srcs} >= {f"diff-{RUN}-layer_divergence.svg",
                                             f"diff-{RUN}-delta_norm_layer_{LAYER:02d}.svg"}
    for src in srcs:  # drawn by the shared plot helper into the site's plots/, as SVG with text as text
        svg = (path.parent / src).resolve()
        assert svg.is_file() and svg.parent == index.parent / "plots", src
        assert "<text" in svg.read_text(encoding="utf-8")
    assert f"Layer {LAYER}: " in html and "target-only latents" in html and "What this data cannot support" in html
    assert "Where the models diverge" in html and "Tokens where the next-token predictions differ most" in html
    assert 'class="grid tails"' in html and "most target-leaning" in html
    assert '<link rel="stylesheet" href="../static/report.css">' in html and "<style>" not in html


def test_named_diff_latents_link_to_their_latent_pages(site, workspace):
    index, _ = site
    path, html = _diff_page(index)
    named = _named(workspace)["latents"]
    assert named
    table = html.split('<table class="grid named">')[1].split("</table>")[0]
    links = re.findall(r'<a href="([^"]+)">(\d+)</a>', table)
    assert [int(n) for _, n in links] == [r["latent"] for r in named]
    for href, latent in links:
        assert href == f"{RUN}/layer_{LAYER:02d}/latents/{latent}.html"
        page = (path.parent / href).read_text(encoding="utf-8")
        assert f"<h1>{RUN} · layer {LAYER} · latent {latent}</h1>" in page
        assert f'href="../../../{RUN}.html#named-{LAYER}"' in page  # back to the diff page's named latents
        assert "Not computed for a crosscoder of two models" in page and '<svg class="hist"' in page
        assert re.search(r'class="t[^"]*"[^>]*>#\d+</span>', page)  # the pair's tokenizer is not the workspace's: ids
    r = named[0]
    first = (path.parent / links[0][0]).read_text(encoding="utf-8")
    assert str(escape(r["explanation"])) in first and "top-tokens" in first
    assert f'<span class="k">named as</span> {r["group"]}' in first


def test_old_diff_run_with_run_config_json_still_renders(workspace, tmp_path):
    import shutil

    ws_copy = type(workspace)(tmp_path / "ws")
    shutil.copytree(workspace.root, ws_copy.root, ignore=shutil.ignore_patterns("interp", "sfal", "cooc", "match"))
    to_old_format(ws_copy.root / "diff" / RUN)
    index = run(ReportConfig(max_latent_pages=1), ws_copy, tmp_path / "site")
    assert f'href="diff/{RUN}.html"' in index.read_text(encoding="utf-8")
    path, html = _diff_page(index)
    assert f"diff-{RUN}-layer_divergence.svg" in html and f"Layer {LAYER}: " in html
    assert len(list((path.parent / RUN / f"layer_{LAYER:02d}" / "latents").glob("*.html"))) == 1  # the cap


def test_a_diff_run_without_latent_tables_is_left_out(workspace, tmp_path):
    import shutil

    ws_copy = type(workspace)(tmp_path / "ws")
    shutil.copytree(workspace.root, ws_copy.root, ignore=shutil.ignore_patterns("interp", "sfal", "cooc", "match"))
    (ws_copy.root / "diff" / RUN / "features" / f"layer_{LAYER:02d}" / "latent_table.json").unlink()
    index = run(ReportConfig(max_latent_pages=1), ws_copy, tmp_path / "site")
    assert "stage-diff" not in index.read_text(encoding="utf-8") and not (index.parent / "diff").exists()
