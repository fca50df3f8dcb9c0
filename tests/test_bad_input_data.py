"""Bad-input catalogue for course_lib.data: damaged, missing or wrong data, and failed fetches.

Each case sets up one situation a learner can get into, calls the library as
they would, and asserts the error TYPE and that the message says WHAT TO DO
(the advice that works there: restore / reinstall the shipped files, fetch
into the cache, install the Debian package, a valid range).  Nothing here uses
the network: mirrors are ``file://`` folders or a port where nothing listens.

The shipped-file cases work on a copy of ``course_lib/datasets/`` in a
temporary folder (``data.SHIPPED`` is pointed there), so the real files are
never touched.
"""
import gzip
import hashlib
import io
import shutil
import socket
import zipfile

import numpy as np
import pytest

from course_lib import data
from course_lib.data import DataError, FetchError, load_mnist

GIT_FIX = "checkout -- course_lib/datasets/"          # advice in a checkout of the course
PIP_FIX = "pip install --force-reinstall --no-deps"    # advice after a pip (wheel) install
FETCH_FIX = "python -m course_lib.data fetch mnist --data-dir"


# ----------------------------------------------------------------------------- helpers
def idx_gz(a):
    """Gzipped IDX bytes of a uint8 array."""
    a = np.ascontiguousarray(a, dtype=np.uint8)
    return gzip.compress(bytes([0, 0, 8, a.ndim]) + np.array(a.shape, ">u4").tobytes() + a.tobytes(), mtime=0)


def npz_bytes(**arrays):
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


@pytest.fixture(scope="module")
def real():
    """The shipped arrays, read once: ``(images, labels)`` of mnist_5k.npz."""
    with np.load(data.SHIPPED_DIR / "mnist_5k.npz") as z:
        return z["images"], z["labels"]


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    """A private copy of the shipped files that ``load_mnist()`` reads; returns its folder."""
    folder = tmp_path / "datasets"
    shutil.copytree(data.SHIPPED_DIR, folder)
    monkeypatch.setattr(data, "SHIPPED", folder)
    monkeypatch.setattr(data, "SHIPPED_DIR", folder)
    monkeypatch.setattr(data, "_VERIFIED", set())
    return folder


def cache_with(tmp_path, n_train=30, n_test=12, **override):
    """A cache folder ``tmp_path/mnist`` holding four valid (but unpublished) IDX files;
    ``override`` maps a file key (train_images, ...) to raw bytes."""
    rng = np.random.default_rng(0)
    files = {"train_images": idx_gz(rng.integers(0, 256, (n_train, 28, 28))),
             "train_labels": idx_gz(rng.integers(0, 10, n_train)),
             "test_images": idx_gz(rng.integers(0, 256, (n_test, 28, 28))),
             "test_labels": idx_gz(rng.integers(0, 10, n_test))}
    files.update(override)
    (tmp_path / "mnist").mkdir(exist_ok=True)
    for key, fname in zip(files, data.FILES):
        (tmp_path / "mnist" / fname).write_bytes(files[key])
    return tmp_path


def dead_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


# ----------------------------------------------------------------------------- the cases
# Each case: (id, setup(tmp_path, shipped-fixture-or-None, real arrays, monkeypatch) -> callable,
#             error type, substrings the message must contain: what is wrong, then what to do).
def _shipped_write(name, body):
    def setup(tmp_path, folder, real, mp):
        (folder / name).write_bytes(body(real) if callable(body) else body)
        return lambda: load_mnist()
    return setup


def _shipped_npz(make):
    return _shipped_write("mnist_5k.npz", lambda real: npz_bytes(**make(*real)))


def _truncated_npz(real):
    return (data.SHIPPED_DIR / "mnist_5k.npz").read_bytes()[:400_000]


def _bad_crc_npz(real):
    blob = bytearray((data.SHIPPED_DIR / "mnist_5k.npz").read_bytes())
    blob[200_000] ^= 0xFF  # one flipped byte inside the compressed images
    return bytes(blob)


def _touched_npz(real):
    """Same size, same arrays, one byte of the first member's zip timestamp changed."""
    blob = bytearray((data.SHIPPED_DIR / "mnist_5k.npz").read_bytes())
    assert blob[:4] == b"PK\x03\x04"
    blob[10] ^= 0x01  # local header: last-modified time
    return bytes(blob)


def _in_wheel(tmp_path, folder, real, mp):
    """A pip install (no git checkout): the advice is the reinstall command pip recorded."""
    mp.setattr(data, "_checkout_root", lambda: None)
    mp.setattr(data, "_install_source", lambda: "/wheels/course_lib-0.1.0-py3-none-any.whl")
    (folder / "mnist_5k.npz").write_bytes(b"PK\x03\x04" + bytes(100))
    return lambda: load_mnist()


def _missing_shipped(tmp_path, folder, real, mp):
    (folder / "mnist_5k.npz").unlink()
    return lambda: load_mnist()


