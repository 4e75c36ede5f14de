"""ONNX Runtime text encoder vs sentence-transformers: start-up, RSS, throughput, agreement, int8 gate.

With the bundled all-MiniLM-L6-v2, on the CPU:

1. Export (`abrec.embed.onnx.export_onnx`) to a temporary folder; seconds.
2. Start-up and memory: a fresh Python process per run (`--startup-repeats`, median) that
   imports the encoder, loads the model and encodes one text: wall seconds from process start
   until the embedding is ready, and peak RSS (VmHWM), for the ONNX encoder (which must
   not import torch: checked in the child) and for `sentence_transformers.SentenceTransformer`.
3. Throughput: texts per second encoding `--n-texts` MovieLens item texts (batch 64), for
   sentence-transformers, ONNX fp32 and ONNX int8 (quantised here for the measurement even
   when the gate refuses it), median over `--repeats`.
4. Agreement: cosine of ONNX fp32 and int8 embeddings to sentence-transformers' over those texts.
5. The int8 quality gate as `abrec export-onnx --int8` runs it (`quantize_int8` over the whole
   catalogue, NDCG@10 of kind "lm" on ml-small-temporal-v1 with fp32 and int8): its
   measurements and decision.

Prints a table and writes JSON (`--output`, default runs/bench_onnx.json). About 5-10 minutes
on 2 idle CPU cores (the gate's four catalogue encodings dominate; `--skip-gate` to leave it).

    PYTHONPATH=src .venv/bin/python benchmarks/bench_onnx.py [--n-texts 2000] [--skip-gate]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

_CHILD = """
import sys, time
t0 = float(sys.argv[2])
if sys.argv[1] == "onnx":
    from abrec.embed.onnx import OnnxTextEncoder
    enc = OnnxTextEncoder(sys.argv[3])
    enc.encode(["a first text"])
    assert "torch" not in sys.modules, "the ONNX encoder imported torch"
else:
    from sentence_transformers import SentenceTransformer
    m = SentenceTransformer(sys.argv[3], device="cpu")
    m.encode(["a first text"])
ready = time.time() - t0
# VmHWM: this process image's peak RSS (ru_maxrss would carry the parent's over vfork/exec)
hwm = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:")).split()[1]
print(ready, int(hwm) * 1024, "torch" in sys.modules)
"""


def startup(kind: str, path: str) -> dict[str, Any]:
    """Seconds from process start to the first embedding, and the child's peak RSS (bytes)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    t0 = time.time()
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, kind, repr(t0), path],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout.split()
    return {"ready_s": float(out[0]), "rss_bytes": int(out[1]), "torch_imported": out[2] == "True"}


def median_of(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in runs))


