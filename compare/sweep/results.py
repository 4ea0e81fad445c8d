"""DIR/results.jsonl and DIR/config.json: one JSON line per finished run, written with a single ``write`` then
``flush`` and ``fsync`` (a killed sweep leaves at most one half-written last line, dropped on resume), and the
sweep's configuration with its fingerprint (results of another configuration are refused, never mixed).
Every error names the file and what to do (``ResultsFileError``); nothing already saved is changed.
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import warnings
from pathlib import Path

from compare.sweep.keys import LOCATION_KEYS, canonical, fingerprint, identity, to_jsonable

RESULTS = "results.jsonl"
CONFIG = "config.json"


class ConfigMismatchError(ValueError):
    """DIR/results.jsonl was written by a sweep with a different configuration."""


class ResultsFileError(ValueError):
    """A file or folder of the sweep (results.jsonl, config.json, --out) cannot be read or written as it is;
    the message names the path and what to do. Nothing already saved is changed."""


def read_results(path) -> list[dict]:
    """Rows of a results.jsonl file, ignoring a trailing half-written line (one without its newline).

    A complete line that is not a JSON object means the file was edited or corrupted: ValueError naming
    the line, rather than silently dropping data.
    """
    path = Path(path)
    if not path.exists():
        return []
    if not path.is_file():
        raise ResultsFileError(f"{path} is not a file (a directory?); move it away, or pass another --out")
    data = _read_bytes(path)
    complete = data[: data.rfind(b"\n") + 1]
    if len(complete) < len(data):
        warnings.warn(f"{path}: ignoring a half-written last line ({len(data) - len(complete)} bytes); "
                      "its run will be redone", RuntimeWarning, stacklevel=2)
    rows = []
    for number, raw in enumerate(complete.split(b"\n")[:-1], start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ResultsFileError(f"{path}, line {number}: not UTF-8 text (byte {raw[exc.start]:#04x} at column "
                                   f"{exc.start + 1}); fix or remove that line, or pass --no-resume to start "
                                   "afresh") from None
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ResultsFileError(f"{path}, line {number}: not a JSON object ({exc.msg}); "
                             "fix or remove that line, or pass --no-resume to start afresh") from None
        if not isinstance(row, dict):
            raise ResultsFileError(f"{path}, line {number}: expected a JSON object, got {type(row).__name__}; "
                                   "fix or remove that line, or pass --no-resume to start afresh")
        rows.append(row)
    return rows


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ResultsFileError(f"cannot read {path} ({exc.strerror}); check its permissions, or pass another "
                               "--out") from None


def read_config(path) -> dict | None:
    """The stored DIR/config.json ({"fingerprint", "config"}), None when absent; ResultsFileError naming the
    file when it is not such a JSON object."""
    path = Path(path)
    if not path.exists():
        return None
    if not path.is_file():
        raise ResultsFileError(f"{path} is not a file (a directory?); move it away, or pass another --out")
    try:
        stored = json.loads(_read_bytes(path).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResultsFileError(f"{path} is not valid JSON ({exc}); restore it, delete it together with "
                               f"{RESULTS}, or pass --no-resume to set both aside") from None
    if not isinstance(stored, dict) or not isinstance(stored.get("fingerprint"), str):
        raise ResultsFileError(f"{path} must hold a JSON object with a \"fingerprint\" string (written by "
                               f"lazykit), got {type(stored).__name__}; restore it, or pass --no-resume to set "
                               "the old results aside")
    return stored


def drop_torn_tail(path) -> None:
    """Truncate ``path`` after its last newline, so the next append starts on a fresh line."""
    path = Path(path)
    if not path.exists():
        return
    if not path.is_file():
        raise ResultsFileError(f"{path} is not a file (a directory?); move it away, or pass another --out")
    data = _read_bytes(path)
    keep = data.rfind(b"\n") + 1
    if keep < len(data):
        with open(path, "r+b") as handle:
            handle.truncate(keep)
            handle.flush()
            os.fsync(handle.fileno())


def append_row(path, row: dict) -> None:
    """Append one row as one JSON line: a single write, then flush and fsync.

    If the write fails (a full disk, a quota), the file is cut back to its previous length, so no torn row
    is left behind, and ``ResultsFileError`` says so.
    """
    line = (canonical(row) + "\n").encode()
    try:
        handle = open(path, "ab")
    except OSError as exc:
        raise ResultsFileError(f"cannot open {path} for writing ({exc.strerror}); check the permissions of "
                               "that folder or pass another --out") from None
    with handle:
        size = handle.tell()
        try:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        except OSError as exc:
            try:
                handle.truncate(size)
            except OSError:
                pass
            raise ResultsFileError(f"could not write a row to {path} ({exc.strerror}); the rows saved before are "
                                   "intact. Free some space (or fix the folder) and run the same command to "
                                   "resume") from None


def prepare(out_dir, sweep_config: dict, resume: bool = True, resolved: dict | None = None) -> list[dict]:
    """Make ``out_dir`` ready for a sweep and return the rows already finished there.

    - No results yet: write DIR/config.json.
    - Results from the same configuration (same fingerprint): keep them (resume) and drop a torn last line;
      config.json's ``resolved`` (how this sweep executes: devices, jobs, threads) is brought up to date.
    - Results from a different configuration: ConfigMismatchError, nothing touched.
    - ``resume=False``: the old results.jsonl and config.json are renamed with a timestamp (never deleted).
    """
    out = out_folder(out_dir)
    results, config_path = out / RESULTS, out / CONFIG
    wanted = {"fingerprint": fingerprint(identity(sweep_config)), "config": to_jsonable(sweep_config)}
    if resolved is not None:
        wanted["resolved"] = to_jsonable(resolved)
    if results.exists() and not results.is_file():
        raise ResultsFileError(f"{results} is not a file (a directory?); move it away, or pass another --out")
    if results.exists() and results.stat().st_size > 0:
        stored = read_config(config_path) if resume else None
        if not resume:
            stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
            results.rename(out / f"results-{stamp}.jsonl")
            if config_path.exists():
                config_path.rename(out / f"config-{stamp}.json")
            print(f"--no-resume: previous results kept as {out / f'results-{stamp}.jsonl'}")
        elif stored is None or stored.get("fingerprint") != wanted["fingerprint"]:
            raise ConfigMismatchError(_mismatch_message(results, stored, wanted))
        else:
            rows = read_results(results)
            drop_torn_tail(results)
            if resolved is not None and stored.get("resolved") != wanted["resolved"]:
                _write_config(config_path, {**stored, "resolved": wanted["resolved"]})
            return rows
    elif config_path.exists() and not config_path.is_file():
        raise ResultsFileError(f"{config_path} is not a file (a directory?); move it away, or pass another --out")
    _write_config(config_path, wanted)
    return []


def _write_config(config_path: Path, content: dict) -> None:
    """Write config.json atomically (a temporary file, then a rename)."""
    try:
        tmp = config_path.with_name(CONFIG + ".tmp")
        tmp.write_text(json.dumps(content, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, config_path)
    except OSError as exc:
        raise ResultsFileError(f"cannot write {config_path} ({exc.strerror}); check the permissions and free "
                               "space of that folder, or pass another --out") from None


def out_folder(out_dir) -> Path:
    """``out_dir`` as a writable folder (created if needed); ResultsFileError naming it otherwise."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ResultsFileError(f"--out {out} is a file, not a folder; pass a folder path (it is created if needed)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ResultsFileError(f"cannot create the --out folder {out} ({exc.strerror}); pass another --out") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise ResultsFileError(f"the --out folder {out} is not writable; fix its permissions or pass another --out")
    return out


