"""The model families elfctl ships (the table of them, by name, is :mod:`elfctl.family`)."""
