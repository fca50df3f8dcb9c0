"""MNIST and Fashion-MNIST: load the shipped subset offline, fetch the full sets on demand.

>>> from course_lib.data import load_mnist
>>> (x_train, y_train), (x_val, y_val), (x_test, y_test) = load_mnist()   # doctest: +SKIP
>>> x_train.shape, x_val.shape, x_test.shape                              # doctest: +SKIP
((4000, 784), (1000, 784), (10000, 784))

Datasets (:data:`DATASETS`):

``"mnist-5k"``       the default, shipped inside the package (``course_lib/datasets/``,
                     read through :mod:`importlib.resources`, so a wheel install works
                     from any directory): 5,000 MNIST training images (500 per digit)
                     and the official 10,000-image test set.
``"mnist"``          the full 60,000 training images; ``python -m course_lib.data fetch mnist``.
``"fashion-mnist"``  Zalando's clothes images, same format; Debian package
                     ``dataset-fashion-mnist`` or ``python -m course_lib.data fetch fashion-mnist``.

Fetched files live in a cache directory: the ``data_dir`` argument, else the
environment variable ``COURSE_LIB_DATA_DIR``, else ``<repo>/data/cache`` in a
writable checkout of the course, else ``~/.cache/course_lib`` (a wheel install,
or a read-only checkout).

Every file is checked before its arrays are used: IDX headers and sizes, the
``.npz`` keys, dtypes and shapes, labels 0-9, and the published checksums (once
per file per process).  A file that fails raises :class:`DataError` (a
``ValueError``) whose message names the file and the command that repairs it
where you are: ``python -m course_lib.data fetch ...`` for the cache, a
reinstall of the package for the shipped files.  ``python -m course_lib.data
list --verify`` checks everything at once.
"""
from __future__ import annotations

import argparse
import atexit
import contextlib
import gzip
import hashlib
import http.client
import importlib.resources
import json
import os
import re
import shlex
import shutil
import socket
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from course_lib import backend

DATASETS = ("mnist-5k", "mnist", "fashion-mnist")
ENV_VAR = "COURSE_LIB_DATA_DIR"
PACKAGE_DIR = Path(__file__).resolve().parent
#: ``<repo>/data`` when course_lib is imported from a checkout of the course (the
#: download cache goes to its ``cache/`` folder), else ``None`` (a wheel install).
REPO_DATA_DIR = (PACKAGE_DIR.parent / "data"
                 if (PACKAGE_DIR.parent / "pyproject.toml").is_file() else None)