def _mismatch_message(results, stored, wanted) -> str:
    if stored is None:
        why = f"there is no {CONFIG} beside it, so its configuration is unknown"
    else:
        old, new = stored.get("config", {}), wanted["config"]
        old = old if isinstance(old, dict) else {}
        keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k) and k not in LOCATION_KEYS)
        why = ("these settings differ: " + "; ".join(f"{k}: {old.get(k)!r} there, {new.get(k)!r} now" for k in keys)
               if keys else "the settings agree, but its fingerprint was computed by an older lazykit")
    return (f"{results} holds results of a different configuration ({why}). Refusing to mix them; "
            f"nothing was changed. Use another --out directory, or --no-resume to set the old results aside.")


# --------------------------------------------------------------------------------------------- metadata
def library_versions() -> dict:
    """Versions of Python and the libraries a result depends on."""
    import importlib.metadata as metadata
    versions = {"python": platform.python_version()}
    for dist in ("lazykit", "numpy", "scipy", "scikit-learn", "torch"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return versions


def describe_device(device: str) -> str:
    """Human-readable device: the GPU name for "cuda", the CPU and core count otherwise."""
    if device == "cuda":
        import torch
        return f"cuda: {torch.cuda.get_device_name(0)}"
    return f"cpu: {platform.processor() or platform.machine()}, {os.cpu_count()} cores"
