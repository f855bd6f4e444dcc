"""The report in headless Chromium from file:// (make test-browser): no console errors, the latent
table sorts and filters, latent pages show coloured tokens and the histogram, partner links work,
the diff page shows its plots and links its named latents, corpus HTML does not run. Screenshots go
to a tmp dir (or $SAELAB_SCREENSHOTS) to look at."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .diff_run import LAYER, RUN
from .workspace import IMG, SCRIPT

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("SAELAB_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    d = Path(os.environ.get("SAELAB_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture
def page(browser):
    """A page that records console errors and uncaught exceptions in `page.errors`."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.errors = []
    pg.on("console", lambda m: pg.errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    yield pg
    context.close()


def url(site, rel: str) -> str:
    return (site[0].parent / rel).as_uri()


@pytest.mark.parametrize("rel", ["index.html", "narrow/index.html", "wide/index.html", "narrow/latents/0.html",
                                 "match/wide__narrow.html", "sfal/narrow.html", f"diff/{RUN}.html"])
def test_pages_render_without_console_errors(site, page, shots, rel):
    page.goto(url(site, rel))
    page.wait_for_load_state("load")
    page.screenshot(path=str(shots / (rel.replace("/", "_") + ".png")), full_page=True)
    assert page.errors == []
    assert page.locator("h1").first.inner_text().strip() != ""
    for img in page.locator("img").all():  # plots load from file://
        assert img.evaluate("i => i.complete && i.naturalWidth > 0"), img.get_attribute("src")


def first_column(page) -> list[str]:
    return page.locator("#latent-body tr td:first-child").all_inner_texts()


def test_latent_table_sorts_filters_and_paginates(site, page, shots):
    page.goto(url(site, "narrow/index.html"))
    assert page.locator("#count").inner_text() == "24 of 24 latents"
    assert first_column(page)[:3] == ["0", "1", "2"]
    page.locator("#latent-head th", has_text="detection").click()  # first click: best first
    assert first_column(page)[:3] == ["0", "2", "3"]
    page.locator("#latent-head th", has_text="detection").click()
    assert first_column(page)[0] == "11"  # lowest score first; latents without a score stay last
    page.fill("#q", "topic 7")
    assert first_column(page) == ["7"] and page.locator("#count").inner_text() == "1 of 24 latents"
    page.fill("#q", "13")
    assert first_column(page) == ["13"]
    page.fill("#q", "")
    page.screenshot(path=str(shots / "table_sorted.png"))
    assert page.errors == []


def test_latent_page_shows_coloured_tokens_with_values_and_the_histogram(site, page, shots):
    page.goto(url(site, "narrow/latents/2.html"))
    on = page.locator("#top-examples .t.on")
    assert on.count() > 0
    colour = on.first.evaluate("e => getComputedStyle(e).backgroundColor")
    assert colour.startswith("rgba(230, 97, 0") or colour.startswith("rgb(230, 97, 0"), colour
    assert float(on.first.get_attribute("title")) > 0
    bars = page.locator("svg.hist rect")
    assert bars.count() > 0 and max(b.bounding_box()["height"] for b in bars.all()) > 10
    assert "fires on" in page.locator("#density").inner_text()
    page.locator("#top-examples").screenshot(path=str(shots / "latent_examples.png"))


def test_three_clicks_from_best_explanations_to_examples_to_partner(site, page, shots):
    page.goto(url(site, "index.html"))
    page.locator("#stage-interp-narrow a.go").click()  # 1: the table, best explanations first
    page.wait_for_selector("#latent-body tr")
    assert first_column(page)[0] == "0"
    page.locator("#latent-body tr td:first-child a").first.click()  # 2: the best latent's examples
    assert page.locator("h1").inner_text() == "narrow · latent 0"
    assert page.locator("#top-examples .ex").count() > 0
    page.locator("#matches .partner a").click()  # 3: its partner in the other dictionary
    assert page.url.endswith("/wide/latents/0.html")
    assert page.locator("h1").inner_text() == "wide · latent 0"
    page.screenshot(path=str(shots / "partner.png"))
    assert page.errors == []


@pytest.mark.parametrize("rel", ["narrow/latents/0.html", "narrow/index.html", "sfal/narrow.html",
                                 f"diff/{RUN}.html"])
def test_injected_script_in_corpus_and_explanations_does_not_execute(site, page, rel):
    page.goto(url(site, rel))
    page.wait_for_timeout(200)  # an <img onerror> would have fired by now
    assert page.evaluate("typeof window.__xss") == "undefined"
    text = page.locator("body").inner_text()
    assert SCRIPT in text or IMG in text  # shown as text
    assert page.locator("main script, main img[onerror]").count() == 0


def test_front_page_to_the_diff_page_its_plots_and_a_named_latent(site, page, shots):
    page.goto(url(site, "index.html"))
    page.locator(f"#stage-diff-{RUN} a.go").click()  # 1: the diff run's page
    page.wait_for_load_state("load")
    assert page.url.endswith(f"/diff/{RUN}.html")
    imgs = page.locator("main img").all()
    assert len(imgs) >= 3  # layer divergence, Δnorm histogram, categories
    for img in imgs:
        assert img.evaluate("i => i.complete && i.naturalWidth > 0"), img.get_attribute("src")
    assert page.locator("table.tails tr").count() > 1 and page.locator("ul.sentences li").count() > 3
    page.screenshot(path=str(shots / "diff.png"), full_page=True)
    link = page.locator("table.named a").first  # 2: a named latent's page
    latent = link.inner_text()
    link.click()
    page.wait_for_load_state("load")
    assert page.url.endswith(f"/diff/{RUN}/layer_{LAYER:02d}/latents/{latent}.html")
    assert page.locator("h1").inner_text() == f"{RUN} · layer {LAYER} · latent {latent}"
    assert page.locator("#top-examples .ex").count() > 0 and page.locator("svg.hist rect").count() > 0
    page.screenshot(path=str(shots / "diff_latent.png"), full_page=True)
    page.locator(".crumbs a").click()  # 3: back to the diff page
    assert page.url.endswith(f"/diff/{RUN}.html#named-{LAYER}")
    assert page.errors == []
