"""The gpu-check bundle: resolved per target Python from local wheels (pure and binary, markers evaluated for the
target), checked by its manifest, installed offline into a fresh venv (what a GPU machine without network does),
its requirement list kept in step with pyproject.toml; and every command gpu-check runs, proven to parse and to
run without numba and zarr up to the point where it needs a GPU."""
import base64
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import numpy as np
import pytest

from compare import data
from compare.gpu import bundle as gpu_bundle
from compare.gpu import check as gpu_check
from compare.bench import BENCHMARKS

ROOT = Path(__file__).resolve().parents[3]
THIS_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[;]", requirement.strip(), maxsplit=1)[0].lower()


def test_requirements_are_the_dependencies_beyond_the_gpu_image():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    dependencies = {_name(r) for r in pyproject["project"]["dependencies"]}
    beyond = dependencies - set(gpu_bundle.BASELINE) - set(gpu_bundle.NOT_BUNDLED)
    assert {_name(r) for r in gpu_bundle.REQUIREMENTS} == beyond | {"pytest-timeout", "zarr"}
    # zarr as the test extra requires it (the Gram store tests of tests/gpu), marker included
    zarr = [r for r in pyproject["project"]["optional-dependencies"]["test"] if _name(r) == "zarr"]
    assert zarr == [r for r in gpu_bundle.REQUIREMENTS if _name(r) == "zarr"]


def test_supported_pythons_start_where_pyproject_does():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["requires-python"] == f">={gpu_bundle.SUPPORTED_PYTHONS[0]}"
    assert [int(v.split(".")[1]) for v in gpu_bundle.SUPPORTED_PYTHONS] == list(range(10, 14))


def _record_line(path, payload: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(payload).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(payload)}"


def _wheel(folder: Path, name: str, version: str = "1.0", tag: str = "py3-none-any", requires=(),
           files=None) -> Path:
    """A valid wheel (PEP 427): ``files`` {path: bytes} (default one module), METADATA with ``requires``
    (Requires-Dist lines), WHEEL with ``tag``, and RECORD."""
    module = name.replace("-", "_")
    files = dict(files or {f"{module}.py": b"VALUE = 1\n"})
    info = f"{module}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(
        f"Requires-Dist: {r}\n" for r in requires) + "".join(
        f"Provides-Extra: {e}\n" for e in sorted({m for r in requires for m in re.findall(r'extra == "(\w+)"', r)}))
    purelib = "true" if tag.endswith("none-any") else "false"
    files[f"{info}/METADATA"] = metadata.encode()
    files[f"{info}/WHEEL"] = f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: {purelib}\nTag: {tag}\n".encode()
    record = [_record_line(path, payload) for path, payload in files.items()]
    files[f"{info}/RECORD"] = ("\n".join(record + [f"{info}/RECORD,,"]) + "\n").encode()
    path = folder / f"{module}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for member, payload in files.items():
            wheel.writestr(member, payload)
    return path


def _tiny_wheel(folder: Path, value: int) -> Path:
    """A minimal pure-Python probe wheel: lazykit_tiny_probe.VALUE == value."""
    return _wheel(folder, "lazykit-tiny-probe", files={"lazykit_tiny_probe.py": f"VALUE = {value}\n".encode()})


def _fake_cifar_parts(per_class=3):
    rng = np.random.default_rng(0)
    return {split: (rng.integers(0, 256, (per_class * 2, 3, 32, 32), dtype=np.uint8),
                    np.arange(per_class * 2) % 2) for split in ("train", "test")}


@pytest.fixture(scope="module")
def pristine_bundle(tmp_path_factory):
    """A bundle of the pure probe wheel (every supported Python) and fake CIFAR-10 batches, made once."""
    folder = tmp_path_factory.mktemp("pristine")
    source = folder / "wheelhouse"
    source.mkdir()
    _tiny_wheel(source, 42)
    gpu_bundle.prepare(folder / "bundle", requirements=("lazykit-tiny-probe",), wheel_source=source,
                       cifar10=_fake_cifar_parts())
    return folder / "bundle"


@pytest.fixture
def bundle(pristine_bundle, tmp_path):
    """A copy of the pristine bundle for one test (tests alter it) and its manifest."""
    shutil.copytree(pristine_bundle, tmp_path / "bundle")
    return tmp_path / "bundle", json.loads((tmp_path / "bundle" / "manifest.json").read_text())


