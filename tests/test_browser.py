"""The rendered book, as a reader sees it: every page of book/_build/html in headless Chromium.

``make browser-test`` (run by ``.ci/run`` after ``make book``) opens each page at 1280 px wide, saves a
full-page screenshot to ``book/_build/screenshots/<page>.png`` and fails, naming the page and the
problem, on: an output area longer than 60 lines; a warning, traceback or stderr box; display math or
a table reaching past the content column outside a scroll box; a MathJax error; an image that did not
load; raw pipe-table text; a visible papermill-injected cell; on the scorecard, a Status column outside
the content column; printed output wider than its box; a table cell whose text overflows it or runs
into its neighbour's; an absolute build path (/tmp/..., /home/...) in the text; a collapsed exercise
solution whose output shows; two chapters with one number in the sidebar; a Chinese character drawn
with the fallback glyph. Overlapping tick labels are caught where figures are drawn
(bertrepro.figures warns, and a warning is a stderr box here). All problems of all pages are
collected, then reported at once.

Without a built book (a plain ``make test``) the book test is skipped; with
``BERTREPRO_BROWSER_TEST=require`` (``make browser-test``) a missing book, browser or library fails.
The unit tests below prove each check can fail, on small synthetic pages.

Run by hand: ``python tests/test_browser.py [HTML_DIR]`` prints the problems, one per line.
"""
from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HTML_DIR = ROOT / "book" / "_build" / "html"
SHOTS_DIR = ROOT / "book" / "_build" / "screenshots"
REQUIRE = os.environ.get("BERTREPRO_BROWSER_TEST", "") == "require"
# Debian's chromium, else a Google Chrome already installed (as the Makefile's CHROMIUM).
CHROMIUM = os.environ.get("BERTREPRO_CHROMIUM") or next(
    (p for p in ("/usr/bin/chromium", "/usr/bin/google-chrome", "/usr/bin/google-chrome-stable") if Path(p).exists()),
    "/usr/bin/chromium")
WIDTH, HEIGHT = 1280, 900
MAX_OUTPUT_LINES = 60
MIN_CELL_GAP = 4  # px between the text of two adjacent table cells
# Chromium as root in a container, with nothing that reaches for the network.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]

