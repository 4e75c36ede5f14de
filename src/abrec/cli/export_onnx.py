"""`abrec export-onnx`: the text encoder as an ONNX Runtime folder, optionally int8 behind a gate.

    abrec export-onnx --bundle runs/x/bundle            # writes runs/x/bundle/encoder/
    abrec export-onnx --out encoders/minilm --int8      # tries int8; refuses if the gate fails

The int8 gate (`abrec.embed.onnx.quantize_int8`) measures the mean cosine of int8 to fp32
embeddings over the MovieLens catalogue texts and the NDCG@10 of the language-model
recommender (kind "lm", `EmbeddingSimilarity`) on protocol ml-small-temporal-v1 with each
encoder. A refusal keeps the fp32 model, prints why and exits with status 1; bad input exits 2.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from abrec.cli.app import app
from abrec.errors import AbrecError

if TYPE_CHECKING:
    from abrec.data.types import ItemCatalog
    from abrec.embed.onnx import OnnxTextEncoder


def movielens_lm_ndcg(
    data_dir: str | Path | None = None,
) -> tuple[Callable[[OnnxTextEncoder], float], ItemCatalog]:
    """(NDCG@10 of kind "lm" fitted with a given encoder on ml-small-temporal-v1, catalogue)."""
    from abrec.data import movielens_dataset
    from abrec.data.splits import ml_small_temporal_v1
    from abrec.evaluation.metrics import ndcg_at_k
    from abrec.models.lm import EmbeddingSimilarity

    inter, items = movielens_dataset(data_dir)
    split = ml_small_temporal_v1(inter)
    users = split.scored_users

    def ndcg_of(encoder: OnnxTextEncoder) -> float:
        model = EmbeddingSimilarity(encoder=encoder).fit(split.train, items)
        topk, _ = model.recommend(users, k=10)
        return float(ndcg_at_k(topk, split.relevant[users], 10).mean())

    return ndcg_of, items


@app.command("export-onnx")
def export_onnx_cmd(
    bundle: Path | None = typer.Option(
        None, "--bundle", help="Model bundle folder: the encoder goes to <bundle>/encoder/."
    ),
    out: Path | None = typer.Option(None, "--out", help="Output folder (instead of --bundle)."),
    model: Path | None = typer.Option(
        None, "--model", help="Local encoder folder (default: the bundled all-MiniLM-L6-v2)."
    ),
    int8: bool = typer.Option(
        False, "--int8", help="Also quantise to int8 and keep it only if it passes the gate."
    ),
    data_dir: Path | None = typer.Option(
        None, "--data", help="MovieLens latest-small folder for the int8 gate (default: found)."
    ),
) -> None:
    """Export the text encoder to ONNX (mean pooling + L2 norm in the graph)."""
    from abrec.embed.onnx import export_onnx, quantize_int8

    if (bundle is None) == (out is None):
        typer.echo("export-onnx: give exactly one of --bundle or --out", err=True)
        raise typer.Exit(2)
    if bundle is not None and not (bundle / "bundle.json").is_file():
        typer.echo(f"export-onnx: {bundle} is not a model bundle (no bundle.json)", err=True)
        raise typer.Exit(2)
    target = bundle / "encoder" if bundle is not None else out
    assert target is not None
    try:
        export_onnx(model, target)
        typer.echo(f"wrote {target} (fp32)")
        if not int8:
            return
        ndcg_of, items = movielens_lm_ndcg(data_dir)
        gate = quantize_int8(target, [str(t) for t in items.text], ndcg_of)
    except (AbrecError, OSError) as exc:
        typer.echo(f"export-onnx: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(
        f"int8 gate: mean cosine {gate.mean_cosine:.5f} (min {gate.min_cosine:.5f}), "
        f"NDCG@10 fp32 {gate.ndcg_fp32:.5f} int8 {gate.ndcg_int8:.5f}"
    )
    typer.echo(gate.reason)
    if not gate.passed:
        typer.echo(f"kept the fp32 encoder in {target}", err=True)
        raise typer.Exit(1)