def test_prepare_writes_wheels_data_manifest_and_ignores_itself(bundle):
    folder, manifest = bundle
    paths = sorted(e["path"] for e in manifest["files"])
    batches = sorted(f"data/cifar-10-batches-py/{b}" for b in data.CIFAR10_BATCHES["train"] + ("test_batch",))
    assert paths == batches + ["wheels/lazykit_tiny_probe-1.0-py3-none-any.whl"]
    assert manifest["total_bytes"] == sum((folder / p).stat().st_size for p in paths)
    assert manifest["cifar10"] == "data/cifar-10-batches-py"
    assert manifest["python_versions"] == list(gpu_bundle.SUPPORTED_PYTHONS)          # every supported Python
    assert manifest["wheels"] == {v: ["lazykit_tiny_probe-1.0-py3-none-any.whl"] for v in gpu_bundle.SUPPORTED_PYTHONS}
    assert json.loads((folder / "manifest.json").read_text()) == manifest
    assert (folder / ".gitignore").read_text() == "*\n"
    assert gpu_bundle.verify(folder) == manifest
    assert gpu_bundle.data_dir(folder, manifest) == str((folder / "data").resolve())
    assert data.find("cifar10", folder / "data") == (folder / "data" / "cifar-10-batches-py", "batches")
    np.testing.assert_array_equal(data.read_cifar_batches(folder / "data" / "cifar-10-batches-py", "test")[0],
                                  _fake_cifar_parts()["test"][0])


def test_a_changed_or_missing_file_is_refused(bundle):
    folder, _ = bundle
    batch = folder / "data" / "cifar-10-batches-py" / "test_batch"
    batch.write_bytes(b"altered")
    with pytest.raises(gpu_bundle.BundleError, match="does not match its SHA-256"):
        gpu_bundle.verify(folder)
    batch.unlink()
    with pytest.raises(gpu_bundle.BundleError, match="is missing"):
        gpu_bundle.verify(folder)
    with pytest.raises(gpu_bundle.BundleError, match="not a gpu-check bundle"):
        gpu_bundle.verify(folder / "data")


def test_prepare_never_writes_into_a_folder_that_is_not_a_bundle(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "cifar10-jpeg.tar.gz").write_bytes(b"a user's data")
    with pytest.raises(gpu_bundle.BundleError, match="not empty and not a gpu-check bundle"):
        gpu_bundle.prepare(tmp_path, requirements=(), wheel_source=tmp_path)
    assert (tmp_path / "data" / "cifar10-jpeg.tar.gz").read_bytes() == b"a user's data"
    with pytest.raises(gpu_bundle.BundleError, match="'3.9' is not one lazykit supports"):
        gpu_bundle.prepare(tmp_path / "new", python_versions=("3.9",), requirements=(), wheel_source=tmp_path)


# ----------------------------------------------------------------------------------------------- binary wheels
def _binary_probe_source(folder: Path) -> dict:
    """Binary wheels of one package for cp39..cp314 on manylinux x86-64, plus an aarch64 decoy of cp312."""
    made = {}
    for minor in range(9, 15):
        tag = f"cp3{minor}-cp3{minor}-manylinux_2_17_x86_64.manylinux2014_x86_64"
        made[f"3.{minor}"] = _wheel(folder, "lazykit-probe-ext", tag=tag,
                                    files={f"lazykit_probe_ext.cpython-3{minor}-x86_64-linux-gnu.so": b"\x7fELF"})
    _wheel(folder, "lazykit-probe-ext", tag="cp312-cp312-manylinux2014_aarch64",
           files={"lazykit_probe_ext.cpython-312-aarch64-linux-gnu.so": b"\x7fELF"})
    return made


