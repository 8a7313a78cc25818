"""The user docs: the README's quickstart runs as shown, and docs cite only what users have."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

from click.testing import CliRunner

from leadlang.cli import main

ROOT = Path(__file__).resolve().parent.parent


def _blocks(text: str) -> list[str]:
    """The fenced code blocks of a Markdown text, dedented."""
    return [
        textwrap.dedent(block)
        for block in re.findall(r"^[ ]*```[a-z]*\n(.*?)^[ ]*```", text, re.S | re.M)
    ]


def test_the_readme_quickstart_runs_as_shown(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quickstart = readme.split("## Write your own in five minutes", 1)[1].split("\nNext:", 1)[0]
    script, events, effects = _blocks(quickstart)
    (tmp_path / "welcome.lead").write_text(script)
    (tmp_path / "events.jsonl").write_text(events)
    lead, log = str(tmp_path / "welcome.lead"), str(tmp_path / "events.jsonl")
    checked = CliRunner().invoke(main, ["check", lead])
    assert checked.exit_code == 0
    assert "`checked 1 file, 1 flow: no problems`" in quickstart
    assert checked.output == "checked 1 file, 1 flow: no problems\n"
    simulated = CliRunner().invoke(main, ["simulate", lead, "--events", log, "--format", "text"])
    assert simulated.exit_code == 0
    assert simulated.output == effects


def test_the_readme_explains_its_one_line_flow() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    line = 'when score > 50 and propensity < 60% then send "deal" ; wait 24h ; check opened else send "final"'
    assert line in readme
    explanation = readme.split(line, 1)[1].split("##", 1)[0]
    for word in ("**when**", "**send**", "**wait**", "**check**", "**else**"):
        assert word in explanation


def test_user_docs_cite_the_reference_not_internal_files() -> None:
    for path in [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text(encoding="utf-8")
        for internal in ("LANGUAGE.md", "RUNTIME.md"):  # (the spec: users never see it)
            assert internal not in text, path.name


def test_reference_links_point_at_existing_sections() -> None:
    docs = ROOT / "docs"
    reference = (docs / "reference.md").read_text(encoding="utf-8")
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", heading.lower()).replace(" ", "-")
        for heading in re.findall(r"^#+ (.+)$", reference, re.M)
    }
    for path in docs.glob("*.md"):
        for anchor in re.findall(r"reference\.md#([a-z0-9-]+)", path.read_text(encoding="utf-8")):
            assert anchor in anchors, (path.name, anchor)
    for anchor in re.findall(r"\]\(#([a-z0-9-]+)\)", reference):
        assert anchor in anchors, anchor
