"""Data sets: MNIST built in, Fashion-MNIST and CIFAR-10 fetched on first use; a parser refusing bad files.

>>> from numpycnn import datasets
>>> images, labels = datasets.load("mnist", "test")      # uint8 (10000, 1, 28, 28), int64 (10000,)
>>> x = datasets.to_float(images)                        # float32 in [0, 1]
>>> y = datasets.one_hot(labels, 10)                     # float32 (10000, 10)

MNIST (Y. LeCun, C. Cortes, C. J. C. Burges; CC BY-SA 3.0) ships inside the package. See :mod:`.registry`
for the sources, licences and checksums of all three data sets, and :mod:`.cache` for where files are looked
for and kept.

Your own pictures: :func:`load_folder` (one sub-folder per class), :func:`load_npz` (Keras' ``.npz`` layout),
:func:`load_npy_folder` (``.npy`` files, memory-mapped) and :func:`load_path` (whichever ``path`` is) return an
:class:`ImageSet`: arrays, class names and the :class:`Preparation` a model keeps to prepare new pictures alike.

>>> data = datasets.load_folder("pets", image_size=32, channels=3)   # doctest: +SKIP
>>> data.x_train.shape, data.class_names                             # doctest: +SKIP
((1600, 3, 32, 32), ['cat', 'dog'])
"""

from __future__ import annotations

from numpycnn.datasets.arrays import load_npy_folder, load_npz
from numpycnn.datasets.cache import cache_dir
from numpycnn.datasets.cifar10 import read_cifar10
from numpycnn.datasets.folder import load_folder
from numpycnn.datasets.idx import read_idx, write_idx
from numpycnn.datasets.loading import fetch, load, locate, verify_file
from numpycnn.datasets.own import ImageSet
from numpycnn.datasets.preparation import Preparation
from numpycnn.datasets.registry import DATASETS, SPLITS, class_names
from numpycnn.datasets.sources import load_path
from numpycnn.datasets.transforms import channel_stats, one_hot, standardize, to_float

__all__ = [
    "DATASETS", "SPLITS", "ImageSet", "Preparation", "cache_dir", "channel_stats", "class_names", "fetch", "load",
    "load_folder", "load_npy_folder", "load_npz", "load_path", "locate", "one_hot", "read_cifar10", "read_idx",
    "standardize", "to_float", "verify_file", "write_idx",
]
