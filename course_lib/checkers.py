"""Exercise checkers that say what is wrong, array by array.

``check_arrays("Exercise 3.2", {"dx": (yours, expected), ...})`` prints one line per array —
its relative error (:func:`course_lib.gradcheck.rel_error`), ok or FAIL — and, for a failing array,
the worst entry (index, your value, the expected one) and a hint when the difference has the shape
of a known mistake:

* a constant factor: 2 or 1/2 (ReLU's factor 2 in He's variance forgotten or doubled), m/(m-1)
  (biased vs unbiased variance), -1 (a sign), another constant (a mean where a sum belongs: 1/m);
* a per-feature factor γ (``dout`` used where ``dout·γ`` belongs, or γ applied twice);
* the transpose of the expected array;
* any wrong answer the exercise anticipates, passed as ``mistakes={"hint": array}`` (e.g. the
  momentum convention flipped).

The checker raises ``AssertionError`` naming every failing array, so a learner with dgamma right and
dx wrong is told exactly that.
"""
from __future__ import annotations

import numpy as np

from course_lib.backend import to_numpy
from course_lib.gradcheck import rel_error

#: Known constant factors between a wrong answer and the right one, and what they usually mean.
FACTOR_HINTS = (
    (2.0, "yours is half the expected value: a forgotten factor 2 (ReLU's 2 in He's Var(w) = 2/n?)"),
    (0.5, "yours is twice the expected value: a factor 2 too many (ReLU's 2 counted twice?)"),
    (-1.0, "yours has the opposite sign: check the direction of a subtraction"),
)


def _match(ours, candidate, tol):
    return candidate.shape == ours.shape and rel_error(ours, candidate) <= tol


def diagnose(ours, expected, *, m=None, gamma=None, mistakes=None, tol=1e-6) -> str | None:
    """A hint naming the likely mistake that turns ``expected`` into ``ours``, or None.

    ``m``: the batch size (enables the biased/unbiased and mean-vs-sum hints); ``gamma``: BN's
    scale, shape (D,) (enables the dout vs dout·γ hint); ``mistakes``: ``{hint: wrong_array}``.
    """
    ours = to_numpy(ours).astype(np.float64)
    expected = to_numpy(expected).astype(np.float64)
    for hint, wrong in (mistakes or {}).items():
        if _match(ours, to_numpy(wrong).astype(np.float64), tol):
            return hint
    if ours.shape != expected.shape:
        if ours.shape == expected.T.shape and _match(ours, expected.T, tol):
            return "yours is the transpose of the expected array"
        return None
    if not np.all(np.isfinite(ours)):
        return "yours contains NaN or inf: a division by zero (eps forgotten?) or an overflow"
    if gamma is not None:
        g = to_numpy(gamma).astype(np.float64)
        if g.shape == ours.shape[-1:]:
            if _match(ours * g, expected, tol):
                return "yours lacks a factor γ: the gradient flowing into x̂ is dout·γ, not dout"
            if np.all(g != 0) and _match(ours / g, expected, tol):
                return "yours has a factor γ too many"
    denom = float((ours * ours).sum())
    if denom == 0.0:
        return "yours is all zeros: is the result computed and returned?" if np.any(expected) else None
    factor = float((ours * expected).sum()) / denom  # least-squares scale from ours to expected
    if not _match(ours * factor, expected, tol):
        return None
    known = list(FACTOR_HINTS)
    if m is not None and m > 1:
        known += [(m / (m - 1), f"yours is (m-1)/m = {(m - 1) / m:.3g} of the expected value: a biased variance "
                                "(divide by m) where the unbiased one (m-1) belongs"),
                  ((m - 1) / m, f"yours is m/(m-1) = {m / (m - 1):.3g} times the expected value: an unbiased "
                                "variance where the biased one (divide by m) belongs"),
                  (float(m), f"yours is 1/m = 1/{m} of the expected value: a mean over the batch where a "
                             "sum belongs"),
                  (1.0 / m, f"yours is m = {m} times the expected value: a sum over the batch where a mean "
                            "belongs")]
    for value, hint in known:
        if abs(factor - value) <= 1e-6 * max(1.0, abs(value)):
            return hint
    return f"yours is the expected value times {1 / factor:.4g}: a constant factor is off"


def check_arrays(title, pairs, *, tol=1e-7, m=None, gamma=None, mistakes=None, quiet=False) -> dict:
    """Compare each ``name: (yours, expected)`` of ``pairs``; print one line per array; raise on failure.

    Returns ``{name: relative error}``. ``mistakes`` maps an array name to ``{hint: wrong_array}``
    (anticipated wrong answers for that array); ``m`` and ``gamma`` enable more hints (see
    :func:`diagnose`).
    """
    errors, failed, lines = {}, [], []
    width = max(len(name) for name in pairs)
    for name, (ours, expected) in pairs.items():
        if ours is None:
            lines.append(f"  {name:{width}s}  FAIL  got None: is the exercise implemented and returning a value?")
            failed.append(name)
            continue
        ours_h, exp_h = to_numpy(ours), to_numpy(expected)
        if tuple(ours_h.shape) != tuple(exp_h.shape):
            hint = diagnose(ours_h, exp_h, mistakes=(mistakes or {}).get(name))
            lines.append(f"  {name:{width}s}  FAIL  shape {tuple(ours_h.shape)}, expected {tuple(exp_h.shape)}"
                         + (f" — {hint}" if hint else ""))
            failed.append(name)
            continue
        err = rel_error(ours_h, exp_h) if np.all(np.isfinite(ours_h)) else float("inf")
        errors[name] = err
        if err <= tol:
            lines.append(f"  {name:{width}s}  rel. error {err:.1e}  ok")
            continue
        failed.append(name)
        diff = np.abs(np.nan_to_num(ours_h.astype(np.float64) - exp_h, nan=np.inf))
        worst = np.unravel_index(int(np.argmax(diff)), diff.shape) if diff.size else ()
        where = f"[{', '.join(str(int(i)) for i in worst)}]"
        line = (f"  {name:{width}s}  rel. error {err:.1e}  FAIL (tol {tol:.0e}); worst entry {where}: "
                f"yours {float(ours_h[worst]):.6g}, expected {float(exp_h[worst]):.6g}")
        hint = diagnose(ours_h, exp_h, m=m, gamma=gamma, mistakes=(mistakes or {}).get(name))
        lines.append(line + (f"\n  {'':{width}s}  hint: {hint}" if hint else ""))
    if not quiet or failed:
        print(f"{title}:")
        print("\n".join(lines))
    if failed:
        raise AssertionError(f"{title}: {', '.join(failed)} wrong (see the lines above); "
                             f"{', '.join(n for n in pairs if n not in failed) or 'nothing'} right")
    return errors
