"""The gpu-check bundle: built from a local wheel, checked by its manifest, installed offline into a fresh
venv (what a GPU machine without network does), its requirement list kept in step with pyproject.toml; and
every command gpu-check runs, proven to parse."""
import argparse
import base64
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from compare.gpu import bundle as gpu_bundle
from compare.gpu import check as gpu_check
from compare.bench import BENCHMARKS

ROOT = Path(__file__).resolve().parents[3]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[;]", requirement.strip(), maxsplit=1)[0].lower()


def test_requirements_are_the_dependencies_beyond_the_gpu_image():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    dependencies = {_name(r) for r in pyproject["project"]["dependencies"]}
    beyond = dependencies - set(gpu_bundle.BASELINE) - set(gpu_bundle.NOT_BUNDLED)
    assert {_name(r) for r in gpu_bundle.REQUIREMENTS} == beyond | {"pytest-timeout"}


def _tiny_wheel(folder: Path, value: int) -> Path:
    """A minimal valid pure-Python wheel (PEP 427): one module, METADATA, WHEEL and RECORD."""
    name, version = "lazykit_tiny_probe", "1.0"
    files = {f"{name}.py": f"VALUE = {value}\n",
             f"{name}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: lazykit-tiny-probe\nVersion: {version}\n",
             f"{name}-{version}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = [f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b'=').decode()},"
              f"{len(text.encode())}" for path, text in files.items()]
    files[f"{name}-{version}.dist-info/RECORD"] = "\n".join(record + [f"{name}-{version}.dist-info/RECORD,,"]) + "\n"
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for member, text in files.items():
            wheel.writestr(member, text)
    return path


@pytest.fixture
def bundle(tmp_path):
    source = tmp_path / "wheelhouse"
    source.mkdir()
    _tiny_wheel(source, 42)
    archive = tmp_path / gpu_bundle.CIFAR_ARCHIVE
    archive.write_bytes(b"stands in for the CIFAR-10 archive")
    manifest = gpu_bundle.prepare(tmp_path / "bundle", cifar_archive=archive, requirements=("lazykit-tiny-probe",),
                                  wheel_source=source)
    return tmp_path / "bundle", manifest


def test_prepare_writes_wheels_data_manifest_and_ignores_itself(bundle):
    folder, manifest = bundle
    paths = sorted(e["path"] for e in manifest["files"])
    assert paths == ["data/cifar10-jpeg.tar.gz", "wheels/lazykit_tiny_probe-1.0-py3-none-any.whl"]
    assert manifest["total_bytes"] == sum((folder / p).stat().st_size for p in paths)
    assert manifest["cifar10"] == "data/cifar10-jpeg.tar.gz"
    assert json.loads((folder / "manifest.json").read_text()) == manifest
    assert (folder / ".gitignore").read_text() == "*\n"
    assert gpu_bundle.verify(folder) == manifest
    assert gpu_bundle.data_dir(folder, manifest) == str((folder / "data").resolve())


def test_a_changed_or_missing_file_is_refused(bundle):
    folder, _ = bundle
    (folder / "data" / "cifar10-jpeg.tar.gz").write_bytes(b"altered")
    with pytest.raises(gpu_bundle.BundleError, match="does not match its SHA-256"):
        gpu_bundle.verify(folder)
    (folder / "data" / "cifar10-jpeg.tar.gz").unlink()
    with pytest.raises(gpu_bundle.BundleError, match="is missing"):
        gpu_bundle.verify(folder)
    with pytest.raises(gpu_bundle.BundleError, match="not a gpu-check bundle"):
        gpu_bundle.verify(folder / "data")


