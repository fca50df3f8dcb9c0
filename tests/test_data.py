"""course_lib.data: IDX parsing, the real fetch code against a local server, load_mnist.

The fetch tests serve small generated IDX files from an HTTP server on
127.0.0.1 (an ephemeral port, in a thread) and register their checksums under
a test dataset "tiny", so they run the real download path without the network.
"""
import gzip
import hashlib
import http.server
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from course_lib import backend, data
from course_lib.data import DataError, FetchError, load_idx, load_mnist

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
to_np = backend.to_numpy


# ----------------------------------------------------------------------------- helpers
def idx_bytes(a):
    """The IDX encoding of a uint8 array (magic 0x0000 0x08 ndim, big-endian sizes)."""
    a = np.ascontiguousarray(a, dtype=np.uint8)
    return bytes([0, 0, 8, a.ndim]) + np.array(a.shape, ">u4").tobytes() + a.tobytes()


def tiny_files(n_train=30, n_test=12, seed=0):
    """Gzipped IDX bytes for the four standard file names, with matching counts."""
    rng = np.random.default_rng(seed)
    arrays = [rng.integers(0, 256, (n_train, 28, 28)), rng.integers(0, 10, n_train),
              rng.integers(0, 256, (n_test, 28, 28)), rng.integers(0, 10, n_test)]
    return {f: gzip.compress(idx_bytes(a), mtime=0) for f, a in zip(data.FILES, arrays)}


def snapshot(root):
    """Every path under ``root`` (hidden temp files included), to prove nothing changed."""
    return sorted(str(p.relative_to(root)) for p in Path(root).rglob("*")) if Path(root).exists() else None


