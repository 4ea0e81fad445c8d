"""Where the neural-tangents peer is looked for, and where its reference generator writes."""
import pathlib

from compare.bench import make_nt_reference, peers

ROOT = pathlib.Path(__file__).resolve().parents[3]


def test_the_peer_interpreter_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("LAZYKIT_NT_PYTHON", str(tmp_path / "py"))
    assert peers.nt_python() == str(tmp_path / "py")


def test_the_documented_default_follows_xdg_data_home(monkeypatch, tmp_path):
    monkeypatch.delenv("LAZYKIT_NT_PYTHON", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert peers.nt_python() == str(tmp_path / "lazykit" / "nt-venv" / "bin" / "python")
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert peers.nt_python() == str(tmp_path / "home" / ".local" / "share" / "lazykit" / "nt-venv" / "bin" / "python")
    # the default docs/conventions.md gives is this one
    assert "~/.local/share/lazykit/nt-venv/bin/python" in (ROOT / "docs" / "conventions.md").read_text()


def test_the_reference_generator_writes_the_fixture_its_docstring_names_and_the_tests_read():
    fixture = ROOT / "tests" / "kernels" / "fixtures" / "nt_reference.npz"
    assert make_nt_reference.OUT == fixture
    assert "tests/kernels/fixtures/nt_reference.npz" in make_nt_reference.__doc__.splitlines()[0]
    assert fixture.exists()   # tests/kernels/test_analytic.py compares against it
