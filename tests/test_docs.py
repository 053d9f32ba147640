"""The documentation site (docs/, mkdocs.yml): it builds strictly, its configuration
reference matches the schema, its YAML examples synthesize and its quoted messages are
produced with that exact text.

Markers, an HTML comment on the line before a fence (see docs/development.md):
- `<!-- example: cluster.yaml -->`, `<!-- example: nodes.yaml -->`: a complete file, run
  with the bundled example as the other file; a nodes.yaml example right after a
  cluster.yaml example is run with it; `, rejected` after the name: it must fail (exit 2);
  `, with the cluster.yaml above`: run with the page's last complete cluster.yaml example;
- `<!-- example: cluster.yaml fragment -->`, `<!-- example: nodes.yaml fragment -->`:
  merged into the bundled example (top-level keys replace the example's; node entries
  update the example's node of the same name, or are appended);
- `<!-- example: secrets.sops.yaml -->`: decrypted secrets, a mapping of strings;
- `<!-- message -->`: what main.py prints on stderr for the examples just before it, line
  for line;
- `<!-- message: tests/FILE.py -->`: each line is a string that test expects verbatim
  (f-string fields and names joined to literals stand for any text, empty too).
"""

from __future__ import annotations

import ast
import copy
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.support import EXAMPLES, ROOT

DOCS = ROOT / "docs"
PAGES = sorted(p for p in DOCS.glob("*.md") if not p.name.startswith("_"))  # the site's pages
# Pages outside the site (the README, `_name.md` drafts) have their examples checked too.
ALL_PAGES = [*sorted(DOCS.glob("*.md")), ROOT / "README.md"]
MARKER = re.compile(r"^\s*<!-- (example|message)(?::\s*(.*?))? -->\s*$")
FENCE = re.compile(r"^(\s*)```")
# pymdownx.snippets: a line `--8<-- "path"` in a fence is that file of the repository.
SNIPPET = re.compile(r'^--8<-- "([^"]+)"\n', re.M)


@dataclass
class Block:
    page: str
    line: int
    kind: str  # example | message
    arg: str
    text: str

    @property
    def where(self) -> str:
        return f"docs/{self.page}:{self.line}"


def fenced(lines: list[str], start: int) -> tuple[str, str, int]:
    """The fence opening at or after `start` (skipping blank lines): (info, text, end)."""
    i = start
    while i < len(lines) and not lines[i].strip():
        i += 1
    opening = FENCE.match(lines[i]) if i < len(lines) else None
    assert opening, f"line {start + 1}: a marker must be followed by a fenced block"
    indent, info = opening.group(1), lines[i].strip()[3:].strip()
    body: list[str] = []
    for j in range(i + 1, len(lines)):
        if lines[j].strip() == "```":
            return info, "".join(line[len(indent) :] + "\n" for line in body), j
        body.append(lines[j])
    raise AssertionError(f"line {i + 1}: unclosed fence")


def blocks_of(page: Path) -> list[Block]:
    lines = page.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    for number, line in enumerate(lines):
        marker = MARKER.match(line)
        if marker:
            _info, text, _end = fenced(lines, number + 1)
            text = SNIPPET.sub(lambda m: (ROOT / m.group(1)).read_text(encoding="utf-8"), text)
            found.append(Block(page.name, number + 1, marker.group(1), marker.group(2) or "", text))
    return found


ALL = [block for page in ALL_PAGES for block in blocks_of(page)]


def test_every_yaml_example_is_marked() -> None:
    unmarked = []
    for page in ALL_PAGES:
        lines = page.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines):
            if re.match(r"^\s*```ya?ml\s*$", line):
                before = next((lines[k] for k in range(number - 1, -1, -1) if lines[k].strip()), "")
                if not MARKER.match(before) or "example" not in before:
                    unmarked.append(f"docs/{page.name}:{number + 1}")
    assert not unmarked, f"YAML examples without an <!-- example: ... --> marker: {unmarked}"


# --- examples and the messages main.py prints for them ---------------------------------------


@dataclass
class Case:
    first: Block
    files: dict[str, str] = field(default_factory=dict)  # cluster.yaml / nodes.yaml -> text
    rejected: bool = False
    message: Block | None = None


