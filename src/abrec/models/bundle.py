"""A directory of saved models plus the id maps the service needs to use them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from abrec.models.base import Recommender


@dataclass(frozen=True)
class ModelBundle:
    """Fitted models by name, with external user/item ids aligned to their indices."""

    models: dict[str, Recommender]
    user_ids: np.ndarray
    item_ids: np.ndarray

    def save(self, path: str | Path) -> Path:
        """Write `models/<name>/` for each model, `ids.npz` and `bundle.json` under `path`."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        for name, model in self.models.items():
            model.save(path / "models" / name)
        np.savez(path / "ids.npz", user_ids=self.user_ids, item_ids=self.item_ids)
        (path / "bundle.json").write_text(json.dumps({"models": sorted(self.models)}, indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path, names: Mapping[str, str] | None = None) -> ModelBundle:
        """Load every model listed in `bundle.json` (or only `names`: alias -> saved name)."""
        path = Path(path)
        meta = json.loads((path / "bundle.json").read_text())
        wanted = dict(names) if names is not None else {n: n for n in meta["models"]}
        missing = sorted(set(wanted.values()) - set(meta["models"]))
        if missing:
            raise FileNotFoundError(
                f"bundle {path} has no model(s) {missing}; it has {meta['models']}"
            )
        models = {
            alias: Recommender.load(path / "models" / saved) for alias, saved in wanted.items()
        }
        ids = np.load(path / "ids.npz", allow_pickle=True)
        return cls(models=models, user_ids=ids["user_ids"], item_ids=ids["item_ids"])
