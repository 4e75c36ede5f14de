"""`abrec` command line: wiring only; each command lives in its own module."""

from abrec.cli import (  # noqa: F401  (register commands)
    analyze,
    demo,
    evaluate,
    export_onnx,
    loop,
    models,
    monitor,
    serve,
    train,
)
from abrec.cli.app import app

__all__ = ["app"]
