"""The benchmark's output: a table, the ratios that answer its questions, JSON and a chart."""

from __future__ import annotations

import json
from pathlib import Path

from bench.load import LevelResult

HEADER = (
    f"{'target':<22} {'C':>3} {'reqs':>4} {'err':>3} {'tok/s':>7} "
    f"{'TTFT p50':>9} {'TTFT p95':>9} {'TPOT p50':>9} {'peak RSS':>9} {'load':>5}"
)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}s"


def format_row(level: LevelResult) -> str:
    rss = f"{level.peak_rss_bytes / 2**30:.2f}GB" if level.peak_rss_bytes else "-"
    return (
        f"{level.target:<22} {level.concurrency:>3} {level.requests:>4} {level.errors:>3} "
        f"{level.throughput_tok_s:>7.1f} {_seconds(level.ttft_p50_s):>9} "
        f"{_seconds(level.ttft_p95_s):>9} {_seconds(level.tpot_p50_s):>9} {rss:>9} "
        f"{level.load_after:>5.1f}"
    )


def format_table(levels: list[LevelResult]) -> str:
    return "\n".join([HEADER, "-" * len(HEADER), *(format_row(level) for level in levels)])


# Ratios printed per concurrency level: what each step of the work bought.
PAIRS = (("batching", "baseline"), ("sequential", "baseline"), ("batching", "sequential"))


def _find(levels: list[LevelResult], engine: str, path: str, c: int) -> LevelResult | None:
    for level in levels:
        if (level.engine, level.path, level.concurrency) == (engine, path, c):
            return level
    return None


def comparisons(levels: list[LevelResult]) -> list[dict]:
    """Per concurrency: each pair of PAIRS (direct), and full-stack vs direct per engine."""
    rows = []
    for c in sorted({level.concurrency for level in levels}):
        for faster, slower in PAIRS:
            new = _find(levels, faster, "direct", c)
            old = _find(levels, slower, "direct", c)
            if new and old and old.throughput_tok_s:
                rows.append(
                    {
                        "kind": f"{faster}/{slower}",
                        "concurrency": c,
                        "throughput_ratio": new.throughput_tok_s / old.throughput_tok_s,
                        "ttft_p50_ratio": _ratio(new.ttft_p50_s, old.ttft_p50_s),
                    }
                )
        for engine in dict.fromkeys(level.engine for level in levels):
            direct = _find(levels, engine, "direct", c)
            full = _find(levels, engine, "full-stack", c)
            if direct and full and direct.throughput_tok_s:
                rows.append(
                    {
                        "kind": f"{engine} full-stack/direct",
                        "concurrency": c,
                        "throughput_ratio": full.throughput_tok_s / direct.throughput_tok_s,
                        "ttft_p50_diff_s": _diff(full.ttft_p50_s, direct.ttft_p50_s),
                    }
                )
    return rows


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _diff(a: float | None, b: float | None) -> float | None:
    return a - b if a is not None and b is not None else None


def format_comparisons(rows: list[dict]) -> str:
    lines = []
    for row in rows:
        text = f"{row['kind']:<28} C={row['concurrency']:<3} tok/s x{row['throughput_ratio']:.2f}"
        if row.get("ttft_p50_ratio") is not None:
            text += f"  TTFT p50 x{row['ttft_p50_ratio']:.2f}"
        if row.get("ttft_p50_diff_s") is not None:
            text += f"  TTFT p50 {row['ttft_p50_diff_s'] * 1000:+.0f} ms"
        lines.append(text)
    return "\n".join(lines) if lines else "(nothing to compare: one engine, direct only)"


# chatstack's configuration that the peers are measured against.
OURS = "batching"


def peer_ratios(levels: list[LevelResult], peers: list[str], ours: str = OURS) -> list[dict]:
    """Per C: `ours` (direct) over each peer that answered, then over the best of them (the
    most tok/s at that C). tok/s above 1 is ours faster; TTFT and TPOT below 1 ours shorter."""
    rows = []
    for c in sorted({level.concurrency for level in levels}):
        mine = _find(levels, ours, "direct", c)
        if mine is None:
            continue
        found = [_find(levels, name, "direct", c) for name in peers]
        answered = [peer for peer in found if peer is not None and peer.throughput_tok_s > 0]
        rows += [_peer_row(ours, mine, peer, best=False) for peer in answered]
        if answered:
            best = max(answered, key=lambda peer: peer.throughput_tok_s)
            rows.append(_peer_row(ours, mine, best, best=True))
    return rows


def _peer_row(ours: str, mine: LevelResult, peer: LevelResult, best: bool) -> dict:
    return {
        "kind": f"{ours}/best peer" if best else f"{ours}/{peer.target}",
        "concurrency": mine.concurrency,
        "peer": peer.target,
        "best": best,
        "throughput_ratio": mine.throughput_tok_s / peer.throughput_tok_s,
        "ttft_p50_ratio": _ratio(mine.ttft_p50_s, peer.ttft_p50_s),
        "ttft_p95_ratio": _ratio(mine.ttft_p95_s, peer.ttft_p95_s),
        "tpot_p50_ratio": _ratio(mine.tpot_p50_s, peer.tpot_p50_s),
    }


