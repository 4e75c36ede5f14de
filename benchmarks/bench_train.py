"""Training throughput of the contrastive fine-tuning, and the inference cost of the two towers.

On MovieLens latest-small, protocol ml-small-temporal-v1, TRAINING period only (loaded like
`abrec train` does), with the `[train]` settings of examples/finetune.toml, on the CPU and,
when torch sees a CUDA device, also on CUDA (the trainer's mixed precision there):

1. Fine-tuning: training pairs per second and seconds per epoch. The real `Trainer` runs
   `--warmup-steps` untimed steps, then `--max-steps` timed steps one at a time
   (`Trainer.train_steps`); the epoch time is the mean step time x the epoch's steps.
2. Encoding: item texts per second of the bundled MiniLM (`abrec.embed.TextEncoder`, no cache),
   the two-tower's inference cost; median over `--repeats`.
3. Cross-encoder: milliseconds to score one user's history text against 100 candidate item
   texts with a `sentence_transformers.CrossEncoder` built from the bundled MiniLM (one output,
   untrained head: the cost is that of a trained one), at max_seq_length 128 and 256 and batch
   sizes 32 and 100; median over `--repeats` after one warm-up call. The history is the last
   `--history-titles` liked titles of the user with the longest liked history, long enough to
   fill both lengths (the table gives the untruncated pair length).

Prints tables and writes JSON (`--output`, default runs/bench_train.json). The defaults take
about 2 minutes on 2 idle CPU cores (well over twice that when other jobs share them: the JSON
records the load average); `--quick` is a smoke run of a few seconds of measuring.

    .venv/bin/python benchmarks/bench_train.py [--max-steps 20] [--warmup-steps 2] [--quick]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from abrec.data.types import Interactions, ItemCatalog
from abrec.train import TrainConfig, Trainer, build_training_data
from abrec.train.data import anchor_text, item_titles, liked_sequences

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class BenchOptions:
    """What to measure and how many times (the defaults fit ~3 minutes on 2 CPU cores)."""

    warmup_steps: int = 2
    max_steps: int = 20
    encode_texts: int = 256
    encode_batch_size: int = 64
    candidates: int = 100
    cross_lengths: tuple[int, ...] = (128, 256)
    cross_batches: tuple[int, ...] = (32, 100)
    history_titles: int = 60
    repeats: int = 3
    seed: int = 0


#: `--quick`: a smoke run (one warm-up step, two timed steps, one repeat, one cross-encoder shape).
QUICK = BenchOptions(
    warmup_steps=1,
    max_steps=2,
    encode_texts=32,
    cross_lengths=(128,),
    cross_batches=(32,),
    repeats=1,
)


# --------------------------------------------------------------------------- helpers
def _sync(device: str) -> None:
    """Wait for queued CUDA work, so a wall-clock reading covers it."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: str) -> tuple[float, Any]:
    """(wall seconds, result) of one call, CUDA work included."""
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - t0, out


def device_name(device: str) -> str:
    """The CPU model (from /proc/cpuinfo, else `platform`) or the CUDA device's name."""
    if device.startswith("cuda"):
        import torch

        return str(torch.cuda.get_device_name(device))
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def available_devices() -> list[str]:
    """'cpu', and 'cuda' when torch sees a CUDA device."""
    import torch

    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


def history_text(train: Interactions, items: ItemCatalog, n_titles: int, threshold: float) -> str:
    """The last `n_titles` liked titles (oldest first) of the user with the longest liked history."""
    seqs = liked_sequences(train, threshold)
    longest = max(seqs, key=len)
    return anchor_text(item_titles(items), longest[-n_titles:])


