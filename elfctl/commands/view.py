"""`elfctl view`: watch text form (samples files with trajectories, side by side), or a run's / an ablation's
report page; one self-contained HTML file, optionally a GIF of the animation."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def view(
    paths: List[Path] = typer.Argument(..., help="Samples files with trajectories (`elfctl sample --trajectory "
                                                 "all`), shown side by side; or one run or ablation directory."),
    out: Optional[Path] = typer.Option(None, "--out", help="The HTML page (default: beside the first file, .html; "
                                                           "for a directory, its report.html)."),
    gif: Optional[Path] = typer.Option(None, "--gif", help="Also write the animation as a GIF (the first chosen "
                                                           "sample of each file)."),
    sample: Optional[str] = typer.Option(None, "--sample", help="Sample indices to include, e.g. 0 or 0,5,9 "
                                                                "(default: the first 8 with a trajectory)."),
) -> None:
    """Write a self-contained HTML page (play/pause, step slider, arrow keys) showing sampling trajectories, or
    the report of a run or ablation directory."""
    from elfctl.errors import ConfigError
    from elfctl.view.trajectories import check_samples_path, parse_sample_choice
    from elfctl.view.write import write_report, write_trajectory_view

    dirs = [p for p in paths if p.is_dir()]
    if dirs:
        if len(paths) > 1:
            raise ConfigError(f"{dirs[0]} is a directory: give one run or ablation directory alone, or samples "
                              f"files only")
        if gif is not None or sample is not None:
            raise ConfigError("--gif/--sample: animate samples files; a run or ablation directory has a report "
                              "page only (pass its samples file for the animation)")
        written = write_report(paths[0], out)
    else:
        for p in paths:
            check_samples_path(p)
        written = write_trajectory_view(paths, out, gif, parse_sample_choice(sample))
    typer.echo(f"wrote {written.page} ({written.what})")
    if written.gif is not None:
        typer.echo(f"wrote {written.gif} ({written.gif_frames} frames)")
