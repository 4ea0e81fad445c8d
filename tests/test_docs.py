"""The documentation site builds offline with warnings as errors (``mkdocs build --strict``), a broken link or
cross-reference fails that build, the API reference documents every public name, and the README's links into
docs/ resolve.

The site tests skip where MkDocs is not installed (``pip install -e ".[docs]"``), unless LAZYKIT_REQUIRE_DOCS=1,
which .ci/run sets after installing the docs extra: there a missing package fails instead.
"""
from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"


@pytest.fixture(scope="module")
def mkdocs_available():
    try:
        for module in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python"):
            importlib.import_module(module)
    except ImportError as exc:
        if os.environ.get("LAZYKIT_REQUIRE_DOCS") == "1":
            pytest.fail(f"LAZYKIT_REQUIRE_DOCS=1 but the docs extra is not installed: {exc}")
        pytest.skip(f"MkDocs not installed ({exc.name}): pip install -e \".[docs]\"")


def build(config: Path, site: Path) -> subprocess.CompletedProcess:
    """``mkdocs build --strict`` of ``config`` into ``site``, offline (no network is needed: no web fonts, no
    remote inventories)."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config),
                           "--site-dir", str(site)], cwd=config.parent, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def site(mkdocs_available, tmp_path_factory):
    """The site as the repository's mkdocs.yml builds it."""
    out = tmp_path_factory.mktemp("site")
    result = build(ROOT / "mkdocs.yml", out)
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stderr[-5000:]}"
    assert "WARNING" not in result.stderr, result.stderr
    return out


def test_the_site_builds_strict_with_every_page(site):
    """Every page of docs/ is built (a page left out of the nav would have failed the strict build)."""
    pages = {p.relative_to(DOCS).with_suffix("") for p in DOCS.rglob("*.md")}
    for page in pages:
        html = site / ("index.html" if page == Path("index") else page / "index.html")
        assert html.is_file(), f"docs/{page}.md was not built"
    assert len(pages) >= 20


@pytest.mark.parametrize("face", ["kernels", "kernels.stax", "nets", "compare.sweep", "compare.data"])
def test_the_reference_documents_every_public_name_of_a_face(site, face):
    """Each name a face exports has its own entry (the hook docs/hooks/reference.py expands the face), with its
    docstring rendered."""
    module = importlib.import_module(face)
    html = (site / "reference" / face / "index.html").read_text()
    ids = set(re.findall(r'id="([\w.]+)"', html))
    names = list(getattr(module, "_EXPORTS", None) or module.__all__)
    missing = [n for n in names if not any(i.endswith(f".{n}") for i in ids)]
    assert not missing, f"the {face} reference has no entry for {missing}"
    assert html.count('class="doc doc-object doc-') >= len(names)


def test_a_broken_link_or_cross_reference_fails_the_build(mkdocs_available, tmp_path):
    """A copy of the docs with a link to a missing page, a missing heading of a real page and an API
    cross-reference to nothing: the strict build fails and names each."""
    shutil.copytree(DOCS, tmp_path / "docs")
    config = (ROOT / "mkdocs.yml").read_text().replace("paths: [.]", f"paths: [{ROOT}]")
    assert config != (ROOT / "mkdocs.yml").read_text()
    (tmp_path / "mkdocs.yml").write_text(config)
    page = tmp_path / "docs" / "solvers.md"
    page.write_text(page.read_text() + "\nSee [a page](no-such-page.md), [a heading](nets.md#no-such-heading) "
                                       "and [a function][kernels.no_such_function].\n")
    result = build(tmp_path / "mkdocs.yml", tmp_path / "site")
    log = result.stdout + result.stderr
    assert result.returncode != 0 and "Aborted with 3 warnings in strict mode" in log, log
    assert "no-such-page.md" in log and "no-such-heading" in log and "kernels.no_such_function" in log


def slug(heading: str) -> str:
    """The anchor MkDocs (Python-Markdown's toc) gives a heading: markup dropped, ASCII, lower case, dashes."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").replace("*", "")
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(page: Path) -> set:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {slug(h) for h in re.findall(r"^#{1,6}\s+(.*?)\s*$", text, flags=re.M)}


def test_the_readme_links_resolve():
    """Every relative link of README.md names a file of the repository, and every #anchor into docs/ a heading
    of that page (the README is not part of the site, so the strict build does not check it)."""
    links = re.findall(r"\]\(([^)\s]+)\)", README.read_text())
    relative = [link for link in links if not re.match(r"[a-z]+://", link)]
    assert len(relative) >= 15
    for link in relative:
        path, _, anchor = link.partition("#")
        target = ROOT / path
        assert target.exists(), f"README links to {path}, which does not exist"
        if anchor:
            assert anchor in anchors(target), f"README links to {link}: {path} has no heading #{anchor}"


def test_slug_matches_the_site(site):
    """The README check's anchors are those of the built site."""
    html = (site / "nets" / "index.html").read_text()
    assert 'id="the-kernel-predictor-of-a-lazy-net"' in html
    assert slug("The kernel predictor of a lazy net") == "the-kernel-predictor-of-a-lazy-net"
    assert slug("All of Fashion-MNIST on one 2-core machine") in anchors(DOCS / "scale.md")