# Runs in the page; returns a list of problems (strings). The content column is the article's
# content box. An element is inside a scroll box when an ancestor (below the article) has
# overflow-x auto or scroll; one with overflow-x hidden/clip cuts it off instead.
CHECK_JS = r"""
async ({maxLines, scorecard, minGap}) => {
  const problems = [];
  const sleep = (ms) => new Promise(r => setTimeout(r, ms));
  const displayMath = () => Array.from(document.querySelectorAll("div.math"));
  // MathJax loads asynchronously: wait until it has typeset the page (at most 15 s).
  const mathjaxScript = Array.from(document.scripts).some(s => /mathjax/i.test(s.src || ""));
  if (displayMath().length && (mathjaxScript || window.MathJax)) {
    const t0 = Date.now();
    while (Date.now() - t0 < 15000 && !(window.MathJax && MathJax.startup && MathJax.startup.promise)) await sleep(100);
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
      try { await MathJax.startup.promise; } catch (e) { problems.push(`MathJax failed: ${e}`); }
    }
  }
  const article = document.querySelector("article.bd-article") || document.querySelector("main") || document.body;
  const acs = getComputedStyle(article), ar = article.getBoundingClientRect();
  const colLeft = ar.left + parseFloat(acs.paddingLeft), colRight = ar.right - parseFloat(acs.paddingRight);
  const TOL = 2;
  const snip = (el) => (el.textContent || "").replace(/\s+/g, " ").trim().slice(0, 70);
  const px = (v) => Math.round(v);
  const visible = (el) => { const r = el.getBoundingClientRect(); return r.width > 0 && r.height > 0; };

  // Is `el` (measured by `m`) within the column, or clipped by a scroll box that is?
  const checkFits = (el, m, what) => {
    const r = m.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) return;
    for (let a = m.parentElement; a && a !== article && a !== document.body; a = a.parentElement) {
      const ox = getComputedStyle(a).overflowX;
      if (ox === "auto" || ox === "scroll") {
        const b = a.getBoundingClientRect();
        if (b.right > colRight + TOL || b.left < colLeft - TOL)
          problems.push(`${what} is in a scroll box that itself extends past the content column ` +
                        `(box ${px(b.left)}-${px(b.right)} px, column ${px(colLeft)}-${px(colRight)} px): "${snip(el)}"`);
        return;
      }
      if (ox === "hidden" || ox === "clip") {
        const b = a.getBoundingClientRect();
        if (r.right > b.right + TOL || r.left < b.left - TOL)
          problems.push(`${what} is cut off (overflow hidden, ${px(r.width)} px wide in a ${px(b.width)} px box): "${snip(el)}"`);
        return;
      }
    }
    if (r.right > colRight + TOL || r.left < colLeft - TOL)
      problems.push(`${what} extends past the content column outside a scroll box ` +
                    `(${px(r.left)}-${px(r.right)} px, column ${px(colLeft)}-${px(colRight)} px): "${snip(el)}"`);
  };

  // 1. Output areas longer than maxLines.
  // A line is a line of plain-text output, a table row, or a block (paragraph, list item, heading,
  // image) of rich output: a six-row table is six lines, not one per cell.
  const outputLines = el => {
    let n = 0;
    el.querySelectorAll("pre").forEach(pre => {
      n += (pre.textContent || "").replace(/\n+$/, "").split("\n").length;
    });
    n += el.querySelectorAll("tr").length;
    el.querySelectorAll("p, li, h1, h2, h3, h4, h5, h6, img").forEach(b => {
      if (!b.closest("pre, table")) n += 1;
    });
    return n;
  };
  document.querySelectorAll(".cell_output").forEach((el, i) => {
    const lines = outputLines(el);
    if (lines > maxLines) problems.push(`output area ${i + 1} has ${lines} lines (limit ${maxLines}): "${snip(el)}"`);
  });

  // 2. Warnings, tracebacks, stderr boxes.
  document.querySelectorAll(".output.stderr, .output.traceback").forEach(el => {
    problems.push(`${el.classList.contains("stderr") ? "stderr" : "traceback"} output box: "${snip(el)}"`);
  });
  const clone = article.cloneNode(true);
  clone.querySelectorAll(".cell_input, script, style, mjx-assistive-mml").forEach(e => e.remove());
  const text = clone.textContent || "";
  const warn = text.match(/\b\w*Warning:[^\n]{0,80}/);
  if (warn) problems.push(`warning in the page text: "${warn[0].trim()}"`);
  const tb = text.match(/Traceback \(most recent call last\)|^Traceback\b/m);
  if (tb) problems.push(`traceback in the page text: "${text.slice(tb.index, tb.index + 80).replace(/\s+/g, " ")}"`);

  // 3. Display math and tables inside the column (or inside a scroll box that is).
  displayMath().forEach(el => {
    const mjx = el.querySelector("mjx-container");
    if (!mjx) { problems.push(`display math not rendered by MathJax: "${snip(el)}"`); return; }
    const inner = mjx.querySelector("mjx-math, svg") || mjx;
    checkFits(el, inner, "display math");
  });
  document.querySelectorAll("mjx-container[display='true']").forEach(mjx => {
    if (mjx.closest("div.math")) return;
    checkFits(mjx, mjx.querySelector("mjx-math, svg") || mjx, "display math");
  });
  article.querySelectorAll("table").forEach(el => {
    if (!visible(el)) return;
    checkFits(el, el, "table");
  });

  // 4. MathJax errors.
  document.querySelectorAll("mjx-merror, .MathJax_Error, [data-mjx-error]").forEach(el => {
    problems.push(`MathJax error: "${el.getAttribute("data-mjx-error") || snip(el)}"`);
  });

  // 5. Images that did not load.
  document.querySelectorAll("img").forEach(img => {
    if (!img.complete || img.naturalWidth === 0)
      problems.push(`image did not load: ${img.getAttribute("src") || "(no src)"}`);
  });

  // 6. Raw pipe-table text (Markdown that was printed instead of rendered).
  const pipe = text.match(/\|\s*:?-{3,}:?\s*\|/);
  if (pipe) problems.push(`raw pipe-table text: "${text.slice(Math.max(0, pipe.index - 30), pipe.index + 40).replace(/\s+/g, " ")}"`);

  // 7. A visible papermill-injected parameters cell.
  document.querySelectorAll(".tag_injected-parameters").forEach(el => {
    if (visible(el)) problems.push(`visible papermill-injected cell: "${snip(el)}"`);
  });
  document.querySelectorAll(".cell_input").forEach(el => {
    if (visible(el) && !el.closest(".tag_injected-parameters") && /^\s*# Parameters\b/.test(el.textContent || ""))
      problems.push(`visible papermill-injected cell: "${snip(el)}"`);
  });

  // 9. Printed output wider than its box: cut at the right edge (or hidden in a scroll) instead of wrapping.
  document.querySelectorAll(".cell_output pre, .cell_output .output.stream, .cell_output .output.text_plain").forEach(el => {
    if (!visible(el) || el.closest("table") || el.querySelector("table")) return;
    const hidden = el.scrollWidth - el.clientWidth;
    if (hidden > TOL)
      problems.push(`output text is wider than its box (${px(hidden)} px past the right edge): "${snip(el)}"`);
    else checkFits(el, el, "output");
  });

  // 10. Table cells: text that overflows its cell, or runs into the next cell's text.
  const textBox = (cell) => {
    const range = document.createRange();
    range.selectNodeContents(cell);
    const rects = Array.from(range.getClientRects()).filter(r => r.width > 0);
    if (!rects.length) return null;
    return {left: Math.min(...rects.map(r => r.left)), right: Math.max(...rects.map(r => r.right))};
  };
  article.querySelectorAll("table").forEach(table => {
    if (!visible(table)) return;
    let reported = 0;
    for (const row of table.rows) {
      let prev = null;
      for (const cell of row.cells) {
        const t = textBox(cell), c = cell.getBoundingClientRect();
        if (t && (t.right > c.right + 1 || t.left < c.left - 1)) {
          if (reported++ < 3)
            problems.push(`table cell text overflows its cell (${px(t.right - t.left)} px of text in a ${px(c.width)} px cell): "${snip(cell)}"`);
          prev = null;  // its neighbour's text is covered by this problem
          continue;
        }
        if (t && prev && t.left - prev.t.right < minGap && reported++ < 3)
          problems.push(`table cells' text touches (${px(t.left - prev.t.right)} px apart, ${minGap} needed): ` +
                        `"${snip(prev.cell)}" | "${snip(cell)}"`);
        if (t) prev = {t, cell};
      }
    }
  });

  // 11. Absolute build paths (a temporary folder, a home directory) in the page's text.
  const buildPath = text.match(/(?:^|[\s"'(=:])((?:\/tmp|\/home|\/root|\/work|\/Users|\/private\/var|\/var\/folders)\/[^\s"')]*)/);
  if (buildPath) problems.push(`absolute build path in the page text: "${buildPath[1].slice(0, 80)}"`);

  // 12. A collapsed exercise solution whose output shows before the reader expands it.
  document.querySelectorAll(".cell").forEach(cell => {
    const section = cell.closest("section");
    const heading = section && section.querySelector("h1, h2, h3, h4");
    if (!heading || !/exercise/i.test(heading.textContent || "")) return;
    const closed = Array.from(cell.querySelectorAll("details")).some(d => !d.open && d.querySelector(".cell_input"));
    if (!closed) return;
    cell.querySelectorAll(".cell_output").forEach(out => {
      if (visible(out) && !out.closest("details:not([open])"))
        problems.push(`collapsed solution cell shows its output: "${snip(out)}"`);
    });
  });

  // 13. Two chapters with one number in the sidebar ("11 · Ablations" and "11 · Spans").
  const numbered = {};
  document.querySelectorAll(".bd-sidebar-primary a, nav.bd-links a").forEach(a => {
    const m = (a.textContent || "").trim().match(/^(\d{1,2})\s*·/);
    if (!m) return;
    (numbered[m[1]] = numbered[m[1]] || new Set()).add((a.textContent || "").trim());
  });
  for (const [n, titles] of Object.entries(numbered))
    if (titles.size > 1) problems.push(`two chapters numbered ${n} in the sidebar: ${Array.from(titles).join(" / ")}`);

  // 14. Chinese text drawn with the fallback glyph (an empty box): a CJK character whose drawing in
  // its element's font equals the drawing of a code point no font has.
  const cjk = /[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u{20000}-\u{3134f}]/gu;
  const canvas = document.createElement("canvas");
  canvas.width = 64; canvas.height = 64;
  const ctx = canvas.getContext("2d", {willReadFrequently: true});
  const draw = (ch, font) => {
    ctx.clearRect(0, 0, 64, 64); ctx.font = `40px ${font}`; ctx.textBaseline = "top"; ctx.fillText(ch, 4, 4);
    return ctx.getImageData(0, 0, 64, 64).data.join(",");
  };
  const seen = new Set();
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const chars = (node.textContent || "").match(cjk);
    if (!chars || !node.parentElement || !visible(node.parentElement)) continue;
    const font = getComputedStyle(node.parentElement).fontFamily;
    const tofu = draw("\u{10FFFD}", font);
    for (const ch of new Set(chars)) {
      if (seen.has(ch + font)) continue;
      seen.add(ch + font);
      if (draw(ch, font) === tofu)
        problems.push(`Chinese character ${ch} drawn with the fallback glyph (no CJK font in "${font.slice(0, 60)}"): "${snip(node.parentElement)}"`);
    }
  }

  // 8. The scorecard's important columns inside the column.
  if (scorecard) {
    article.querySelectorAll("th").forEach(th => {
      const name = (th.textContent || "").trim();
      if (!["Status", "Ours"].includes(name) || !visible(th)) return;
      const r = th.getBoundingClientRect();
      if (r.right > colRight + TOL || r.left < colLeft - TOL)
        problems.push(`scorecard: the ${name} column is outside the content column ` +
                      `(${px(r.left)}-${px(r.right)} px, column ${px(colLeft)}-${px(colRight)} px)`);
    });
  }
  return problems;
}
"""