def throughput(encode: Any, texts: list[str], repeats: int) -> tuple[float, np.ndarray]:
    """(median texts/s, embeddings) of `encode(texts)` after one warm-up call on 64 texts."""
    encode(texts[:64])
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = np.asarray(encode(texts), dtype=np.float32)
        times.append(time.perf_counter() - t0)
    assert out is not None
    return len(texts) / statistics.median(times), out


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return np.einsum("ij,ij->i", a64, b64) / (
        np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1)
    )


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-texts", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--startup-repeats", type=int, default=3)
    ap.add_argument("--skip-gate", action="store_true")
    ap.add_argument("--only-startup", action="store_true", help="export and part 2 only")
    ap.add_argument("--output", type=Path, default=ROOT / "runs" / "bench_onnx.json")
    args = ap.parse_args(argv)
    if args.n_texts < 64 or args.repeats < 1 or args.startup_repeats < 1:
        print("bench_onnx: --n-texts >= 64, --repeats and --startup-repeats >= 1", file=sys.stderr)
        return 2

    from onnxruntime.quantization import QuantType, quantize_dynamic
    from sentence_transformers import SentenceTransformer

    from abrec.cli.export_onnx import movielens_lm_ndcg
    from abrec.embed import default_model_path
    from abrec.embed.onnx import (
        INT8_MODEL_FILE,
        MODEL_FILE,
        OnnxTextEncoder,
        export_onnx,
        quantize_int8,
    )

    model_dir = str(default_model_path())
    ndcg_of, items = movielens_lm_ndcg()
    catalogue = [str(t) for t in items.text]
    texts = catalogue[: args.n_texts]
    report: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "loadavg": os.getloadavg(),
        "n_texts": len(texts),
        "cpu_count": os.cpu_count(),
    }
    with tempfile.TemporaryDirectory(prefix="bench_onnx_") as d:
        folder = Path(d) / "enc"
        t0 = time.perf_counter()
        export_onnx(None, folder)
        report["export_s"] = time.perf_counter() - t0
        report["onnx_bytes"] = (folder / MODEL_FILE).stat().st_size
        print(f"export: {report['export_s']:.1f} s, model.onnx {report['onnx_bytes'] / 1e6:.1f} MB")

        runs = {
            k: [startup(k, str(folder) if k == "onnx" else model_dir) for _ in range(args.startup_repeats)]
            for k in ("onnx", "st")
        }  # fmt: skip
        report["startup"] = runs
        for k, label in (("st", "sentence-transformers"), ("onnx", "ONNX fp32")):
            print(
                f"start-up {label:<22} {median_of(runs[k], 'ready_s'):6.2f} s to the first "
                f"embedding, peak RSS {median_of(runs[k], 'rss_bytes') / 2**20:7.1f} MiB, "
                f"torch imported: {runs[k][0]['torch_imported']}"
            )

        if args.only_startup:
            args.output.parent.mkdir(parents=True, exist_ok=True)
            args.output.write_text(json.dumps(report, indent=2))
            print(f"wrote {args.output}")
            return 0
        st = SentenceTransformer(model_dir, device="cpu")
        fp32 = OnnxTextEncoder(folder, precision="fp32")
        int8_dir = Path(d) / "int8-measure"
        int8_dir.mkdir()
        for f in folder.iterdir():
            (int8_dir / f.name).write_bytes(f.read_bytes())
        quantize_dynamic(
            str(folder / MODEL_FILE), str(int8_dir / INT8_MODEL_FILE), weight_type=QuantType.QInt8
        )
        int8 = OnnxTextEncoder(int8_dir, precision="int8")
        encoders = {
            "sentence-transformers": lambda t: st.encode(
                t, batch_size=64, normalize_embeddings=True, show_progress_bar=False
            ),
            "onnx fp32": fp32.encode,
            "onnx int8": int8.encode,
        }
        tput: dict[str, float] = {}
        emb: dict[str, np.ndarray] = {}
        for name, fn in encoders.items():
            tput[name], emb[name] = throughput(fn, texts, args.repeats)
            print(f"throughput {name:<22} {tput[name]:8.1f} texts/s")
        report["throughput_texts_per_s"] = tput
        ref = emb["sentence-transformers"]
        agree = {}
        for name in ("onnx fp32", "onnx int8"):
            c = cosine(emb[name], ref)
            agree[name] = {"mean": float(c.mean()), "min": float(c.min())}
            print(f"cosine to sentence-transformers, {name}: mean {c.mean():.6f} min {c.min():.6f}")
        c = cosine(emb["onnx int8"], emb["onnx fp32"])
        agree["int8 vs fp32"] = {"mean": float(c.mean()), "min": float(c.min())}
        report["cosine"] = agree
        print(f"cosine int8 to fp32 (first {len(texts)} texts): mean {c.mean():.5f}")

        if not args.skip_gate:
            t0 = time.perf_counter()
            gate = quantize_int8(folder, catalogue, ndcg_of)
            report["gate"] = {**gate.to_dict(), "seconds": time.perf_counter() - t0}
            print(
                f"int8 gate over {len(catalogue)} texts: mean cosine {gate.mean_cosine:.5f} "
                f"(min {gate.min_cosine:.5f}); NDCG@10 lm fp32 {gate.ndcg_fp32:.5f} "
                f"int8 {gate.ndcg_int8:.5f}\n  {gate.reason}"
            )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
