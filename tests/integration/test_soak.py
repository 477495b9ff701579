"""A small soak in `make test`: idle sockets and chatting users through nginx with TLS, a
model API killed mid-answer and started again — and nothing lost. The full size, with its
figures, is `make soak` (bench/soak.py, docs/benchmark.md); this asserts only invariants."""

from __future__ import annotations

from pathlib import Path

from bench.soak import SoakConfig, run_soak


def test_nothing_is_lost_under_load_across_a_model_api_restart(tmp_path: Path) -> None:
    config = SoakConfig(
        idle_sockets=300,
        sockets_per_idle_user=10,
        chatters=10,
        turns=2,
        max_tokens=16,
        restart_model_api=True,
        restart_app=False,
        model_batch_size=16,
        model_waiting=16,
    )
    report = run_soak(config, tmp_path, log=lambda line: print(f"soak: {line}"))
    assert report.problems == []
    assert report.integrity == "ok"
    assert report.idle_sockets_open_peak >= 300
    assert report.idle_sockets_open_end >= 300
    assert report.turns >= config.chatters * config.turns
    # Every user got a whole answer again once the model API was back.
    assert report.chatters_answered_after_restarts == config.chatters
    assert report.health_ms["n"] > 0 and report.login_ms["n"] > 0
