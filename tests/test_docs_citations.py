"""Code and docs cite only what ships in the repository or is public.

Two checks over every tracked file (``git ls-files``):

- no citation of a file outside the repository: the design notes (``DESIGN.md``), the
  research notes that stood beside the project (``shared/reference``, the operations guide's
  local copy, the anchors, Fly, k6 and upstream reports) or their section numbers;
- every ``docs/NAME.md#anchor`` (and, inside ``docs/``, every relative ``NAME.md#anchor`` or
  ``#anchor`` link) names a heading that exists in that document, using GitHub's heading
  slugs.

The first check runs twice: once over everything but ``perflib/`` and once over
``perflib/``, so a failure says which part still cites outside files.
"""

from __future__ import annotations

import re
import subprocess
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SELF = Path(__file__).resolve().relative_to(ROOT).as_posix()

#: Citations of files that do not ship. Each pattern names one kind of outside source.
FORBIDDEN: dict[str, re.Pattern[str]] = {
    "DESIGN.md": re.compile(r"DESIGN\.md"),
    "shared/reference": re.compile(r"shared/reference"),
    "the guide's local copy": re.compile(r"performance-guide\.md"),
    "the anchors notes": re.compile(r"anchors-sizing-stats-notebooks|\banchors? doc\b"),
    "the upstream report": re.compile(r"c2s-service-and-upstreams|\breference report\b"),
    "the guest notes": re.compile(r"linux-guest-vm\.md"),
    # fly.md / k6.md by section: the research notes (docs/fly.md has no numbered sections)
    "fly.md/k6.md §": re.compile(
        r"(?<!docs/)\b(?:fly|k6)\.md`{0,2}\s*(?:§|section\s+\d)|(?<![\w.-])reference/(?:fly|k6)\.md"
    ),
    "a reference's section": re.compile(r"\b(?:reference|ref|guide)\s+§\s*\d", re.I),
}


@cache
def tracked_texts() -> dict[str, str]:
    """Every tracked text file (binary files and this test left out), by repository path."""
    names = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    texts: dict[str, str] = {}
    for raw in names:
        name = raw.decode()
        path = ROOT / name
        if not name or name == SELF or not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue
        try:
            texts[name] = data.decode("utf-8")
        except UnicodeDecodeError:
            continue
    return texts


def outside_citations(texts: dict[str, str]) -> list[str]:
    """``path:line: [kind] text`` for every line that cites a file outside the repository."""
    hits = []
    for name, text in sorted(texts.items()):
        for lineno, line in enumerate(text.splitlines(), 1):
            for kind, pattern in FORBIDDEN.items():
                if pattern.search(line):
                    hits.append(f"{name}:{lineno}: [{kind}] {line.strip()[:120]}")
                    break
    return hits


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading: link text kept, lower case, punctuation dropped,
    spaces to hyphens (github/cmark-gfm's ``anchor`` rule; the same rule as
    ``github-slugger``)."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # [text](url) -> text
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@cache
def anchors_of(doc: str) -> frozenset[str]:
    """The heading anchors of a markdown file (fenced code skipped, duplicates numbered)."""
    seen: dict[str, int] = {}
    fenced = False
    for line in (ROOT / doc).read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
            continue
        m = None if fenced else re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = github_slug(m.group(1))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        if n:
            seen[f"{slug}-{n}"] = 1
    return frozenset(seen)


#: ``docs/NAME.md#anchor`` anywhere (not inside a longer path or URL).
DOCS_REF = re.compile(r"(?<![\w./-])(docs/[\w.-]+\.md)#([\w-]+)")
#: Inside docs/: markdown links ``](NAME.md#anchor)`` and ``](#anchor)``.
REL_LINK = re.compile(r"\]\(([\w.-]+\.md)?#([\w-]+)\)")


