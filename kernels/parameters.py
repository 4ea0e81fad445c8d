"""Kernels as plain parameter holders: constructor arguments define them (scikit-learn's get_params style),
so they print, compare, hash and pickle by those arguments."""


class ParameterHolder:
    """Base for kernel objects whose state is the constructor arguments named in ``_param_names``."""

    _param_names: tuple = ()

    def get_params(self, deep: bool = True) -> dict:
        """Constructor arguments (scikit-learn style); ``type(k)(**k.get_params())`` rebuilds the object."""
        return {name: getattr(self, name) for name in self._param_names}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other):
        return type(other) is type(self) and other.get_params() == self.get_params()

    def __hash__(self):
        return hash((type(self).__name__,) + tuple(self.get_params().items()))