def candidate_texts(items: ItemCatalog, n: int, seed: int) -> list[str]:
    """`n` catalogue texts drawn with a seed (with replacement only when the catalogue is smaller)."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(items.text), size=n, replace=len(items.text) < n)
    return [str(items.text[int(i)]) for i in idx]


# --------------------------------------------------------------------------- 1. fine-tuning
def bench_training(cfg: TrainConfig, data: Any, device: str, opts: BenchOptions) -> dict[str, Any]:
    """Time `opts.max_steps` steps of the real trainer after `opts.warmup_steps` untimed ones.

    Steps run one call each (`Trainer.train_steps(1, i, i + 1)`), in the order of epoch 1's
    batch plan; the epoch estimate is the mean step time x the epoch's number of steps.
    """
    trainer = Trainer(cfg.model_copy(update={"device": device}), data, quiet=True)
    plan = trainer.epoch_plan(1)
    warmup = min(opts.warmup_steps, len(plan) - 1)
    stop = min(warmup + opts.max_steps, len(plan))
    if warmup < 0 or stop <= warmup:
        raise ValueError(f"epoch 1 has {len(plan)} batches: nothing left to time")
    t_setup, _ = timed(lambda: trainer.train_steps(1, 0, 0), device)  # loads the model
    t_warm, _ = timed(lambda: trainer.train_steps(1, 0, warmup), device)
    step_s: list[float] = []
    losses: list[float] = []
    cpu0 = time.process_time()
    for i in range(warmup, stop):
        seconds, (loss, _, _) = timed(lambda i=i: trainer.train_steps(1, i, i + 1), device)
        step_s.append(seconds)
        losses.append(loss)
    cpu_s = time.process_time() - cpu0
    examples = sum(len(plan[i]) for i in range(warmup, stop))
    seconds = sum(step_s)
    mean_step = seconds / len(step_s)
    out = {
        "device": device,
        "device_name": device_name(device),
        "precision": trainer.precision,
        "batch_size": cfg.batch_size,
        "max_seq_length": cfg.max_seq_length,
        "freeze_layers": cfg.freeze_layers,
        "lora": cfg.lora is not None,
        "trainable_parameters": trainer.trainable_parameters,
        "total_parameters": trainer.total_parameters,
        "load_model_s": t_setup,
        "warmup_steps": warmup,
        "warmup_s": t_warm,
        "timed_steps": len(step_s),
        "examples": examples,
        "seconds": seconds,
        "examples_per_s": examples / seconds,
        "step_s_mean": mean_step,
        "step_s_median": statistics.median(step_s),
        "step_s_min": min(step_s),
        "step_s_max": max(step_s),
        "process_cpu_s_per_step": cpu_s / len(step_s),
        "steps_per_epoch": len(plan),
        "pairs_per_epoch": sum(len(b) for b in plan),
        "epoch_s_estimate": mean_step * len(plan),
        "mean_loss": float(np.mean(losses)),
    }
    return out


def _free(device: str) -> None:
    """Give the CUDA memory of the models just measured back (they are out of scope)."""
    if device.startswith("cuda"):
        import gc

        import torch

        gc.collect()
        torch.cuda.empty_cache()


# --------------------------------------------------------------------------- 2. encoding
def _tokenizer() -> Any:
    """The bundled MiniLM's tokenizer (to count tokens; the models tokenize on their own)."""
    from transformers import AutoTokenizer

    from abrec.embed.encoder import default_model_path

    return AutoTokenizer.from_pretrained(str(default_model_path()))


def bench_encoding(texts: Sequence[str], device: str, opts: BenchOptions) -> dict[str, Any]:
    """Item texts per second of the bundled MiniLM (TextEncoder, no cache), median of repeats."""
    from abrec.embed import TextEncoder

    encoder = TextEncoder(
        device=device, batch_size=opts.encode_batch_size, show_progress=False, use_cache=False
    )
    texts = list(texts)
    encoder.encode(texts[: opts.encode_batch_size])  # loads the model, warms the kernels
    runs = [timed(lambda: encoder.encode(texts), device)[0] for _ in range(opts.repeats)]
    tokens = [len(ids) for ids in _tokenizer()(texts)["input_ids"]]
    median = statistics.median(runs)
    out = {
        "device": device,
        "device_name": device_name(device),
        "precision": "fp32",
        "texts": len(texts),
        "batch_size": opts.encode_batch_size,
        "tokens_mean": float(np.mean(tokens)),
        "repeats": len(runs),
        "seconds_median": median,
        "texts_per_s": len(texts) / median,
        "ms_per_text": 1000.0 * median / len(texts),
    }
    return out