def _missing_tools() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -r requirements.txt)"
    if not Path(CHROMIUM).exists() and shutil.which(CHROMIUM) is None:
        return f"Chromium not found at {CHROMIUM} (make browser-deps installs it)"
    return None


def _skip_or_fail(reason: str) -> None:
    if REQUIRE:
        pytest.fail(f"{reason} (BERTREPRO_BROWSER_TEST=require)")
    pytest.skip(reason)


def launch(pw):
    """Headless Chromium with a fresh profile (Playwright makes a temporary user-data-dir)."""
    return pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


def check_page(page, url: str, scorecard: bool = False) -> list[str]:
    """Open ``url`` and return its problems (an empty list when the page is clean)."""
    page.goto(url, wait_until="load")
    return page.evaluate(CHECK_JS, {"maxLines": MAX_OUTPUT_LINES, "scorecard": scorecard, "minGap": MIN_CELL_GAP})


def book_pages(html_dir: Path) -> list[Path]:
    """Every page of the book: the top-level ``*.html`` files, less redirects (``index.html`` -> the intro)."""
    return sorted(p for p in html_dir.glob("*.html")
                  if 'http-equiv="refresh"' not in p.read_text(encoding="utf-8", errors="replace")[:2000].lower())


def check_book(html_dir: Path = HTML_DIR, shots_dir: Path = SHOTS_DIR) -> tuple[list[str], float]:
    """Check every page, save a full-page screenshot of each; return (``"page.png: problem"`` lines, seconds)."""
    from playwright.sync_api import sync_playwright

    start = time.perf_counter()
    shots_dir.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    with sync_playwright() as pw:
        browser = launch(pw)
        try:
            for html in book_pages(html_dir):
                shot = f"{html.stem}.png"
                page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
                try:
                    problems = check_page(page, html.resolve().as_uri(), scorecard=html.stem == "scorecard")
                    page.screenshot(path=str(shots_dir / shot), full_page=True)
                except Exception as e:  # a page that cannot be opened is a problem of that page
                    problems = [f"could not be checked: {type(e).__name__}: {str(e).splitlines()[0]}"]
                finally:
                    page.close()
                failures += [f"{shot}: {p}" for p in problems]
        finally:
            browser.close()
    return failures, time.perf_counter() - start


