"""A run that diverges is a result, never a crash: every explorer figure that trains says so.

Item 4 of the portability work: on another BLAS kernel a borderline run may diverge where it did
not on the machine that executed the notebook; the figure must then say "diverged" (not show a
NaN model's numbers as if they were results) and produce no wall of warnings.
"""
import warnings

import matplotlib
import pytest

matplotlib.use("Agg")

from course_lib import explorers as E  # noqa: E402


def _texts(fig):
    out = [fig._suptitle.get_text() if fig._suptitle else ""]
    for ax in fig.axes:
        out.append(ax.get_title())
        legend = ax.get_legend()
        if legend is not None:
            out += [t.get_text() for t in legend.texts]
    return " | ".join(out)


@pytest.mark.parametrize("name, kwargs", [
    ("depth_curves", {"batch_norm": False, "steps": 10}),
    ("batch_size_effects", {"steps": 10}),
    ("weight_decay_curves", {"num_epochs": 3}),
    ("dropout_curves", {"num_epochs": 3}),
])
def test_explorer_figures_report_divergence(name, kwargs):
    data = E.synthetic_splits(n_train=300, n_val=100, n_test=100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # NaN weights must not spill RuntimeWarnings
        fig = getattr(E, name)(data, lr=1e6, n_train=200, **kwargs)
    assert "diverged" in _texts(fig), _texts(fig)
