"""Every code block of README.md and docs/*.md runs, or is checked, as written; nothing is skipped silently.

The convention (docs/testing.md, *The documentation's code blocks*, says the same for readers):

- ```python blocks are executed, each in a fresh namespace and a working folder of its own. The blocks of one
  page share one interpreter and run in page order (one start-up per page keeps the suite fast); a block that
  fails does not stop the others. A ```text block right after a python block (only blank lines between) is the
  output it must print on stdout, and so is a plain ``` block after one line of prose saying what it "prints".
  The output is compared line by line with trailing spaces stripped; ``...`` stands for any text, as doctest's
  ELLIPSIS; without ``...``, a printed number may differ from the one shown by one unit of its last digit.
- ```bash blocks: every ``python -m compare`` line is checked in this process. An experiment's command line is
  parsed by that experiment's parser and its preset and ``--set`` overrides are resolved (so a renamed option or
  preset entry fails here); a subcommand's line (bench, data, gpu-check) must use only options that its
  ``--help`` lists. Any other line (pip, conda, the test suite itself) runs only under ``<!-- run -->`` and is
  skipped, with its reason, under ``<!-- skip: REASON -->``; without either marker the test fails.
- A comment line right before a block's fence is its marker:
  ``<!-- skip: REASON -->`` skips it with that reason; ``<!-- signature -->`` marks a python block of
  signatures ``module.Name(param=default, ...)``, each checked against ``inspect.signature`` of the real
  callable (same parameters in the same order, same kinds, same defaults); ``<!-- data: NAME ... -->`` marks a
  block that reads those data sets (pytest.mark.data: skipped, saying how to get them, where they are not
  found; run with ``-m data``); ``<!-- requires: cuda -->`` (a GPU that CuPy sees) or
  ``<!-- requires: MODULE.NAME -->`` (e.g. ``kernels.stax``: that attribute must exist) skips a block whose
  requirement is missing, naming it.
- Blocks between ``<!-- bench-readme:NAME -->`` markers are figures written by ``python -m compare bench
  readme``; tests/compare/bench/test_readme.py checks them against docs/figures.json.
- ```text blocks that follow no python block are diagrams (the README's layout tree is checked below). A block
  of any other language, or without a language, fails unless it is a figure or carries a skip marker.
"""
from __future__ import annotations

