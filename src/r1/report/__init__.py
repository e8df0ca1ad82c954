"""Every report r1 writes, in one place: a training run's (`run`), an evaluation's and
`r1 eval compare` (`eval`), the pipeline's (`pipeline`) and an SFT run's (`sft`), with one
way to draw and save a figure (`figure`). Importing this package loads no plotting library."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def figure(path: Path, title: str | None = None, *, size: tuple[float, float] = (7, 4), ncols: int = 1,
           rows: int = 1, grid: bool = True, written: list[Path] | None = None) -> Iterator[Any]:
    """A matplotlib figure (Agg, no display) whose axes are yielded (a list with `ncols` or
    `rows` > 1, sharing the x axis down a column); saved to `path` (its folder made) at 110
    dpi, with the title and a light grid on a single axes, then closed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(rows, ncols, figsize=size, sharex=rows > 1)
    try:
        yield ax
        if ncols == 1 and rows == 1:
            if title:
                ax.set_title(title)
            if grid:
                ax.grid(alpha=0.3)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
        if written is not None:
            written.append(path)
    finally:
        plt.close(fig)