def _times(value: float | None) -> str:
    return "-" if value is None else f"x{value:.2f}"


def format_peer_ratios(rows: list[dict], peers: list[str], ours: str = OURS) -> str:
    """A matrix of tok/s ratios (C × peer, then the best peer), and per C the best peer's
    TTFT and TPOT ratios."""
    if not rows:
        return f"(no peer ratios: {ours} or every peer is missing from the run)"
    width = max(12, *(len(name) + 1 for name in peers))
    lines = [
        f"{ours} / peer, tok/s (above 1: {ours} faster)",
        f"{'C':>3}  " + "".join(f"{name:>{width}}" for name in peers) + "  best peer",
    ]
    for c in dict.fromkeys(row["concurrency"] for row in rows):
        at_c = [row for row in rows if row["concurrency"] == c]
        by_peer = {row["peer"]: row for row in at_c if not row["best"]}
        cells = "".join(
            f"{_times(by_peer[name]['throughput_ratio']) if name in by_peer else '-':>{width}}"
            for name in peers
        )
        best = next(row for row in at_c if row["best"])
        lines.append(f"{c:>3}  {cells}  {_times(best['throughput_ratio'])} ({best['peer']})")
    lines.append(f"{ours} / best peer, latency (below 1: {ours} shorter)")
    for row in rows:
        if row["best"]:
            lines.append(
                f"  C={row['concurrency']:<3} {row['peer']:<22} "
                f"TTFT p50 {_times(row['ttft_p50_ratio'])}  "
                f"TTFT p95 {_times(row['ttft_p95_ratio'])}  "
                f"TPOT p50 {_times(row['tpot_p50_ratio'])}"
            )
    return "\n".join(lines)


def write_json(
    path: Path,
    meta: dict,
    levels: list[LevelResult],
    rows: list[dict],
    peer_rows: list[dict] | None = None,
    extra: dict | None = None,
) -> None:
    """results.json; `extra` adds top-level sections (the prompt levels')."""
    body = {"meta": meta, "levels": [level.to_dict() for level in levels], "ratios": rows}
    if peer_rows is not None:
        body["peer_ratios"] = peer_rows
    body.update(extra or {})
    path.write_text(json.dumps(body, indent=2) + "\n")


def _nan(value: float | None) -> float:
    return float("nan") if value is None else value


# The chart's panels: title, y label, the value of a level.
PANELS = (
    ("throughput", "output tokens/s", lambda lv: lv.throughput_tok_s),
    ("TTFT p50", "seconds", lambda lv: _nan(lv.ttft_p50_s)),
    ("TTFT p95", "seconds", lambda lv: _nan(lv.ttft_p95_s)),
    ("TPOT p50", "seconds", lambda lv: _nan(lv.tpot_p50_s)),
    ("peak RSS", "GB", lambda lv: lv.peak_rss_bytes / 2**30 if lv.peak_rss_bytes else _nan(None)),
)


def write_chart(
    path: Path, levels: list[LevelResult], title: str, peer_rows: list[dict] | None = None
) -> bool:
    """Throughput, TTFT p50/p95, TPOT p50 and peak RSS against C, one line per target, and
    with peers the ratios of ours to the best peer; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        return False
    fig, grid = plt.subplots(2, 3, figsize=(15, 8))
    axes = list(grid.flat)
    levels_c = sorted({lv.concurrency for lv in levels})
    for axis, (name, unit, value) in zip(axes, PANELS, strict=False):
        for target in dict.fromkeys(level.target for level in levels):
            rows = sorted(
                (lv for lv in levels if lv.target == target), key=lambda lv: lv.concurrency
            )
            axis.plot(
                [lv.concurrency for lv in rows],
                [value(lv) for lv in rows],
                marker="o",
                label=target,
            )
        axis.set(xlabel="concurrent streams (C)", ylabel=unit, title=name)
    ratios = axes[len(PANELS)]
    best = [row for row in peer_rows or () if row["best"]]
    if best:
        cs = [row["concurrency"] for row in best]
        ratios.plot(cs, [row["throughput_ratio"] for row in best], marker="o", label="tok/s")
        ratios.plot(cs, [_nan(row["ttft_p95_ratio"]) for row in best], marker="o", label="TTFT p95")
        ratios.axhline(1.0, color="grey", linewidth=0.8)
        ratios.set_yscale("log")  # 0.5× and 2× equally far from 1
        times = matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}×")
        ratios.yaxis.set_major_formatter(times)
        ratios.yaxis.set_minor_formatter(times)
        ratios.set(xlabel="concurrent streams (C)", ylabel="ratio", title=f"{OURS} / best peer")
    else:
        ratios.set_visible(False)
    for axis in axes[: len(PANELS) + bool(best)]:
        axis.set_xscale("log", base=2)
        axis.set_xticks(levels_c, [str(c) for c in levels_c])
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize="small")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