import ast
import contextlib
import dataclasses
import importlib
import inspect
import io
import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w-]*)[^\n]*\n(?P<code>.*?)^(?P=indent)```[ \t]*$",
                   flags=re.M | re.S)
MARKER = re.compile(r"^\s*<!--\s*(?P<kind>skip|run|signature|data|requires)\s*(?::\s*(?P<arg>.*?))?\s*-->\s*$")
FIGURE = re.compile(r"<!-- bench-readme:([\w-]+) -->.*?<!-- /bench-readme:\1 -->", flags=re.S)
SHELLS = ("bash", "sh", "console", "shell")


@dataclasses.dataclass
class Block:
    page: Path
    line: int               # 1-based line of the opening fence
    lang: str
    code: str
    marker: tuple | None    # (kind, argument) of the comment line right before the fence
    output: str | None      # the ```text block that follows a python block
    figure: bool            # inside a bench-readme figure block

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def parse(page: Path) -> list:
    """The code blocks of one Markdown page, each python block with the output block that follows it."""
    text = page.read_text()
    figures = [m.span() for m in FIGURE.finditer(text)]
    found = []
    for m in FENCE.finditer(text):
        before = text[:m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = MARKER.match(before)
        found.append((m, marker, any(a <= m.start() < b for a, b in figures)))
    blocks, taken = [], set()
    for i, (m, marker, figure) in enumerate(found):
        if i in taken:
            continue
        output = None
        if m.group("lang") == "python" and i + 1 < len(found):
            nxt, between = found[i + 1][0], text[m.end():found[i + 1][0].start()].strip()
            if (nxt.group("lang") == "text" and not between) or (
                    nxt.group("lang") == "" and "\n" not in between and "prints" in between):
                output, _ = textwrap.dedent(nxt.group("code")), taken.add(i + 1)
        blocks.append(Block(page, text.count("\n", 0, m.start()) + 1, m.group("lang"),
                            textwrap.dedent(m.group("code")), (marker["kind"], marker["arg"]) if marker else None,
                            output, figure))
    return blocks


BLOCKS = [b for page in PAGES for b in parse(page)]


def _kind(block) -> str:
    marker = block.marker[0] if block.marker else None
    if block.figure:
        return "figure"
    if marker == "signature":
        return "signature"
    if block.lang == "python":
        return "python"
    if block.lang in SHELLS:
        return "shell"
    if block.lang == "text":
        return "diagram"
    return "other"


def _data(block) -> list:
    return block.marker[1].split() if block.marker and block.marker[0] == "data" else []


def _missing_requirement(block) -> str | None:
    """Why a ``<!-- requires: ... -->`` block cannot run here (None: it can)."""
    if not block.marker or block.marker[0] != "requires":
        return None
    need = block.marker[1]
    if need == "cuda":
        from kernels import gpu_available
        return None if gpu_available() else "needs a GPU that CuPy sees"
    try:                                      # a module (kernels.stax as a subpackage) ...
        importlib.import_module(need)
        return None
    except ImportError:
        pass
    module, _, name = need.rpartition(".")    # ... or a name of one
    try:
        found = bool(module) and hasattr(importlib.import_module(module), name)
    except ImportError:
        found = False
    return None if found else f"needs {need}, which this installation lacks"


def _skip_reason(block) -> str | None:
    if block.marker and block.marker[0] == "skip":
        return block.marker[1] or "marked skip without a reason"
    return _missing_requirement(block)


# ------------------------------------------------------------------------------------------ python blocks
RUNNER = r'''
import contextlib, io, json, os, sys, time, traceback
blocks, results_path, workdir = json.load(sys.stdin), sys.argv[1], sys.argv[2]
results = {}
for key, name, code in blocks:
    folder = os.path.join(workdir, key.replace("/", "_").replace(":", "_"))
    os.makedirs(folder, exist_ok=True)
    os.chdir(folder)
    out, start = io.StringIO(), time.perf_counter()
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(code, name, "exec"), {"__name__": "__main__"})
        results[key] = {"ok": True, "stdout": out.getvalue()}
    except BaseException:
        results[key] = {"ok": False, "stdout": out.getvalue(), "error": traceback.format_exc()[-4000:]}
    results[key]["seconds"] = time.perf_counter() - start
with open(results_path, "w") as f:
    json.dump(results, f)
'''
_PAGE_RESULTS: dict = {}


def _env():
    """This checkout's packages first, installed or not."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def run_blocks(blocks, workdir: Path) -> dict:
    """{block id: {"ok", "stdout", "error"}} for python blocks run one after another in one fresh interpreter."""
    workdir.mkdir(parents=True, exist_ok=True)
    results = workdir / "results.json"
    payload = json.dumps([(b.id, str(b.page.relative_to(ROOT)) + f", block at line {b.line}", b.code)
                          for b in blocks])
    proc = subprocess.run([sys.executable, "-c", RUNNER, str(results), str(workdir)], input=payload, text=True,
                          capture_output=True, cwd=workdir, env=_env(), timeout=550)
    if not results.exists():
        raise AssertionError(f"the block runner died (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(results.read_text())


def _runs_with_its_page(block) -> bool:
    return _kind(block) == "python" and not _data(block) and _skip_reason(block) is None


def page_result(block, tmp_path_factory) -> dict:
    """The block's result, from one run of all runnable python blocks of its page (cached per page)."""
    if block.page not in _PAGE_RESULTS:
        runnable = [b for b in BLOCKS if b.page == block.page and _runs_with_its_page(b)]
        _PAGE_RESULTS[block.page] = run_blocks(runnable, tmp_path_factory.mktemp(block.page.stem))
    return _PAGE_RESULTS[block.page][block.id]


NUMBER = re.compile(r"^[-+]?\d+(\.\d+)?(e[-+]?\d+)?%?$")


def _same_numbers(expected: str, actual: str) -> bool:
    """The same words, numbers within one unit of the last digit shown (rounding on another machine)."""
    want, got = (re.sub(r"[\[\](),]", " ", text).split() for text in (expected, actual))
    if len(want) != len(got):
        return False
    for w, g in zip(want, got):
        if NUMBER.match(w) and NUMBER.match(g) and w.endswith("%") == g.endswith("%"):
            mantissa = w.rstrip("%").split("e")[0]
            digits = len(mantissa.split(".")[1]) if "." in mantissa else 0
            scale = 10 ** int(w.rstrip("%").split("e")[1]) if "e" in w else 1
            if abs(float(g.rstrip("%")) - float(w.rstrip("%"))) > 1.01 * 10 ** -digits * scale:
                return False
        elif w != g:
            return False
    return True


def output_matches(expected: str, actual: str) -> bool:
    """``actual`` equals ``expected`` line by line (trailing spaces stripped), ``...`` matching any text;
    without ``...``, numbers may differ by one unit of their last digit."""
    def norm(text):
        return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())
    pattern = ".*?".join(re.escape(part) for part in norm(expected).split("..."))
    if re.fullmatch(pattern, norm(actual), flags=re.S) is not None:
        return True
    return "..." not in expected and _same_numbers(expected, actual)


