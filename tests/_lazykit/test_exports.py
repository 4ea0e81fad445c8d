"""_lazykit.exports: the packages' public names load their modules on first use, so `import kernels` stays cheap."""
import importlib
import subprocess
import sys

import pytest

PACKAGES = ("kernels", "nets")


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_resolves_to_its_module_attribute(package):
    module = importlib.import_module(package)
    for name in module.__all__:
        value = getattr(module, name)
        if name in getattr(module, "_MODULES", ()):   # a public submodule (kernels.stax)
            assert value is importlib.import_module(f"{package}.{name}")
            continue
        assert value is getattr(importlib.import_module(f"{package}.{module._EXPORTS[name]}"), name)
    assert set(module.__all__) <= set(dir(module))


@pytest.mark.parametrize("package", PACKAGES)
def test_an_unknown_name_is_an_attribute_error(package):
    module = importlib.import_module(package)
    with pytest.raises(AttributeError, match=f"module '{package}' has no attribute 'no_such_name'"):
        module.no_such_name


def test_importing_the_packages_loads_neither_torch_nor_scikit_learn():
    # The reason the exports are lazy: torch takes about 1.5 s to import and scikit-learn about 1 s, while a
    # NumPy kernel and a solver need neither. A fresh interpreter, so that nothing else has imported them yet.
    code = ("import sys, kernels, nets; kernels.FullyConnected; kernels.krr_solve; kernels.RBF; kernels.stax; "
            "print(sorted(m for m in ('torch', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.strip() == "[]"