# --------------------------------------------------------------------------- 3. cross-encoder
def bench_cross_encoder(
    query: str, candidates: Sequence[str], device: str, opts: BenchOptions
) -> list[dict[str, Any]]:
    """Milliseconds to score (query, candidate) pairs with a MiniLM CrossEncoder, per shape."""
    from sentence_transformers import CrossEncoder

    from abrec.embed.encoder import default_model_path

    model = CrossEncoder(str(default_model_path()), num_labels=1, device=device)
    pairs = [(query, c) for c in candidates]
    tokens = _tokenizer()([query] * len(pairs), list(candidates))["input_ids"]
    full = np.asarray([len(ids) for ids in tokens])

    def predict(batch_size: int) -> Any:
        return model.predict(pairs, batch_size=batch_size, show_progress_bar=False)

    rows = []
    for length in opts.cross_lengths:
        model.max_seq_length = length
        padded = int(model.preprocess(pairs)["input_ids"].shape[1])  # what the model sees
        predict(max(opts.cross_batches))  # warm-up at this length
        for batch_size in opts.cross_batches:
            runs = []
            for _ in range(opts.repeats):
                seconds, scores = timed(lambda b=batch_size: predict(b), device)
                runs.append(seconds)
            assert np.asarray(scores).shape == (len(pairs),)
            median = statistics.median(runs)
            rows.append(
                {
                    "device": device,
                    "device_name": device_name(device),
                    "precision": "fp32",
                    "max_seq_length": length,
                    "batch_size": batch_size,
                    "candidates": len(pairs),
                    "pair_tokens_mean": float(np.mean(full)),
                    "truncated_share": float(np.mean(full > length)),
                    "batch_tokens": padded,
                    "repeats": len(runs),
                    "ms_median": 1000.0 * median,
                    "ms_min": 1000.0 * min(runs),
                    "ms_per_100_candidates": 1000.0 * median * 100 / len(pairs),
                }
            )
    return rows


# --------------------------------------------------------------------------- the run
def run_benchmark(
    train: Interactions,
    items: ItemCatalog,
    cfg: TrainConfig,
    protocol: str,
    devices: Sequence[str],
    opts: BenchOptions,
    log: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Measure fine-tuning, encoding and cross-encoder cost on each device; a JSON-ready dict.

    `train` must be the protocol's training interactions (the pairs and the history text come
    from it; the test period is never read).
    """
    import sentence_transformers
    import torch
    import transformers

    data = build_training_data(train, items, cfg, protocol)
    query = history_text(train, items, opts.history_titles, cfg.relevance_threshold)
    candidates = candidate_texts(items, opts.candidates, opts.seed)
    enc_texts = candidate_texts(items, min(opts.encode_texts, len(items.text)), opts.seed + 1)
    result: dict[str, Any] = {
        "benchmark": "bench_train",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "sentence_transformers": sentence_transformers.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_1m_start": _load_average(),
        "devices": {d: device_name(d) for d in devices},
        "protocol": protocol,
        "training_rows": len(train),
        "training_pairs": len(data),
        "catalogue_items": len(items.text),
        "options": asdict(opts),
        "train_config": cfg.model_dump(mode="json"),
        "training": [],
        "encoding": [],
        "cross_encoder": [],
    }
    for device in devices:
        log(f"{device}: fine-tuning steps")
        result["training"].append(bench_training(cfg, data, device, opts))
        _free(device)
        log(f"{device}: encoding item texts")
        result["encoding"].append(bench_encoding(enc_texts, device, opts))
        _free(device)
        log(f"{device}: cross-encoder")
        result["cross_encoder"].extend(bench_cross_encoder(query, candidates, device, opts))
        _free(device)
    result["load_average_1m_end"] = _load_average()
    return result


def _load_average() -> float | None:
    """The 1-minute load average (other jobs on the machine inflate every timing), if known."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def _fmt_load(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.2f}"