def check_python(block, result):
    assert result["ok"], f"{block.id} failed:\n{block.code}\n{result.get('error')}"
    if block.output is not None:
        assert output_matches(block.output, result["stdout"]), (
            f"{block.id} printed\n{result['stdout']}\ninstead of the output shown after it:\n{block.output}")


# ------------------------------------------------------------------------------------------ signatures
def signatures(code: str) -> list:
    """[(dotted name, ast.arguments)] of a block of ``name(params)`` signatures."""
    found, i = [], 0
    for m in re.finditer(r"^([A-Za-z_][\w.]*)\(", code, flags=re.M):
        if m.start() < i:
            continue
        depth, j = 0, m.end() - 1
        while True:
            depth += {"(": 1, ")": -1}.get(code[j], 0)
            if depth == 0:
                break
            j += 1
        inside, i = code[m.end():j], j
        found.append((m.group(1), ast.parse(f"def signature({inside}): pass").body[0].args))
    leftover = re.sub(r"^([A-Za-z_][\w.]*)\(", "", code, flags=re.M)
    assert found, "a signature block holds no `module.Name(...)`"
    assert leftover.count("(") <= leftover.count(")"), "unbalanced signature block"
    return found


def resolve(dotted: str):
    parts = dotted.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise LookupError(f"{dotted} is not importable (write it as module.Name)")


def _documented(args: ast.arguments) -> list:
    """[(name, kind, default or inspect.Parameter.empty)] of a parsed signature."""
    def value(node):
        return eval(compile(ast.Expression(node), "<signature>", "eval"), {"__builtins__": {}})
    P = inspect.Parameter
    out = []
    positional = args.posonlyargs + args.args
    defaults = [P.empty] * (len(positional) - len(args.defaults)) + [value(d) for d in args.defaults]
    for a, d in zip(positional, defaults):
        out.append((a.arg, P.POSITIONAL_ONLY if a in args.posonlyargs else P.POSITIONAL_OR_KEYWORD, d))
    if args.vararg:
        out.append((args.vararg.arg, P.VAR_POSITIONAL, P.empty))
    for a, d in zip(args.kwonlyargs, args.kw_defaults):
        out.append((a.arg, P.KEYWORD_ONLY, P.empty if d is None else value(d)))
    if args.kwarg:
        out.append((args.kwarg.arg, P.VAR_KEYWORD, P.empty))
    return out


def check_signatures(block):
    for dotted, args in signatures(block.code):
        real = [(p.name, p.kind, p.default) for p in inspect.signature(resolve(dotted)).parameters.values()]
        assert _documented(args) == real, (f"{block.id}: the documented signature of {dotted} differs from the "
                                           f"code's:\n  documented {_documented(args)}\n  real       {real}")


# ------------------------------------------------------------------------------------------ shell blocks
def shell_lines(code: str) -> list:
    """The block's commands as token lists (continuation lines joined, comments dropped)."""
    joined = re.sub(r"\\\n\s*", " ", code)
    lines = []
    for line in joined.splitlines():
        for command in re.split(r"\s&&\s", line):
            tokens = shlex.split(command, comments=True)
            if tokens:
                lines.append(tokens)
    return lines


