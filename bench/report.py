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


def write_json(path: Path, meta: dict, levels: list[LevelResult], rows: list[dict]) -> None:
    body = {"meta": meta, "levels": [level.to_dict() for level in levels], "ratios": rows}
    path.write_text(json.dumps(body, indent=2) + "\n")


def write_chart(path: Path, levels: list[LevelResult], title: str) -> bool:
    """Throughput and TTFT p50 against C, one line per target; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (tput, ttft) = plt.subplots(1, 2, figsize=(11, 4.2))
    for target in dict.fromkeys(level.target for level in levels):
        rows = sorted((lv for lv in levels if lv.target == target), key=lambda lv: lv.concurrency)
        cs = [lv.concurrency for lv in rows]
        tput.plot(cs, [lv.throughput_tok_s for lv in rows], marker="o", label=target)
        ttft.plot(
            cs,
            [lv.ttft_p50_s if lv.ttft_p50_s is not None else float("nan") for lv in rows],
            marker="o",
            label=target,
        )
    tput.set(xlabel="concurrent streams (C)", ylabel="output tokens/s", title="throughput")
    ttft.set(xlabel="concurrent streams (C)", ylabel="seconds", title="TTFT p50")
    levels_c = sorted({lv.concurrency for lv in levels})
    for axis in (tput, ttft):
        axis.set_xscale("log", base=2)
        axis.set_xticks(levels_c, [str(c) for c in levels_c])
        axis.grid(True, alpha=0.3)
        axis.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