@pytest.fixture(scope="module")
def browser():
    reason = _missing_tools()
    if reason:
        _skip_or_fail(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = launch(pw)
        yield b
        b.close()


def test_rendered_book():
    """Every page of the built book passes every check (skipped when the book is not built)."""
    if not (HTML_DIR / "index.html").is_file():
        _skip_or_fail(f"{HTML_DIR} has no built book (make book)")
    reason = _missing_tools()
    if reason:
        _skip_or_fail(reason)
    failures, seconds = check_book()
    n = len(book_pages(HTML_DIR))
    assert not failures, (f"{len(failures)} problem(s) on {n} page(s) of {HTML_DIR} "
                          f"(screenshots in {SHOTS_DIR}, {seconds:.0f} s):\n" + "\n".join(failures))


# ------------------------------------------------------------------------------------------------
# The checks themselves, on synthetic pages shaped like the theme's (an article 760 px wide).
# ------------------------------------------------------------------------------------------------

PAGE = """<!DOCTYPE html><html><head><meta charset="utf-8"><style>
body {{ margin: 0; }} main {{ display: flex; width: 1280px; }}
nav {{ width: 300px; flex: none; }} article.bd-article {{ width: 760px; padding: 0 20px; flex: none; }}
</style></head><body><main><nav>toc</nav><article class="bd-article">{body}</article></main></body></html>"""

PNG = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")
WIDE_MATH = '<mjx-container display="true"><mjx-math style="display:inline-block;width:1400px">x</mjx-math></mjx-container>'
WIDE_TABLE = "<table><tr>" + "".join(f"<td>column_{i}_value</td>" for i in range(60)) + "</tr></table>"


def _problems(browser, tmp_path, body: str, scorecard: bool = False) -> list[str]:
    path = tmp_path / "page.html"
    path.write_text(PAGE.format(body=body), encoding="utf-8")
    page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
    try:
        return check_page(page, path.as_uri(), scorecard=scorecard)
    finally:
        page.close()


def test_clean_page_passes(browser, tmp_path):
    body = (f'<p>Text.</p><div class="math" style="overflow-x:auto">{WIDE_MATH}</div>'
            f'<div style="overflow-x:auto">{WIDE_TABLE}</div><img src="{PNG}">'
            '<div class="cell tag_parameters"><div class="cell_input"><pre>profile = None</pre></div>'
            '<div class="cell_output"><pre>' + "\n".join(f"line {i}" for i in range(MAX_OUTPUT_LINES)) + "</pre></div></div>"
            '<table><tr><th>Claim</th><th>Ours</th><th>Status</th></tr><tr><td>a</td><td>1</td><td>match</td></tr></table>')
    assert _problems(browser, tmp_path, body, scorecard=True) == []


def test_long_output_fails(browser, tmp_path):
    body = '<div class="cell_output"><pre>' + "\n".join(f"step {i}" for i in range(100)) + "</pre></div>"
    assert [p for p in _problems(browser, tmp_path, body) if "output area 1 has 100 lines" in p]


def test_overflowing_equation_fails(browser, tmp_path):
    probs = _problems(browser, tmp_path, f'<div class="math">{WIDE_MATH}</div>')
    assert len(probs) == 1 and "display math extends past the content column" in probs[0]


def test_cut_off_equation_fails(browser, tmp_path):
    probs = _problems(browser, tmp_path, f'<div class="math" style="overflow:hidden">{WIDE_MATH}</div>')
    assert len(probs) == 1 and "display math is cut off" in probs[0]


def test_wide_table_fails(browser, tmp_path):
    probs = _problems(browser, tmp_path, WIDE_TABLE)
    assert len(probs) == 1 and probs[0].startswith("table extends past the content column")


def test_pipe_table_fails(browser, tmp_path):
    probs = _problems(browser, tmp_path, '<div class="cell_output"><pre>| a | b |\n| --- | --- |\n| 1 | 2 |</pre></div>')
    assert len(probs) == 1 and probs[0].startswith("raw pipe-table text")


def test_broken_image_fails(browser, tmp_path):
    probs = _problems(browser, tmp_path, '<img src="no_such_figure.png">')
    assert probs == ["image did not load: no_such_figure.png"]


def test_warning_and_stderr_fail(browser, tmp_path):
    body = ('<div class="cell_output"><div class="output stderr"><pre>/x/tqdm/auto.py:21: TqdmWarning: '
            'IProgress not found.</pre></div></div>'
            '<div class="cell_output"><pre>Traceback (most recent call last):\n  File "x"</pre></div>')
    probs = _problems(browser, tmp_path, body)
    assert any(p.startswith("stderr output box") for p in probs)
    assert any(p.startswith("warning in the page text") and "TqdmWarning" in p for p in probs)
    assert any(p.startswith("traceback in the page text") for p in probs)


def test_mathjax_error_fails(browser, tmp_path):
    body = '<div class="math"><mjx-container display="true"><mjx-merror data-mjx-error="Undefined control sequence \\foo">\\foo</mjx-merror></mjx-container></div>'
    probs = _problems(browser, tmp_path, body)
    assert any("MathJax error" in p and "Undefined control sequence" in p for p in probs)


def test_unrendered_math_fails(browser, tmp_path):
    probs = _problems(browser, tmp_path, '<div class="math">\\[ x^2 \\]</div>')
    assert any(p.startswith("display math not rendered") for p in probs)


def test_injected_parameters_cell_fails(browser, tmp_path):
    body = ('<div class="cell tag_injected-parameters"><div class="cell_input"><pre># Parameters\n'
            'profile = "smoke"</pre></div></div>')
    probs = _problems(browser, tmp_path, body)
    assert probs and all(p.startswith("visible papermill-injected cell") for p in probs)
    hidden = body.replace('class="cell tag_injected-parameters"', 'class="cell tag_injected-parameters" style="display:none"')
    assert _problems(browser, tmp_path, hidden) == []


def test_scorecard_status_column_outside_fails(browser, tmp_path):
    table = ('<div style="overflow-x:auto"><table><tr><th style="min-width:900px">Claim</th><th>Ours</th>'
             '<th>Status</th></tr><tr><td>a</td><td>1</td><td>match</td></tr></table></div>')
    probs = _problems(browser, tmp_path, table, scorecard=True)
    assert any("the Status column is outside the content column" in p for p in probs)
    # In a scroll box the table itself is fine on any other page.
    assert _problems(browser, tmp_path, table, scorecard=False) == []


def test_output_wider_than_the_column_fails(browser, tmp_path):
    line = "step 1: " + "loss 3.1415 " * 40
    probs = _problems(browser, tmp_path, f'<div class="cell_output"><pre style="overflow-x:auto">{line}</pre></div>')
    assert len(probs) == 1 and probs[0].startswith("output text is wider than its box"), probs
    cut = _problems(browser, tmp_path, f'<div class="cell_output"><pre style="overflow:hidden">{line}</pre></div>')
    assert len(cut) == 1 and cut[0].startswith("output text is wider than its box"), cut
    wrapped = f'<div class="cell_output"><pre style="white-space:pre-wrap">{line}</pre></div>'
    assert _problems(browser, tmp_path, wrapped) == []


def test_table_cells_that_touch_or_overflow_fail(browser, tmp_path):
    # chapter 05's old DataFrame: right-aligned numbers with no padding read "1,049,600335,141,888"
    row = '<td style="padding:0;text-align:right">1,049,600</td><td style="padding:0;text-align:right">335,141,888</td>'
    probs = _problems(browser, tmp_path, f'<table style="border-collapse:collapse"><tr>{row}</tr></table>')
    assert len(probs) == 1 and probs[0].startswith("table cells' text touches") and "1,049,600" in probs[0], probs
    padded = row.replace("padding:0", "padding:0 0.5em")
    assert _problems(browser, tmp_path, f'<table style="border-collapse:collapse"><tr>{padded}</tr></table>') == []
    # a budget table cut with an ellipsis: the text is wider than its cell
    cut = ('<table style="table-layout:fixed;width:300px"><tr><td style="width:80px;overflow:hidden;white-space:nowrap;'
           'text-overflow:ellipsis">max_steps_per_fine_tuning_run</td><td>1,200</td></tr></table>')
    probs = _problems(browser, tmp_path, cut)
    assert len(probs) == 1 and probs[0].startswith("table cell text overflows its cell"), probs


def test_build_path_fails(browser, tmp_path):
    probs = _problems(browser, tmp_path, '<div class="cell_output"><pre>saved to /tmp/tmpab12/work/model.pt</pre></div>')
    assert probs == ['absolute build path in the page text: "/tmp/tmpab12/work/model.pt"'], probs
    assert _problems(browser, tmp_path, '<p>See https://example.org/tmp/page and book/_build/cache.</p>') == []


EXERCISE = ('<section><h2>Exercises</h2><p>1. Count the heads.</p><div class="cell {tag}">{body}</div></section>')
SOLUTION_INPUT = '<div class="cell_input"><pre>print(12)</pre></div>'
SOLUTION_OUTPUT = '<div class="cell_output"><pre>12</pre></div>'


def test_collapsed_solution_with_visible_output_fails(browser, tmp_path):
    # hide-input: only the code is collapsed, the answer shows under it
    body = f'<details class="hide above-input"><summary>Show code</summary>{SOLUTION_INPUT}</details>{SOLUTION_OUTPUT}'
    probs = _problems(browser, tmp_path, EXERCISE.format(tag="tag_hide-input", body=body))
    assert probs == ['collapsed solution cell shows its output: "12"'], probs
    # hide-cell: code and answer in one collapsed box
    body = f'<details class="hide above-input"><summary>Show content</summary>{SOLUTION_INPUT}{SOLUTION_OUTPUT}</details>'
    assert _problems(browser, tmp_path, EXERCISE.format(tag="tag_hide-cell", body=body)) == []


def test_two_chapters_with_one_number_fail(browser, tmp_path):
    nav = '<nav class="bd-links"><a href="a.html">11 · Spans, tags and choices</a><a href="b.html">{} · Ablations</a></nav>'
    probs = _problems(browser, tmp_path, nav.format("11"))
    assert probs == ["two chapters numbered 11 in the sidebar: 11 · Spans, tags and choices / 11 · Ablations"], probs
    assert _problems(browser, tmp_path, nav.format("12")) == []


def test_cjk_fallback_glyph_fails(browser, tmp_path):
    """A character no installed font has is drawn as the fallback box; with fonts-noto-cjk the
    glossary's Chinese is drawn (make browser-deps installs it)."""
    probs = _problems(browser, tmp_path, "<p>Extension G: \U00030000</p>")
    assert len(probs) == 1 and probs[0].startswith("Chinese character \U00030000 drawn with the fallback glyph"), probs
    assert _problems(browser, tmp_path, "<p>自注意力机制 (self-attention)</p>") == []


def test_book_css_lists_cjk_fonts_after_latin_ones():
    css = (ROOT / "book" / "_static" / "bertrepro.css").read_text(encoding="utf-8")
    stack = css[css.index("--pst-font-family-base:"):].split(";")[0]
    fonts = [f.strip().strip('"') for f in stack.split(":", 1)[1].split(",")]
    cjk = [fonts.index(f) for f in ("Noto Sans CJK SC", "PingFang SC", "Microsoft YaHei")]
    assert cjk == sorted(cjk) and min(cjk) > fonts.index("Helvetica Neue") and fonts[-1] == "sans-serif", fonts


def test_ci_runs_the_browser_test_after_the_book():
    import re

    import yaml

    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert ci.index("make browser-deps") < ci.index("make test") < ci.index("make book PROFILE=cpu") < ci.index("make browser-test")
    make = (ROOT / "Makefile").read_text(encoding="utf-8")
    target = re.search(r"^browser-test:.*\n((?:\t.*\n)+)", make, flags=re.M)
    assert target and "BERTREPRO_BROWSER_TEST=require" in target.group(1) and "tests/test_browser.py" in target.group(1)
    deps = re.search(r"^browser-deps:.*\n((?:\t.*\n)+)", make, flags=re.M)
    assert deps and "apt-get install" in deps.group(1) and "chromium" in deps.group(1)
    assert "fonts-noto-cjk" in deps.group(1), "the screenshots CI keeps show Chinese characters"
    wf = yaml.safe_load((ROOT / ".github" / "workflows" / "book.yml").read_text(encoding="utf-8"))
    paths = [s.get("with", {}).get("path") for s in wf["jobs"]["cpu"]["steps"]]
    assert "book/_build/screenshots" in paths, "CI uploads the screenshots"


if __name__ == "__main__":
    html_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else HTML_DIR
    found, secs = check_book(html_dir, html_dir.parent / "screenshots")
    print("\n".join(found) if found else "no problems")
    print(f"# {len(found)} problem(s) on {len(book_pages(html_dir))} page(s), {secs:.1f} s", file=sys.stderr)
    sys.exit(1 if found else 0)
