"""What each data set is: its files and their checksums, mirrors, image shape, counts and class names.

Pure data and name checks; no I/O. Checksums are those of the data sets' official files:

- IDX files (MNIST, Fashion-MNIST) are checked by the SHA-256 of their *decompressed* content, so the official
  ``.gz`` files, recompressed copies (Debian's, the package's own) and uncompressed copies all verify.
- The CIFAR-10 binary archive is checked by the SHA-256 of the archive file itself.

Tests replace entries of :data:`DATASETS` (``monkeypatch.setitem``) with small synthetic files and their
checksums.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: The splits every data set has, as ``load(name, split)`` names them.
SPLITS: tuple[str, ...] = ("train", "test")


@dataclass(frozen=True)
class FileSpec:
    """One file of a data set as its mirrors serve it.

    Attributes
    ----------
    name : str
        File name, as served and as stored on disk, e.g. ``"train-images-idx3-ubyte.gz"``.
    sha256 : str
        Hex SHA-256: of the decompressed content when ``content_hash`` is true, else of the file's bytes.
    size : int or None
        Size in bytes of the official file, used for the progress bar when a server sends no length.
    content_hash : bool
        Whether ``sha256`` is of the decompressed IDX content (True) or of the file itself (False).
    """

    name: str
    sha256: str
    size: int | None = None
    content_hash: bool = True


@dataclass(frozen=True)
class DatasetSpec:
    """A data set: how to find, fetch, verify and read it.

    Attributes
    ----------
    name : str
        Canonical name, e.g. ``"fashion-mnist"``.
    kind : str
        ``"idx"`` (an images file and a labels file per split) or ``"cifar10-binary"`` (one tar.gz archive).
    files : dict of str to tuple of FileSpec
        The files each split needs: ``(images, labels)`` for IDX sets, ``(archive,)`` for CIFAR-10.
    image_shape : tuple of int
        Per-image shape ``(C, H, W)``.
    counts : dict of str to int
        Number of images in each split.
    class_names : tuple of str
        Class names, indexed by label.
    mirrors : tuple of str
        Base URLs tried in turn; a file's URL is ``base + "/" + file name``.
    source : str
        Authors, licence and reference, shown by ``numpycnn data list``.
    install_hint : str
        Extra advice for installing the files by hand, appended to "file missing" errors.
    """

    name: str
    kind: str
    files: dict[str, tuple[FileSpec, ...]]
    image_shape: tuple[int, int, int]
    counts: dict[str, int]
    class_names: tuple[str, ...]
    mirrors: tuple[str, ...]
    source: str = ""
    install_hint: str = ""
    all_files: tuple[FileSpec, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        unique: dict[str, FileSpec] = {}
        for split in SPLITS:
            for spec in self.files[split]:
                unique.setdefault(spec.name, spec)
        object.__setattr__(self, "all_files", tuple(unique.values()))


def _idx_files(sha: dict[str, str], sizes: dict[str, int]) -> dict[str, tuple[FileSpec, ...]]:
    """The four IDX files of an MNIST-like set: ``{split: (images, labels)}``."""
    def spec(name: str) -> FileSpec:
        return FileSpec(name, sha[name], sizes[name])
    return {
        "train": (spec("train-images-idx3-ubyte.gz"), spec("train-labels-idx1-ubyte.gz")),
        "test": (spec("t10k-images-idx3-ubyte.gz"), spec("t10k-labels-idx1-ubyte.gz")),
    }


MNIST = DatasetSpec(
    name="mnist",
    kind="idx",
    files=_idx_files(
        sha={
            "train-images-idx3-ubyte.gz": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train-labels-idx1-ubyte.gz": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "t10k-images-idx3-ubyte.gz": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "t10k-labels-idx1-ubyte.gz": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        },
        sizes={
            "train-images-idx3-ubyte.gz": 9912422,
            "train-labels-idx1-ubyte.gz": 28881,
            "t10k-images-idx3-ubyte.gz": 1648877,
            "t10k-labels-idx1-ubyte.gz": 4542,
        },
    ),
    image_shape=(1, 28, 28),
    counts={"train": 60000, "test": 10000},
    class_names=tuple(str(d) for d in range(10)),
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist",
        "https://storage.googleapis.com/cvdf-datasets/mnist",
    ),
    source=(
        "The MNIST database of handwritten digits, Y. LeCun, C. Cortes and C. J. C. Burges; "
        "licence CC BY-SA 3.0. "
        "LeCun, Bottou, Bengio and Haffner, 'Gradient-Based Learning Applied to Document Recognition', "
        "Proc. IEEE 86(11), 1998. Shipped inside the package."
    ),
)

FASHION_MNIST = DatasetSpec(
    name="fashion-mnist",
    kind="idx",
    files=_idx_files(
        sha={
            "train-images-idx3-ubyte.gz": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train-labels-idx1-ubyte.gz": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "t10k-images-idx3-ubyte.gz": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "t10k-labels-idx1-ubyte.gz": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
        sizes={
            "train-images-idx3-ubyte.gz": 26421880,
            "train-labels-idx1-ubyte.gz": 29515,
            "t10k-images-idx3-ubyte.gz": 4422102,
            "t10k-labels-idx1-ubyte.gz": 5148,
        },
    ),
    image_shape=(1, 28, 28),
    counts={"train": 60000, "test": 10000},
    class_names=(
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ),
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com",),
    source=(
        "Fashion-MNIST, Zalando SE; licence MIT. Xiao, Rasul and Vollgraf, 'Fashion-MNIST: a Novel Image "
        "Dataset for Benchmarking Machine Learning Algorithms', 2017."
    ),
    install_hint=(
        "On Debian or Ubuntu, `apt-get install dataset-fashion-mnist` installs the four files in "
        "/usr/share/datasets/fashion-mnist, where they are found automatically."
    ),
)

CIFAR10 = DatasetSpec(
    name="cifar10",
    kind="cifar10-binary",
    files={
        split: (
            FileSpec(
                "cifar-10-binary.tar.gz",
                "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
                170052171,
                content_hash=False,
            ),
        )
        for split in SPLITS
    },
    image_shape=(3, 32, 32),
    counts={"train": 50000, "test": 10000},
    class_names=(
        "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
    ),
    mirrors=("https://www.cs.toronto.edu/~kriz",),
    source=(
        "CIFAR-10 (binary version), A. Krizhevsky, V. Nair and G. Hinton. Krizhevsky, 'Learning Multiple "
        "Layers of Features from Tiny Images', 2009."
    ),
)

#: Every data set by canonical name. Tests swap entries for small synthetic ones.
DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in (MNIST, FASHION_MNIST, CIFAR10)}

_ALIASES = {"fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist", "cifar-10": "cifar10",
            "cifar_10": "cifar10"}


def get_spec(name: str, owner: str = "load") -> DatasetSpec:
    """Return the :class:`DatasetSpec` called ``name`` (any case; ``fashion_mnist`` and ``cifar-10`` too).

    Raises
    ------
    TypeError
        If ``name`` is not a string.
    ValueError
        If no data set has that name; the message lists the valid names.
    """
    if not isinstance(name, str):
        raise TypeError(f"{owner}: `name` must be a string, one of {_valid_names()}. Got {name!r}.")
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in DATASETS:
        raise ValueError(f"{owner}: `name` must be one of {_valid_names()}. Got {name!r}.")
    return DATASETS[key]


def check_split(split: str, owner: str = "load") -> str:
    """Return ``split`` if it is ``"train"`` or ``"test"``, else raise ``ValueError`` listing both."""
    if split not in SPLITS:
        valid = ", ".join(repr(s) for s in SPLITS)
        raise ValueError(f"{owner}: `split` must be one of {valid}. Got {split!r}.")
    return split


def class_names(name: str) -> list[str]:
    """Class names of data set ``name``, indexed by label.

    Examples
    --------
    >>> class_names("fashion-mnist")[9]
    'Ankle boot'
    """
    return list(get_spec(name, owner="class_names").class_names)


def _valid_names() -> str:
    return ", ".join(repr(n) for n in DATASETS)
