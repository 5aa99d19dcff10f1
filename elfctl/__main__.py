from elfctl.cli import run

run()
