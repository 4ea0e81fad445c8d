"""Makes cases.py importable as ``empirical_cases`` for this folder's tests: pytest's importlib mode puts no test
folder on sys.path, and conftest files are loaded before the test modules next to them."""
import importlib.util
import pathlib
import sys

_spec = importlib.util.spec_from_file_location("empirical_cases", pathlib.Path(__file__).with_name("cases.py"))
_cases = importlib.util.module_from_spec(_spec)
sys.modules["empirical_cases"] = _cases
_spec.loader.exec_module(_cases)
