"""Maintenance tools for the course notebooks.

Run them as modules from the repository root (the Makefile does):

``python -m tools.execute_notebooks notebooks/*.ipynb``
    Re-execute chapters in place, with small, stable diffs.
``python -m tools.make_student notebooks student``
    Student copies: solutions replaced by ``raise NotImplementedError`` stubs.
``python -m tools.export_html notebooks build/html``
    The executed course as static HTML with a table of contents, offline; the
    student view by default, ``--solutions`` for instructors.
``python -m tools.install_cell notebooks``
    Colab/Binder badges and the install-when-missing cell at the top of each chapter.

Authoring conventions the tools rely on (cell tags live in
``cell.metadata.tags``; JupyterLab: right sidebar -> Property Inspector):

``solution``
    A code cell whose first ``# Exercise X.Y`` comment names the exercise and
    whose answer sits between a line ``# BEGIN SOLUTION`` and a line
    ``# END SOLUTION``.  Student copies replace each marked block by
    ``raise NotImplementedError("Exercise X.Y")`` and re-tag the cell
    ``exercise``.
``remove-student``
    Any cell left out of student copies (worked answers in prose, instructor
    notes).
``course-badges``, ``course-install``
    The cells ``tools.install_cell`` owns (it rewrites them; do not edit by hand).
    The static site leaves the badge cell out (its images are on the network).
"""
