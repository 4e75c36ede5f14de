"""Off-policy estimators validated on the Open Bandit Dataset sample (issue 11).

For each campaign: the uniform-random policy's CTR estimated from the BTS log, and BTS's CTR
(production prior, Monte Carlo slot marginals) estimated from the random log, each compared
with the policy's on-policy CTR (`abrec.ope.obd.validate`). Prints a markdown table and
writes JSON to --out.

With ABREC_OBP_PYTHON pointing at a Python that has Open Bandit Pipeline (`obp`) installed,
the same inputs (rewards, items, slots, propensities, our action distribution and our
cross-fitted reward model) also go through obp's IPW, SNIPW, DM and DR, and obp's own
`BernoulliTS(is_zozotown_prior=True).compute_batch_action_dist` is compared with ours; the
run is skipped with a message when the variable is unset or the interpreter is missing.

    ABREC_DATA=/work/shared/data python benchmarks/bench_ope_obd.py --campaigns all men women
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from abrec.data.open_bandit import load_bts_prior, load_open_bandit
from abrec.ope.obd import LEN_LIST, DirectionValidation, OBDValidation, validate
from abrec.ope.policies import bts_action_dist, uniform_action_dist
from abrec.ope.reward_model import crossfit_item_slot_ctr

OBP_SCRIPT = r"""
import json, sys
import numpy as np
from obp.ope import DirectMethod, DoublyRobust, InverseProbabilityWeighting
from obp.ope import SelfNormalizedInverseProbabilityWeighting
from obp.policy import BernoulliTS

d = np.load(sys.argv[1])
n = d["reward"].size
dist = np.tile(d["action_dist"][None], (n, 1, 1))
kw = dict(reward=d["reward"], action=d["action"], position=d["position"], pscore=d["pscore"],
          action_dist=dist)
out = {
    "ips": InverseProbabilityWeighting().estimate_policy_value(**kw),
    "snips": SelfNormalizedInverseProbabilityWeighting().estimate_policy_value(**kw),
    "dm": DirectMethod().estimate_policy_value(
        position=d["position"], action_dist=dist, estimated_rewards_by_reg_model=d["q"]),
    "dr": DoublyRobust().estimate_policy_value(**kw, estimated_rewards_by_reg_model=d["q"]),
}
if str(d["campaign"]) != "" and int(d["bts"]):
    pol = BernoulliTS(n_actions=dist.shape[1], len_list=dist.shape[2], is_zozotown_prior=True,
                      campaign=str(d["campaign"]), random_state=12345)
    obp_dist = pol.compute_batch_action_dist(n_rounds=1, n_sim=int(d["n_sim"]))[0]
    out["max_abs_diff_action_dist"] = float(np.abs(obp_dist - d["action_dist"]).max())
    out["ips_with_obp_action_dist"] = InverseProbabilityWeighting().estimate_policy_value(
        **{**kw, "action_dist": np.tile(obp_dist[None], (n, 1, 1))})