def test_binary_wheels_for_every_supported_python_by_default(tmp_path):
    source = tmp_path / "wheelhouse"
    source.mkdir()
    made = _binary_probe_source(source)
    manifest = gpu_bundle.prepare(tmp_path / "bundle", requirements=("lazykit-probe-ext",), wheel_source=source)
    got = sorted(p.name for p in (tmp_path / "bundle" / "wheels").iterdir())
    assert got == sorted(made[v].name for v in gpu_bundle.SUPPORTED_PYTHONS)        # cp310..cp313, x86-64 only
    assert manifest["wheels"] == {v: [made[v].name] for v in gpu_bundle.SUPPORTED_PYTHONS}
    # the one option the README shows: that Python only
    one = gpu_bundle.prepare(tmp_path / "one", python_versions=("3.12",), requirements=("lazykit-probe-ext",),
                             wheel_source=source)
    assert [p.name for p in (tmp_path / "one" / "wheels").iterdir()] == [made["3.12"].name]
    assert gpu_bundle.describe(one).endswith("1 wheels for Python 3.12, no CIFAR-10")
    gpu_bundle.check_python(one, "3.12")
    with pytest.raises(gpu_bundle.BundleError, match="holds wheels for Python 3.12, but this machine runs Python 3.11"):
        gpu_bundle.check_python(one, "3.11")


def test_markers_are_evaluated_for_each_target_python_not_this_one(tmp_path):
    # what pip download --python-version gets wrong: it evaluates markers for the Python it runs on
    source = tmp_path / "wheelhouse"
    source.mkdir()
    _wheel(source, "lazykit-probe", requires=['lazykit-backport; python_version < "3.11"',
                                             'lazykit-new>=2; python_version >= "3.12"',
                                             'lazykit-fast; extra == "fast"', "numpy>=1.0", "scipy"])
    _wheel(source, "lazykit-only311", requires=["lazykit-backport"])
    for name in ("lazykit-backport", "lazykit-fast"):
        _wheel(source, name)
    _wheel(source, "lazykit-new", "1.5")
    _wheel(source, "lazykit-new", "2.1")
    requirements = ("lazykit-probe[fast]", "lazykit-only311; python_version == '3.11'")
    manifest = gpu_bundle.prepare(tmp_path / "bundle", requirements=requirements, wheel_source=source)
    names = {v: sorted(w.split("-")[0] for w in wheels) for v, wheels in manifest["wheels"].items()}
    assert names == {"3.10": ["lazykit_backport", "lazykit_fast", "lazykit_probe"],
                     "3.11": ["lazykit_backport", "lazykit_fast", "lazykit_only311", "lazykit_probe"],
                     "3.12": ["lazykit_fast", "lazykit_new", "lazykit_probe"],
                     "3.13": ["lazykit_fast", "lazykit_new", "lazykit_probe"]}     # numpy, scipy: the image's
    assert "lazykit_new-2.1-py3-none-any.whl" in manifest["wheels"]["3.12"]
    # asked for explicitly (--add), an image package is bundled too
    _wheel(source, "scipy", "1.14.0")
    added = gpu_bundle.prepare(tmp_path / "added", python_versions=("3.12",), requirements=("lazykit-probe",),
                               extra_requirements=("scipy",), wheel_source=source)
    assert "scipy-1.14.0-py3-none-any.whl" in added["wheels"]["3.12"] and "scipy" in added["requirements"]


def test_a_narrower_requirement_downloads_the_package_again(tmp_path):
    source = tmp_path / "wheelhouse"
    source.mkdir()
    _wheel(source, "lazykit-a", requires=["lazykit-c<2"])
    _wheel(source, "lazykit-c", "1.0")
    _wheel(source, "lazykit-c", "2.0")
    manifest = gpu_bundle.prepare(tmp_path / "bundle", python_versions=("3.12",),
                                  requirements=("lazykit-c", "lazykit-a"), wheel_source=source)
    assert sorted(manifest["wheels"]["3.12"]) == ["lazykit_a-1.0-py3-none-any.whl", "lazykit_c-1.0-py3-none-any.whl"]
    assert sorted(p.name for p in (tmp_path / "bundle" / "wheels").iterdir()) == sorted(manifest["wheels"]["3.12"])


