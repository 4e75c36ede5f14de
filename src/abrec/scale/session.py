"""Connecting to Ray: a local instance, or an existing cluster by address.

Ray is an optional dependency (`pip install 'abrec[ray]'`); everything in `abrec.scale`
imports it lazily through `require_ray`, so the rest of abrec never needs it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from abrec.errors import ConfigError


def require_ray() -> Any:
    """The `ray` module, or a ConfigError saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(
            "Ray is not installed: run `pip install 'abrec[ray]'` (or `pip install 'ray[data]'`)"
        ) from exc
    return ray


@contextmanager
def ray_session(address: str | None = None, **init_kwargs: Any) -> Iterator[Any]:
    """Yield the `ray` module connected to a cluster; disconnect afterwards if we connected.

    Args:
        address: passed to `ray.init`: None (the `RAY_ADDRESS` environment variable, else a new
            local instance), "local" (always a new local instance), "auto" (a cluster already
            running on this machine), "ray://head:10001" (Ray Client) or "head:6379".
        init_kwargs: more `ray.init` arguments (e.g. `num_cpus` for a local instance).

    When Ray is already initialised in this process (by the caller), that connection is used
    as is and left open.
    """
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    opts: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
    opts.update(init_kwargs)
    try:
        ray.init(address=address, **opts)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigError(f"could not start or reach Ray at {address or 'local'}: {exc}") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def cluster_cpus(ray: Any) -> int:
    """CPUs the connected cluster offers (at least 1)."""
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def even_ranges(n: int, size: int) -> list[tuple[int, int]]:
    """``[0, n)`` cut into consecutive ranges of `size` (the last may be shorter)."""
    if size < 1:
        raise ConfigError(f"chunk size must be >= 1, got {size}")
    return [(lo, min(lo + size, n)) for lo in range(0, n, size)]


def default_chunk(n: int, workers: int, multiple: int = 1) -> int:
    """A chunk size giving about two chunks per worker, rounded up to a multiple of `multiple`."""
    per = -(-n // max(1, 2 * workers))
    return max(multiple, -(-per // multiple) * multiple)
