"""docs/compatibility.md's flag table is the one lpnode.go_flags makes: a flag's effect changed in the code and
not in the docs fails here (regenerate: python -m lpnode.go_flags_doc docs/compatibility.md)."""

from __future__ import annotations

from pathlib import Path

from lpnode.go_flags import FLAGS
from lpnode.go_flags_doc import markdown_table, rewrite

DOC = Path(__file__).parents[2] / "docs" / "compatibility.md"


def test_the_documented_flag_table_is_the_generated_one() -> None:
    text = DOC.read_text()
    assert rewrite(text) == text, "docs/compatibility.md: run python -m lpnode.go_flags_doc docs/compatibility.md"


def test_every_flag_has_one_row() -> None:
    rows = [line for line in markdown_table().splitlines() if line.startswith("| `-")]
    assert len(rows) == len(FLAGS)
    assert "| `-transcoder` | bool | alone: refused; with another role: warned | warned: lpnode does not transcode" in (
        markdown_table()
    )
