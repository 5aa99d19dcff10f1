"""A run directory, below every command: its files and their names, checkpoints, the lock, the device it runs on.

``train``, ``distill``, ``sample``, ``eval``, ``import`` and ``export`` all read or write run directories; they do it
through this package, which imports no other package of elfctl, so none of them has to import another's.
"""