def merged(name: str, fragment: str) -> str:
    """The bundled example with the fragment merged in, its text kept as written."""
    base = (EXAMPLES / name).read_text()
    if name == "cluster.yaml":
        # Textually: the example's lines for each key the fragment sets give way to the
        # fragment, so values keep their quoting (YAML 1.1 and 1.2 differ on plain ones).
        keys = set(re.findall(r"^([A-Za-z_][A-Za-z0-9_]*):", fragment, re.M))
        kept, dropping = [], False
        for line in base.splitlines(keepends=True):
            top = re.match(r"^([A-Za-z_][A-Za-z0-9_]*):", line)
            if top:
                dropping = top.group(1) in keys
            elif line[:1] not in (" ", "\t") and line.strip():
                dropping = False
            if not dropping:
                kept.append(line)
        return "".join(kept).rstrip("\n") + "\n" + fragment
    data, extra = yaml.safe_load(base), yaml.safe_load(fragment)
    nodes = copy.deepcopy(data["nodes"])
    for entry in extra["nodes"]:
        own = next((n for n in nodes if n["name"] == entry["name"]), None)
        if own is None:
            nodes.append(entry)
        else:
            own.update(entry)
    # One JSON object a node (YAML flow style): strings quoted, so text stays text.
    return "nodes:\n" + "".join(f"  - {json.dumps(node)}\n" for node in nodes)


def cases() -> list[Case]:
    found: list[Case] = []
    last_cluster: dict[str, str] = {}
    previous: Block | None = None
    for block in ALL:
        if block.page != (previous.page if previous else None):
            last_cluster.pop("text", None)
        if block.kind == "message":
            if not block.arg:
                assert found and found[-1].message is None and previous and previous.kind == "example", (
                    f"{block.where}: a <!-- message --> block follows the example(s) that print it"
                )
                found[-1].message = block
        else:
            parts = [part.strip() for part in block.arg.split(",")]
            name, words = parts[0].split()[0], parts[0].split()[1:]
            if name == "secrets.sops.yaml":
                found.append(Case(block, {"secrets.sops.yaml": block.text}))
            else:
                assert name in ("cluster.yaml", "nodes.yaml"), f"{block.where}: unknown example {name}"
                text = merged(name, block.text) if words == ["fragment"] else block.text
                pair = (
                    name == "nodes.yaml"
                    and previous is not None
                    and previous.kind == "example"
                    and found
                    and set(found[-1].files) == {"cluster.yaml"}
                )
                case = found[-1] if pair else Case(block)
                if not pair:
                    found.append(case)
                if "with the cluster.yaml above" in parts:
                    case.files["cluster.yaml"] = last_cluster["text"]
                case.files[name] = text
                case.rejected |= "rejected" in parts
                if name == "cluster.yaml" and words != ["fragment"]:
                    last_cluster["text"] = text
        previous = block
    return found


CASES = cases()


