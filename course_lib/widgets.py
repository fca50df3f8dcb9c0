"""The explorer widget: a figure that redraws when its controls change (ipywidgets).

:class:`Explorer` wraps a pure render function (parameters -> matplotlib Figure) and a set
of controls; :mod:`course_lib.explorers` builds one per topic.  Helpers for the controls:
:func:`with_value` (slider options plus a start value), :data:`STYLE` and :func:`wide`.
"""
from __future__ import annotations

import base64
import html
import time

import ipywidgets as W

from course_lib import plots

#: Tests set this to True: an error in a redraw is then raised, not only shown in the status line.
RAISE_ERRORS = False
#: Resolution of the explorers' PNGs (72 = what ``%matplotlib inline`` uses).
DPI = 72


def with_value(options, value):
    """``options`` plus ``value`` (sorted), so a non-default start value is selectable."""
    return tuple(sorted(set(options) | {value}))


STYLE = {"description_width": "initial"}


def wide():
    return W.Layout(width="430px")


class Explorer(W.VBox):
    """A figure that redraws when its controls change: the shared wrapper of every explorer.

    render:   the pure function, called as ``render(**fixed, **params(values))``; returns a Figure.
    controls: ``{name: widget}``; ``values = {name: widget.value}``.
    params:   maps ``values`` to the keyword arguments of ``render`` (default: unchanged).
    fixed:    keyword arguments that do not change (the data, sizes).

    Behaviour: a redraw whose parameters equal the last drawn ones is
    skipped; during a redraw the controls are disabled and the status line
    reads "computing…", then "drawn in 0.42 s" (or the error).  Set
    ``raise_errors = True`` to re-raise errors (tests do).  The container has
    the CSS class ``course-explorer``; the figure is an ``ipywidgets.Image``.
    """

    def __init__(self, render, controls, *, params=None, fixed=None, title="", note="", dpi=None,
                 raise_errors=None):
        self.render_fn = render
        self.controls = dict(controls)
        self.fixed = dict(fixed or {})
        self.params_fn = params or (lambda values: dict(values))
        self.dpi = dpi or DPI
        self.raise_errors = RAISE_ERRORS if raise_errors is None else raise_errors
        self.explorer_title = title
        self.n_draws, self.n_skipped, self.timings = 0, 0, []
        self.last_params, self.last_error = None, None
        self.image = W.Image(format="png", layout=W.Layout(max_width="100%", height="auto"))
        self.image.add_class("course-explorer-figure")
        self.status = W.Label(value="")
        self.status.add_class("course-explorer-status")
        head = f"<b>{html.escape(title)}</b>" + (f"<br><small>{html.escape(note)}</small>" if note else "")
        header = W.HTML(head)
        bar = W.HBox(list(self.controls.values()), layout=W.Layout(flex_flow="row wrap"))
        bar.add_class("course-explorer-controls")
        super().__init__([header, bar, self.image, self.status])
        self.add_class("course-explorer")
        for c in self.controls.values():
            c.observe(self._on_change, names="value")
        self.redraw()

    # -- state ---------------------------------------------------------------------------
    @property
    def values(self) -> dict:
        return {k: c.value for k, c in self.controls.items()}

    @property
    def params(self) -> dict:
        """The keyword arguments the next redraw passes to the render function."""
        return self.params_fn(self.values)

    @property
    def png(self) -> bytes:
        """The current figure as PNG bytes."""
        return bytes(self.image.value)

    def figure(self):
        """The Figure for the current parameters (computed afresh, e.g. to save it)."""
        return self.render_fn(**self.fixed, **self.params)

    # -- drawing -------------------------------------------------------------------------
    def _on_change(self, change):
        self.redraw()

    def _busy(self, busy, previous=None):
        if busy:
            previous = {k: c.disabled for k, c in self.controls.items()}
            for c in self.controls.values():
                c.disabled = True
            self.status.value = "computing…"
            return previous
        for k, c in self.controls.items():
            c.disabled = previous.get(k, False) if previous else False
        return None

    def redraw(self, force=False) -> bool:
        """Recompute and show the figure; False when skipped (unchanged parameters) or failed."""
        params = self.params
        if not force and params == self.last_params:
            self.n_skipped += 1
            return False
        previous = self._busy(True)
        start = time.perf_counter()
        try:
            fig = self.render_fn(**self.fixed, **params)
            png = plots.to_png(fig, dpi=self.dpi)
        except Exception as exc:
            self.last_error = exc
            self.status.value = f"error: {type(exc).__name__}: {exc}"
            self.status.add_class("course-explorer-error")
            self._busy(False, previous)
            if self.raise_errors:
                raise
            return False
        seconds = time.perf_counter() - start
        self.image.value = png
        self.last_params, self.last_error = params, None
        self.n_draws += 1
        self.timings.append(seconds)
        self.status.remove_class("course-explorer-error")
        self.status.value = f"drawn in {seconds:.2f} s"
        self._busy(False, previous)
        return True

    # -- display -------------------------------------------------------------------------
    def _summary(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return (f"{self.explorer_title} [{shown}] (static image of this view; "
                "run the notebook to move the controls)")

    def _repr_mimebundle_(self, **kwargs):
        bundle = dict(super()._repr_mimebundle_(**kwargs) or {})
        if self.image.value:
            bundle["image/png"] = base64.b64encode(bytes(self.image.value)).decode("ascii")
        bundle["text/plain"] = self._summary()
        return bundle

    def __repr__(self):
        return f"<{type(self).__name__}: {self._summary()}>"


__all__ = ["Explorer", "with_value", "STYLE", "wide", "RAISE_ERRORS", "DPI"]