def cited_anchors(texts: dict[str, str]) -> list[tuple[str, str, str]]:
    """(where, doc, anchor) for every cited docs anchor."""
    found = []
    for name, text in sorted(texts.items()):
        for lineno, line in enumerate(text.splitlines(), 1):
            where = f"{name}:{lineno}"
            for m in DOCS_REF.finditer(line):
                found.append((where, m.group(1), m.group(2)))
            if name.startswith("docs/") and name.endswith(".md"):
                for m in REL_LINK.finditer(line):
                    doc = f"docs/{m.group(1)}" if m.group(1) else name
                    found.append((where, doc, m.group(2)))
    return found


def test_no_outside_citations_outside_perflib() -> None:
    texts = {n: t for n, t in tracked_texts().items() if not n.startswith("perflib/")}
    hits = outside_citations(texts)
    assert not hits, "cite docs/guide.md, docs/contracts.md or a public URL instead:\n" + "\n".join(
        hits
    )


def test_no_outside_citations_in_perflib() -> None:
    texts = {n: t for n, t in tracked_texts().items() if n.startswith("perflib/")}
    hits = outside_citations(texts)
    assert not hits, "cite docs/guide.md, docs/contracts.md or a public URL instead:\n" + "\n".join(
        hits
    )


def test_cited_doc_anchors_exist() -> None:
    cited = cited_anchors(tracked_texts())
    assert any(doc == "docs/guide.md" for _, doc, _ in cited)  # the check sees citations
    broken = []
    for where, doc, anchor in cited:
        if not (ROOT / doc).is_file():
            broken.append(f"{where}: {doc} does not exist")
        elif anchor not in anchors_of(doc):
            broken.append(f"{where}: {doc}#{anchor} is not a heading of {doc}")
    assert not broken, "\n".join(broken)


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        ("see /work/shared/reference/fly.md §4", "shared/reference"),
        ("shape fixed in DESIGN.md", "DESIGN.md"),
        ("(k6.md §4, coordinated omission)", "fly.md/k6.md §"),
        ("shapes from reference/fly.md §2", "fly.md/k6.md §"),
        ("the anchors doc §2.2", "the anchors notes"),
        ("C2S fields are optional, ref §2", "a reference's section"),
        ("Load test (performance guide §3)", "a reference's section"),
        ("see ``reference/fly.md`` §2", "fly.md/k6.md §"),
    ],
)
def test_outside_citation_patterns_catch_known_forms(line: str, kind: str) -> None:
    assert outside_citations({"x.py": line}) == [f"x.py:1: [{kind}] {line}"]


@pytest.mark.parametrize(
    "line",
    [
        "see [docs/fly.md](docs/fly.md) for the token",
        "docs/guide.md#fly-shared-cpu (https://fly.io/docs/machines/cpu-performance/)",
        "a reference run of the same profile",
    ],
)
def test_in_repo_and_public_citations_pass(line: str) -> None:
    assert outside_citations({"x.md": line}) == []


@pytest.mark.parametrize(
    ("heading", "slug"),
    [
        ("The 512 MB vs 1 GB decision", "the-512-mb-vs-1-gb-decision"),
        ("JSON of `perflib recommend --json`", "json-of-perflib-recommend---json"),
        ("The emulated Fly VM (`perflib/vm.py`)", "the-emulated-fly-vm-perflibvmpy"),
        ("samples.csv", "samplescsv"),
        ("Prices (`data/`)", "prices-data"),
    ],
)
def test_github_slug(heading: str, slug: str) -> None:
    assert github_slug(heading) == slug


def test_a_missing_anchor_is_reported() -> None:
    cited = cited_anchors(
        {"x.py": "see docs/guide.md#no-such-heading and docs/guide.md#memory-targets"}
    )
    assert cited == [
        ("x.py:1", "docs/guide.md", "no-such-heading"),
        ("x.py:1", "docs/guide.md", "memory-targets"),
    ]
    assert "no-such-heading" not in anchors_of("docs/guide.md")
    assert "memory-targets" in anchors_of("docs/guide.md")
