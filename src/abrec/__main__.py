"""`python -m abrec …`: the `abrec` command, e.g. for subprocesses of this interpreter."""

from abrec.cli import app

if __name__ == "__main__":
    app(prog_name="abrec")
