"""Writing a benchmark's results/NAME.md without losing what a person added to it.

A results file ends, after a run, with a "## Notes ..." section written by hand (what ran
beside it, what the numbers mean). Re-running or re-rendering the benchmark rewrites the tables
above it; `write_markdown` keeps the earlier file's notes under the new tables and says so, as
they were written about the earlier numbers and may need reading again.
"""

from __future__ import annotations

from pathlib import Path

NOTES = "## Notes"  # the heading of the hand-written section: "## Notes (by hand)" and the like


def hand_notes(text: str) -> str:
    """`text`'s notes section, from its heading to the end ("" without one)."""
    if text.startswith(NOTES):
        return text
    at = text.find("\n" + NOTES)
    return text[at + 1 :] if at >= 0 else ""


def write_markdown(path: Path, text: str) -> str:
    """Write `text` to `path`, followed by the notes section of the file already there (unless
    `text` has its own); returns the notes kept ("" where none)."""
    path = Path(path)
    notes = "" if hand_notes(text) else hand_notes(path.read_text() if path.is_file() else "")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.rstrip("\n") + "\n\n" + notes if notes else text)
    if notes:
        print(f"{path}: kept its hand-written notes ({NOTES} ...); they were written about the "
              "earlier numbers: read them again")  # fmt: skip
    return notes
