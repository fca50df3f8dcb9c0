"""course_lib.checkers: one line per array, the worst entry, and hints for the known mistakes."""
import numpy as np
import pytest

from course_lib import checkers
from course_lib import functional as F

RNG = np.random.default_rng(0)
X = RNG.normal(1.0, 2.0, size=(8, 5))
GAMMA = RNG.normal(1.0, 0.5, size=5)
BETA = RNG.normal(0.0, 0.5, size=5)
DOUT = np.random.default_rng(1).standard_normal((8, 5))
_, CACHE, _, _ = F.batchnorm_forward(X, GAMMA, BETA, None, None)
DX, DGAMMA, DBETA = F.batchnorm_backward(DOUT, CACHE)


def test_right_answers_print_one_ok_line_per_array(capsys):
    errors = checkers.check_arrays("Exercise", {"dx": (DX, DX.copy()), "dgamma": (DGAMMA, DGAMMA + 0.0)})
    out = capsys.readouterr().out
    assert set(errors) == {"dx", "dgamma"} and max(errors.values()) == 0.0
    assert out.count(" ok") == 2


def test_one_wrong_array_is_named_with_its_worst_entry_and_the_right_ones_too(capsys):
    wrong = DX.copy()
    wrong[3, 2] += 5.0
    with pytest.raises(AssertionError, match=r"dx wrong .* dgamma, dbeta right"):
        checkers.check_arrays("Ex", {"dx": (wrong, DX), "dgamma": (DGAMMA, DGAMMA), "dbeta": (DBETA, DBETA)})
    out = capsys.readouterr().out
    assert "worst entry [3, 2]" in out and out.count(" ok") == 2


@pytest.mark.parametrize("make_wrong, kwargs, hint", [
    (lambda: DX / GAMMA, {"gamma": GAMMA}, "dout·γ"),
    (lambda: DX * GAMMA, {"gamma": GAMMA}, "factor γ too many"),
    (lambda: DX / 2, {}, "forgotten factor 2"),
    (lambda: DX * 2, {}, "factor 2 too many"),
    (lambda: -DX, {}, "opposite sign"),
    (lambda: DX * 7 / 8, {"m": 8}, "biased variance"),
    (lambda: DX * 8 / 7, {"m": 8}, "unbiased variance where the biased"),
    (lambda: DX / 8, {"m": 8}, "a mean over the batch where a sum"),
    (lambda: DX * 8, {"m": 8}, "a sum over the batch where a mean"),
    (lambda: DX * 3.3, {}, "expected value times 3.3"),
    (lambda: DX.T.copy(), {}, "transpose"),
    (lambda: np.zeros_like(DX), {}, "all zeros"),
    (lambda: DX * np.nan, {}, "NaN or inf"),
])
def test_known_mistakes_get_a_hint(make_wrong, kwargs, hint, capsys):
    with pytest.raises(AssertionError):
        checkers.check_arrays("Ex", {"dx": (make_wrong(), DX)}, **kwargs)
    assert hint in capsys.readouterr().out


def test_an_anticipated_mistake_is_recognised_before_the_generic_hints(capsys):
    old, batch = np.array([0.5, -1.0]), np.array([2.0, 3.0])
    right = 0.9 * old + 0.1 * batch
    flipped = 0.1 * old + 0.9 * batch
    with pytest.raises(AssertionError):
        checkers.check_arrays("running mean", {"running_mean": (flipped, right)},
                              mistakes={"running_mean": {"momentum convention flipped": flipped}})
    assert "momentum convention flipped" in capsys.readouterr().out


def test_none_and_wrong_shapes_are_reported_not_crashed(capsys):
    with pytest.raises(AssertionError, match="dx, dbeta wrong"):
        checkers.check_arrays("Ex", {"dx": (None, DX), "dbeta": (DBETA[:3], DBETA)})
    out = capsys.readouterr().out
    assert "got None" in out and "shape (3,), expected (5,)" in out
