"""Writing viewer outputs: where they go by default, checks on ``--out``/``--gif``, atomic writes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from elfctl.atomic import atomic_write_text, check_can_create_in
from elfctl.errors import ConfigError


@dataclass
class Written:
    page: Path
    what: str                       # a line saying what the page shows
    gif: Optional[Path] = None
    gif_frames: int = 0


def check_target(path: Path, flag: str) -> None:
    """``path`` can be written: not a directory, and its nearest existing folder is a writable directory."""
    if path.is_dir():
        raise ConfigError(f"{flag}: {path} is a directory; give a file name (e.g. {path / 'view.html'})")
    check_can_create_in(path.parent, path, flag)


def default_page_path(paths: Sequence[Path]) -> Path:
    """``traj.jsonl`` -> ``traj.html`` beside it (``traj+2.html`` for three files); a directory -> its
    ``report.html``."""
    first = Path(paths[0])
    if first.is_dir():
        return first / "report.html"
    more = f"+{len(paths) - 1}" if len(paths) > 1 else ""
    return first.with_name(f"{first.stem}{more}.html")


def write_trajectory_view(paths: Sequence[Path], out: Optional[Path] = None, gif: Optional[Path] = None,
                          samples: Optional[Sequence[int]] = None) -> Written:
    """One page (and optionally a GIF) of the trajectories in these samples files, side by side."""
    from elfctl.view.trajectories import read_panel, timeline
    from elfctl.view.trajectory_page import trajectory_html

    out = Path(out) if out is not None else default_page_path(paths)
    check_target(out, "--out")
    if gif is not None:
        check_target(Path(gif), "--gif")
    panels = [read_panel(Path(p), samples) for p in paths]
    html = trajectory_html(panels)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, html)
    frames = len(timeline(panels))
    shown = ", ".join(f"#{s.index}" for s in panels[0].samples)
    what = (f"{len(panels)} panel{'s' if len(panels) > 1 else ''}, {frames} frames; samples {shown} "
            f"of {panels[0].total}")
    written = Written(out, what)
    if gif is not None:
        from elfctl.view.gif import write_gif

        Path(gif).parent.mkdir(parents=True, exist_ok=True)
        written.gif, written.gif_frames = Path(gif), write_gif(panels, Path(gif))
    return written


def write_report(path: Path, out: Optional[Path] = None) -> Written:
    """The report page of a run or ablation directory."""
    from elfctl.view.report import report_html

    out = Path(out) if out is not None else default_page_path([path])
    check_target(out, "--out")
    html, kind = report_html(Path(path))
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, html)
    return Written(out, f"the {kind} {path}")
