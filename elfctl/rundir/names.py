"""The names of a run directory's files, in one place (every command reads them from here)."""

CONFIG_NAME = "config.yaml"             # the run's resolved config; each checkpoint holds the one it was trained with
