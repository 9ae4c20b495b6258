"""``python -m optimlab`` is the ``optimlab`` command."""

from optimlab.cli import run

if __name__ == "__main__":
    run()
