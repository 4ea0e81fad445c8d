"""Datasets for the experiments: scikit-learn's bundled sets, Fashion-MNIST, CIFAR-10 and the teacher–student task.

One call gives arrays ready for a kernel or a network::

    from compare import data
    ds = data.load("digits", n_train=500, seed=0)             # X_train (500, 64), y_train int64, ...
    ds = data.load("cifar10", n_train=2000, n_test=1000, first_per_class=300)   # images (N, 3, 32, 32)
    ds = data.load("teacher-student", n_train=1000, n_test=1000, d=10, seed=1)

What ``load`` does, in order:

1. read the source: scikit-learn's ``load_digits`` / ``load_breast_cancer`` / ``load_diabetes`` (bundled, no
   network; split 75/25 into train/test by ``seed``, stratified for classification), the Fashion-MNIST IDX files,
   or CIFAR-10 from the canonical python batches or an image-folder archive (decoded once, cached as ``.npz``);
2. keep ``classes`` (labels or names, in the order given; relabelled 0..k-1);
3. draw ``n_train`` / ``n_test`` examples without replacement, stratified by class (each class in proportion
   to its frequency, largest-remainder rounding, at least one per class), seeded by ``seed``; the result is in
   a seeded random order (also when all examples are kept), never sorted by class;
4. scale pixels to [0, 1] and standardise with statistics fitted on the training part only: per feature for
   tabular data, per channel for images; for regression the target is standardised too.

Where data files are looked for (first match wins): the ``data_dir`` argument (``--data-dir``), else the
folders in the environment variable ``LAZYKIT_DATA_DIR`` (either may name several, ``os.pathsep``-separated,
searched in order) — either of these alone, so a wrong folder is an error,
never a silent fallback — else ``<checkout>/data`` (git-ignored) and a ``shared/data`` folder beside the checkout, and for
Fashion-MNIST the Debian package's ``/usr/share/datasets/fashion-mnist``. Decoded image archives are cached in
``cache_dir``, else ``LAZYKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/lazykit`` (``~/.cache/lazykit``).

Command line: ``python -m compare data list`` and ``python -m compare data install fashion-mnist|cifar10``
(``--from FILE.deb|FOLDER`` installs Fashion-MNIST offline).

The package, one concern per module: ``catalog`` (names, classes, files, downloads, :class:`Dataset`),
``loading`` (:func:`load`), ``preprocess`` (subsets, classes, standardisation), ``locate`` (where files are
looked for), ``readers`` (IDX, CIFAR-10 batches, image archives, scikit-learn), ``cache`` (decoded archives
kept as ``.npz``), ``synthetic`` (the teacher–student generator), ``identity`` (a found data set's content checksum), ``install``, ``deb`` (files out of a Debian
package with the standard library) and ``cli``. Every public name
is importable from ``compare.data`` itself.
"""
from compare.data.cache import cache_folder, read_image_archive_cached
from compare.data.catalog import (CIFAR10_ARCHIVE, CIFAR10_BATCHES, CIFAR10_BATCHES_DIR, CIFAR10_CLASSES,
                                  CIFAR10_JPEG_ARCHIVE, DATASETS, DEBIAN_FASHION_MNIST_DIR, DEFAULT_DATA_DIRS,
                                  DOWNLOAD_SUBDIR, DOWNLOADS, ENV_CACHE_DIR, ENV_DATA_DIR, FASHION_MNIST_CLASSES,
                                  FASHION_MNIST_FILES, FASHION_MNIST_IDX_SHA256, IMAGE_DATASETS, IMAGE_SUFFIXES, JPEG_CAVEAT,
                                  KIND_DESCRIPTIONS, REPO_ROOT, SKLEARN_DATASETS, TEST_FRACTION, CorruptDataError,
                                  DataNotFoundError, Dataset)
from compare.data.cli import describe, main
from compare.data.identity import content_sha256
from compare.data.install import (check_fashion_mnist, download, fashion_mnist_files, idx_sha256, install,
                                  install_fashion_mnist_from, sha256_file)
from compare.data.loading import available, check_classes, load, load_split, split_source
from compare.data.locate import find, locate, search_dirs, split_dirs
from compare.data.preprocess import first_per_class, standardize_train_test, stratified_indices
from compare.data.readers import read_cifar_batches, read_idx, read_image_archive, write_cifar_batches
from compare.data.synthetic import teacher_student, teacher_student_tensors, uniform_sphere

__all__ = [
    "CIFAR10_ARCHIVE", "CIFAR10_BATCHES", "CIFAR10_BATCHES_DIR", "CIFAR10_CLASSES", "CIFAR10_JPEG_ARCHIVE",
    "DATASETS", "DEBIAN_FASHION_MNIST_DIR", "DEFAULT_DATA_DIRS", "DOWNLOAD_SUBDIR", "DOWNLOADS", "ENV_CACHE_DIR",
    "ENV_DATA_DIR", "FASHION_MNIST_CLASSES", "FASHION_MNIST_FILES", "FASHION_MNIST_IDX_SHA256", "IMAGE_DATASETS",
    "IMAGE_SUFFIXES", "JPEG_CAVEAT", "available", "check_classes", "KIND_DESCRIPTIONS", "REPO_ROOT", "SKLEARN_DATASETS", "TEST_FRACTION",
    "CorruptDataError", "DataNotFoundError", "Dataset", "cache_folder", "check_fashion_mnist", "content_sha256",
    "describe", "download", "fashion_mnist_files", "find", "first_per_class", "idx_sha256", "install",
    "install_fashion_mnist_from", "load", "load_split", "locate", "main", "read_cifar_batches", "read_idx",
    "read_image_archive", "read_image_archive_cached", "search_dirs", "sha256_file", "split_dirs", "split_source",
    "standardize_train_test", "stratified_indices", "teacher_student", "teacher_student_tensors", "uniform_sphere",
    "write_cifar_batches",
]
