"""The CLI campaign: bad values for every option of ``python -m compare EXPERIMENT`` and every ``--set`` key,
derived from the parser and the presets (not a list of known cases).

For each experiment, each option of ``compare.options.build_parser`` gets values of the wrong kind for its
``type`` (an int option: "abc", "2.5", "0", "-3"; a name option: "nope"; a path option: a file), and each key of
the presets gets values its preset values rule out (``_bad_values``: a string for a number, NaN, a negative
number, an empty or mistyped list, a bool for a number, an unknown choice). Each command must stop before any
run starts, exit with status 2 and say, in its last stderr line, which option or key it refuses. The work itself is
never reached: ``compare.sweep.runner.execute`` is replaced by a sentinel, so a value that was accepted is seen at
once (and counted "accepted") instead of starting an experiment.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import tempfile
from pathlib import Path

from compare import experiments, options
from compare.overrides import MAY_BE_EMPTY, _kind, _settings

_ROOT = Path(tempfile.mkdtemp(prefix="lazykit-cli-"))
A_FILE = _ROOT / "a-file"
A_FILE.write_text("x")


class Accepted(BaseException):
    """The sweep was about to run: every option had been accepted."""


@dataclasses.dataclass
class CliCase:
    entry: str          # "cli.EXPERIMENT OPTION"
    argv: list
    names: tuple        # what the error line must name (option spelling, or the --set key)
    must: bool = True   # must be refused (else: may run, e.g. a size the data caps with a note)

    def describe(self):
        return f"{self.entry}: {' '.join(self.argv)}"


# path options: a file where a folder is wanted
PATH_OPTIONS = {"--out": A_FILE, "--gram-store": A_FILE}
# options a nonsense name must not pass
NAME_OPTIONS = ("--dataset", "--preset", "--device", "--backend")
# options whose values are not refusals on every data set (a note, not an error): --data-dir on digits
NOT_REFUSED = ("--data-dir",)


def _option_cases(experiment) -> list:
    parser = options.build_parser(experiment)
    cases = []
    for action in parser._actions:
        flags = [f for f in action.option_strings if f.startswith("--")]
        if not flags or action.nargs == 0 or flags[0] in ("--help", "--set") or flags[0] in NOT_REFUSED:
            continue
        flag = flags[0]
        names = (flag, flag.lstrip("-"), flag.lstrip("-").replace("-", "_"))
        if action.type is int:
            values = ["abc", "2.5", "0", "-3"]
        elif flag in PATH_OPTIONS:
            values = [str(PATH_OPTIONS[flag])]
        elif flag in NAME_OPTIONS:
            values = ["nope"]
        elif flag == "--scheduler":          # a scheduler only goes with --backend dask
            values = ["tcp://127.0.0.1:1"]
            names = names + ("dask",)
        else:
            values = ["nope"]
        for value in values:
            cases.append(CliCase(f"cli.{experiment.name} {flag}", [experiment.name, flag, value], names))
    return cases


# --set keys documented to take more than their presets' values show: the values that are then not refusals
CLI_NOTES = {"lr": ("a number > 0 or 'kernel'", {"3"})}


def _bad_values(key, examples) -> list:
    note = CLI_NOTES.get(key)
    return [(text, must and not (note and text in note[1])) for text, must in _raw_bad_values(key, examples)]


def _raw_bad_values(key, examples) -> list:
    """(text, must) for a --set key from the preset values it takes (see the module docstring)."""
    allow_none = any(v is None for v in examples)
    examples = [v for v in examples if v is not None]
    if not examples:
        return []
    is_list = any(isinstance(v, (list, tuple)) for v in examples)
    items = [x for v in examples for x in (v if isinstance(v, (list, tuple)) else [v])]
    kinds = {_kind(x) for x in items}
    bad = []
    if is_list:
        bad += [("5", True), ("'x'", True)]
        if key not in MAY_BE_EMPTY:
            bad.append(("[]", True))
        if kinds & {"int", "number"}:
            bad += [("['x']", True), ("[True]", True), ("[nan]", False)]
        return bad
    if "bool" in kinds:
        return [("1", True), ("'yes'", True)]
    if kinds & {"int", "number"}:
        bad += [("'x'", True), ("nan", True), ("inf", True), ("-5", True), ("True", True), ("[1]", True)]
        if not allow_none:
            bad.append(("None", True))
        if "number" not in kinds:
            bad.append(("2.5", True))
        return bad
    if "str" in kinds:
        return [("3", True), ("nosuchvalue", True)]
    return []


def _set_cases(experiment) -> list:
    settings = _settings(experiment.presets)
    keys = sorted({k for p in settings.values() for k in p if k != "expected"})
    cases = []
    for key in keys:
        examples = [p[key] for p in settings.values() if key in p]
        for text, must in _bad_values(key, examples):
            cases.append(CliCase(f"cli.{experiment.name} --set {key}", [experiment.name, "--set", f"{key}={text}"],
                                 (key, "--set"), must))
    return cases


def _data_cases(experiment) -> list:
    """Options bounded by the data: on an image set, an unknown class and a size beyond its split are refused;
    on the default set a size beyond the data is capped with a note (it may run)."""
    from compare import data
    settings = _settings(experiment.presets)
    keys = {k for p in settings.values() for k in p}
    cases = []
    image = next((d for d in experiment.datasets if d in data.IMAGE_DATASETS), None)
    for key in sorted(keys & set(options.CLASS_OPTIONS)):
        if image:
            cases.append(CliCase(f"cli.{experiment.name} --set {key}", [experiment.name, "--dataset", image, "--set",
                                                                        f"{key}=[99]"], (key,)))
    for key in sorted(keys & set(options.SPLIT_SIZES)):
        if image:
            cases.append(CliCase(f"cli.{experiment.name} --set {key}", [experiment.name, "--dataset", image, "--set",
                                                                        f"{key}={10 ** 9}"], (key,)))
        if experiment.default_dataset not in data.IMAGE_DATASETS:
            cases.append(CliCase(f"cli.{experiment.name} --set {key}", [experiment.name, "--set", f"{key}={10 ** 9}"],
                                 (key,), must=False))
    return cases


def _tool_cases() -> list:
    return [CliCase("cli.bench", ["bench", "nosuch"], ("benchmark",)),
            CliCase("cli.data", ["data", "nosuch"], ("data", "nosuch", "command", "invalid choice")),
            CliCase("cli.data install", ["data", "install", "nosuch"], ("name", "nosuch", "data set", "invalid choice")),
            CliCase("cli.experiment", ["nosuch-experiment"], ("experiment",))]


def all_cases() -> dict:
    """{entry: [CliCase, ...]} over every experiment's options and --set keys, and the tools' names."""
    out = {}
    for name in experiments.names():
        experiment = experiments.get(name)
        for case in _option_cases(experiment) + _set_cases(experiment) + _data_cases(experiment):
            out.setdefault(case.entry, []).append(case)
    for case in _tool_cases():
        out.setdefault(case.entry, []).append(case)
    return out


def run(case, names_any) -> tuple:
    """(outcome, detail) of one command line (outcomes as ``tests.fuzz.signatures.OUTCOMES``)."""
    from compare import cli
    from compare.sweep import runner

    def refuse(*args, **kwargs):
        raise Accepted
    argv = list(case.argv)
    if argv[0] in experiments.names() and "--out" not in argv:
        argv += ["--out", str(_ROOT / "out"), "--quiet"]
    err = io.StringIO()
    real = runner.execute
    runner.execute = refuse
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = cli.main(argv)
            except SystemExit as exc:         # argparse refuses an option: status 2, usage on stderr
                code = exc.code
    except Accepted:
        return ("accepted", "the sweep was about to run") if case.must else ("finite result", "")
    except Exception as exc:   # noqa: BLE001
        return "unclear", f"{type(exc).__name__}: {exc}"
    finally:
        runner.execute = real
    lines = [line for line in err.getvalue().strip().splitlines() if not line.startswith("note:")]
    if code in (0, None):
        return ("accepted", "exit status 0") if case.must else ("finite result", "")
    last = lines[-1] if lines else ""
    if not case.must and code == 2 and " not found: looked in " in last:
        return "clear error", "a valid value; the data set it needs is absent"   # it would have run
    if code != 2 or not (names_any(last, case.names) or any(n in last for n in case.names)):
        return "unclear", f"exit {code}: {last[:300]!r}"
    return "clear error", last[:200]
