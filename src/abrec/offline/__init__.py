"""The offline evaluation run, in three parts with one job each.

- `abrec.offline.config`: the TOML config schema (pydantic), `load_config`, `config_to_toml`.
- `abrec.offline.run`: data, split, encoder, models, evaluation and the run folder (`run`).
- `abrec.offline.present`: the leaderboard tables `abrec evaluate` prints.
"""