def test_offline_install_into_a_fresh_venv(bundle, tmp_path):
    folder, manifest = bundle
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    step = gpu_check.Step("install bundle", gpu_bundle.install_command(folder, manifest, python=python), "install")
    assert "--no-index" in step.argv
    gpu_check.run_step(step, 120, {"PATH": "/usr/bin:/bin", "PIP_CONFIG_FILE": "/dev/null"})
    assert step.outcome == "ok", step.output
    out = subprocess.run([python, "-c", "import lazykit_tiny_probe; print(lazykit_tiny_probe.VALUE)"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "42"


def test_the_install_keeps_the_image_packages(bundle, tmp_path):
    # the image's NumPy/PyTorch are pinned to their installed versions: a bundle that needs others fails the
    # install rather than replacing what CuPy and the CUDA builds were made against
    import numpy
    import torch
    pins = gpu_bundle.installed_pins()
    assert f"numpy=={numpy.__version__}" in pins and f"torch=={torch.__version__}" in pins
    folder, manifest = bundle
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_FIND_LINKS": ""}
    for pin, ok in (("numpy==" + numpy.__version__, True), ("lazykit-tiny-probe==2.0", False)):
        constraints = tmp_path / "pins.txt"
        constraints.write_text(pin + "\n")
        argv = gpu_bundle.install_command(folder, manifest, constraints=constraints) + ["--dry-run"]
        assert (subprocess.run(argv, capture_output=True, text=True, env=env).returncode == 0) is ok


def test_prepare_from_the_command_line(tmp_path, monkeypatch, capsys):
    source, data = tmp_path / "wheelhouse", tmp_path / "data"
    source.mkdir()
    data.mkdir()
    _tiny_wheel(source, 1)
    (data / gpu_bundle.CIFAR_ARCHIVE).write_bytes(b"stands in for the CIFAR-10 archive")
    monkeypatch.setattr(gpu_bundle, "REQUIREMENTS", ("lazykit-tiny-probe",))
    out = tmp_path / "gpu-bundle"
    assert gpu_check.main(["--prepare", str(out), "--wheel-source", str(source), "--data-dir", str(data)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}: 0.0 MiB: 1 wheels for Python {sys.version_info.major}.{sys.version_info.minor}, " \
           "CIFAR-10 included" in printed and f"gpu-check --bundle {out}" in printed
    assert (out / "data" / gpu_bundle.CIFAR_ARCHIVE).read_bytes() == b"stands in for the CIFAR-10 archive"
    # a requirement the source cannot satisfy: the error names pip's failure, nothing half-written is claimed
    monkeypatch.setattr(gpu_bundle, "REQUIREMENTS", ("no-such-package-lazykit",))
    assert gpu_check.main(["--prepare", str(tmp_path / "other"), "--wheel-source", str(source)]) == 1
    assert "pip download failed" in capsys.readouterr().err


def test_gpu_check_refuses_a_folder_without_manifest(tmp_path, capsys):
    assert gpu_check.main(["--bundle", str(tmp_path), "--dry-run"]) == 2
    assert "not a gpu-check bundle" in capsys.readouterr().err
    assert gpu_check.main(["--bundle", str(tmp_path), "--prepare", str(tmp_path)]) == 2


# ----------------------------------------------------------------------------------------------- every command parses
class _Parsed(Exception):
    """Raised by argparse right after it accepted a command line: the command would run from here on."""


OPTIONAL = ("dask", "array_api_strict", "cupy", "cupyx")   # may be absent from a bare GPU image


def _parses_in_process(argv, monkeypatch):
    from compare import cli
    real = argparse.ArgumentParser.parse_args

    def parse(self, args=None, namespace=None):
        raise _Parsed(real(self, args, namespace))   # argparse errors (exit 2) happen before this

    with monkeypatch.context() as patch:
        patch.setattr(argparse.ArgumentParser, "parse_args", parse)
        with pytest.raises(_Parsed):
            cli.main(argv)


def _collects_without_optional_modules(argv, tmp_path):
    blocked = tmp_path / "blocked"
    for name in OPTIONAL:
        (blocked / name).mkdir(parents=True)
        (blocked / name / "__init__.py").write_text(f"raise ModuleNotFoundError({'No module named ' + repr(name)!r})\n")
    env = {**os.environ, "PYTHONPATH": f"{blocked}{os.pathsep}{gpu_check.REPO_ROOT}"}
    out = subprocess.run([sys.executable, *argv, "--collect-only"], cwd=gpu_check.REPO_ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "error" not in out.stdout.strip().splitlines()[-1]


def test_every_dry_run_command_parses(bundle, tmp_path, capsys, monkeypatch):
    """Each command --dry-run lists (the bundle's install, tests/gpu, each benchmark's GPU run, the table
    experiment) runs far enough to prove its arguments parse: pip resolves the install (--dry-run), pytest
    collects tests/gpu with the optional modules missing, each `python -m compare` accepts its options."""
    folder, _ = bundle
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / gpu_bundle.CIFAR_ARCHIVE).write_bytes(b"found by name only")   # so the table is planned
    assert gpu_check.main(["--dry-run", "--bundle", str(folder), "--data-dir", str(tmp_path / "data")]) == 0
    commands = [shlex.split(line.split("   # ")[0]) for line in capsys.readouterr().out.splitlines()
                if not line.startswith("bundle ") and "   # skipped: " not in line]   # a skipped step never runs
    gpu_benchmarks = [b.name for b in BENCHMARKS.values() if b.gpu_args is not None]
    kinds = [argv[2] for argv in commands]
    assert kinds == ["pip", "pytest"] + ["compare"] * (len(gpu_benchmarks) + 1)
    assert [argv[4] for argv in commands[2:-1]] == gpu_benchmarks and commands[-1][3] == "table"
    for argv in commands:
        assert argv[0] == "python"
        if argv[2] == "pip":
            out = subprocess.run([sys.executable, *argv[1:], "--dry-run"], capture_output=True, text=True,
                                 env={**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_FIND_LINKS": ""})
            assert out.returncode == 0 and "Would install lazykit-tiny-probe-1.0" in out.stdout, out.stderr
        elif argv[2] == "pytest":
            _collects_without_optional_modules(argv[1:], tmp_path)
        else:
            _parses_in_process(argv[3:], monkeypatch)


def test_the_parse_check_catches_an_unknown_option(monkeypatch):
    # what bug 3 was: `bench analytic --device cuda` exited 2 with "unrecognized arguments"
    with pytest.raises(SystemExit) as exit_:
        _parses_in_process(["bench", "analytic", "--no-such-option"], monkeypatch)
    assert exit_.value.code == 2


def test_dry_run_works_before_lazykit_dependencies_are_installed(bundle, tmp_path):
    # a bare GPU machine: array-api-compat arrives with the bundle, so gpu-check must start without it
    stub = tmp_path / "stub" / "array_api_compat"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'array_api_compat'\")\n")
    folder, _ = bundle
    out = subprocess.run([sys.executable, "-m", "compare", "gpu-check", "--bundle", str(folder), "--dry-run"],
                         cwd=gpu_check.REPO_ROOT, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(stub.parent)})
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert lines[1].startswith(f"python -m pip install --no-index --find-links {folder / 'wheels'} --constraint ")
    assert lines[1].split("   # ")[0].endswith("installed-constraints.txt lazykit-tiny-probe")
    # the experiments come from compare's registry, which needs those dependencies: planned after the install
    assert lines[-1].endswith("# skipped: lazykit's dependencies are not installed yet (No module named "
                              "'array_api_compat')")


def test_bundle_run_installs_first_then_reports_every_step(bundle, monkeypatch, capsys):
    folder, _ = bundle
    ran = []
    monkeypatch.setattr(gpu_bundle, "install_command",
                        lambda bundle_dir, manifest, python=None, constraints=None: [sys.executable, "-c", "print('installed')"])
    monkeypatch.setattr(gpu_check, "gpu_name", lambda: "Fake H200")
    monkeypatch.setattr(gpu_check, "versions", lambda: dict.fromkeys(gpu_check.PACKAGES, "1.0"))
    monkeypatch.setattr(gpu_check, "plan", lambda data_dir=None: ran.append(data_dir) or [
        gpu_check.Step("tests/gpu", [sys.executable, "-c", "print('2 passed in 0.1s')"], "tests")])
    assert gpu_check.main(["--bundle", str(folder), "--budget", "60"]) == 0
    assert ran == [str((folder / "data").resolve())]          # the bundle's data is the default --data-dir
    summary = capsys.readouterr().out.split("## gpu-check summary: GPU Fake H200", 1)[1]
    rows = [line for line in summary.splitlines() if line.startswith("| ")][1:]
    assert [row.split("|")[1].strip() for row in rows] == ["install bundle", "tests/gpu"]
    assert all(row.split("|")[2].strip() == "ok" for row in rows)
