"""The teacher–student task: inputs on the unit sphere, targets from a small two-layer ReLU teacher."""
from __future__ import annotations

import numpy as np

from kernels import check_choice, check_scalar

from compare.data.catalog import Dataset


def uniform_sphere(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    """``n`` points uniform on the unit sphere S^{d−1} ⊂ R^d: standard Gaussian vectors divided by their norm
    (the Gaussian is rotation invariant, so the direction is uniform)."""
    z = rng.standard_normal((n, d))
    return z / np.linalg.norm(z, axis=1, keepdims=True)


TEACHER_SIGNS = ("ones", "random")


def teacher_student(n_train: int = 1000, n_test: int = 1000, d: int = 10, n_teacher: int = 3, seed: int = 0,
                    dtype: str = "float64", teacher_signs: str = "ones") -> Dataset:
    """The teacher–student regression task of Chizat, Oyallon & Bach (NeurIPS 2019, §3, two-layer ReLU nets).

    Inputs x uniform on the unit sphere S^{d−1}; targets from a two-layer ReLU teacher with ``n_teacher`` = 3
    neurons, y = f*(x) = Σ_{j=1}^{3} s_j·max(0, θ_j·x), with θ_j uniform on S^{d−1} and output weights s_j = 1
    (``teacher_signs="ones"``, lazykit's reading of the paper's setup) or s_j = ±1 at random
    (``teacher_signs="random"``: the authors' shallow-nn/test_vs_scale.jl, sign(randn)); the draw is stored in
    ``info``. Teacher, training inputs and test inputs come from independent streams of ``seed``, so n_test does
    not change the training set.
    """
    for value, what, low in ((n_train, "n_train", 1), (n_test, "n_test", 1), (d, "d", 2), (n_teacher, "n_teacher", 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{what} must be an int >= {low}, got {value!r}")
    check_choice(dtype, "dtype", ("float32", "float64"))
    check_choice(teacher_signs, "teacher_signs", TEACHER_SIGNS)
    check_scalar(seed, "seed", int, min_val=0)
    teacher_seed, train_seed, test_seed = np.random.SeedSequence(int(seed)).spawn(3)
    teacher_rng = np.random.default_rng(teacher_seed)
    teacher = uniform_sphere(teacher_rng, n_teacher, d)
    signs = np.ones(n_teacher) if teacher_signs == "ones" else np.sign(teacher_rng.standard_normal(n_teacher))
    X_train = uniform_sphere(np.random.default_rng(train_seed), n_train, d)
    X_test = uniform_sphere(np.random.default_rng(test_seed), n_test, d)

    def f_star(X):
        hidden = np.maximum(X @ teacher.T, 0.0)
        return hidden.sum(axis=1) if teacher_signs == "ones" else hidden @ signs

    info = {"seed": int(seed), "d": d, "teacher_weights": teacher, "teacher_output_weights": signs,
            "formula": "y = sum_j s_j max(0, theta_j . x), x and theta_j uniform on the unit sphere"}
    return Dataset(X_train.astype(dtype), f_star(X_train), X_test.astype(dtype), f_star(X_test),
                   name="teacher-student", task="regression", n_classes=None, image_shape=None, class_names=None,
                   source=f"generated: {n_teacher}-neuron ReLU teacher on S^{d - 1}", info=info)


def teacher_student_tensors(n_train: int, n_test: int, d: int, seed: int, device: str = "cpu",
                            teacher_signs: str = "ones"):
    """The float64 teacher–student split and its torch tensors on ``device``:
    ``(ds, X_train, X_test, y_train)`` with ``y_train`` of shape (n_train, 1)."""
    import torch
    ds = teacher_student(n_train=n_train, n_test=n_test, d=d, seed=seed, dtype="float64",
                         teacher_signs=teacher_signs)
    X_train, X_test = (torch.as_tensor(x, device=device) for x in (ds.X_train, ds.X_test))
    y_train = torch.as_tensor(np.reshape(ds.y_train, (-1, 1)), device=device)
    return ds, X_train, X_test, y_train
