"""The strategies of ``benchmarks/efficacy.py``: each one's candidate settings per task (the grid
chosen from on validation), how to build it, its name in the tables, what it costs per step and
which feedback it is given.

Bandits over groups (``lm-words-clusters``, issue 24): the arms are the training records'
clusters (``group="cluster"``: the pipeline's own all-MiniLM-L6-v2 embedding and k-means) or the
deciles of the reference model's loss (``group="ref_bucket"``). Rewards:
- ``progress``: learning progress, the loss decrease since the group's previous visits
  (UCB ``reward="loss_decrease"``: group EMA of the loss before the update minus the loss);
- ``reducible``: the reducible loss, loss minus the reference model's loss (RHO-LOSS's
  learnability, ``sampler.reducible_loss``), fed as ``loss=``;
- ``loss``: the training loss itself (Online Data Mixing's reward, for EXP3).
"""

from __future__ import annotations

from sampler import pacing
from sampler import strategies as S

LM_TASKS = ("lm", "lm-perplexity", "lm-words", "lm-words-clusters")


def grid(task: str) -> dict[str, list[dict]]:
    """Each strategy's candidate settings (fractions are of the step budget). Uniform has none
    and is not part of the selection runs."""
    if task == "lm-words-clusters":
        ucb = [{"reward": r, "c": c} for r in ("progress", "reducible") for c in (1.0, 0.1)]
        return {
            "uniform": [{}],
            "ucb": [{"group": "ref_bucket", **p} for p in ucb],
            "ucb-cluster": [{"group": "cluster", **p} for p in ucb],
            "exp3": [{"group": "cluster", "reward": "loss"}],
            "exp3-reducible": [
                {"group": g, "reward": "reducible"} for g in ("cluster", "ref_bucket")
            ],
        }
    if task in LM_TASKS:
        if task != "lm-words":  # CPU budget: one curriculum, the cheap RHO form
            return {
                "uniform": [{}],
                "curriculum": [{"pacing": "linear", "T": 0.6}],
                "rho-prioritized": [{"alpha": 1.0}],
            }
        return {
            "uniform": [{}],
            "curriculum": [{"pacing": "linear", "T": f} for f in (0.3, 0.6)]
            + [{"pacing": "root", "T": 0.6}],
            "prioritized": [{"alpha": 1.0}],
            "rho-prioritized": [{"alpha": a} for a in (1.0, 2.0)],
            "rho-online": [{"keep": 0.25}],
        }
    # UCB is left out (CPU budget): in the 3-seed run of 2026-11-23 it was a slow starter;
    # Prioritized and ProgressiveDropout keep the settings that run chose on validation
    return {
        "uniform": [{}],
        "curriculum": [
            {"pacing": "linear", "T": 0.3},
            {"pacing": "linear", "T": 0.6},
            {"pacing": "root", "T": 0.6},
        ],
        "prioritized": [{"alpha": 0.6}],
        "dropout": [{"revision": 0.8}],
    }


def build(name: str, p: dict, steps: int) -> S.Strategy:
    """A strategy object from its name and setting (``rho-online`` draws its candidates
    uniformly; the selection happens in the training loop)."""
    if name in ("uniform", "rho-online"):
        return S.Uniform()
    if name == "curriculum":
        by = p.get("by", "difficulty")
        if p["pacing"] == "root":
            return S.Curriculum(pacing.root(p["T"] * steps, p=2, c0=0.1), difficulty=by)
        if p["pacing"] == "linear":
            return S.Curriculum(pacing.linear(p["T"] * steps, c0=0.1), difficulty=by)
        raise ValueError(f"unknown pacing {p['pacing']!r}")
    if name in ("ucb", "ucb-cluster"):
        reward = {"progress": "loss_decrease", "reducible": "loss"}.get(p["reward"], p["reward"])
        # DUMP's window W = 300 and tau = 0.1 unless the setting says otherwise
        return S.UCB(
            group=p.get("group", "bucket"), reward=reward, tau=p.get("tau", 0.1),
            c=p.get("c", 1.0), window=p.get("window", 300),
        )  # fmt: skip
    if name in ("exp3", "exp3-reducible"):
        return S.EXP3(group=p["group"], reward="loss", scale=p.get("scale", 0.1))
    if name in ("prioritized", "rho-prioritized"):
        return S.Prioritized(signal="loss", alpha=p["alpha"], beta=0.4)
    if name == "dropout":
        return S.ProgressiveDropout(revision_step=int(p["revision"] * steps))
    raise ValueError(f"unknown strategy {name!r}")


def reducible_feedback(name: str, p: dict) -> bool:
    """Whether the strategy is fed loss - irreducible (the reference model's loss)."""
    return name == "rho-prioritized" or p.get("reward") == "reducible"


def describe(name: str, p: dict) -> str:
    if name == "curriculum":
        by = {"difficulty": "", "ref_difficulty": ", by reference loss"}[p.get("by", "difficulty")]
        if p["pacing"] == "root":
            return f"Curriculum root(p=2, c0=0.1, T={p['T']}·S{by})"
        return f"Curriculum linear(c0=0.1, T={p['T']}·S{by})"
    if name in ("ucb", "ucb-cluster") and "group" in p:
        reward = {"progress": "learning progress", "reducible": "reducible loss"}[p["reward"]]
        return (
            f"UCB({p['group']}, reward={reward}, W={p.get('window', 300)}, c={p.get('c', 1.0)}, "
            f"tau={p.get('tau', 0.1)})"
        )
    if name in ("exp3", "exp3-reducible"):
        reward = {"loss": "loss (ODM)", "reducible": "reducible loss"}[p["reward"]]
        return f"EXP3({p['group']}, reward={reward} x {p.get('scale', 0.1)})"
    pretty = {
        "uniform": "Uniform",
        "ucb": "UCB(bucket, reward={reward}, tau={tau})",
        "prioritized": "Prioritized(loss, alpha={alpha}, beta=0.4)",
        "rho-prioritized": "RHO Prioritized(loss − irreducible, alpha={alpha}, beta=0.4)",
        "rho-online": "RHO online select(keep={keep} of {batch_over_keep} candidates)",
        "dropout": "ProgressiveDropout(correct, revision={revision}·S)",
    }[name]
    return pretty.format(batch_over_keep="batch/keep", **p)


def cost_per_step(name: str, p: dict) -> float:
    """Forward-pass FLOPs of one training step relative to uniform's: a step is about three
    forward passes over the batch (forward + backward); online RHO-LOSS adds one forward pass
    over batch / keep candidates. The bandits reuse the training loss: no extra pass."""
    return (3.0 + 1.0 / p["keep"]) / 3.0 if name == "rho-online" else 1.0
