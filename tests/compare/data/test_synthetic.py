"""compare.data's teacher–student generator: inputs on the sphere, labels from the teacher, seeding."""
import numpy as np
import pytest

from compare import data


# ---------------------------------------------------------------------------------------- teacher–student
def test_teacher_student_inputs_on_sphere_and_labels_from_teacher():
    ds = data.load("teacher-student", n_train=300, n_test=200, d=10, seed=4)
    assert ds.X_train.shape == (300, 10) and ds.X_test.shape == (200, 10) and ds.task == "regression"
    np.testing.assert_allclose(np.linalg.norm(ds.X_train, axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(ds.X_test, axis=1), 1.0, atol=1e-12)
    theta = ds.info["teacher_weights"]
    assert theta.shape == (3, 10)
    np.testing.assert_allclose(np.linalg.norm(theta, axis=1), 1.0, atol=1e-12)
    expected = sum(np.maximum(ds.X_test @ t, 0.0) for t in theta)  # f*(x) = Σ_j relu(θ_j·x)
    np.testing.assert_allclose(ds.y_test, expected, rtol=0, atol=1e-14)


def test_teacher_student_seeding():
    a = data.load("teacher-student", n_train=50, n_test=10, d=2, seed=1)
    b = data.load("teacher-student", n_train=50, n_test=30, d=2, seed=1)
    c = data.load("teacher-student", n_train=50, n_test=10, d=2, seed=2)
    np.testing.assert_array_equal(a.X_train, b.X_train)   # n_test does not change the training set
    assert not np.array_equal(a.X_train, c.X_train)
    with pytest.raises(ValueError, match="d must be an int >= 2"):
        data.teacher_student(d=1)


def test_the_authors_teacher_has_random_signs():
    """teacher_signs='random' (test_vs_scale.jl: w2 = sign(randn(3))): f*(x) = Σ_j s_j relu(θ_j·x), s_j = ±1; the
    same directions θ_j as 'ones' for the seed (drawn first), the inputs unchanged."""
    ones = data.teacher_student(n_train=40, n_test=20, d=5, seed=3)
    signed = data.teacher_student(n_train=40, n_test=20, d=5, seed=3, teacher_signs="random")
    s, theta = signed.info["teacher_output_weights"], signed.info["teacher_weights"]
    assert set(np.abs(s)) == {1.0}
    np.testing.assert_array_equal(theta, ones.info["teacher_weights"])
    np.testing.assert_array_equal(signed.X_train, ones.X_train)
    np.testing.assert_allclose(signed.y_train, np.maximum(signed.X_train @ theta.T, 0.0) @ s, rtol=0, atol=1e-14)
    with pytest.raises(ValueError, match="teacher_signs"):
        data.teacher_student(teacher_signs="mixed")