print(json.dumps({k: float(v) for k, v in out.items()}))
"""


def _pct(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{100 * x:+.1f}%"


def table(results: list[OBDValidation]) -> str:
    """Markdown table: one row per campaign, direction and estimator."""
    lines = [
        "| campaign | target (log) | on-policy CTR [95% CI] | estimator | estimate [95% CI] "
        "| rel. error [95% CI] |",
        "|---|---|---|---|---|---|",
    ]
    for res in results:
        for d in (res.bts_from_random, res.random_from_bts):
            t = d.truth
            truth = f"{t.value:.5f} [{t.ci_low:.5f}, {t.ci_high:.5f}]"
            for c in d.estimates:
                lines.append(
                    f"| {res.campaign} | {d.evaluation_policy} ({d.logging_policy}) | {truth} "
                    f"| {c.estimator} | {c.value:.5f} [{c.ci_low:.5f}, {c.ci_high:.5f}] "
                    f"| {_pct(c.rel_error)} [{_pct(c.rel_ci_low)}, {_pct(c.rel_ci_high)}] |"
                )
    return "\n".join(lines)


def obp_compare(
    res: OBDValidation, campaign: str, args: argparse.Namespace
) -> dict[str, Any] | None:
    """obp's estimates on our inputs, per direction (None when obp is not available)."""
    py = os.environ.get("ABREC_OBP_PYTHON", "")
    if not py or not Path(py).is_file():
        print(
            "obp comparison skipped: set ABREC_OBP_PYTHON to a Python with obp installed "
            f"(got {py!r}).",
            file=sys.stderr,
        )
        return None
    logs = {p: load_open_bandit(p, campaign) for p in ("random", "bts")}
    alpha, beta = load_bts_prior(campaign)
    dists = {
        "bts": bts_action_dist(alpha, beta, LEN_LIST, n_sim=args.n_sim, seed=args.seed),
        "random": uniform_action_dist(logs["random"].n_actions, LEN_LIST),
    }
    out: dict[str, Any] = {}
    for d in (res.bts_from_random, res.random_from_bts):
        log = logs[d.logging_policy]
        cf = crossfit_item_slot_ctr(
            log.actions,
            log.positions,
            log.rewards,
            log.n_actions,
            LEN_LIST,
            rounds=np.asarray(log.timestamps),
            n_folds=args.n_folds,
            seed=args.seed,
        )
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "in.npz"
            np.savez(
                path,
                reward=log.rewards,
                action=log.actions,
                position=log.positions,
                pscore=log.pscore,
                action_dist=dists[d.evaluation_policy],
                q=cf.tables[cf.folds],
                campaign=np.array(campaign),
                bts=np.array(int(d.evaluation_policy == "bts")),
                n_sim=np.array(args.n_sim),
            )
            run = subprocess.run(
                [py, "-c", OBP_SCRIPT, str(path)], capture_output=True, text=True, check=False
            )
        if run.returncode != 0:
            print(f"obp run failed:\n{run.stderr[-2000:]}", file=sys.stderr)
            return None
        obp = json.loads(run.stdout.strip().splitlines()[-1])
        ours = {c.estimator: c.value for c in d.estimates}
        out[f"{d.evaluation_policy}_from_{d.logging_policy}"] = {
            "obp": obp,
            "ours_minus_obp": {k: ours[k] - obp[k] for k in ("ips", "snips", "dm", "dr")},
        }
    return out


def _print_obp(campaign: str, cmp: dict[str, Any]) -> None:
    for direction, v in cmp.items():
        diffs = ", ".join(f"{k} {x:+.2e}" for k, x in v["ours_minus_obp"].items())
        print(f"obp {campaign} {direction}: ours - obp: {diffs}")
        if "max_abs_diff_action_dist" in v["obp"]:
            print(
                f"obp {campaign} {direction}: max |our BTS marginals - obp's| = "
                f"{v['obp']['max_abs_diff_action_dist']:.4f}; IPS with obp's marginals "
                f"{v['obp']['ips_with_obp_action_dist']:.5f}"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--campaigns", nargs="+", default=["all"], choices=["all", "men", "women"])
    ap.add_argument("--n-sim", type=int, default=100_000)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--n-folds", type=int, default=3)
    ap.add_argument("--tau", type=float, default=math.inf, help="switch-DR weight threshold")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/ope_obd.json")
    args = ap.parse_args()
    results, payload = [], []
    for campaign in args.campaigns:
        t0 = time.perf_counter()
        res = validate(
            campaign,
            n_sim=args.n_sim,
            n_boot=args.n_boot,
            n_folds=args.n_folds,
            tau=args.tau,
            seed=args.seed,
        )
        seconds = time.perf_counter() - t0
        results.append(res)
        entry = {**res.to_dict(), "seconds": seconds}
        for d in (res.bts_from_random, res.random_from_bts):
            print(_direction_note(d))
        cmp = obp_compare(res, campaign, args)
        if cmp is not None:
            _print_obp(campaign, cmp)
            entry["obp"] = cmp
        payload.append(entry)
    print()
    print(table(results))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2))
    print(f"\nwrote {out}")


def _direction_note(d: DirectionValidation) -> str:
    return (
        f"{d.campaign}: {d.evaluation_policy} from the {d.logging_policy} log: "
        f"{d.n_logged} rows, {d.n_rounds} rounds, mean weight {d.mean_weight:.3f}, "
        f"max weight {d.max_weight:.1f}"
    )


if __name__ == "__main__":
    main()
