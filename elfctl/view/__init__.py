"""`elfctl view`: self-contained HTML pages (and a GIF) of sampling trajectories, runs and ablations.

:func:`elfctl.view.write.write_trajectory_view` (samples files side by side) and
:func:`elfctl.view.write.write_report` (a run or ablation directory) are the entry points; nothing here imports
torch, so a page is written in well under a second.
"""
