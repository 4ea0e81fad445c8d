"""The offline bundle of ``python -m compare gpu-check``: wheels, the data of the GPU experiments, a manifest.

Made for a GPU machine that has CUDA, CuPy, PyTorch, scikit-learn, pytest and tqdm, but no network and only
the checkout. ``gpu-check --prepare DIR``, run where the package registries are reachable, writes DIR:

* ``wheels/``: :data:`REQUIREMENTS` and their dependencies beyond the GPU image (:data:`BASELINE`), for every
  Python the project supports (:data:`SUPPORTED_PYTHONS`; ``--python-version X.Y``: that one only) on
  manylinux x86-64, as binary wheels;
* ``data/cifar-10-batches-py``: the CIFAR-10 images the GPU experiments draw from (the quick ``table``: the first
  500 airplane and 500 automobile images of each split, 5.9 MiB), written by ``compare.data.write_cifar_batches``
  so that ``load_split`` gives the same splits as from the full data set;
* ``manifest.json``: every file with its size and SHA-256, the requirements, the Pythons and each one's wheels;
* ``.gitignore`` holding ``*``, so the bundle is never committed wherever DIR is.

Why not one ``pip download``: pip evaluates environment markers (``python_version < "3.11"``) for the Python it
runs on, not for ``--python-version`` (measured with pip 23.2 and 26.3: a 3.10 download from 3.11 leaves out
pytest's ``exceptiongroup`` and ``tomli``, and refuses ``zarr; python_version >= '3.11'`` for 3.10 instead of
skipping it). So each Python's set is resolved here (:func:`resolve`): pip downloads one wheel per requirement
(``--no-deps``, its tags and Requires-Python for the target), and the markers of each wheel's Requires-Dist are
evaluated for the target (:func:`marker_environment`), until nothing new is required.

``gpu-check --bundle DIR`` checks the manifest and that it holds this Python's wheels, installs with ``pip install
--no-index --find-links DIR/wheels`` under constraints that pin the image's own packages (BASELINE) to their
installed versions, so the install adds what is missing and never swaps the NumPy or PyTorch that CuPy and the
CUDA builds were made against (a conflict fails the install instead), and points the data steps at DIR/data.
"""
from __future__ import annotations

import datetime
import email.parser
import hashlib
import importlib.metadata
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

# packaging (a dependency of pytest and matplotlib) is imported where a bundle is made, not where one is
# installed: gpu-check starts on the GPU machine before anything is installed there


# the Pythons lazykit supports (pyproject.toml: requires-python >= 3.10); --prepare bundles wheels for each
SUPPORTED_PYTHONS = ("3.10", "3.11", "3.12", "3.13")
# What the GPU image already has (importable names differ from PyPI names for some; these are PyPI names).
BASELINE = ("numpy", "scipy", "scikit-learn", "joblib", "threadpoolctl", "torch", "tqdm", "pytest", "cupy")
# Dependencies the GPU run does without: numba only speeds up the CPU kernels (without it they take the reference
# path), and its llvmlite wheel alone is about 40 MB.
NOT_BUNDLED = ("numba",)
# lazykit's dependencies beyond BASELINE and NOT_BUNDLED (tests/compare/gpu/test_bundle.py checks this against
# pyproject.toml), pytest-timeout, which reads the `timeout` option of the pytest configuration, and zarr (with
# numcodecs, its dependency) for the Gram store tests of tests/gpu (zarr 3 needs Python >= 3.11, as pyproject says).
REQUIREMENTS = ("array-api-compat>=1.6", "matplotlib>=3.7", "pillow>=9.0", "pytest-timeout>=2.1",
                "zarr>=3.0; python_version >= '3.11'")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux2014_x86_64")
MANIFEST = "manifest.json"
CIFAR_FOLDER = "cifar-10-batches-py"