def dead_url():
    """A base URL on a port where nothing listens (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


class Server:
    """Serves ``routes`` (path -> bytes, or a function of the handler) on 127.0.0.1."""

    def __init__(self):
        self.routes, self.hits = {}, Counter()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.hits[self.path] += 1
                route = server.routes.get(self.path)
                if route is None:
                    self.send_error(404)
                elif callable(route):
                    route(self)
                else:
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(route)))
                    self.end_headers()
                    self.wfile.write(route)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, prefix):
        return f"http://127.0.0.1:{self.httpd.server_port}/{prefix}/"

    def serve(self, prefix, files):
        for name, body in files.items():
            self.routes[f"/{prefix}/{name}"] = body


@pytest.fixture
def server():
    s = Server()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


@pytest.fixture
def tiny(monkeypatch):
    """Register the test dataset "tiny" (checksums of generated files); return its files."""
    files = tiny_files()
    # Half the files by MD5, half by SHA-256: both must be honoured.
    sums = {f: ({"md5": hashlib.md5(b).hexdigest()} if i % 2 else
                {"sha256": hashlib.sha256(b).hexdigest()})
            for i, (f, b) in enumerate(files.items())}
    monkeypatch.setitem(data.CHECKSUMS, "tiny", sums)
    return files


def fetch_tiny(cache, mirrors, **kw):
    return data.fetch("tiny", data_dir=cache, mirrors=mirrors, timeout=5, progress=False, **kw)


# ----------------------------------------------------------------------------- fetch
def test_fetch_downloads_verifies_and_loads(server, tiny, tmp_path):
    server.serve("good", tiny)
    out = fetch_tiny(tmp_path / "cache", [server.url("good")])
    assert out == tmp_path / "cache" / "tiny"
    assert snapshot(out) == sorted(data.FILES)  # no temp files left beside them
    for f, body in tiny.items():
        assert (out / f).read_bytes() == body
        assert (out / f).stat().st_mode & 0o044  # readable by others, not mkstemp's 0600
    images = load_idx(out / "train-images-idx3-ubyte.gz")
    assert images.dtype == np.uint8 and images.shape == (30, 28, 28)
    assert load_idx(out / "t10k-labels-idx1-ubyte.gz").shape == (12,)


def test_present_files_are_not_downloaded_again(server, tiny, tmp_path):
    server.serve("good", tiny)
    fetch_tiny(tmp_path, [server.url("good")])
    assert sum(server.hits.values()) == 4
    fetch_tiny(tmp_path, [server.url("good")])
    assert sum(server.hits.values()) == 4
    # A damaged cached file fails its checksum and is replaced; the others are kept.
    damaged = tmp_path / "tiny" / "train-labels-idx1-ubyte.gz"
    damaged.write_bytes(b"junk")
    fetch_tiny(tmp_path, [server.url("good")])
    assert sum(server.hits.values()) == 5 and damaged.read_bytes() == tiny[damaged.name]


def test_bad_checksum_leaves_cache_unchanged(server, tiny, tmp_path):
    bad = dict(tiny)
    bad["t10k-images-idx3-ubyte.gz"] = tiny_files(seed=1)["t10k-images-idx3-ubyte.gz"]
    server.serve("bad", bad)
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / "notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    with pytest.raises(FetchError, match="checksum mismatch") as err:
        fetch_tiny(tmp_path, [server.url("bad")], retries_per_mirror=3)
    assert "t10k-images-idx3-ubyte.gz" in str(err.value) and server.url("bad") in str(err.value)
    assert snapshot(tmp_path) == before  # the three good files were not kept either
    assert server.hits["/bad/t10k-images-idx3-ubyte.gz"] == 1  # a wrong file is not retried


def truncating(body):
    """A route that promises more bytes than it sends, then closes the connection."""
    def route(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(body) + 5000))
        handler.end_headers()
        handler.wfile.write(body[: len(body) // 2])
        handler.close_connection = True
    return route


def test_truncated_transfer_is_an_error(server, tiny, tmp_path):
    server.serve("cut", {f: truncating(b) for f, b in tiny.items()})
    with pytest.raises(FetchError, match="truncated transfer"):
        fetch_tiny(tmp_path / "cache", [server.url("cut")])
    assert not (tmp_path / "cache").exists()  # directories it created are gone too
    # Retried once (transient), then the next mirror is used.
    server.serve("good", tiny)
    fetch_tiny(tmp_path / "cache", [server.url("cut"), server.url("good")])
    assert server.hits["/cut/train-images-idx3-ubyte.gz"] == 2 + 2  # two tries per fetch
    assert snapshot(tmp_path / "cache" / "tiny") == sorted(data.FILES)


def test_dead_mirrors_are_skipped(server, tiny, tmp_path):
    server.serve("good", tiny)
    out = fetch_tiny(tmp_path, [dead_url(), server.url("missing"), server.url("good")])
    assert snapshot(out) == sorted(data.FILES)


def test_all_mirrors_dead_names_each(server, tiny, tmp_path):
    dead = dead_url()
    with pytest.raises(FetchError) as err:
        fetch_tiny(tmp_path, [dead, server.url("missing")])
    msg = str(err.value)
    assert dead in msg and "cannot connect" in msg
    assert server.url("missing") in msg and "HTTP 404" in msg
    assert snapshot(tmp_path) == []


def test_interrupted_download_leaves_nothing(server, tiny, tmp_path, monkeypatch):
    server.serve("good", tiny)
    real_urlopen = urllib.request.urlopen
    calls = Counter()

    def urlopen(url, *args, **kw):  # the second file is interrupted after its first chunk
        response = real_urlopen(url, *args, **kw)
        calls["open"] += 1
        if calls["open"] == 2:
            read = response.read

            def interrupted(n=-1):
                calls["read"] += 1
                if calls["read"] > 1:
                    raise KeyboardInterrupt
                return read(16)
            response.read = interrupted
        return response

    monkeypatch.setattr(data.urllib.request, "urlopen", urlopen)
    (tmp_path / "cache").mkdir()
    with pytest.raises(KeyboardInterrupt):
        fetch_tiny(tmp_path / "cache", [server.url("good")])
    assert calls["read"] == 2
    assert snapshot(tmp_path / "cache") == []  # not even the first, complete file


def test_unwritable_data_dir_is_a_clear_error(tiny, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(PermissionError, match="COURSE_LIB_DATA_DIR") as err:
        fetch_tiny(blocker / "cache", ["http://127.0.0.1:9/"])
    assert str(blocker / "cache") in str(err.value)


def test_read_only_data_dir_is_a_clear_error(tiny, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as root: chmod does not stop writes")
        with pytest.raises(PermissionError, match="COURSE_LIB_DATA_DIR") as err:
            fetch_tiny(ro, ["http://127.0.0.1:9/"])
        assert str(ro) in str(err.value)
    finally:
        ro.chmod(0o700)


def test_cache_dir_choice(monkeypatch, tmp_path):
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "env"))
    assert data.cache_dir() == tmp_path / "env"
    assert data.cache_dir(tmp_path / "arg") == tmp_path / "arg"  # the argument wins
    monkeypatch.delenv(data.ENV_VAR)
    repo = tmp_path / "repo" / "data"
    repo.mkdir(parents=True)
    monkeypatch.setattr(data, "REPO_DATA_DIR", repo)
    assert data.cache_dir() == repo / "cache"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(data.os, "access", lambda *args: False)  # a read-only checkout
    assert data.cache_dir() == tmp_path / "home" / ".cache" / "course_lib"
    monkeypatch.undo()
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(data, "REPO_DATA_DIR", None)  # a wheel install: never site-packages/data
    assert data.cache_dir() == tmp_path / "home" / ".cache" / "course_lib"


def test_sha256_or_content_checksum(tmp_path):
    body = gzip.compress(idx_bytes(np.ones((2, 28, 28), np.uint8)), mtime=0)
    regzipped = gzip.compress(gzip.decompress(body), mtime=12345)  # same content, new header
    (tmp_path / "a.gz").write_bytes(regzipped)
    content = {"raw_md5": hashlib.md5(gzip.decompress(body)).hexdigest()}
    assert data.verify(tmp_path / "a.gz", {"sha256": hashlib.sha256(regzipped).hexdigest()}) is None
    assert data.verify(tmp_path / "a.gz", {"md5": hashlib.md5(body).hexdigest(), **content}) is None
    assert "md5 is" in data.verify(tmp_path / "a.gz", {"md5": hashlib.md5(body).hexdigest()})
    assert "content" in data.verify(tmp_path / "a.gz", {"raw_md5": "0" * 32})


def test_fetch_mnist_reuses_shipped_test_set(server, tmp_path, monkeypatch):
    """The shipped t10k files are copied, not downloaded; only the train files come over HTTP."""
    train = {f: b for f, b in tiny_files(n_train=40).items() if f.startswith("train")}
    sums = dict(data.CHECKSUMS["mnist"])
    sums.update({f: {"md5": hashlib.md5(b).hexdigest()} for f, b in train.items()})
    monkeypatch.setitem(data.CHECKSUMS, "mnist", sums)
    server.serve("m", train)
    out = data.fetch("mnist", data_dir=tmp_path, mirrors=[server.url("m")], progress=False)
    assert set(server.hits) == {"/m/" + f for f in train}
    for f in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        assert (out / f).read_bytes() == (data.SHIPPED_DIR / f).read_bytes()
    s = load_mnist("mnist", data_dir=tmp_path, val_size=10)
    assert (s.x_train.shape, s.x_val.shape, s.x_test.shape) == ((30, 784), (10, 784), (10000, 784))


def test_cli(server, tiny, tmp_path, capsys):
    server.serve("good", tiny)
    args = ["fetch", "tiny", "--data-dir", str(tmp_path), "--quiet"]
    assert data.main(args + ["--mirror", server.url("good")]) == 0
    assert "ready" in capsys.readouterr().out
    assert data.main(args + ["--data-dir", str(tmp_path / "x"), "--mirror", dead_url()]) == 1
    assert "every mirror failed" in capsys.readouterr().err
    assert data.main(["list", "--data-dir", str(tmp_path)]) == 0
    assert "mnist-5k" in capsys.readouterr().out


def test_module_runs_as_script(tmp_path):
    out = subprocess.run([sys.executable, "-m", "course_lib.data", "info", "--data-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=60, cwd=Path(data.__file__).parents[1])
    assert out.returncode == 0, out.stderr
    assert "fetch mnist" in out.stdout  # full MNIST is missing from an empty cache


# ----------------------------------------------------------------------------- IDX parsing
def test_load_idx_raw_and_gzip(tmp_path):
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a.idx").write_bytes(idx_bytes(a))
    (tmp_path / "a.idx.gz").write_bytes(gzip.compress(idx_bytes(a)))
    for name in ("a.idx", "a.idx.gz"):
        out = load_idx(tmp_path / name)
        assert out.dtype == np.uint8 and np.array_equal(out, a)


@pytest.mark.parametrize("damage, message", [
    (lambda b: b[:-7], "data has"),                                      # truncated data
    (lambda b: b + b"\0", "data has"),                                   # trailing bytes
    (lambda b: b"\x00\x00\x08\x03\x00", "file ends"),                    # truncated header
    (lambda b: b"\x00\x00\x0f\x03" + b[4:], "magic"),                    # unknown type code
    (lambda b: b"\x01\x02\x08\x03" + b[4:], "magic"),                    # not IDX at all
    (lambda b: b"", "magic"),                                            # empty
    (lambda b: gzip.compress(b)[:-30], "gzip"),                          # truncated .gz
    (lambda b: b"\x1f\x8b" + os.urandom(100), "gzip"),                   # corrupt .gz
])
def test_load_idx_rejects_damaged_files(tmp_path, damage, message):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(damage(idx_bytes(np.zeros((5, 28, 28), np.uint8))))
    with pytest.raises(DataError, match=message) as err:
        load_idx(path)
    assert str(path) in str(err.value) and "fetch" in str(err.value)


def test_mismatched_counts_are_a_data_error(tmp_path):
    files = tiny_files(n_train=30)
    files["train-labels-idx1-ubyte.gz"] = tiny_files(n_train=29)["train-labels-idx1-ubyte.gz"]
    (tmp_path / "mnist").mkdir()
    for f, b in files.items():
        (tmp_path / "mnist" / f).write_bytes(b)
    with pytest.raises(DataError, match="30 images but .* 29 labels") as err:
        load_mnist("mnist", data_dir=tmp_path, val_size=5)
    assert "python -m course_lib.data fetch mnist" in str(err.value)


def test_wrong_magic_in_cache_names_the_file(tmp_path):
    (tmp_path / "mnist").mkdir()
    for f, b in tiny_files().items():
        (tmp_path / "mnist" / f).write_bytes(b)
    labels = tmp_path / "mnist" / "train-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(b"\x00\x00\x0f\x01" + bytes(100)))  # 0x0f: no such IDX type
    with pytest.raises(DataError, match="bad magic number 00000f01") as err:
        load_mnist("mnist", data_dir=tmp_path, val_size=5)
    assert str(labels) in str(err.value)


# ----------------------------------------------------------------------------- load_mnist
def test_load_mnist_defaults_on_every_backend(xp):
    s = load_mnist()
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = s
    assert (x_train.shape, x_val.shape, x_test.shape) == ((4000, 784), (1000, 784), (10000, 784))
    assert y_train.shape == (4000,) and y_val.shape == (1000,) and y_test.shape == (10000,)
    for a in (x_train, y_train, x_val, y_val, x_test, y_test):
        assert backend.get_array_module(a) is xp
    assert x_train.dtype == backend.default_dtype and y_train.dtype == np.int64
    x = to_np(x_train)
    assert x.min() == 0.0 and x.max() == 1.0
    assert s.name == "mnist-5k" and s.class_names == tuple("0123456789")
    assert "(4000, 784)" in repr(s) and len(repr(s)) < 150


def test_load_mnist_shuffled_balanced_and_disjoint():
    s = load_mnist()
    y_train, y_val = to_np(s.y_train), to_np(s.y_val)
    assert np.array_equal(np.bincount(np.concatenate([y_train, y_val])), [500] * 10)
    assert (np.diff(y_train) < 0).any()  # not sorted by label
    assert np.bincount(y_val, minlength=10).min() > 50  # every digit in validation
    rows = lambda x: {r.tobytes() for r in to_np(x)}  # noqa: E731
    assert not rows(s.x_train) & rows(s.x_val)
    assert np.array_equal(np.bincount(to_np(s.y_test)),
                          [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])


def test_load_mnist_seed_determinism():
    a, b, c = load_mnist(seed=3), load_mnist(seed=3), load_mnist(seed=4)
    for f in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        assert np.array_equal(to_np(getattr(a, f)), to_np(getattr(b, f)))
    assert not np.array_equal(to_np(a.y_train), to_np(c.y_train))


def test_load_mnist_options():
    s = load_mnist(one_hot=True, flatten=False, normalize=False, dtype=np.float64, val_size=500)
    assert s.x_train.shape == (4500, 28, 28) and s.x_train.dtype == np.float64
    assert to_np(s.x_train).max() == 255.0
    assert s.y_train.shape == (4500, 10) and s.y_train.dtype == np.float64
    assert np.array_equal(to_np(s.y_train).sum(1), np.ones(4500))
    plain = load_mnist(val_size=500)
    assert np.array_equal(to_np(s.y_train).argmax(1), to_np(plain.y_train))


def test_load_mnist_subsampling():
    full = load_mnist(seed=1)
    s = load_mnist(seed=1, n_train=100, n_test=50)
    assert s.x_train.shape == (100, 784) and s.x_test.shape == (50, 784)
    assert np.array_equal(to_np(s.x_train), to_np(full.x_train)[:100])
    assert np.array_equal(to_np(s.x_val), to_np(full.x_val))
    assert np.array_equal(to_np(s.y_test), to_np(load_mnist(seed=1, n_test=50).y_test))
    assert load_mnist(val_size=4999).x_train.shape == (1, 784)
    assert load_mnist(val_size=0).x_val.shape == (0, 784)


@pytest.mark.parametrize("kwargs, message", [
    (dict(dataset="cifar10"), "mnist-5k"),
    (dict(val_size=5000), "at least one"),
    (dict(val_size=-1), "val_size"),
    (dict(n_train=4001), "n_train"),
    (dict(n_test=0), "n_test"),
])
def test_load_mnist_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        load_mnist(**kwargs)


def test_missing_full_datasets_say_how_to_fetch(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="python -m course_lib.data fetch mnist"):
        load_mnist("mnist", data_dir=tmp_path)
    monkeypatch.setitem(data.LOCAL_SOURCES, "fashion-mnist", [tmp_path / "nowhere"])
    with pytest.raises(FileNotFoundError, match="fetch fashion-mnist.*dataset-fashion-mnist"):
        load_mnist("fashion-mnist", data_dir=tmp_path)


@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="Debian package dataset-fashion-mnist not installed")
def test_fashion_mnist_from_debian_package(tmp_path):
    s = load_mnist("fashion-mnist", data_dir=tmp_path)  # empty cache: the system copy is used
    assert (len(s.x_train) + len(s.x_val), len(s.x_test)) == (60000, 10000)
    assert s.class_names[9] == "Ankle boot"
    assert np.array_equal(np.bincount(to_np(s.y_test)), [1000] * 10)
    # Debian re-gzipped the files: the .gz MD5s differ, the content matches the published hashes.
    for f, expected in data.CHECKSUMS["fashion-mnist"].items():
        assert data.verify(FASHION_DIR / f, expected) is None, f


def test_shipped_files_match_published_checksums():
    for f in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        body = (data.SHIPPED_DIR / f).read_bytes()
        assert hashlib.md5(body).hexdigest() == data.CHECKSUMS["mnist"][f]["md5"]
        assert hashlib.sha256(body).hexdigest() == data.CHECKSUMS["mnist"][f]["sha256"]
    npz = (data.SHIPPED_DIR / "mnist_5k.npz").read_bytes()
    assert hashlib.md5(npz).hexdigest() == "11def57eb666ead6d8efa9a9ff9c2218"


# ----------------------------------------------------------------------------- cache hygiene
def part_file(directory, fname="train-images-idx3-ubyte.gz", pid=None, host=None, age=0.0, legacy=False):
    """A temporary download file as fetch names it, ``age`` seconds old."""
    tag = "abc123" if legacy else f"{pid}@{host or data._HOST}-abc123"
    path = Path(directory) / f".{fname}.part-{tag}"
    path.write_bytes(b"partial")
    os.utime(path, (path.stat().st_atime - age, path.stat().st_mtime - age))
    return path


def test_stale_parts_rule(tmp_path):
    dead_pid = 2 ** 22 + 12345  # above Linux's pid_max: no such process
    dead = part_file(tmp_path, pid=dead_pid)
    mine = part_file(tmp_path, "train-labels-idx1-ubyte.gz", pid=os.getpid(), age=10 * 3600)
    live = part_file(tmp_path, "t10k-images-idx3-ubyte.gz", pid=os.getppid())
    other_host_fresh = part_file(tmp_path, "t10k-labels-idx1-ubyte.gz", pid=dead_pid, host="elsewhere")
    assert data.stale_parts(tmp_path) == ([] if os.name == "nt" else [dead])
    later = time.time() + data.STALE_PART_SECONDS + 60
    # An hour without a write: stale whoever wrote it -- except this very process (a live fetch in a thread).
    assert data.stale_parts(tmp_path, now=later) == sorted([dead, live, other_host_fresh])
    assert mine.exists()
    legacy_old = part_file(tmp_path, "t10k-images-idx3-ubyte.gz", legacy=True, age=2 * 3600)
    part_file(tmp_path, "train-labels-idx1-ubyte.gz", legacy=True)  # fresh: may belong to a live fetch
    (tmp_path / ".notes.txt.part-1@x-y").write_text("not ours")    # not one of the four file names
    assert legacy_old in data.stale_parts(tmp_path)
    assert not any("notes" in p.name for p in data.stale_parts(tmp_path, now=later))


def test_fetch_removes_only_stale_parts(server, tiny, tmp_path):
    server.serve("good", tiny)
    (tmp_path / "tiny").mkdir()
    dead = part_file(tmp_path / "tiny", pid=2 ** 22 + 12345)
    old = part_file(tmp_path / "tiny", "t10k-labels-idx1-ubyte.gz", legacy=True, age=2 * 3600)
    live = part_file(tmp_path / "tiny", "t10k-images-idx3-ubyte.gz", pid=os.getppid())
    fetch_tiny(tmp_path, [server.url("good")])
    assert not dead.exists() and not old.exists()
    assert live.exists()  # another process's download in progress is left alone
    assert snapshot(tmp_path / "tiny") == sorted([*data.FILES, live.name])


def test_fetch_killed_by_sigkill_is_cleaned_up_by_the_next_fetch(server, tiny, tmp_path, capsys):
    """The real case: a fetch killed mid-download (no finally runs) leaves .NAME.part-<pid>@<host>-*."""
    if os.name == "nt":
        pytest.skip("SIGKILL is POSIX")
    release, started = threading.Event(), threading.Event()

    def stalls(handler):  # sends half the file, then hangs until the test ends
        body = tiny["train-images-idx3-ubyte.gz"]
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body[: len(body) // 2])
        handler.wfile.flush()
        started.set()
        release.wait(60)

    server.routes["/slow/train-images-idx3-ubyte.gz"] = stalls
    sums = dict(data.CHECKSUMS["tiny"])
    script = ("import sys; from course_lib import data; data.CHECKSUMS['tiny'] = eval(sys.argv[1]); "
              "data.fetch('tiny', data_dir=sys.argv[2], mirrors=[sys.argv[3]], timeout=60, progress=False)")
    proc = subprocess.Popen([sys.executable, "-c", script, repr(sums), str(tmp_path), server.url("slow")],
                            cwd=Path(data.__file__).parents[1])
    try:
        assert started.wait(60), "the child never reached the download"
        parts = list((tmp_path / "tiny").glob(".*.part-*"))
        assert parts and proc.poll() is None, "the fetch should be stalled mid-download"
        proc.kill()
        proc.wait(30)
    finally:
        release.set()
        if proc.poll() is None:
            proc.kill()
    assert [p.exists() for p in parts] == [True]  # SIGKILL: nothing could clean up
    assert f".part-{proc.pid}@" in parts[0].name
    data.main(["list", "--data-dir", str(tmp_path)])
    assert "1 temporary file(s) left by an interrupted fetch" in capsys.readouterr().out
    server.serve("good", tiny)
    fetch_tiny(tmp_path, [server.url("good")])
    assert snapshot(tmp_path / "tiny") == sorted(data.FILES)  # the leftover is gone


def test_cached_file_with_wrong_checksum_is_refused_then_fixed_by_the_advice(server, tiny, tmp_path, monkeypatch,
                                                                            capsys):
    monkeypatch.setitem(data.CHECKSUMS, "mnist", data.CHECKSUMS["tiny"])
    monkeypatch.setattr(data, "LOCAL_SOURCES", {"mnist": []})
    server.serve("good", tiny)
    out = data.fetch("mnist", data_dir=tmp_path, mirrors=[server.url("good")], progress=False)
    assert load_mnist("mnist", data_dir=tmp_path, val_size=5).x_train.shape == (25, 784)
    swapped = out / "t10k-labels-idx1-ubyte.gz"  # a valid IDX file, but not the published one
    swapped.write_bytes(gzip.compress(idx_bytes(np.arange(12) % 10), mtime=7))
    with pytest.raises(DataError, match="checksum mismatch") as err:
        load_mnist("mnist", data_dir=tmp_path, val_size=5)
    command = re.search(r"`(python -m course_lib\.data fetch [^`]*)`", str(err.value)).group(1)
    argv = shlex.split(command)[3:] + ["--quiet", "--mirror", server.url("good")]
    assert argv[:4] == ["fetch", "mnist", "--data-dir", str(tmp_path)]
    assert data.main(argv) == 0  # the advised command repairs the cache
    assert swapped.read_bytes() == tiny["t10k-labels-idx1-ubyte.gz"]
    assert load_mnist("mnist", data_dir=tmp_path, val_size=5).x_test.shape == (12, 784)


def test_verification_is_done_once_per_file_per_process(monkeypatch):
    calls = Counter()
    real_hashes = data._hashes

    def counting(path, raw=False):
        calls[Path(path).name] += 1
        return real_hashes(path, raw)

    monkeypatch.setattr(data, "_hashes", counting)
    monkeypatch.setattr(data, "_VERIFIED", set())
    load_mnist()
    assert calls == Counter({f: 1 for f in data.SHIPPED_FILES})
    load_mnist(seed=1)
    assert calls == Counter({f: 1 for f in data.SHIPPED_FILES})  # cached: not hashed again


# ----------------------------------------------------------------------------- list / list --verify
def test_list_never_calls_an_empty_file_ready(tiny, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(data.LOCAL_SOURCES, "fashion-mnist", [])
    cache = tmp_path / "mnist"
    cache.mkdir()
    for f, body in tiny_files().items():
        (cache / f).write_bytes(body)
    (cache / "train-labels-idx1-ubyte.gz").write_bytes(b"")
    assert data.main(["list", "--data-dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if l.strip().startswith("mnist "))
    assert "damaged" in line and "ready" not in line
    assert "is empty (0 bytes)" in out and "fetch mnist --data-dir" in out


def test_list_verify_checks_checksums(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(data.LOCAL_SOURCES, "fashion-mnist", [])
    monkeypatch.setattr(data, "_VERIFIED", set())
    assert data.main(["list", "--verify", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"mnist-5k\s+verified", out)
    cache = tmp_path / "mnist"  # well-formed files that are not the published ones
    cache.mkdir()
    for f, body in tiny_files().items():
        (cache / f).write_bytes(body)
    assert data.main(["list", "--data-dir", str(tmp_path)]) == 0  # cheap: sizes only, says so
    out = capsys.readouterr().out
    assert re.search(r"mnist\s+ready", out) and "list --verify" in out
    assert data.main(["list", "--verify", "--data-dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert re.search(r"mnist\s+damaged", out) and out.count("checksum mismatch") == 4
    assert "fetch mnist --data-dir" in out


def test_list_verify_catches_a_damaged_shipped_file(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "datasets"
    shutil.copytree(data.SHIPPED_DIR, folder)
    monkeypatch.setattr(data, "SHIPPED", folder)
    monkeypatch.setattr(data, "SHIPPED_DIR", folder)
    monkeypatch.setattr(data, "_VERIFIED", set())
    blob = bytearray((folder / "t10k-images-idx3-ubyte.gz").read_bytes())
    blob[5000] ^= 0xFF  # same size: only the checksum can tell
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(bytes(blob))
    assert data.main(["list", "--data-dir", str(tmp_path)]) == 0
    capsys.readouterr()
    assert data.main(["list", "--verify", "--data-dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert re.search(r"mnist-5k\s+damaged", out) and "checkout -- course_lib/datasets/" in out


# ----------------------------------------------------------------------------- package data + advice
def test_shipped_files_are_package_data():
    import importlib.resources
    folder = importlib.resources.files("course_lib") / "datasets"
    for f, expected in data.SHIPPED_FILES.items():
        assert (folder / f).is_file(), f
        assert len((folder / f).read_bytes()) == expected["size"]
    assert data.SHIPPED_DIR == Path(data.__file__).parent / "datasets"
    # The shipped files are not in data/ any more (it holds the docs and the download cache).
    if data.REPO_DATA_DIR is not None:
        assert not (data.REPO_DATA_DIR / "mnist_5k.npz").exists()


def test_restore_advice_fits_the_installation(monkeypatch):
    monkeypatch.setattr(data, "_checkout_root", lambda: Path("/src/course"))
    assert "git -C /src/course checkout -- course_lib/datasets/" in data.restore_advice()
    monkeypatch.setattr(data, "_checkout_root", lambda: None)
    monkeypatch.setattr(data, "_install_source", lambda: "git+https://github.com/x/course@abc123")
    advice = data.restore_advice()
    assert "pip install --force-reinstall --no-deps git+https://github.com/x/course@abc123" in advice
    assert "%pip install" in advice and "git checkout" not in advice
    monkeypatch.setattr(data, "_install_source", lambda: None)
    assert "pip install --force-reinstall --no-deps <" in data.restore_advice()


@pytest.mark.parametrize("direct_url, expected", [
    ({"url": "file:///tmp/w/course_lib-0.1.0-py3-none-any.whl", "archive_info": {}},
     "/tmp/w/course_lib-0.1.0-py3-none-any.whl"),
    ({"url": "https://github.com/x/course", "vcs_info": {"vcs": "git", "commit_id": "abc"}},
     "git+https://github.com/x/course@abc"),
    ({"url": "file:///src/course", "dir_info": {}}, "file:///src/course"),
    (None, None),
])
def test_install_source_reads_pip_direct_url(monkeypatch, direct_url, expected):
    import importlib.metadata
    import json

    class Dist:
        def read_text(self, name):
            assert name == "direct_url.json"
            return None if direct_url is None else json.dumps(direct_url)

    monkeypatch.setattr(importlib.metadata, "distribution", lambda name: Dist())
    assert data._install_source() == expected
