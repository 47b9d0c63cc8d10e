"""House style: no file cites a document the repository lacks, and nothing names where it was built.

A user who clones the repository has its files and the papers and library docs they cite, nothing
else: a reference to ``something.md`` must resolve to a file of the repository, and numbered notes
of documents outside it ("pitfall 7", "C23") or the names of such documents must not appear.
"""

import re
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml", ".txt", ".cfg", ".ini", ".sh"}
TEXT_NAMES = {"Makefile"}
GENERATED_DOCUMENTS = {"report.md"}
"""Documents the project writes itself (``sweep.py`` writes ``report.md`` into its output folder)."""

# built from pieces, so this file does not name them itself
ARTEFACT_NAMES = ["task" + ".toml", "instruction" + ".md", "paper" + "-spec", "calibra" + "tion", "lightning" + "-ecosystem"]
NUMBERED_NOTE = re.compile(r"\bpit" r"falls?\s*\d+|\b[CP]\d{1,2}\b", re.IGNORECASE)
MARKDOWN_REFERENCE = re.compile(r"(?<![\w/.:-])([\w./-]*[\w-]\.md)\b")


def tracked_text_files(root: Path) -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=root, capture_output=True, text=True, check=True)
    paths = [root / line for line in listed.stdout.splitlines()]
    return [p for p in paths if p.is_file() and (p.suffix in TEXT_SUFFIXES or p.name in TEXT_NAMES)]


def problems(path: Path, root: Path) -> list[str]:
    """``"file:line: what"`` for every artefact name, numbered note or reference to a missing document."""
    found = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        where = f"{path.relative_to(root)}:{number}"
        found += [f"{where}: names {name!r}" for name in ARTEFACT_NAMES if name in line.lower()]
        found += [f"{where}: cites a numbered note {m.group(0)!r}" for m in NUMBERED_NOTE.finditer(line)]
        for match in MARKDOWN_REFERENCE.finditer(line):
            document = match.group(1)
            if "://" in line[max(0, match.start() - 200) : match.start()] and not document.startswith(("docs/", "./")):
                continue  # part of a URL
            candidates = [root / document, path.parent / document, root / "docs" / document]
            if Path(document).name not in GENERATED_DOCUMENTS and not any(c.is_file() for c in candidates):
                found.append(f"{where}: cites {document!r}, which the repository does not have")
    return found


def test_no_file_cites_a_missing_document_or_names_an_artefact():
    found = [problem for path in tracked_text_files(REPO_ROOT) if path != Path(__file__).resolve() for problem in problems(path, REPO_ROOT)]
    assert found == []


@pytest.mark.parametrize(
    "text, expected",
    [
        ("see docs/design.md for the layout\n", None),
        ("see [the models](models.md#bl-ae)\n", None),
        ("see metrics.md §5.2\n", "cites 'metrics.md'"),  # no metrics.md beside the file nor at the root
        ("see docs/nowhere.md\n", "cites 'docs/nowhere.md'"),
        ("the CLI (C23) says\n", "numbered note 'C23'"),
        ("held outside (pitfall 18)\n", "numbered note"),
        ("a " + "task" + ".toml file\n", "names"),
        ("from the " + "paper" + "-spec\n", "names"),
    ],
)
def test_the_check_catches_planted_violations(tmp_path, text, expected):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "design.md").write_text("# design\n")
    (tmp_path / "docs" / "models.md").write_text("# models\n")
    source = tmp_path / "pkg" / "module.py"
    source.parent.mkdir()
    source.write_text(text)
    found = problems(source, tmp_path)
    if expected is None:
        assert found == []
    else:
        assert len(found) == 1 and expected in found[0]