class BundleError(RuntimeError):
    """The bundle folder is missing, incomplete or altered, or cannot be made."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def marker_environment(python_version: str) -> dict:
    """PEP 508 marker values of CPython ``python_version`` ("X.Y") on manylinux x86-64 (the GPU machine)."""
    full = f"{python_version}.0"
    return {"python_version": python_version, "python_full_version": full, "implementation_name": "cpython",
            "implementation_version": full, "platform_python_implementation": "CPython", "os_name": "posix",
            "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
            "platform_release": "", "platform_version": "", "extra": ""}


def download_command(dest: Path, requirements, python_version: str, wheel_source=None) -> list:
    """The ``pip download --no-deps`` argv that fetches one wheel per requirement for ``python_version`` into
    ``dest`` (from ``wheel_source``, a local folder, if given)."""
    argv = [sys.executable, "-m", "pip", "download", "--no-deps", "--dest", str(dest), "--only-binary=:all:",
            "--python-version", python_version, "--implementation", "cp"]
    for platform in PLATFORMS:
        argv += ["--platform", platform]
    if wheel_source is not None:
        argv += ["--no-index", "--find-links", str(wheel_source)]
    return argv + list(requirements)


def _requires_dist(wheel: Path) -> list:
    """The Requires-Dist lines of a wheel's METADATA."""
    with zipfile.ZipFile(wheel) as archive:
        name = next((n for n in archive.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")), None)
        if name is None:
            raise BundleError(f"{wheel.name} has no .dist-info/METADATA: not a wheel")
        metadata = email.parser.Parser().parsestr(archive.read(name).decode("utf-8"))
    return metadata.get_all("Requires-Dist") or []


def _applies(requirement, environment: dict, extras=()) -> bool:
    """Whether ``requirement``'s marker holds in ``environment`` with no extra or one of ``extras``."""
    return requirement.marker is None or any(requirement.marker.evaluate({**environment, "extra": extra})
                                             for extra in ("", *sorted(extras)))


def resolve(requirements, python_version: str, dest: Path, wheel_source=None, skip=()) -> dict:
    """Download the wheels ``requirements`` need on CPython ``python_version`` into ``dest``: {name: wheel path}.

    Dependencies whose names are in ``skip`` (the GPU image's) are left out. A package required again with a
    narrower specifier, or new extras, is downloaded again (its older wheel removed). pip's failures raise
    BundleError with its output.
    """
    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet
    from packaging.utils import canonicalize_name, parse_wheel_filename
    environment = marker_environment(python_version)
    skip = {canonicalize_name(n) for n in skip}
    specifiers, extras, wheels = {}, {}, {}
    frontier = [r for r in map(Requirement, requirements) if _applies(r, environment)]
    while frontier:
        changed = set()
        for requirement in frontier:
            name = canonicalize_name(requirement.name)
            if name in skip:
                continue
            specifier = specifiers.get(name, SpecifierSet()) & requirement.specifier
            wanted = extras.get(name, set()) | set(requirement.extras)
            if name in wheels and specifier == specifiers[name] and wanted == extras[name]:
                continue
            specifiers[name], extras[name] = specifier, wanted
            changed.add(name)
        fetch = sorted(n for n in changed if n not in wheels
                       or not specifiers[n].contains(parse_wheel_filename(wheels[n].name)[1], prereleases=True))
        if fetch:
            before = set(dest.glob("*.whl"))
            run = subprocess.run(download_command(dest, [f"{n}{specifiers[n]}" for n in fetch], python_version,
                                                  wheel_source), capture_output=True, text=True)
            if run.returncode:
                raise BundleError(f"pip download for Python {python_version} failed (rc {run.returncode}):\n"
                                  f"{(run.stdout + run.stderr)[-3000:]}")
            for wheel in dest.glob("*.whl"):
                name = canonicalize_name(parse_wheel_filename(wheel.name)[0])
                if name in fetch and (wheel not in before or name not in wheels):
                    if name in wheels and wheels[name] != wheel:
                        wheels[name].unlink()
                    wheels[name] = wheel
            missing = [n for n in fetch if n not in wheels]
            if missing:
                raise BundleError(f"pip download for Python {python_version} wrote no wheel for {', '.join(missing)}")
        frontier = [r for n in sorted(changed) for r in map(Requirement, _requires_dist(wheels[n]))
                    if _applies(r, environment, extras[n])]
    return wheels


def prepare(bundle_dir, *, python_versions=None, requirements=None, extra_requirements=(), wheel_source=None,
            cifar10=None) -> dict:
    """Write the bundle into ``bundle_dir`` (created; an existing manifest is replaced) and return its manifest.

    ``python_versions`` default to :data:`SUPPORTED_PYTHONS`; ``requirements`` to :data:`REQUIREMENTS`, plus
    ``extra_requirements`` (bundled even when the image is meant to have them, e.g. scipy); ``wheel_source``: a
    local folder instead of the registries; ``cifar10``: the images to carry, as ``compare.data.split_source``
    gives them.
    """
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    versions = tuple(SUPPORTED_PYTHONS if python_versions is None else python_versions)
    for version in versions:
        if version not in SUPPORTED_PYTHONS:
            raise BundleError(f"python version {version!r} is not one lazykit supports: "
                              f"{', '.join(SUPPORTED_PYTHONS)}")
    requirements = (REQUIREMENTS if requirements is None else tuple(requirements)) + tuple(extra_requirements)
    wanted = {canonicalize_name(Requirement(r).name) for r in requirements}
    skip = [n for n in BASELINE + NOT_BUNDLED if canonicalize_name(n) not in wanted]
    bundle = Path(bundle_dir)
    if bundle.is_dir() and any(bundle.iterdir()) and not (bundle / MANIFEST).is_file():
        raise BundleError(f"{bundle} is not empty and not a gpu-check bundle (no {MANIFEST}): preparing replaces "
                          "its wheels/ and data/, so give a new folder")
    wheels_dir = bundle / "wheels"
    wheels_dir.mkdir(parents=True, exist_ok=True)
    (bundle / ".gitignore").write_text("*\n")
    for old in wheels_dir.glob("*.whl"):
        old.unlink()
    per_version = {}
    with tempfile.TemporaryDirectory(dir=bundle) as scratch:
        for version in versions:
            folder = Path(scratch) / version
            folder.mkdir()
            chosen = resolve(requirements, version, folder, wheel_source, skip)
            for wheel in chosen.values():
                if not (wheels_dir / wheel.name).exists():
                    shutil.move(str(wheel), wheels_dir / wheel.name)
            per_version[version] = sorted(w.name for w in chosen.values())
    data = bundle / "data"
    if data.exists():
        shutil.rmtree(data)
    if cifar10 is not None:
        from compare.data import write_cifar_batches
        write_cifar_batches(data / CIFAR_FOLDER, cifar10)
    files = sorted(p for p in bundle.rglob("*") if p.is_file() and p.name not in (MANIFEST, ".gitignore"))
    entries = [{"path": p.relative_to(bundle).as_posix(), "bytes": p.stat().st_size, "sha256": _sha256(p)}
               for p in files]
    manifest = {"created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                "python_versions": list(versions), "platforms": list(PLATFORMS), "requirements": list(requirements),
                "wheels": per_version, "cifar10": f"data/{CIFAR_FOLDER}" if cifar10 is not None else None,
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


def python_versions(manifest: dict) -> list:
    """The Pythons a manifest holds wheels for (a manifest of one version says ``python_version``)."""
    return list(manifest.get("python_versions") or [manifest["python_version"]])


def check_python(manifest: dict, version=None) -> None:
    """BundleError unless the bundle holds wheels for ``version`` ("X.Y", default this Python's)."""
    version = version or f"{sys.version_info.major}.{sys.version_info.minor}"
    held = python_versions(manifest)
    if version not in held:
        raise BundleError(f"the bundle holds wheels for Python {', '.join(held)}, but this machine runs Python "
                          f"{version}: prepare it again with `python -m compare gpu-check --prepare DIR` (every "
                          f"Python from {SUPPORTED_PYTHONS[0]} to {SUPPORTED_PYTHONS[-1]}) or with "
                          f"`--python-version {version}`")


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
    """The bundle's data folder (for ``--data-dir``), or None when it holds no data."""
    return str((Path(bundle_dir) / "data").resolve()) if manifest.get("cifar10") else None


def describe(manifest: dict) -> str:
    """One line: size, file count, what it holds."""
    wheels = sum(1 for e in manifest["files"] if e["path"].startswith("wheels/"))
    data = f"CIFAR-10 images in {manifest['cifar10']}" if manifest.get("cifar10") else "no CIFAR-10"
    return (f"{manifest['total_bytes'] / 2 ** 20:.1f} MiB: {wheels} wheels for Python "
            f"{', '.join(python_versions(manifest))}, {data}")