#: The shipped files, as package data (:func:`shipped_path` gives a real path).
SHIPPED = importlib.resources.files("course_lib") / "datasets"
#: Where the shipped files are on disk (the package's ``datasets/`` folder).
SHIPPED_DIR = Path(str(SHIPPED))
FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
#: Size and SHA-256 of each shipped file (data/README.md tells where they come from).
SHIPPED_FILES = {
    "mnist_5k.npz": {
        "size": 821_722,
        "sha256": "246e0c30eeea57c8d0037d3f38c8e00651ec204cc61b8022563e9aeeb9d756f4"},
    "t10k-images-idx3-ubyte.gz": {
        "size": 1_648_877,
        "sha256": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"},
    "t10k-labels-idx1-ubyte.gz": {
        "size": 4_542,
        "sha256": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"},
}
#: A ``.NAME.part-*`` file untouched for this long belongs to a dead fetch (any host).
STALE_PART_SECONDS = 3600

MIRRORS = {
    "mnist": ["https://ossci-datasets.s3.amazonaws.com/mnist/",
              "https://storage.googleapis.com/cvdf-datasets/mnist/",
              "http://yann.lecun.com/exdb/mnist/"],
    "fashion-mnist": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
}
# Copies on this machine that are tried before the network (and read by load_mnist).
LOCAL_SOURCES = {"mnist": [SHIPPED_DIR],
                 "fashion-mnist": [Path("/usr/share/datasets/fashion-mnist")]}

# "md5"/"sha256" hash the .gz file as published; "raw_*" hash its decompressed
# content.  A file passes when its .gz hashes match, or else when its content
# does: repackagers (Debian's dataset-fashion-mnist among them) re-gzip the
# files, which changes the .gz header but not one pixel.
CHECKSUMS = {
    "mnist": {
        "train-images-idx3-ubyte.gz": {"md5": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                                       "raw_md5": "6bbc9ace898e44ae57da46a324031adb"},
        "train-labels-idx1-ubyte.gz": {"md5": "d53e105ee54ea40749a09fcbcd1e9432",
                                       "raw_md5": "a25bea736e30d166cdddb491f175f624"},
        "t10k-images-idx3-ubyte.gz": {
            "md5": "9fb629c4189551a2d022fa330f9573f3",
            "sha256": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "raw_md5": "2646ac647ad5339dbf082846283269ea",
            "raw_sha256": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"},
        "t10k-labels-idx1-ubyte.gz": {
            "md5": "ec29112dd5afa0611ce80d1b7f02629c",
            "sha256": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
            "raw_md5": "27ae3e4e09519cfbb04c329615203637",
            "raw_sha256": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"},
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": {
            "md5": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "raw_md5": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
            "raw_sha256": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"},
        "train-labels-idx1-ubyte.gz": {
            "md5": "25c81989df183df01b3e8a0aad5dffbe",
            "raw_md5": "9018921c3c673c538a1fc5bad174d6f9",
            "raw_sha256": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"},
        "t10k-images-idx3-ubyte.gz": {
            "md5": "bef4ecab320f06d8554ea6380940ec79",
            "raw_md5": "8181f5470baa50b63fa0f6fddb340f0a",
            "raw_sha256": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"},
        "t10k-labels-idx1-ubyte.gz": {
            "md5": "bb300cfdad3c16e7a12a480ee83cd310",
            "raw_md5": "15d484375f8d13e6eb1aabb0c3f46965",
            "raw_sha256": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"},
    },
}
CLASS_NAMES = {
    "mnist": tuple("0123456789"),
    "fashion-mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
}


class DataError(ValueError):
    """A data file is corrupt, truncated or not what its name says."""


class FetchError(RuntimeError):
    """Every mirror failed; the message says how each one failed."""


# ----------------------------------------------------------------------------- advice + checks
_RESOURCES = contextlib.ExitStack()  # keeps files extracted from a zipped install alive
atexit.register(_RESOURCES.close)


def shipped_path(fname) -> Path:
    """A real file path for the shipped file ``fname`` (one of :data:`SHIPPED_FILES`).

    Read through :mod:`importlib.resources`: the package's own folder in a
    checkout or a wheel install, a temporary copy for a zipped install.
    Raises ``FileNotFoundError`` with the command that restores the file.
    """
    resource = SHIPPED / fname
    if not resource.is_file():
        raise FileNotFoundError(f"The shipped data file {SHIPPED_DIR / fname} is missing from the "
                                f"course_lib package: {restore_advice()}.")
    return _RESOURCES.enter_context(importlib.resources.as_file(resource))


def _checkout_root():
    """The course checkout course_lib is imported from (it has ``.git``), else None."""
    root = PACKAGE_DIR.parent
    return root if (root / ".git").exists() and (root / "pyproject.toml").is_file() else None


def _install_source():
    """What pip installed course_lib from (PEP 610 ``direct_url.json``), as a pip argument, or None."""
    try:
        import importlib.metadata
        info = json.loads(importlib.metadata.distribution("course_lib").read_text("direct_url.json") or "null")
    except Exception:  # not installed by pip, or metadata unreadable: give the generic advice
        return None
    if not isinstance(info, dict) or "url" not in info:
        return None
    vcs = info.get("vcs_info")
    if vcs:
        return f"{vcs.get('vcs', 'git')}+{info['url']}" + (f"@{vcs['commit_id']}" if vcs.get("commit_id") else "")
    if info["url"].startswith("file://") and info["url"].endswith(".whl"):
        return info["url"][len("file://"):]
    return info["url"]


def restore_advice() -> str:
    """How to get the shipped data files back, in words that work in this installation.

    A git checkout: ``git checkout`` of the package's ``datasets/`` folder.  A pip
    install (wheel, Colab): reinstall the package, from the source pip recorded.
    """
    root = _checkout_root()
    if root is not None:
        return (f"restore them with `git -C {shlex.quote(str(root))} checkout -- course_lib/datasets/` "
                "(or re-clone the course)")
    source = _install_source()
    python = shlex.quote(sys.executable)
    if source:
        return (f"reinstall the package: `{python} -m pip install --force-reinstall --no-deps "
                f"{shlex.quote(source)}` (in a notebook: `%pip install --force-reinstall --no-deps "
                f"{shlex.quote(source)}`), then restart the kernel")
    return (f"reinstall the package: `{python} -m pip install --force-reinstall --no-deps <the course "
            "repository URL or wheel you installed it from>` (in a notebook: `%pip install ...`), "
            "then restart the kernel")


def fetch_command(name, data_dir=None) -> str:
    """The command (shell and Python) that fetches ``name`` into the cache ``data_dir`` uses."""
    custom = data_dir is not None or bool(os.environ.get(ENV_VAR))
    where = cache_dir(data_dir)
    shell = f"python -m course_lib.data fetch {name}" + (f" --data-dir {shlex.quote(str(where))}" if custom else "")
    py = f"course_lib.data.fetch({name!r}" + (f", data_dir={str(where)!r})" if custom else ")")
    return f"`{shell}` in a terminal, or `{py}` in Python"


_VERIFIED = set()  # (path, size, mtime_ns, checksums) of files that passed: verified once per process


def check_file(path, expected, fix) -> None:
    """Raise :class:`DataError` unless ``path`` is non-empty, has ``expected["size"]``
    (when given) and matches the checksums in ``expected`` (see :func:`verify`).

    ``fix`` is the advice appended to the message.  Passing files are remembered
    (by path, size and modification time), so each is hashed once per process.
    """
    path = Path(path)
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns, tuple(sorted(expected.items())))
    if key in _VERIFIED:
        return
    if st.st_size == 0:
        raise DataError(f"{path} is empty (0 bytes), e.g. left by an interrupted copy: {fix}.")
    if "size" in expected and st.st_size != expected["size"]:
        raise DataError(f"{path} has {st.st_size:,} bytes, expected {expected['size']:,}: it is truncated "
                        f"or not the published file: {fix}.")
    why = verify(path, expected)
    if why:
        raise DataError(f"{path}: {why}; this is not the published file (a damaged or different "
                        f"file): {fix}.")
    _VERIFIED.add(key)


def check_arrays(images, labels, where, fix) -> None:
    """Raise :class:`DataError` unless ``images`` is uint8 ``(N, 28, 28)`` and ``labels``
    uint8 ``(N,)`` with values 0-9.  ``where`` names the file(s), ``fix`` is the advice."""
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataError(f"{where}: expected uint8 images of shape (N, 28, 28), got {images.dtype} "
                        f"{images.shape}: {fix}.")
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DataError(f"{where}: expected uint8 labels of shape (N,), got {labels.dtype} {labels.shape}: "
                        f"{fix}.")
    if len(images) != len(labels):
        raise DataError(f"{where}: the images file has {len(images):,} images but the labels file has "
                        f"{len(labels):,} labels; they must come from the same release: {fix}.")
    bad = np.flatnonzero(labels > 9)
    if bad.size:
        raise DataError(f"{where}: {bad.size:,} label(s) outside 0-9 (indices {bad[:5].tolist()}"
                        f"{', ...' if bad.size > 5 else ''} hold {labels[bad[:5]].tolist()}); MNIST "
                        f"labels are the digits 0-9: {fix}.")


def load_npz(path, fix) -> tuple:
    """``(images, labels)`` from an ``.npz`` with those two arrays, checked by :func:`check_arrays`.

    A truncated or damaged archive, a missing key or wrong shapes raise
    :class:`DataError` naming ``path``, with ``fix`` appended.
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ("images", "labels") if k not in z.files]
            if missing:
                raise DataError(f"{path}: the archive has no {' or '.join(map(repr, missing))} array "
                                f"(it holds {sorted(z.files)}): {fix}.")
            images, labels = z["images"], z["labels"]
    except DataError:
        raise
    except (zipfile.BadZipFile, EOFError, zlib.error, ValueError, KeyError, OSError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise DataError(f"{path}: cannot be read as an .npz archive ({type(e).__name__}: {e}); the file "
                        f"is truncated or damaged: {fix}.") from None
    check_arrays(images, labels, path, fix)
    return images, labels


# ----------------------------------------------------------------------------- IDX files
# IDX: bytes 0x00 0x00, a type code, the number of dimensions, then one
# big-endian uint32 per dimension, then the data in C order.
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def load_idx(path, *, fix=None) -> np.ndarray:
    """Read an IDX file (gzipped or raw) into a numpy array (uint8 for MNIST).

    MNIST images (magic 2051) come back as ``(N, 28, 28)``, labels (magic 2049)
    as ``(N,)``.  Raises :class:`DataError` naming the file when it is corrupt,
    truncated or has a bad header; ``fix`` is the advice appended to that message.
    """
    path = Path(path)
    fix = fix or "delete it and fetch it again, e.g. `python -m course_lib.data fetch mnist`"

    def bad(why):
        return DataError(f"{path}: {why}. The file is damaged or not an IDX file: {fix}.")

    blob = path.read_bytes()  # FileNotFoundError stays as it is: a clear error already
    if blob[:2] == b"\x1f\x8b":  # gzip magic, whatever the file is called
        try:
            blob = gzip.decompress(blob)
        except (OSError, EOFError, zlib.error) as e:
            raise bad(f"gzip data is corrupt or truncated ({e})") from None
    if len(blob) < 4 or blob[:2] != b"\0\0" or blob[2] not in _IDX_TYPES or blob[3] == 0:
        raise bad(f"bad magic number {blob[:4].hex() or '(empty file)'}; expected 0000 <type> "
                  "<ndim> (0x00000803 = 2051 for images, 0x00000801 = 2049 for labels)")
    dtype, ndim = np.dtype(_IDX_TYPES[blob[2]]), blob[3]
    offset = 4 + 4 * ndim
    if len(blob) < offset:
        raise bad(f"header promises {ndim} dimensions but the file ends after {len(blob)} bytes")
    shape = tuple(int(d) for d in np.frombuffer(blob, ">u4", ndim, 4))
    expected = offset + int(np.prod(shape)) * dtype.itemsize
    if len(blob) != expected:
        raise bad(f"header says shape {shape} ({expected:,} bytes) but the data has "
                  f"{len(blob):,} bytes")
    return np.frombuffer(blob, dtype, offset=offset).reshape(shape).astype(dtype.newbyteorder("="))


def _load_pair(images_path, labels_path, fix):
    """Images ``(N, 28, 28)`` uint8 and labels ``(N,)`` uint8 0-9 from two IDX files, checked."""
    x, y = load_idx(images_path, fix=fix), load_idx(labels_path, fix=fix)
    check_arrays(x, y, f"{images_path} and {labels_path}", fix)
    return x, y


# ----------------------------------------------------------------------------- cache + fetch
def cache_dir(data_dir=None) -> Path:
    """The data cache: ``data_dir``, else ``$COURSE_LIB_DATA_DIR``, else ``<repo>/data/cache``
    in a writable checkout of the course, else ``~/.cache/course_lib`` (a wheel install,
    or a read-only checkout such as a shared JupyterHub)."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    if REPO_DATA_DIR is not None:
        repo_cache = REPO_DATA_DIR / "cache"
        writable = repo_cache if repo_cache.is_dir() else REPO_DATA_DIR
        if writable.is_dir() and os.access(writable, os.W_OK):
            return repo_cache
    return Path.home() / ".cache" / "course_lib"


def _hashes(path, raw=False):
    """``{"md5", "sha256"}`` of a file, or of its decompressed content when ``raw``."""
    md5, sha = hashlib.md5(), hashlib.sha256()
    with (gzip.open if raw else open)(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            md5.update(chunk)
            sha.update(chunk)
    return {"md5": md5.hexdigest(), "sha256": sha.hexdigest()}


def verify(path, expected, hashes=None):
    """``None`` when ``path`` matches the checksums in ``expected``, else why not (a str)."""
    hashes = hashes or _hashes(path)
    packed = {k: expected[k] for k in ("md5", "sha256") if k in expected}
    if packed and all(hashes[k] == v for k, v in packed.items()):
        return None
    raw = {k: expected["raw_" + k] for k in ("md5", "sha256") if "raw_" + k in expected}
    if raw:
        try:
            content = _hashes(path, raw=True)
        except (OSError, EOFError, zlib.error):
            content = {}
        if all(content.get(k) == v for k, v in raw.items()):
            return None
    if packed:
        k = next(iter(packed))
        return f"checksum mismatch: {k} is {hashes[k]}, expected {packed[k]}"
    return "checksum mismatch: the decompressed content is not the published file"


def _check_header(path):
    """Cheap sanity check of a downloaded .gz: it decompresses to an IDX header."""
    try:
        with gzip.open(path, "rb") as f:
            head = f.read(4)
    except (OSError, EOFError, zlib.error) as e:
        return f"not a gzip file ({e})"
    if len(head) < 4 or head[:2] != b"\0\0" or head[2] not in _IDX_TYPES:
        return f"not an IDX file (magic {head.hex()})"
    return None


class _MirrorFailed(Exception):
    def __init__(self, reason, retry=False):
        super().__init__(reason)
        self.retry = retry


def _download(url, tmp, timeout, progress):
    """Stream ``url`` into ``tmp``; return its hashes.  Network trouble -> _MirrorFailed."""
    md5, sha = hashlib.md5(), hashlib.sha256()
    try:
        response = urllib.request.urlopen(url, timeout=timeout)
    except urllib.error.HTTPError as e:
        raise _MirrorFailed(f"HTTP {e.code} {e.reason}", retry=e.code >= 500) from None
    except (OSError, http.client.HTTPException, ValueError) as e:
        raise _MirrorFailed(f"cannot connect ({getattr(e, 'reason', e)})", retry=True) from None
    with response, open(tmp, "wb") as f:
        total = int(response.headers.get("Content-Length") or 0)
        done, shown = 0, -1
        while True:
            try:
                chunk = response.read(1 << 16)
            except (OSError, http.client.HTTPException) as e:
                raise _MirrorFailed(f"connection lost after {done:,} bytes ({e})", retry=True) from None
            if not chunk:
                break
            f.write(chunk)
            md5.update(chunk)
            sha.update(chunk)
            done += len(chunk)
            if progress and total and done * 20 // total != shown:
                shown = done * 20 // total
                print(f"\r  {url}  {done / 1e6:5.1f} / {total / 1e6:.1f} MB",
                      end="", file=sys.stderr, flush=True)
    if progress and total:
        print(file=sys.stderr)
    if total and done < total:
        raise _MirrorFailed(f"truncated transfer: got {done:,} of {total:,} bytes "
                            "(Content-Length)", retry=True)
    return {"md5": md5.hexdigest(), "sha256": sha.hexdigest()}


def _from_mirrors(name, fname, expected, tmp, mirrors, timeout, retries, progress):
    """Download ``fname`` into ``tmp`` from the first mirror that serves it intact; its URL."""
    failures = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + fname
        for attempt in range(1, 2 + max(0, retries)):
            try:
                why = verify(tmp, expected, _download(url, tmp, timeout, progress))
                why = why or _check_header(tmp)
                if why:  # a mirror that serves a wrong file will serve it again: no retry
                    raise _MirrorFailed(why)
                return url
            except _MirrorFailed as e:
                reason = f"{url}: {e}" + (f" ({attempt} attempts)" if attempt > 1 else "")
                if not e.retry or attempt > retries:
                    failures.append(reason)
                    break
                time.sleep(0.2 * attempt)
    tried = "\n  ".join(failures) or "(no mirrors given)"
    raise FetchError(f"Could not download {fname} for {name!r}; every mirror failed:\n  {tried}\n"
                     "Check your internet connection or proxy, or copy the file into "
                     f"{tmp.parent} by hand. Nothing in the cache was changed.")


def _unwritable(path, err):
    return PermissionError(f"Cannot write to the data directory {path} ({err}). Pass "
                           f"data_dir=... / --data-dir, or set the environment variable {ENV_VAR} "
                           "to a directory you can write to.")


_HOST = re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname()) or "host"
_PART = re.compile(r"^\.(?P<fname>.+)\.part-(?:(?P<pid>\d+)@(?P<host>[A-Za-z0-9._]+)-)?[^/]*$")


def _part_prefix(fname):
    """Temp-file prefix of a download in progress: ``.NAME.part-<pid>@<host>-`` (mkstemp adds the rest)."""
    return f".{fname}.part-{os.getpid()}@{_HOST}-"


def _pid_alive(pid) -> bool:
    """Whether process ``pid`` exists on this machine (True when that cannot be told)."""
    if os.name == "nt":  # os.kill(pid, 0) would send CTRL_C_EVENT there: rely on the age rule
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, owned by someone else
        return True
    return True


def stale_parts(directory, now=None) -> list:
    """The ``.NAME.part-*`` files in ``directory`` left behind by fetches that died.

    A fetch killed by SIGKILL (or a power cut) cannot remove its temporary
    file; :func:`fetch` calls this first and removes what it returns.  The rule,
    for files named after one of :data:`FILES`:

    * written by a process of this machine (``.NAME.part-<pid>@<host>-*``) that
      no longer exists: stale at once;
    * any other (a process on another machine sharing the cache, a name without
      a pid from an older course_lib, or a pid reused by a new process): stale
      when not written to for :data:`STALE_PART_SECONDS` (an hour).  A live
      download writes every few seconds, and one stalled that long has timed
      out (``timeout`` is per read).

    Files of this process are never returned, and a fetch in progress in
    another process writes to its file at least every ``timeout`` seconds, so
    it is never taken for stale.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    now = time.time() if now is None else now
    found = []
    for path in directory.iterdir():
        m = _PART.match(path.name)
        if not m or m["fname"] not in FILES or not path.is_file():
            continue
        try:
            age = now - path.stat().st_mtime
        except FileNotFoundError:  # its fetch just finished
            continue
        here = m["pid"] is not None and m["host"] == _HOST
        if here and int(m["pid"]) == os.getpid():  # this process: maybe a fetch in another thread
            continue
        if (here and not _pid_alive(int(m["pid"]))) or age > STALE_PART_SECONDS:
            found.append(path)
    return sorted(found)


def fetch(name, data_dir=None, mirrors=None, timeout=30, retries_per_mirror=1,
          progress=True) -> Path:
    """Download the four IDX files of ``name`` into ``<cache>/<name>/``; return that directory.

    Files already there that pass their checksum are kept; verified copies on
    this machine (:data:`LOCAL_SOURCES`) are used before the network.  Each file
    is downloaded to a temporary ``.NAME.part-*`` file and checked (checksum,
    IDX header); only when all four are good are they renamed into place, so
    the cache never holds a partial or unverified file and is left exactly as
    it was when the fetch fails or is interrupted.  A fetch killed outright
    (SIGKILL) cannot clean up: the next fetch removes such stale temporary
    files first (the rule is in :func:`stale_parts`).  ``mirrors`` (base URLs)
    overrides :data:`MIRRORS`; after a transient failure (connection, timeout,
    truncated transfer) a mirror is retried ``retries_per_mirror`` times before
    the next one is tried.  Raises :class:`FetchError` when every mirror fails.
    """
    if name not in CHECKSUMS:
        raise ValueError(f"Unknown dataset {name!r} to fetch; choose one of {tuple(CHECKSUMS)}.")
    mirrors = list(MIRRORS.get(name, ()) if mirrors is None else mirrors)
    target = cache_dir(data_dir) / name
    created = [d for d in (target, *target.parents) if not d.exists()]  # removed on failure
    try:
        target.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=target).close()  # os.access can say yes and be wrong
    except OSError as e:
        raise _unwritable(target, e) from None
    say = (lambda msg: print(msg, file=sys.stderr)) if progress else (lambda msg: None)
    for part in stale_parts(target):
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
            say(f"{part}: removed (left by an interrupted fetch)")
    temps = {}  # final path -> verified temp file, renamed only when every file is good
    try:
        for fname, expected in CHECKSUMS[name].items():
            dest = target / fname
            if dest.is_file() and verify(dest, expected) is None:
                say(f"{dest}: present and verified")
                continue
            fd, tmp = tempfile.mkstemp(prefix=_part_prefix(fname), dir=target)
            os.close(fd)
            temps[dest] = tmp = Path(tmp)
            local = [d / fname for d in LOCAL_SOURCES.get(name, ()) if (d / fname).is_file()]
            src = next((p for p in local if verify(p, expected) is None), None)
            if src is not None:
                shutil.copyfile(src, tmp)
                say(f"{dest}: copied from {src}")
            else:
                url = _from_mirrors(name, fname, expected, tmp, mirrors, timeout,
                                    retries_per_mirror, progress)
                say(f"{dest}: downloaded from {url}")
        umask = os.umask(0)
        os.umask(umask)
        for dest, tmp in temps.items():
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual mode
            os.replace(tmp, dest)
    finally:  # failure, KeyboardInterrupt or success: no temp file survives
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)
        for d in created:  # innermost first
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()
    return target


def locate(name, data_dir=None) -> dict:
    """``{file name: Path or None}`` for the four IDX files of ``name``: cache first, then
    :data:`LOCAL_SOURCES`."""
    dirs = [cache_dir(data_dir) / name, *LOCAL_SOURCES.get(name, ())]
    return {f: next((d / f for d in dirs if (d / f).is_file()), None) for f in FILES}


# ----------------------------------------------------------------------------- loading
@dataclass(frozen=True, eq=False)
class Splits:
    """Train / validation / test arrays on the active backend.

    ``x_*``: ``(N, 784)`` or ``(N, 28, 28)`` floats; ``y_*``: ``(N,)`` int64 or
    ``(N, 10)`` one-hot floats.  Unpacks as ``(x_train, y_train), (x_val, y_val),
    (x_test, y_test) = splits``.
    """
    x_train: object
    y_train: object
    x_val: object
    y_val: object
    x_test: object
    y_test: object
    name: str
    class_names: tuple

    def __iter__(self):
        yield self.x_train, self.y_train
        yield self.x_val, self.y_val
        yield self.x_test, self.y_test

    def __repr__(self):
        return (f"Splits({self.name!r}, train={tuple(self.x_train.shape)}, "
                f"val={tuple(self.x_val.shape)}, test={tuple(self.x_test.shape)}, "
                f"x {np.dtype(self.x_train.dtype).name}, y {np.dtype(self.y_train.dtype).name})")


def _fix_for(path, dataset, data_dir):
    """Advice for a damaged ``path`` of ``dataset``, depending on where it lives."""
    path = Path(path)
    if path.parent == SHIPPED_DIR:
        return restore_advice()
    if path.parent == cache_dir(data_dir) / dataset:
        return f"delete it and fetch it again: {fetch_command(dataset, data_dir)}"
    if dataset == "fashion-mnist":
        return ("reinstall the Debian package (`sudo apt install --reinstall dataset-fashion-mnist`), "
                f"or put a good copy in the cache, which is read first: {fetch_command(dataset, data_dir)}")
    return f"replace it, or put a good copy in the cache, which is read first: {fetch_command(dataset, data_dir)}"


def _load_checked(images_path, labels_path, dataset, data_dir):
    """:func:`_load_pair` with advice that depends on where each file lives."""
    fix = _fix_for(images_path, dataset, data_dir)
    fix_labels = _fix_for(labels_path, dataset, data_dir)
    x = load_idx(images_path, fix=fix)
    y = load_idx(labels_path, fix=fix_labels)
    check_arrays(x, y, f"{images_path} and {labels_path}", fix if fix == fix_labels else f"{fix}; {fix_labels}")
    return x, y


def _raw(dataset, data_dir):
    """Host uint8 ``(x_pool, y_pool, x_test, y_test)``, every file checked (see :func:`check_file`):
    the pool is split into train/val."""
    if dataset == "mnist-5k":
        fix = restore_advice()
        npz = shipped_path("mnist_5k.npz")
        x_pool, y_pool = load_npz(npz, fix)
        x_test, y_test = _load_pair(shipped_path(FILES[2]), shipped_path(FILES[3]), fix)
        for f in SHIPPED_FILES:
            check_file(shipped_path(f), SHIPPED_FILES[f], fix)
        return x_pool, y_pool, x_test, y_test
    found = locate(dataset, data_dir)
    missing = [f for f, p in found.items() if p is None]
    if missing:
        where = ", ".join(str(p) for p in [cache_dir(data_dir) / dataset, *LOCAL_SOURCES[dataset]])
        extra = (" Or install the Debian package: `sudo apt install dataset-fashion-mnist`."
                 if dataset == "fashion-mnist" else "")
        raise FileNotFoundError(f"{dataset}: {', '.join(missing)} not found in {where}. Fetch it: "
                                f"{fetch_command(dataset, data_dir)}.{extra}")
    # Content first (the more specific diagnosis), then the published checksums.
    arrays = (*_load_checked(found[FILES[0]], found[FILES[1]], dataset, data_dir),
              *_load_checked(found[FILES[2]], found[FILES[3]], dataset, data_dir))
    for f, path in found.items():
        check_file(path, CHECKSUMS[dataset][f], _fix_for(path, dataset, data_dir))
    return arrays


def load_mnist(dataset="mnist-5k", *, val_size=1000, n_train=None, n_test=None, seed=0,
               flatten=True, one_hot=False, normalize=True, dtype=None, data_dir=None) -> Splits:
    """Load an MNIST-style dataset as train / val / test arrays on the active backend.

    The training pool is shuffled with ``seed`` and split: the first ``val_size``
    images are the validation set, the rest (or the first ``n_train`` of the
    rest) the training set, so the validation set does not change with
    ``n_train``.  The test set is the official one, in its order, or ``n_test``
    images drawn with ``seed``.

    Returns :class:`Splits`: images ``(N, 784)`` (``(N, 28, 28)`` if not
    ``flatten``) of ``dtype`` (default ``backend.default_dtype``), in [0, 1] when
    ``normalize`` else 0-255; labels ``(N,)`` int64, or ``(N, 10)`` one-hot floats.
    """
    if dataset not in DATASETS:
        raise ValueError(f"Unknown dataset {dataset!r}; choose one of {DATASETS}.")
    x_pool, y_pool, x_test, y_test = _raw(dataset, data_dir)
    if not 0 <= val_size < len(x_pool):
        raise ValueError(f"val_size={val_size} must be between 0 and {len(x_pool) - 1}: the "
                         f"{len(x_pool):,} training images of {dataset!r} must leave at least "
                         "one for training.")
    n_left = len(x_pool) - val_size
    if n_train is not None and not 1 <= n_train <= n_left:
        raise ValueError(f"n_train={n_train} must be between 1 and {n_left:,} "
                         f"({len(x_pool):,} images minus val_size={val_size}).")
    if n_test is not None and not 1 <= n_test <= len(x_test):
        raise ValueError(f"n_test={n_test} must be between 1 and {len(x_test):,}.")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x_pool))  # the 5k subset is sorted by label: always shuffle
    val_idx, train_idx = order[:val_size], order[val_size:][:n_train]
    test_idx = rng.permutation(len(x_test))[:n_test] if n_test is not None else slice(None)
    dtype = np.dtype(dtype or backend.default_dtype).type

    def images(x):
        x = x.reshape(len(x), 28 * 28) if flatten else x
        x = x.astype(dtype)
        return backend.asarray(x / dtype(255) if normalize else x)

    def labels(y):
        y = y.astype(np.int64)
        return backend.asarray(np.eye(10, dtype=dtype)[y] if one_hot else y)

    name = "mnist" if dataset == "mnist-5k" else dataset
    return Splits(images(x_pool[train_idx]), labels(y_pool[train_idx]),
                  images(x_pool[val_idx]), labels(y_pool[val_idx]),
                  images(x_test[test_idx]), labels(y_test[test_idx]),
                  name=dataset, class_names=CLASS_NAMES[name])


# ----------------------------------------------------------------------------- command line
def _file_problem(path, expected, fix, full):
    """Why ``path`` is not usable (a str), or None.  Cheap checks (exists, non-empty,
    size when known) unless ``full``, which adds the checksums."""
    path = Path(path)
    if not path.is_file():
        return f"{path} is missing: {fix}."
    if not full:
        size = path.stat().st_size
        if size == 0:
            return f"{path} is empty (0 bytes): {fix}."
        if "size" in expected and size != expected["size"]:
            return f"{path} has {size:,} bytes, expected {expected['size']:,}: {fix}."
        return None
    try:
        check_file(path, expected, fix)
    except DataError as e:
        return str(e)
    return None


def _info(data_dir=None, full=False) -> int:
    """Print what is available here (``full``: checksums too); return the number of problems."""
    print(f"cache directory: {cache_dir(data_dir)}  (set {ENV_VAR} or --data-dir to change)")
    done = "verified" if full else "ready"
    problems = []
    fix = restore_advice()
    shipped = []
    for f, sums in SHIPPED_FILES.items():
        try:
            why = _file_problem(shipped_path(f), sums, fix, full)
        except FileNotFoundError as e:
            why = str(e)
        shipped += [why] if why else []
    state = "damaged" if shipped else done
    print(f"  {'mnist-5k':14s} {state:8s} {SHIPPED_DIR} (shipped with the package)")
    problems += shipped
    for why in shipped:
        print(f"      {why}")
    for name in ("mnist", "fashion-mnist"):
        found = locate(name, data_dir)
        missing = [f for f, p in found.items() if p is None]
        where = sorted({str(p.parent) for p in found.values() if p is not None})
        bad = [why for f, p in found.items() if p is not None
               for why in [_file_problem(p, CHECKSUMS[name][f], _fix_for(p, name, data_dir), full)] if why]
        if bad:
            label, state = "damaged", " + ".join(where)
        elif missing:
            label = "partial" if where else "missing"
            state = f"missing {', '.join(missing)}: fetch it: {fetch_command(name, data_dir)}"
        else:
            label, state = done, " + ".join(where)
        print(f"  {name:14s} {label:8s} {state}")
        for why in bad:
            print(f"      {why}")
        problems += bad
    cache = cache_dir(data_dir)
    try:
        folders = sorted(f for f in cache.iterdir() if f.is_dir()) if cache.is_dir() else []
    except OSError:  # an unreadable cache: the dataset lines above already say what is missing
        folders = []
    for folder in folders:
        parts = stale_parts(folder)
        if parts:
            print(f"  {len(parts)} temporary file(s) left by an interrupted fetch in {folder}; the next "
                  f"`python -m course_lib.data fetch {folder.name}` removes them")
    if not full and not problems:
        print("(files found, checksums not checked: `python -m course_lib.data list --verify` checks them)")
    return len(problems)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m course_lib.data",
                                     description="Fetch and list the course's datasets.")
    sub = parser.add_subparsers(dest="command", required=True)
    get = sub.add_parser("fetch", help="download a full dataset into the cache")
    get.add_argument("name", choices=sorted(CHECKSUMS))
    get.add_argument("--mirror", action="append", help="base URL to use instead of the known mirrors")
    get.add_argument("--timeout", type=float, default=30)
    get.add_argument("--quiet", action="store_true")
    for cmd in ("list", "info"):
        show = sub.add_parser(cmd, help="show which datasets are available here")
        show.add_argument("--verify", action="store_true",
                          help="also check every file's size and checksum (exit status 1 if one fails)")
    for p in sub.choices.values():
        p.add_argument("--data-dir", help=f"cache directory (default: ${ENV_VAR}, else data/cache in a "
                       "checkout of the course, else ~/.cache/course_lib)")
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            path = fetch(args.name, args.data_dir, args.mirror, args.timeout, progress=not args.quiet)
            print(f"{args.name} is ready in {path}")
        elif _info(args.data_dir, full=args.verify):
            return 1
    except (FetchError, PermissionError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