def _compiled_extension_wheel(folder: Path, build: Path) -> Path:
    """A real binary wheel for this Python: a C extension compiled here (lazykit_ext.answer() == 42), tagged
    cpXY-cpXY-manylinux2014_x86_64 as a manylinux build would be."""
    include = sysconfig.get_paths()["include"]
    if shutil.which("gcc") is None or not Path(include, "Python.h").is_file():
        pytest.skip("needs gcc and this Python's headers to build a C extension")
    c_file = build / "lazykit_ext.c"
    c_file.write_text('#include <Python.h>\n'
                      'static PyObject* answer(PyObject* s, PyObject* a) { return PyLong_FromLong(42); }\n'
                      'static PyMethodDef methods[] = {{"answer", answer, METH_NOARGS, ""}, {0}};\n'
                      'static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "lazykit_ext", "", -1, methods};\n'
                      'PyMODINIT_FUNC PyInit_lazykit_ext(void) { return PyModule_Create(&module); }\n')
    so_name = "lazykit_ext" + sysconfig.get_config_var("EXT_SUFFIX")
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", f"-I{include}", str(c_file), "-o", str(build / so_name)],
                   check=True, capture_output=True)
    tag = f"cp3{sys.version_info.minor}-cp3{sys.version_info.minor}-manylinux2014_x86_64"
    return _wheel(folder, "lazykit-ext", tag=tag, files={so_name: (build / so_name).read_bytes()})