def check_compare_command(argv: list):
    """An experiment's command line parses and resolves; a subcommand's options all appear in its --help."""
    from compare import experiments, options
    from compare.cli import DEFAULT_EXPERIMENT, TOOLS, main
    if argv and argv[0] in ("-h", "--help"):
        return
    if argv and argv[0] in TOOLS:
        words = []
        for token in argv:
            if token.startswith("-"):
                break
            words.append(token)
        shown, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(shown), contextlib.redirect_stderr(err):
            try:
                main([*words, "--help"])
            except SystemExit:
                pass
        help_text = shown.getvalue() + err.getvalue()
        unknown = [t.split("=")[0] for t in argv if t.startswith("--") and t.split("=")[0] not in help_text]
        assert not unknown, f"`python -m compare {' '.join(argv)}`: {unknown} not in its --help:\n{help_text}"
        return
    name, rest = (argv[0], argv[1:]) if argv and not argv[0].startswith("-") else (DEFAULT_EXPERIMENT, argv)
    assert name in experiments.names(), f"`python -m compare {' '.join(argv)}`: no experiment {name!r}"
    experiment = experiments.get(name)
    rest = [t for t in rest if t not in ("-h", "--help")]
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            args = options.build_parser(experiment).parse_args(rest)
        except SystemExit:
            raise AssertionError(f"`python -m compare {' '.join(argv)}` does not parse: {err.getvalue()}")
    options.resolve_preset(experiment.presets, args)
    assert args.dataset in experiment.datasets, f"{name}: unknown dataset {args.dataset!r}"
    assert args.device in ("auto", "cpu", "cuda"), f"{name}: unknown device {args.device!r}"


