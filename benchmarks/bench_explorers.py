"""Redraw latency of every explorer, driven in-process through its controls.

    python benchmarks/bench_explorers.py [--repeats 3] [--markdown]

Each explorer is built at its default size on the shipped MNIST subset (as the
chapters do), then its controls are set to several values, interleaved across
explorers (so no explorer profits from warm caches of the one before) and
repeated.  Every ``.value`` assignment goes through the widget callback: the
time measured is what a learner waits for, from release of the slider to the
new PNG.  Targets: 0.3 s for explorers that only compute statistics, 1 s for
those that retrain a network.

Wall time depends on what else runs on the machine, so the table also gives
the CPU time of the redraw (all threads of this process), judged against the
same targets, and the load average.  The exit status is 1 when a median wall
time misses its target.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from course_lib import explorers  # noqa: E402
from course_lib.data import load_mnist  # noqa: E402

NO_TRAINING, RETRAINS = 0.3, 1.0

# name -> (build(data), target seconds, [(control, value), ...] visited in order, cyclically)
PLAN = {
    "init_explorer": (lambda d: explorers.init_explorer(), NO_TRAINING,
                      [("depth", 10), ("activation", "relu"), ("init", "he"), ("depth", 25), ("std", 0.05),
                       ("activation", "sigmoid"), ("init", 1.0), ("depth", 5), ("init", "xavier"),
                       ("activation", "tanh")]),
    "bn_stats_explorer": (lambda d: explorers.bn_stats_explorer(), NO_TRAINING,
                          [("batch_size", m) for m in (2, 8, 128, 512, 4, 64, 16, 256, 32)]),
    "depth_explorer": (lambda d: explorers.depth_explorer(d), RETRAINS,
                       [("depth", 2), ("batch_norm", False), ("depth", 15), ("batch_norm", True), ("depth", 5),
                        ("depth", 20), ("batch_norm", False), ("depth", 10), ("batch_norm", True)]),
    "batch_size_explorer": (lambda d: explorers.batch_size_explorer(d), RETRAINS,
                            [("batch_size", m) for m in (4, 128, 16, 512, 2, 64, 8, 256, 32)]),
    "weight_decay_explorer": (lambda d: explorers.weight_decay_explorer(d), RETRAINS,
                              [("weight_decay", v) for v in (0.0, 1e-2, 1e-4, 0.1, 3e-3, 0.3, 1e-5, 1e-3)]),
    "dropout_explorer": (lambda d: explorers.dropout_explorer(d), RETRAINS,
                         [("p", p) for p in (0.0, 0.5, 0.1, 0.3, 0.8, 0.05, 0.2)]),
    # the options of issue 15.5, each in its own row: BN switched on, the norm menu, equal data
    "batch_size_explorer norm menu": (lambda d: explorers.batch_size_explorer(d), RETRAINS,
                                      [("norm", "renorm"), ("batch_size", 4), ("norm", "layer"), ("batch_size", 128),
                                       ("norm", "group"), ("batch_size", 2), ("norm", "none"), ("batch_size", 512),
                                       ("norm", "batch"), ("batch_size", 16)]),
    "batch_size_explorer equal data": (lambda d: explorers.batch_size_explorer(d, hold_fixed="data"), RETRAINS,
                                       [("batch_size", m) for m in (4, 128, 16, 512, 2, 64, 8, 256, 32)]
                                       + [("norm", "renorm"), ("batch_size", 2), ("norm", "group")]),
    "weight_decay_explorer with BN": (lambda d: explorers.weight_decay_explorer(d, batch_norm=True), RETRAINS,
                                      [("weight_decay", v) for v in (0.0, 1e-2, 1e-4, 0.1, 3e-3, 0.3, 1e-5, 1e-3)]
                                      + [("batch_norm", False), ("batch_norm", True)]),
    "dropout_explorer with BN": (lambda d: explorers.dropout_explorer(d, batch_norm=True), RETRAINS,
                                 [("p", p) for p in (0.0, 0.5, 0.1, 0.3, 0.8, 0.05, 0.2)]
                                 + [("batch_norm", False), ("batch_norm", True)]),
}


def run(repeats: int):
    data = load_mnist()
    built = {}
    for name, (build, _, _) in PLAN.items():
        explorers.RAISE_ERRORS = True
        built[name] = build(data)
    wall = {n: [] for n in PLAN}
    cpu = {n: [] for n in PLAN}
    load_before = os.getloadavg()[0]
    longest = max(len(steps) for _, _, steps in PLAN.values())
    for _ in range(repeats):
        for i in range(longest):
            for name, (_, _, steps) in PLAN.items():
                key, value = steps[i % len(steps)]
                ex = built[name]
                if ex.controls[key].value == value:
                    continue
                draws = ex.n_draws
                c0, t0 = time.process_time(), time.perf_counter()
                ex.controls[key].value = value
                t1, c1 = time.perf_counter(), time.process_time()
                if ex.n_draws == draws + 1:  # a redraw happened (not skipped as unchanged)
                    wall[name].append(t1 - t0)
                    cpu[name].append(c1 - c0)
                if ex.last_error is not None:
                    raise RuntimeError(f"{name}: {ex.status.value}")
    load_after = os.getloadavg()[0]
    rows = []
    for name, (_, target, _) in PLAN.items():
        w, c = sorted(wall[name]), sorted(cpu[name])
        med = statistics.median(w)
        rows.append({"explorer": name, "kind": "retrains" if target == RETRAINS else "no training",
                     "n": len(w), "median_s": med, "p90_s": w[min(len(w) - 1, int(0.9 * len(w)))],
                     "max_s": w[-1], "cpu_median_s": statistics.median(c), "target_s": target,
                     "ok": med <= target, "cpu_ok": statistics.median(c) <= target})
    return rows, (load_before, load_after)


def table(rows, markdown=False):
    head = ["explorer", "kind", "redraws", "median s", "p90 s", "max s", "target s", "result",
            "CPU median s", "result by CPU time"]
    body = [[r["explorer"], r["kind"], str(r["n"]), f"{r['median_s']:.2f}", f"{r['p90_s']:.2f}",
             f"{r['max_s']:.2f}", f"≤ {r['target_s']:g}", "PASS" if r["ok"] else "FAIL",
             f"{r['cpu_median_s']:.2f}", "PASS" if r["cpu_ok"] else "FAIL"] for r in rows]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        lines += ["| " + " | ".join(b) + " |" for b in body]
        return "\n".join(lines)
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:{w}}}" for w in widths)
    return "\n".join([fmt.format(*head), fmt.format(*("-" * w for w in widths))] + [fmt.format(*b) for b in body])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="passes over every explorer's values (default 3)")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    rows, (l0, l1) = run(args.repeats)
    print(table(rows, args.markdown))
    print(f"\n{os.cpu_count()} CPUs, load average {l0:.1f} before / {l1:.1f} after; "
          f"{time.perf_counter() - start:.0f} s in all")
    if max(l0, l1) > (os.cpu_count() or 1):
        print("The machine was busy (load average above the CPU count): wall times are inflated; "
              "the CPU time is what a redraw costs on an idle machine.")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