def _cache(**override):
    def setup(tmp_path, folder, real, mp):
        cache = cache_with(tmp_path, **{k: (v(real) if callable(v) else v) for k, v in override.items()})
        return lambda: load_mnist("mnist", data_dir=cache, val_size=5)
    return setup


def _cache_counts(tmp_path, folder, real, mp):
    cache = cache_with(tmp_path, train_labels=idx_gz(np.zeros(29, np.uint8)))
    return lambda: load_mnist("mnist", data_dir=cache, val_size=5)


def _cache_missing(tmp_path, folder, real, mp):
    return lambda: load_mnist("mnist", data_dir=tmp_path / "empty")


def _fashion_missing(tmp_path, folder, real, mp):
    mp.setitem(data.LOCAL_SOURCES, "fashion-mnist", [tmp_path / "nowhere"])
    return lambda: load_mnist("fashion-mnist", data_dir=tmp_path)


def _fashion_debian_damaged(tmp_path, folder, real, mp):
    """A damaged system copy (Debian package folder): reinstall the package, or fetch into the cache."""
    system = tmp_path / "usr-share"
    cache_with(tmp_path)
    (tmp_path / "mnist").rename(system)
    mp.setitem(data.LOCAL_SOURCES, "fashion-mnist", [system])
    return lambda: load_mnist("fashion-mnist", data_dir=tmp_path / "cache", val_size=5)


def _fetch_dead(tmp_path, folder, real, mp):
    return lambda: data.fetch("mnist", data_dir=tmp_path, mirrors=[dead_url()], timeout=5,
                              retries_per_mirror=0, progress=False)


def _fetch_wrong_file(tmp_path, folder, real, mp):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for f in data.FILES:
        (mirror / f).write_bytes(idx_gz(np.zeros((3, 28, 28))))
    return lambda: data.fetch("mnist", data_dir=tmp_path / "cache", mirrors=[mirror.as_uri()],
                              progress=False)


def _fetch_unwritable(tmp_path, folder, real, mp):
    (tmp_path / "a-file").write_text("")
    return lambda: data.fetch("mnist", data_dir=tmp_path / "a-file" / "cache", mirrors=[dead_url()],
                              progress=False)