@pytest.mark.skipif(sys.platform != "linux" or os.uname().machine != "x86_64", reason="a manylinux x86-64 build")
def test_a_compiled_wheel_goes_through_the_bundle_into_a_fresh_venv(tmp_path):
    source, build = tmp_path / "wheelhouse", tmp_path / "build"
    source.mkdir()
    build.mkdir()
    wheel = _compiled_extension_wheel(source, build)
    manifest = gpu_bundle.prepare(tmp_path / "bundle", python_versions=(THIS_PYTHON,), requirements=("lazykit-ext",),
                                  wheel_source=source)
    assert manifest["wheels"] == {THIS_PYTHON: [wheel.name]}
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    step = gpu_check.Step("install bundle", gpu_bundle.install_command(tmp_path / "bundle", manifest, python=python),
                          "install")
    gpu_check.run_step(step, 120, {"PATH": "/usr/bin:/bin", "PIP_CONFIG_FILE": "/dev/null"})
    assert step.outcome == "ok", step.output
    out = subprocess.run([python, "-c", "import lazykit_ext; print(lazykit_ext.answer(), lazykit_ext.__file__)"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.split()[0] == "42" and out.stdout.split()[1].endswith(sysconfig.get_config_var("EXT_SUFFIX"))


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
    # (the distributions' versions: a PyPI CUDA build of torch says 2.14.1 there and 2.14.1+cu130 in __version__)
    import importlib.metadata
    import numpy
    pins = gpu_bundle.installed_pins()
    assert f"numpy=={numpy.__version__}" in pins and f"torch=={importlib.metadata.version('torch')}" in pins
    folder, manifest = bundle
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_FIND_LINKS": ""}
    for pin, ok in (("numpy==" + numpy.__version__, True), ("lazykit-tiny-probe==2.0", False)):
        constraints = tmp_path / "pins.txt"
        constraints.write_text(pin + "\n")
        argv = gpu_bundle.install_command(folder, manifest, constraints=constraints) + ["--dry-run"]
        assert (subprocess.run(argv, capture_output=True, text=True, env=env).returncode == 0) is ok


def test_prepare_from_the_command_line(tmp_path, monkeypatch, capsys):
    source, folder = tmp_path / "wheelhouse", tmp_path / "data"
    source.mkdir()
    _tiny_wheel(source, 1)
    _wheel(source, "scipy", "1.14.0")
    rng = np.random.default_rng(3)
    full = {split: (rng.integers(0, 256, (40, 3, 32, 32), dtype=np.uint8), np.arange(40) % 10)
            for split in ("train", "test")}
    data.write_cifar_batches(folder / data.CIFAR10_BATCHES_DIR, full)
    monkeypatch.setattr(gpu_bundle, "REQUIREMENTS", ("lazykit-tiny-probe",))
    out = tmp_path / "gpu-bundle"
    assert gpu_check.main(["--prepare", str(out), "--wheel-source", str(source), "--data-dir", str(folder),
                           "--python-version", "3.12", "--add", "scipy"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}: 0.1 MiB: 2 wheels for Python 3.12, CIFAR-10 images in data/cifar-10-batches-py" in printed
    assert "16 CIFAR-10 images for table" in printed and f"gpu-check --bundle {out}" in printed
    # the quick table's classes 0 and 1 (airplane, automobile), all of their images here (4 a split each)
    carried = {split: data.read_cifar_batches(out / "data" / data.CIFAR10_BATCHES_DIR, split) for split in full}
    for split, (images, labels) in full.items():
        keep = labels < 2
        np.testing.assert_array_equal(carried[split][0], images[keep])
        np.testing.assert_array_equal(carried[split][1], labels[keep])
    assert json.loads((out / "manifest.json").read_text())["requirements"] == ["lazykit-tiny-probe", "scipy"]
    # no CIFAR-10: said, and the bundle still made
    assert gpu_check.main(["--prepare", str(tmp_path / "nodata"), "--wheel-source", str(source), "--data-dir",
                           str(tmp_path / "wheelhouse")]) == 0
    assert "note: no CIFAR-10 under" in capsys.readouterr().out
    # a requirement the source cannot satisfy: the error names pip's failure, nothing half-written is claimed
    monkeypatch.setattr(gpu_bundle, "REQUIREMENTS", ("no-such-package-lazykit",))
    assert gpu_check.main(["--prepare", str(tmp_path / "other"), "--wheel-source", str(source)]) == 1
    assert "pip download for Python 3.10 failed" in capsys.readouterr().err
    assert not (tmp_path / "other" / "manifest.json").exists()


def test_a_bundle_for_another_python_is_refused_before_installing(bundle, capsys):
    folder, manifest = bundle
    manifest["python_versions"] = [v for v in gpu_bundle.SUPPORTED_PYTHONS if v != THIS_PYTHON]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert gpu_check.main(["--bundle", str(folder), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert f"but this machine runs Python {THIS_PYTHON}" in err and f"--python-version {THIS_PYTHON}" in err


def test_gpu_check_refuses_a_folder_without_manifest(tmp_path, capsys):
    assert gpu_check.main(["--bundle", str(tmp_path), "--dry-run"]) == 2
    assert "not a gpu-check bundle" in capsys.readouterr().err
    assert gpu_check.main(["--bundle", str(tmp_path), "--prepare", str(tmp_path)]) == 2


# ----------------------------------------------------------------------------------------------- every command
# Not on the GPU machine: numba (NOT_BUNDLED) and zarr/numcodecs until the bundle's install (and never on Python
# 3.10); dask and array-api-strict are test extras. Each is replaced by a stub that raises ModuleNotFoundError.
ABSENT = ("numba", "llvmlite", "zarr", "numcodecs", "dask", "distributed", "array_api_strict")
# how each command says it needs a GPU (analytic and solvers: CuPy; empirical and the experiments: torch)
NEEDS_GPU = re.compile(r"sees no (CUDA )?(GPU|device)")

DRIVER = r"""
import argparse, sys
mode, argv = sys.argv[1], sys.argv[2:]
if mode == "parse":      # the command's imports (cli imports its module) and its argument parsing, then stop
    real = argparse.ArgumentParser.parse_args
    def parse(self, args=None, namespace=None):
        real(self, args, namespace)          # argparse errors (exit 2) happen here
        print("PARSED", flush=True)
        raise SystemExit(0)
    argparse.ArgumentParser.parse_args = parse
elif mode == "plan":     # an experiment as if torch and CuPy saw a GPU: options resolved, runs planned, data identified
    import torch
    from kernels import backend
    torch.cuda.is_available = lambda: True
    backend.gpu_available = lambda: True
    from compare import cli
    def run_sweep(func, runs, out, config, **options):
        print(f"PLANNED {len(runs)} runs on {options['device']}; data {runs[0].params.get('data_sha256')}",
              flush=True)
        raise SystemExit(0)
    cli.sweep.run_sweep = run_sweep
from compare import cli
sys.exit(cli.main(argv))
"""


def _without_absent_modules(tmp_path) -> dict:
    """The environment of a process where the ABSENT modules do not import (as on the GPU machine)."""
    blocked = tmp_path / "blocked"
    for name in ABSENT:
        (blocked / name).mkdir(parents=True, exist_ok=True)
        (blocked / name / "__init__.py").write_text(f"raise ModuleNotFoundError({'No module named ' + repr(name)!r})\n")
    return {**os.environ, "PYTHONPATH": f"{blocked}{os.pathsep}{gpu_check.REPO_ROOT}"}


def _run(argv, env, timeout=300):
    out = subprocess.run(argv, cwd=gpu_check.REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    return out.returncode, out.stdout + out.stderr


def _drive(mode, argv, env, tmp_path):
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    return _run([sys.executable, str(driver), mode, *argv], env)


def test_every_dry_run_command_runs_without_numba_and_zarr(bundle, tmp_path, capsys):
    """Each command --dry-run lists (the bundle's install, tests/gpu, each benchmark's GPU run, the table
    experiment), run where numba and zarr do not import, as far as it goes without a GPU: pip resolves the
    install (--dry-run); pytest collects tests/gpu (the in-memory Gram test included, the store tests skipped);
    each `python -m compare` imports its module and parses its options, then stops at its own no-GPU error
    (never an ImportError or a traceback); the experiment, with torch made to see a GPU, resolves its options,
    plans its runs and identifies the bundle's CIFAR-10 images."""
    folder, _ = bundle
    assert gpu_check.main(["--dry-run", "--bundle", str(folder)]) == 0       # the bundle's data: the table runs
    commands = [shlex.split(line.split("   # ")[0]) for line in capsys.readouterr().out.splitlines()
                if not line.startswith("bundle ") and "   # skipped: " not in line]   # a skipped step never runs
    gpu_benchmarks = [b.name for b in BENCHMARKS.values() if b.gpu_args is not None]
    assert [argv[2] for argv in commands] == ["pip", "pytest"] + ["compare"] * (len(gpu_benchmarks) + 1)
    assert [argv[4] for argv in commands[2:-1]] == gpu_benchmarks and commands[-1][3] == "table"
    assert commands[-1][-2:] == ["--data-dir", str((folder / "data").resolve())]
    env = _without_absent_modules(tmp_path)
    from kernels.backend import gpu_available
    for argv in commands:
        assert argv[0] == "python"
        if argv[2] == "pip":
            rc, out = _run([sys.executable, *argv[1:], "--dry-run"],
                           {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_FIND_LINKS": ""})
            assert rc == 0 and "Would install lazykit-tiny-probe-1.0" in out, out
            continue
        if argv[2] == "pytest":
            # zarr's distribution registers a pytest plugin; its module is stubbed out here, so the plugin goes too
            rc, out = _run([sys.executable, *argv[1:], "--collect-only", "-rs", "-p", "no:zarr"], env)
            assert rc == 0, out[-3000:]
            assert "test_gram_gpu.py::test_gram_in_memory_on_the_gpu_matches_the_cpu" in out
            assert re.search(r"SKIPPED \[1\] tests/gpu/test_gram_store_gpu.py:\d+: could not import 'zarr'", out), out
            continue
        rc, out = _drive("parse", argv[3:], env, tmp_path)
        assert rc == 0 and out.strip().endswith("PARSED"), out[-3000:]
        if argv[3] == "table":
            rc, out = _drive("plan", argv[3:], env, tmp_path)
            assert rc == 0 and re.search(r"PLANNED \d+ runs on cuda; data [0-9a-f]{64}$", out.strip()), out[-3000:]
        if not gpu_available():
            rc, out = _run([sys.executable, *argv[1:]], env)
            assert rc != 0 and NEEDS_GPU.search(out) and "Traceback" not in out, out[-3000:]


def test_the_parse_check_catches_an_unknown_option(tmp_path):
    # what bug 3 was: `bench analytic --device cuda` exited 2 with "unrecognized arguments"
    rc, out = _drive("parse", ["bench", "analytic", "--no-such-option"], _without_absent_modules(tmp_path), tmp_path)
    assert rc == 2 and "unrecognized arguments: --no-such-option" in out and "PARSED" not in out


def test_bench_analytic_on_cuda_never_imports_numba(tmp_path):
    # the CPU floor (numba) is imported only where it is measured: the CPU fused table
    code = ("import sys; from compare.bench import analytic; "
            "assert 'numba' not in sys.modules and 'compare.bench.cpu_floor' not in sys.modules; print('clean')")
    rc, out = _run([sys.executable, "-c", code], _without_absent_modules(tmp_path))
    assert rc == 0 and out.strip() == "clean", out


def test_dry_run_works_before_lazykit_dependencies_are_installed(bundle, tmp_path):
    # a bare GPU machine: array-api-compat arrives with the bundle, so gpu-check must start without it (and
    # without packaging, which only making a bundle needs)
    for name in ("array_api_compat", "packaging"):
        stub = tmp_path / "stub" / name
        stub.mkdir(parents=True)
        (stub / "__init__.py").write_text(f"raise ModuleNotFoundError(\"No module named '{name}'\")\n")
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
