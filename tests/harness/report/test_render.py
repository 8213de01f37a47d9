"""The HTML page: one self-contained file with every table row and the plots inline."""

import base64
import json
from html.parser import HTMLParser

from harness.report import build_report
from harness.store import read_rows
from tests.harness.report.golden_run import PNG


class _Tables(HTMLParser):
    """Cell texts of every table row, and every <img> src."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.images: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.images.append(dict(attrs)["src"])

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.rows[-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def test_html_is_one_self_contained_page_with_every_table_row_and_the_plots(golden_run):
    run, paths = golden_run
    page = paths["report.html"].read_text(encoding="utf-8")
    parser = _Tables()
    parser.feed(page)
    parser.close()
    report = build_report(read_rows(run / "rows.jsonl"), json.loads((run / "space.json").read_text()))
    for view in ("leaderboard", "thesis", "literature"):
        table = report.views[view]
        assert list(table.columns) in parser.rows
        for row in table.itertuples(index=False):
            assert [str(v) for v in row] in parser.rows
    assert ["failed", "vit_mnist", "W4A4", "percentile", "plain", "1",
            "FloatingPointError: loss is nan at step 3"] in parser.rows
    assert ["missing", "minilm_rt", "W8A8", "percentile", "arnq", "1", "no row"] in parser.rows
    assert len(parser.images) == 4
    for src in parser.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG)
    assert "<style>" in page and "<script>" in page and "89abcdef0123456789abcdef" in page  # provenance header
    assert "http://" not in page and "https://" not in page  # no network assets