def check_shell(block, tmp_path):
    commands = shell_lines(block.code)
    others = [c for c in commands if c[:3] != ["python", "-m", "compare"]]
    for command in commands:
        if command[:3] == ["python", "-m", "compare"]:
            check_compare_command(command[3:])
    if not others:
        return
    marker = block.marker[0] if block.marker else None
    if marker == "run":
        for command in others:
            proc = subprocess.run(command, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
            assert proc.returncode == 0, f"{block.id}: `{shlex.join(command)}` failed:\n{proc.stderr[-3000:]}"
        return
    assert marker == "skip", (f"{block.id} holds commands that are neither `python -m compare` lines nor marked: "
                              f"{[shlex.join(c) for c in others]}; put <!-- run --> or <!-- skip: REASON --> before it")
    checked = len(commands) - len(others)
    pytest.skip(block.marker[1] + (f" (its {checked} `python -m compare` lines were checked)" if checked else ""))


# ------------------------------------------------------------------------------------------ the tests
def _param(block):
    marks = [pytest.mark.data(*_data(block))] if _data(block) else []
    return pytest.param(block, id=block.id, marks=marks)


@pytest.mark.parametrize("block", [_param(b) for b in BLOCKS if _kind(b) not in ("figure", "diagram")])
def test_doc_block(block, tmp_path, tmp_path_factory):
    kind = _kind(block)
    if kind == "shell":
        return check_shell(block, tmp_path)
    reason = _skip_reason(block)
    if reason is not None:
        pytest.skip(reason)
    if kind == "signature":
        return check_signatures(block)
    assert kind == "python", f"{block.id}: a ```{block.lang or '(no language)'} block is not run; give it " \
                             f"a language this test runs, or <!-- skip: REASON -->"
    result = run_blocks([block], tmp_path)[block.id] if _data(block) else page_result(block, tmp_path_factory)
    check_python(block, result)


def test_the_convention_finds_the_blocks_it_should():
    """The parser sees the README's and the docs' examples, pairs outputs with their blocks, and reads markers."""
    by_page = {p.name: [b for b in BLOCKS if b.page == p] for p in PAGES}
    assert {"README.md", "analytic.md", "nets.md", "data.md"} <= set(by_page)
    assert sum(_kind(b) == "python" for b in BLOCKS) >= 25
    assert any(b.output and "(500, 500) (50, 500) (8, 8) True" in b.output for b in by_page["analytic.md"])
    data_blocks = [b for b in by_page["data.md"] if _data(b)]
    assert len(data_blocks) == 1 and _data(data_blocks[0]) == ["cifar10", "fashion-mnist"]
    assert [b for b in BLOCKS if _kind(b) == "signature" and "nets.CNN(" in b.code]
    stax = [b for b in by_page.get("stax.md", []) if _kind(b) == "python"]   # its "prints" blocks are outputs
    assert len(stax) >= 6 and sum(1 for b in stax if b.output) >= 5


def test_markers_outputs_and_figures_are_read_from_a_page(tmp_path):
    """A synthetic page: each marker is read from the line before its fence, a text block after a python block
    is its output (and no block of its own), a block inside bench-readme markers is a figure."""
    page = tmp_path / "page.md"
    page.write_text(textwrap.dedent("""\
        <!-- requires: kernels.no_such_name -->
        ```python
        print(1)
        ```

        ```text
        1
        ```

        <!-- skip: a reason -->
        ```bash
        pip install nothing
        ```

        - a list item holding a block:

          ```python
          x = 1
          ```

        <!-- bench-readme:b -->
        ```
        figure
        ```
        <!-- /bench-readme:b -->
        ```yaml
        a: 1
        ```
        """))
    blocks = parse(page)
    assert [(_kind(b), b.line) for b in blocks] == [("python", 2), ("shell", 11), ("python", 17), ("figure", 22),
                                                   ("other", 26)]
    assert blocks[0].output == "1\n" and blocks[0].marker == ("requires", "kernels.no_such_name")
    assert _skip_reason(blocks[0]) == "needs kernels.no_such_name, which this installation lacks"
    assert _skip_reason(blocks[1]) == "a reason" and blocks[2].code == "x = 1\n" and blocks[2].marker is None


def test_output_matching_and_signature_parsing():
    assert output_matches("a 1.0\nb ... s\n", "a 1.0  \nb 0.4 s")
    assert not output_matches("a 1.0", "a 1.2") and not output_matches("a b", "a c")
    assert output_matches("...\nlast", "many\nlines\nlast")
    assert output_matches("[[0.0653 0.0686]]\n11.8%", "[[0.0654 0.0686]]\n11.9%")     # one unit of the last digit
    assert not output_matches("[[0.0653 0.0686]]", "[[0.0655 0.0686]]") and not output_matches("1e-04", "3e-04")
    ((name, args),) = signatures('kernels.gram(kernel, x1, x2=None, *, tile=4096,\n    store="k")\n')
    P = inspect.Parameter
    assert name == "kernels.gram" and _documented(args) == [
        ("kernel", P.POSITIONAL_OR_KEYWORD, P.empty), ("x1", P.POSITIONAL_OR_KEYWORD, P.empty),
        ("x2", P.POSITIONAL_OR_KEYWORD, None), ("tile", P.KEYWORD_ONLY, 4096), ("store", P.KEYWORD_ONLY, "k")]
    assert _documented(signatures("nets.MLP(d_in, w_std=2 ** 0.5)")[0][1])[1][2] == 2 ** 0.5


def test_a_wrong_option_or_signature_fails():
    """The checks are not vacuous: a misspelt option, preset entry or default is caught."""
    with pytest.raises(AssertionError, match="does not parse"):
        check_compare_command(["rates", "--no-such-option", "3"])
    with pytest.raises(ValueError, match="--set"):
        check_compare_command(["rates", "--set", "no_such_entry=1"])
    with pytest.raises(AssertionError, match="not in its --help"):
        check_compare_command(["bench", "readme", "--no-such-option"])
    wrong = Block(ROOT / "README.md", 1, "python", "nets.CNN(in_channels, channels=32)\n", ("signature", None),
                  None, False)
    with pytest.raises(AssertionError, match="differs"):
        check_signatures(wrong)


def test_the_readme_layout_names_real_paths():
    """Each entry of the README's Layout tree (first word of a line, nested by two-space indents) exists."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Layout", 1)[1].split("\n## ", 1)[0]
    tree = re.search(r"```text\n(.*?)```", section, flags=re.S).group(1)
    parents, checked = [], 0
    for line in tree.splitlines():
        if not line.strip():
            continue
        depth = (len(line) - len(line.lstrip(" "))) // 2
        parents = parents[:depth]
        words = line.strip().split("  ")[0].replace(",", " ").split()
        for word in words:
            path = ROOT.joinpath(*parents, word)
            assert path.exists(), f"README Layout names {path.relative_to(ROOT)}, which does not exist"
            checked += 1
        if len(words) == 1 and words[0].endswith("/"):
            parents.append(words[0])
    assert checked >= 20
