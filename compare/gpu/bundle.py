"""The offline bundle of ``python -m compare gpu-check``: wheels, the CIFAR-10 archive and a manifest.

Made for a GPU machine that has CUDA, CuPy, PyTorch, scikit-learn, pytest and tqdm, but no network and only
the checkout. ``gpu-check --prepare DIR``, run where the package registries are reachable, writes DIR:

* ``wheels/``: :data:`REQUIREMENTS` and their dependencies, downloaded with ``pip download
  --only-binary=:all:`` for the GPU machine's Python (``--python-version``, default this one) on manylinux
  x86-64, so binary wheels fit there and pure-Python ones anywhere;
* ``data/cifar10-jpeg.tar.gz``: the CIFAR-10 archive, when one is found;
* ``manifest.json``: every file with its size and SHA-256, the requirements, Python version and platforms;
* ``.gitignore`` holding ``*``, so the bundle is never committed wherever DIR is.

``gpu-check --bundle DIR`` checks the manifest, installs with ``pip install --no-index --find-links
DIR/wheels`` under constraints that pin the image's own packages (BASELINE) to their installed versions, so
the install adds what is missing and never swaps the NumPy or PyTorch that CuPy and the CUDA builds were made
against (a conflict fails the install instead), and points the data steps at DIR/data.
"""
from __future__ import annotations

import datetime
import hashlib
import importlib.metadata
import json
import shutil
import subprocess
import sys
from pathlib import Path

# What the GPU image already has (importable names differ from PyPI names for some; these are PyPI names).
BASELINE = ("numpy", "scipy", "scikit-learn", "joblib", "threadpoolctl", "torch", "tqdm", "pytest", "cupy")
# Dependencies the GPU run does without: numba only speeds up the CPU kernels (without it they take the reference
# path), and its llvmlite wheel alone is about 40 MB.
NOT_BUNDLED = ("numba",)
# lazykit's dependencies beyond BASELINE and NOT_BUNDLED (tests/compare/test_gpu_bundle.py checks this against
# pyproject.toml), plus pytest-timeout, which reads the `timeout` option of the pytest configuration.
REQUIREMENTS = ("array-api-compat>=1.6", "matplotlib>=3.7", "pillow>=9.0", "pytest-timeout>=2.1")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux2014_x86_64")
MANIFEST = "manifest.json"
CIFAR_ARCHIVE = "cifar10-jpeg.tar.gz"


class BundleError(RuntimeError):
    """The bundle folder is missing, incomplete or altered."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_command(dest: Path, requirements, python_version: str, wheel_source=None) -> list:
    """The ``pip download`` argv that fills ``dest`` (from ``wheel_source``, a local folder, if given)."""
    argv = [sys.executable, "-m", "pip", "download", "--dest", str(dest), "--only-binary=:all:",
            "--python-version", python_version, "--implementation", "cp"]
    for platform in PLATFORMS:
        argv += ["--platform", platform]
    if wheel_source is not None:
        argv += ["--no-index", "--find-links", str(wheel_source)]
    return argv + list(requirements)


def prepare(bundle_dir, *, cifar_archive=None, python_version=None, requirements=None, wheel_source=None) -> dict:
    """Write the bundle into ``bundle_dir`` (created; an existing manifest is replaced) and return its manifest.

    ``requirements`` default to :data:`REQUIREMENTS`; ``wheel_source``: a local folder instead of the registries.
    """
    requirements = REQUIREMENTS if requirements is None else tuple(requirements)
    bundle = Path(bundle_dir)
    wheels = bundle / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    (bundle / ".gitignore").write_text("*\n")
    version = python_version or f"{sys.version_info.major}.{sys.version_info.minor}"
    run = subprocess.run(download_command(wheels, requirements, version, wheel_source), capture_output=True,
                         text=True)
    if run.returncode:
        raise BundleError(f"pip download failed (rc {run.returncode}):\n{(run.stdout + run.stderr)[-3000:]}")
    if cifar_archive is not None:
        (bundle / "data").mkdir(exist_ok=True)
        shutil.copyfile(cifar_archive, bundle / "data" / CIFAR_ARCHIVE)
    files = sorted(p for p in bundle.rglob("*") if p.is_file() and p.name not in (MANIFEST, ".gitignore"))
    entries = [{"path": p.relative_to(bundle).as_posix(), "bytes": p.stat().st_size, "sha256": _sha256(p)}
               for p in files]
    manifest = {"created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                "python_version": version, "platforms": list(PLATFORMS), "requirements": list(requirements),
                "cifar10": f"data/{CIFAR_ARCHIVE}" if cifar_archive is not None else None,
                "total_bytes": sum(e["bytes"] for e in entries), "files": entries}
    (bundle / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def verify(bundle_dir) -> dict:
    """The manifest of ``bundle_dir`` after checking that every file it lists is there with its SHA-256."""
    bundle = Path(bundle_dir)
    path = bundle / MANIFEST
    if not path.is_file():
        raise BundleError(f"{bundle} is not a gpu-check bundle: no {MANIFEST} (make one with "
                          "`python -m compare gpu-check --prepare DIR` where the package registries are reachable)")
    manifest = json.loads(path.read_text())
    for entry in manifest["files"]:
        file = bundle / entry["path"]
        if not file.is_file():
            raise BundleError(f"bundle file {entry['path']} is missing from {bundle}")
        if _sha256(file) != entry["sha256"]:
            raise BundleError(f"bundle file {entry['path']} does not match its SHA-256 in {MANIFEST}")
    return manifest


def installed_pins() -> list:
    """``name==version`` for each BASELINE package installed here (CuPy's distribution name varies: left out)."""
    pins = []
    for name in BASELINE:
        try:
            pins.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    return pins


def install_command(bundle_dir, manifest: dict, python=None, constraints=None) -> list:
    """The offline ``pip install`` argv for the bundle's requirements (``constraints``: a pip constraints file)."""
    argv = [python or sys.executable, "-m", "pip", "install", "--no-index", "--find-links",
            str(Path(bundle_dir) / "wheels")]
    if constraints is not None:
        argv += ["--constraint", str(constraints)]
    return argv + list(manifest["requirements"])


def data_dir(bundle_dir, manifest: dict):
    """The bundle's data folder (for ``--data-dir``), or None when it holds no CIFAR-10 archive."""
    return str((Path(bundle_dir) / "data").resolve()) if manifest.get("cifar10") else None


def describe(manifest: dict) -> str:
    """One line: size, file count, what it holds."""
    wheels = sum(1 for e in manifest["files"] if e["path"].startswith("wheels/"))
    cifar = "CIFAR-10 included" if manifest.get("cifar10") else "no CIFAR-10"
    return (f"{manifest['total_bytes'] / 2 ** 20:.1f} MiB: {wheels} wheels for Python {manifest['python_version']}"
            f", {cifar}")
