"""The prompt levels' output: their tables, chatstack's TTFT over each peer's, and issue
13's two targets (cold 4,000-token TTFT ≤ 0.5× llama-server-nocache's; the follow-up on a
7,000-token document under 0.5 s)."""

from __future__ import annotations

from bench.prefill import FOLLOW_UP, LONG_PROMPT, PromptLevel
from bench.report import OURS

PREFILL_PEER = "llama-server-nocache"
PREFILL_TARGET_RATIO = 0.5
FOLLOW_UP_TARGET_S = 0.5

LONG_HEADER = (
    f"{'long prompt':<22} {'reqs':>4} {'err':>3} {'prompt':>7} {'TTFT p50':>9} "
    f"{'TTFT max':>9} {'prefill/s':>9} {'cached':>7} {'load':>5}"
)
FOLLOW_UP_HEADER = (
    f"{'follow-up':<22} {'convs':>5} {'err':>3} {'prompt':>7} {'TTFT cold':>9} "
    f"{'cached':>7} {'prompt':>7} {'TTFT warm':>9} {'warm max':>9} {'cached':>7} {'load':>5}"
)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}s"


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def format_long_row(level: PromptLevel) -> str:
    rate = level.prefill_tok_s
    return (
        f"{level.target:<22} {level.requests:>4} {level.errors:>3} "
        f"{_count(level.prompt_tokens):>7} {_seconds(level.ttft_p50_s):>9} "
        f"{_seconds(level.ttft_max_s):>9} {'-' if rate is None else f'{rate:.0f}':>9} "
        f"{_count(level.cached_tokens):>7} {level.load_after:>5.1f}"
    )


def format_follow_up_row(level: PromptLevel) -> str:
    return (
        f"{level.target:<22} {level.requests:>5} {level.errors:>3} "
        f"{_count(level.prompt_tokens):>7} {_seconds(level.ttft_p50_s):>9} "
        f"{_count(level.cached_tokens):>7} {_count(level.follow_up_prompt_tokens):>7} "
        f"{_seconds(level.follow_up_ttft_p50_s):>9} {_seconds(level.follow_up_ttft_max_s):>9} "
        f"{_count(level.follow_up_cached_tokens):>7} {level.load_after:>5.1f}"
    )


def format_prompt_tables(levels: list[PromptLevel]) -> str:
    """One table per prompt level that ran (prompt and cached: tokens as each server
    counted them; "-" where it does not report them)."""
    parts = []
    for kind, header, row in (
        (LONG_PROMPT, LONG_HEADER, format_long_row),
        (FOLLOW_UP, FOLLOW_UP_HEADER, format_follow_up_row),
    ):
        found = [level for level in levels if level.level == kind]
        if found:
            parts.append("\n".join([header, "-" * len(header), *(row(lv) for lv in found)]))
    return "\n\n".join(parts)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _find(levels: list[PromptLevel], kind: str, target: str) -> PromptLevel | None:
    return next((lv for lv in levels if lv.level == kind and lv.target == target), None)


def prompt_ratios(levels: list[PromptLevel], ours: list[str], peers: list[str]) -> list[dict]:
    """Each chatstack engine's TTFT p50 over each peer's, per prompt level (below 1: ours
    shorter); for the follow-up, the cold request's and the follow-up's."""
    rows = []
    for kind in (LONG_PROMPT, FOLLOW_UP):
        for mine in (_find(levels, kind, name) for name in ours):
            if mine is None:
                continue
            for theirs in (_find(levels, kind, name) for name in peers):
                if theirs is None:
                    continue
                row = {
                    "level": kind,
                    "ours": mine.target,
                    "peer": theirs.target,
                    "ttft_ratio": _ratio(mine.ttft_p50_s, theirs.ttft_p50_s),
                }
                if kind == FOLLOW_UP:
                    row["follow_up_ttft_ratio"] = _ratio(
                        mine.follow_up_ttft_p50_s, theirs.follow_up_ttft_p50_s
                    )
                rows.append(row)
    return rows


def _times(value: float | None) -> str:
    return "-" if value is None else f"x{value:.2f}"


def format_prompt_ratios(rows: list[dict], peers: list[str]) -> str:
    """A matrix per level: chatstack engine × peer, TTFT p50 ratios (cold / follow-up)."""
    if not rows:
        return "(no prompt-level ratios: no peer, or no chatstack engine, answered)"
    width = max(14, *(len(name) + 2 for name in peers))
    lines = []
    for kind, what in (
        (LONG_PROMPT, "long prompt, cold TTFT p50"),
        (FOLLOW_UP, "follow-up, TTFT p50 cold/warm"),
    ):
        at_level = [row for row in rows if row["level"] == kind]
        if not at_level:
            continue
        lines.append(f"chatstack / peer, {what} (below 1: chatstack shorter)")
        lines.append(f"{'':<22}" + "".join(f"{name:>{width}}" for name in peers))
        for ours in dict.fromkeys(row["ours"] for row in at_level):
            by_peer = {row["peer"]: row for row in at_level if row["ours"] == ours}
            cells = []
            for name in peers:
                row = by_peer.get(name)
                cell = "-" if row is None else _times(row["ttft_ratio"])
                if row is not None and kind == FOLLOW_UP:
                    cell += "/" + _times(row["follow_up_ttft_ratio"])
                cells.append(f"{cell:>{width}}")
            lines.append(f"{ours:<22}" + "".join(cells))
    return "\n".join(lines)


def issue_targets(levels: list[PromptLevel], ours: str = OURS) -> list[dict]:
    """Issue 13's prompt targets for `ours`, each with its value and whether it is met
    (None where the run lacks what it needs)."""
    found = []
    mine = _find(levels, LONG_PROMPT, ours)
    peer = _find(levels, LONG_PROMPT, PREFILL_PEER)
    if mine is not None:
        ratio = _ratio(mine.ttft_p50_s, peer.ttft_p50_s) if peer else None
        found.append(
            {
                "target": f"{ours} long-prompt TTFT p50 / {PREFILL_PEER}'s "
                f"<= {PREFILL_TARGET_RATIO}",
                "value": ratio,
                "met": None if ratio is None else ratio <= PREFILL_TARGET_RATIO,
            }
        )
    mine = _find(levels, FOLLOW_UP, ours)
    if mine is not None:
        warm = mine.follow_up_ttft_p50_s
        found.append(
            {
                "target": f"{ours} follow-up TTFT p50 < {FOLLOW_UP_TARGET_S} s",
                "value": warm,
                "met": None if warm is None else warm < FOLLOW_UP_TARGET_S,
            }
        )
    return found


def format_issue_targets(targets: list[dict]) -> str:
    lines = []
    for target in targets:
        value = target["value"]
        shown = "-" if value is None else f"{value:.2f}"
        verdict = {True: "met", False: "NOT met", None: "not measured"}[target["met"]]
        lines.append(f"issue 13: {target['target']}: {shown} — {verdict}")
    return "\n".join(lines)