def print_tables(result: dict[str, Any]) -> None:
    """The three tables, with the versions, devices and thread count first."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 120)
    devices = ", ".join(f"{d} = {n}" for d, n in result["devices"].items())
    console.print(
        f"torch {result['torch']}, transformers {result['transformers']}, "
        f"sentence-transformers {result['sentence_transformers']}; torch threads "
        f"{result['torch_threads']} of {result['cpu_count']} CPUs; {devices}; 1-minute load "
        f"average {_fmt_load(result['load_average_1m_start'])} at the start, "
        f"{_fmt_load(result['load_average_1m_end'])} at the end",
        highlight=False,
    )
    console.print(
        f"{result['protocol']} training period: {result['training_rows']:,} rows, "
        f"{result['training_pairs']:,} training pairs, {result['catalogue_items']:,} items",
        highlight=False,
    )
    t = Table(title="contrastive fine-tuning (Trainer.train_steps)", title_justify="left")
    for col in ("device", "precision", "batch", "seq", "timed steps", "pairs/s", "s/step",
                "steps/epoch", "s/epoch (est.)"):  # fmt: skip
        t.add_column(col, justify="right")
    for r in result["training"]:
        t.add_row(
            r["device"], r["precision"], str(r["batch_size"]), str(r["max_seq_length"]),
            str(r["timed_steps"]), f"{r['examples_per_s']:.1f}",
            f"{r['step_s_mean']:.3f}", str(r["steps_per_epoch"]), f"{r['epoch_s_estimate']:.1f}",
        )  # fmt: skip
    console.print(t)
    t = Table(title="encoding item texts (TextEncoder, no cache)", title_justify="left")
    for col in ("device", "texts", "batch", "tokens/text", "texts/s", "ms/text"):
        t.add_column(col, justify="right")
    for r in result["encoding"]:
        t.add_row(
            r["device"], str(r["texts"]), str(r["batch_size"]), f"{r['tokens_mean']:.1f}",
            f"{r['texts_per_s']:.1f}", f"{r['ms_per_text']:.2f}",
        )  # fmt: skip
    console.print(t)
    t = Table(title="cross-encoder: 1 history x candidates (MiniLM)", title_justify="left")
    for col in ("device", "max seq", "batch", "candidates", "pair tokens", "truncated",
                "ms (median)", "ms / 100 candidates"):  # fmt: skip
        t.add_column(col, justify="right")
    for r in result["cross_encoder"]:
        t.add_row(
            r["device"], str(r["max_seq_length"]), str(r["batch_size"]), str(r["candidates"]),
            f"{r['pair_tokens_mean']:.0f}", f"{r['truncated_share']:.0%}",
            f"{r['ms_median']:.0f}", f"{r['ms_per_100_candidates']:.0f}",
        )  # fmt: skip
    console.print(t)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "examples" / "finetune.toml")
    parser.add_argument("--output", type=Path, default=ROOT / "runs" / "bench_train.json")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu, and cuda")
    parser.add_argument("--quick", action="store_true", help="smoke run: few steps and repeats")
    parser.add_argument("--max-steps", type=int, default=None, help="timed training steps")
    parser.add_argument("--warmup-steps", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args(argv)

    import torch
    from transformers.utils import logging as hf_logging

    from abrec.cli.train import load_finetune_config
    from abrec.errors import AbrecError
    from abrec.offline.run import load_data, split_protocol

    hf_logging.set_verbosity_error()
    logging.getLogger("sentence_transformers").setLevel(logging.ERROR)
    hf_logging.disable_progress_bar()
    torch.set_num_threads(args.threads)
    opts = QUICK if args.quick else BenchOptions()
    given = {
        "max_steps": args.max_steps,
        "warmup_steps": args.warmup_steps,
        "repeats": args.repeats,
    }
    opts = replace(opts, **{k: v for k, v in given.items() if v is not None})
    devices = args.devices or available_devices()
    print(f"torch {torch.__version__}: {torch.get_num_threads()} threads; devices {devices}")
    try:
        cfg = load_finetune_config(args.config)
        inter, items = load_data(cfg.dataset)
        split = split_protocol(cfg.protocol, cfg.train.seed, inter)
    except AbrecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result = run_benchmark(
        split.train,
        items,
        cfg.train,
        split.name,
        devices,
        opts,
        log=lambda msg: print(f"> {msg}", file=sys.stderr, flush=True),
    )
    result["config_file"] = str(args.config)
    print_tables(result)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"JSON: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
