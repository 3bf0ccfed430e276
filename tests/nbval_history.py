"""pytest plugin (loaded by ``addopts`` in pyproject.toml): nbval honours a trailing ``;``.

It does nothing unless pytest runs with ``--nbval``.
"""

from __future__ import annotations


def pytest_configure(config) -> None:
    """Make nbval execute cells with history, as JupyterLab and nbclient do.

    nbval 0.10+ executes cells with ``store_history=False``, and IPython decides whether a
    trailing ``;`` silences the cell's result by looking at the last cell in its history,
    so under nbval ``plt.plot(...);`` still emits ``[<matplotlib.lines.Line2D ...>]``
    and the comparison with the stored notebook (executed in JupyterLab or nbclient,
    which store history) fails (nbval issue #194, IPython issue #14162). Executing with
    ``store_history=True`` restores the notebook behaviour; nbval ignores execution
    counts anyway.
    """
    if not config.getoption("nbval", default=False):
        return
    from nbval.kernel import RunningKernel

    def execute_cell_input(self, cell_input, allow_stdin=None):
        return self.kc.execute(
            cell_input, store_history=True, allow_stdin=allow_stdin, stop_on_error=False
        )

    RunningKernel.execute_cell_input = execute_cell_input