CASES = [
    # --- the shipped files (course_lib/datasets/), in a checkout of the course
    ("shipped-npz-truncated", _shipped_write("mnist_5k.npz", _truncated_npz), DataError,
     ["cannot be read as an .npz", GIT_FIX]),
    ("shipped-npz-not-a-zip", _shipped_write("mnist_5k.npz", b"this is not a zip file" * 10), DataError,
     ["cannot be read as an .npz", GIT_FIX]),
    ("shipped-npz-empty", _shipped_write("mnist_5k.npz", b""), DataError, [".npz", GIT_FIX]),
    ("shipped-npz-bad-crc", _shipped_write("mnist_5k.npz", _bad_crc_npz), DataError, ["mnist_5k.npz", GIT_FIX]),
    ("shipped-npz-missing-key", _shipped_npz(lambda x, y: {"images": x, "targets": y}), DataError,
     ["no 'labels' array", GIT_FIX]),
    ("shipped-npz-flat-images", _shipped_npz(lambda x, y: {"images": x.reshape(-1, 784), "labels": y}),
     DataError, ["(N, 28, 28)", GIT_FIX]),
    ("shipped-npz-float-labels", _shipped_npz(lambda x, y: {"images": x, "labels": y.astype(float)}),
     DataError, ["uint8 labels", GIT_FIX]),
    ("shipped-npz-label-42", _shipped_npz(lambda x, y: {"images": x, "labels": np.where(np.arange(5000) == 7, 42, y)
                                                        .astype(np.uint8)}),
     DataError, ["outside 0-9", "[7]", "[42]", GIT_FIX]),
    ("shipped-npz-count-mismatch", _shipped_npz(lambda x, y: {"images": x, "labels": y[:-1]}), DataError,
     ["5,000 images", "4,999 labels", GIT_FIX]),
    ("shipped-npz-valid-but-changed", _shipped_npz(lambda x, y: {"images": 255 - x, "labels": y}), DataError,
     ["expected 821,722", "not the published file", GIT_FIX]),
    ("shipped-npz-same-size-other-bytes", _shipped_write("mnist_5k.npz", _touched_npz), DataError,
     ["sha256 is", "not the published file", GIT_FIX]),
    ("shipped-npz-missing", _missing_shipped, FileNotFoundError, ["is missing", GIT_FIX]),
    ("shipped-npz-damaged-in-wheel-install", _in_wheel, DataError,
     [PIP_FIX, "/wheels/course_lib-0.1.0-py3-none-any.whl", "restart the kernel"]),
    ("shipped-test-labels-truncated", _shipped_write("t10k-labels-idx1-ubyte.gz",
                                                     lambda real: idx_gz(np.zeros(10_000))[:-30]), DataError,
     ["gzip data is corrupt or truncated", GIT_FIX]),
    ("shipped-test-label-10", _shipped_write("t10k-labels-idx1-ubyte.gz",
                                             lambda real: idx_gz(np.full(10_000, 10))), DataError,
     ["outside 0-9", GIT_FIX]),
    ("shipped-test-images-wrong-size", _shipped_write("t10k-images-idx3-ubyte.gz",
                                                      lambda real: idx_gz(np.zeros((10_000, 27, 28)))), DataError,
     ["(N, 28, 28)", GIT_FIX]),
    # --- the download cache
    ("cache-wrong-checksum", _cache(), DataError, ["checksum mismatch", "not the published file", FETCH_FIX]),
    ("cache-zero-byte-file", _cache(train_labels=b""), DataError, ["empty file", FETCH_FIX]),
    ("cache-train-label-42", _cache(train_labels=idx_gz(np.r_[np.zeros(29), 42])), DataError,
     ["outside 0-9", "[29]", FETCH_FIX]),
    ("cache-test-label-255", _cache(test_labels=idx_gz(np.full(12, 255))), DataError,
     ["outside 0-9", FETCH_FIX]),
    ("cache-count-mismatch", _cache_counts, DataError, ["30 images", "29 labels", FETCH_FIX]),
    ("cache-bad-magic", _cache(train_labels=gzip.compress(b"\x08\x03\x00\x00" + bytes(100))), DataError,
     ["bad magic number 08030000", FETCH_FIX]),
    ("cache-header-promises-more", _cache(train_labels=gzip.compress(b"\x00\x00\x09\x09" + bytes(100))),
     DataError, ["header says shape", FETCH_FIX]),
    ("cache-truncated-gzip", _cache(train_images=idx_gz(np.zeros((30, 28, 28)))[:-40]), DataError,
     ["gzip", FETCH_FIX]),
    ("cache-missing", _cache_missing, FileNotFoundError, ["not found", "python -m course_lib.data fetch mnist",
                                                          "course_lib.data.fetch('mnist'"]),
    ("fashion-missing", _fashion_missing, FileNotFoundError, ["fetch fashion-mnist",
                                                              "apt install dataset-fashion-mnist"]),
    ("fashion-system-copy-damaged", _fashion_debian_damaged, DataError,
     ["checksum mismatch", "apt install --reinstall dataset-fashion-mnist", "fetch fashion-mnist"]),
    # --- fetching
    ("fetch-every-mirror-dead", _fetch_dead, FetchError, ["cannot connect", "Check your internet connection",
                                                          "Nothing in the cache was changed"]),
    ("fetch-mirror-serves-wrong-file", _fetch_wrong_file, FetchError, ["checksum mismatch",
                                                                       "copy the file into"]),
    ("fetch-unwritable-data-dir", _fetch_unwritable, PermissionError, ["Cannot write", "COURSE_LIB_DATA_DIR"]),
    ("fetch-unknown-dataset", lambda *a: lambda: data.fetch("cifar10"), ValueError, ["choose one of"]),
    # --- arguments
    ("load-unknown-dataset", lambda *a: lambda: load_mnist("mnist5k"), ValueError, ["choose one of", "mnist-5k"]),
    ("load-val-size-too-big", lambda *a: lambda: load_mnist(val_size=5000), ValueError,
     ["must be between 0 and 4999"]),
    ("load-n-train-too-big", lambda *a: lambda: load_mnist(n_train=4001), ValueError, ["must be between 1 and"]),
    ("load-n-test-zero", lambda *a: lambda: load_mnist(n_test=0), ValueError, ["must be between 1 and 10,000"]),
]


@pytest.mark.parametrize("setup, error, says", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_data_input(setup, error, says, tmp_path, shipped, real, monkeypatch):
    action = setup(tmp_path, shipped, real, monkeypatch)
    with pytest.raises(error) as err:
        action()
    message = str(err.value)
    for text in says:
        assert text in message, f"{text!r} not in: {message}"


def test_catalogue_is_large_and_named():
    ids = [c[0] for c in CASES]
    assert len(ids) >= 15 and len(set(ids)) == len(ids)


def test_data_error_keeps_old_except_clauses():
    """DataError is a ValueError: code that caught ValueError around load_mnist still does."""
    assert issubclass(DataError, ValueError) and not issubclass(DataError, OSError)


def test_shipped_checks_do_not_reject_the_real_files(shipped):
    s = load_mnist()
    assert s.x_train.shape == (4000, 784)
    assert len(data._VERIFIED) == 3  # the three shipped files, verified once


def test_resaved_npz_with_the_same_arrays_is_refused(shipped, real):
    """An .npz re-saved with the same arrays has another checksum: refused, with advice, not silently used."""
    x, y = real
    with zipfile.ZipFile(shipped / "mnist_5k.npz", "w") as z:
        for name, a in (("images", x), ("labels", y)):
            buf = io.BytesIO()
            np.save(buf, a)
            z.writestr(name + ".npy", buf.getvalue())
    assert hashlib.sha256((shipped / "mnist_5k.npz").read_bytes()).hexdigest() != \
        data.SHIPPED_FILES["mnist_5k.npz"]["sha256"]
    with pytest.raises(DataError, match="bytes, expected 821,722") as err:
        load_mnist()
    assert GIT_FIX in str(err.value)