@pytest.mark.parametrize("case", CASES, ids=[c.first.where for c in CASES])
def test_example(case: Case, tmp_path: Path) -> None:
    if "secrets.sops.yaml" in case.files:
        data = yaml.safe_load(case.files["secrets.sops.yaml"])
        assert isinstance(data, dict) and all(isinstance(v, str) and v for v in data.values()), data
        return
    for name in ("cluster.yaml", "nodes.yaml"):
        text = case.files.get(name) or (EXAMPLES / name).read_text()
        (tmp_path / name).write_text(text)
    env = {
        **os.environ,
        "CLUSTER_CONFIG": "cluster.yaml",
        "NODES_CONFIG": "nodes.yaml",
        "CDKTF_OUTDIR": "cdktf.out",
    }
    proc = subprocess.run(
        [sys.executable, str(ROOT / "main.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    if case.rejected:
        assert proc.returncode == 2, proc.stderr
        assert case.message, f"{case.first.where}: a rejected example is followed by its <!-- message -->"
    else:
        assert proc.returncode == 0, proc.stderr
        assert (tmp_path / "cdktf.out" / "manifest.json").is_file()
    if case.message:
        assert proc.stderr.splitlines() == case.message.text.splitlines(), case.message.where


# --- messages expected verbatim by the tests that produce them --------------------------------


def _parts(node: ast.expr) -> list[str | None] | None:
    """A string expression as literal parts and None for any text; None if not a string."""
    if isinstance(node, ast.Constant):
        return [node.value] if isinstance(node.value, str) else None
    if isinstance(node, ast.JoinedStr):
        return [v.value if isinstance(v, ast.Constant) else None for v in node.values]  # type: ignore[misc]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _parts(node.left), _parts(node.right)
        if left is None and right is None:
            return None
        return (left or [None]) + (right or [None])
    return None


def expected_strings(path: Path) -> list[tuple[re.Pattern[str], int]]:
    """Each string expression of a test as a pattern, with how many of its characters are literal."""
    patterns = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.expr):
            parts = _parts(node)
            if parts and any(parts):
                regex = "".join(".*" if p is None else re.escape(p) for p in parts)
                patterns.append((re.compile(regex), sum(len(p) for p in parts if p)))
    return patterns


MESSAGES = [b for b in ALL if b.kind == "message" and b.arg]


@pytest.mark.parametrize("block", MESSAGES, ids=[b.where for b in MESSAGES])
def test_message_expected_by_its_test(block: Block) -> None:
    source = ROOT / block.arg
    assert source.is_file() and source.is_relative_to(ROOT / "tests"), f"{block.where}: no test {block.arg}"
    patterns = expected_strings(source)
    for line in block.text.splitlines():
        text = line.rstrip()
        # Fields stand for any text, but most of the line must be the test's own words.
        assert any(
            (p.fullmatch(text) or p.fullmatch(text + "\n")) and 2 * literal >= len(text)
            for p, literal in patterns
        ), f"{block.where}: {block.arg} does not expect this line verbatim: {text}"


def test_the_markers_are_counted() -> None:
    """The site's promise stays true: examples and messages are there and marked."""
    examples = [b for b in ALL if b.kind == "example"]
    messages = [b for b in ALL if b.kind == "message"]
    assert len(examples) >= 10 and len(messages) >= 10, (len(examples), len(messages))


# --- the configuration reference and the build ------------------------------------------------


def test_configuration_reference_matches_the_schema() -> None:
    from config.reference import COMMAND, PAGE, render

    current = PAGE.read_text(encoding="utf-8")
    assert render(current) == current, (
        f"docs/configuration.md differs from config/schema.py: run `{COMMAND}` to regenerate it"
    )


def test_the_regenerating_command_runs() -> None:
    from config.reference import COMMAND

    proc = subprocess.run(
        [sys.executable, "-m", *COMMAND.split()[2:], "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


def test_site_builds_strictly(tmp_path: Path) -> None:
    mkdocs = Path(sys.executable).parent / "mkdocs"
    proc = subprocess.run(
        [
            str(mkdocs),
            "build",
            "--strict",
            "--config-file",
            str(ROOT / "mkdocs.yml"),
            "--site-dir",
            str(tmp_path),
        ],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # mkdocs checks the anchors of links to other pages; links within a page, here.
    broken = []
    for page in PAGES:
        html = tmp_path / ("index.html" if page.stem == "index" else f"{page.stem}/index.html")
        ids = set(re.findall(r'id="([^"]+)"', html.read_text(encoding="utf-8")))
        for anchor in re.findall(r"\]\(#([^)\s]+)\)", page.read_text(encoding="utf-8")):
            if anchor not in ids:
                broken.append(f"docs/{page.name}: #{anchor}")
    assert not broken, f"links to anchors the page does not have: {broken}"


def _anchors(page: Path) -> set[str]:
    """The ids MkDocs gives a page's headings (toc's default slugify)."""
    out = set()
    in_fence = False
    for line in page.read_text().splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence and line.startswith("#"):
            text = line.lstrip("#").strip().lower()
            text = re.sub(r"[^\w\s-]", "", text)
            out.add(re.sub(r"[\s]+", "-", text).strip("-"))
    return out


def test_the_readmes_links_reach_pages_and_headings() -> None:
    readme = ROOT / "README.md"
    links = re.findall(r"\]\(([^)\s]+)\)", readme.read_text())
    local = [link for link in links if "://" not in link]
    assert local, "the README links to no page"
    for link in local:
        path, _, anchor = link.partition("#")
        page = (ROOT / path) if path else readme
        assert page.is_file(), f"README links to {link}: no such file"
        if anchor:
            assert anchor in _anchors(page), f"README links to {link}: no such heading"


def test_the_documented_role_is_the_one_the_tests_run_with() -> None:
    """The e2e and task tests prove DOCUMENTED_ROLE enough; the guide must give that role."""
    from workflow.proxmox.privileges import DOCUMENTED_ROLE, ROLE_NAME

    page = (DOCS / "getting-started.md").read_text(encoding="utf-8")
    found = re.findall(rf'pveum role add {ROLE_NAME} -privs "([^"]+)"', page)
    assert len(found) == 1, (
        f"docs/getting-started.md: one `pveum role add {ROLE_NAME}` expected, found {found}"
    )
    assert found[0].split(",") == list(DOCUMENTED_ROLE)
