"""The prompt levels without servers: prompts built to a token count, the follow-up's
shared prefix, the figures of a level, the ratios, issue 13's targets and the tables."""

from __future__ import annotations

import pytest

from bench.load import RequestResult, cached_tokens
from bench.long_prompts import document, fit_to_tokens, long_prompt_messages, sentences
from bench.prefill import FOLLOW_UP, LONG_PROMPT, PromptLevel, check_fits, summarise
from bench.prefill_report import (
    format_issue_targets,
    format_prompt_ratios,
    format_prompt_tables,
    issue_targets,
    prompt_ratios,
)
from bench.servers import Target


def words(messages: list[dict]) -> int:
    """A stand-in tokenizer: a token per word."""
    return sum(len(message["content"].split()) for message in messages)


def test_sentences_are_deterministic_and_differ_by_seed() -> None:
    assert sentences(1, 20) == sentences(1, 20)
    assert sentences(1, 20) != sentences(2, 20)
    assert len(set(sentences(1, 50))) > 40  # varied, not one sentence repeated


@pytest.mark.parametrize("target", [200, 4000])
def test_a_prompt_is_fitted_to_at_most_the_token_count_and_within_a_sentence_of_it(
    target: int,
) -> None:
    messages, tokens = fit_to_tokens(lambda n: long_prompt_messages("tag", 0, n), words, target)
    assert tokens == words(messages) <= target
    assert target - tokens < 20  # a sentence is ~12 words


def test_a_prompt_that_cannot_fit_is_refused() -> None:
    with pytest.raises(ValueError, match="already"):
        fit_to_tokens(lambda n: long_prompt_messages("tag", 0, n), words, 3)


def test_every_long_prompt_opens_with_its_nonce() -> None:
    first = long_prompt_messages("aaaa", 0, 10)
    second = long_prompt_messages("bbbb", 0, 10)
    assert first[0]["role"] == "system" and "aaaa" in first[0]["content"]
    assert first[0]["content"] != second[0]["content"]


def test_the_follow_up_starts_with_the_first_request_and_its_answer() -> None:
    doc = document("tag", 5, 30)
    first = doc.first()
    follow_up = doc.follow_up("Elsa did.")
    assert [m["role"] for m in first] == ["system", "user", "user"]
    assert follow_up[: len(first)] == first
    assert follow_up[len(first)] == {"role": "assistant", "content": "Elsa did."}
    assert follow_up[-1]["role"] == "user"


def test_a_document_conversation_must_fit_the_context() -> None:
    check_fits(7000, 8192)
    check_fits(9000, 0)  # context unknown: not checked
    with pytest.raises(ValueError, match="at most 8096"):
        check_fits(8150, 8192)


def test_cached_tokens_from_openai_usage_or_llama_server_timings() -> None:
    usage = {"usage": {"prompt_tokens": 10, "prompt_tokens_details": {"cached_tokens": 8}}}
    assert cached_tokens(usage) == 8
    assert cached_tokens({"timings": {"cache_n": 6912, "prompt_n": 200}}) == 6912
    assert cached_tokens({"usage": {"prompt_tokens": 10}}) is None


TARGET = Target("batching", "batching", "direct", "http://x/v1", "k")


def ok(ttft: float, prompt: int, cached: int | None) -> RequestResult:
    return RequestResult(
        True, ttft, 0.01, 8, ttft + 0.1, prompt_tokens=prompt, cached_tokens=cached
    )


def test_a_long_prompt_level_reports_the_median_ttft_and_the_servers_counts() -> None:
    results = [ok(2.0, 3990, 0), ok(1.0, 3995, 3), RequestResult(False, error="HTTP 500")]
    level = summarise(LONG_PROMPT, TARGET, results)
    assert (level.requests, level.errors, level.first_error) == (3, 1, "HTTP 500")
    assert level.ttft_p50_s == pytest.approx(1.5)
    assert level.ttft_max_s == 2.0
    assert level.prompt_tokens == 3990
    assert level.cached_tokens == 3  # the most any cold request was given
    assert level.prefill_tok_s == pytest.approx(3990 / 1.5)
    assert level.follow_up_ttft_p50_s is None


def test_a_follow_up_level_counts_a_round_failed_when_either_request_failed() -> None:
    firsts = [ok(4.0, 7000, 0), ok(5.0, 7001, 0), RequestResult(False, error="broken")]
    follow_ups = [ok(0.2, 7060, 6912), ok(0.4, 7061, 6912), RequestResult(False, error="x")]
    level = summarise(FOLLOW_UP, TARGET, firsts, follow_ups)
    assert (level.requests, level.errors) == (3, 1)
    assert level.ttft_p50_s == pytest.approx(4.5)
    assert level.follow_up_ttft_p50_s == pytest.approx(0.3)
    assert level.follow_up_prompt_tokens == 7060
    assert level.follow_up_cached_tokens == 6912


def level(kind: str, target: str, ttft: float, warm: float | None = None) -> PromptLevel:
    return PromptLevel(
        kind, target, target, 3, 0, 4000, ttft, ttft, None, follow_up_ttft_p50_s=warm
    )


LEVELS = [
    level(LONG_PROMPT, "batching", 1.0),
    level(LONG_PROMPT, "llama-server", 4.0),
    level(LONG_PROMPT, "llama-server-nocache", 2.5),
    level(FOLLOW_UP, "batching", 3.0, 0.3),
    level(FOLLOW_UP, "llama-server", 6.0, 0.15),
]


def test_prompt_ratios_are_ours_over_each_peer_per_level() -> None:
    rows = prompt_ratios(LEVELS, ["batching"], ["llama-server", "llama-server-nocache"])
    by = {(row["level"], row["peer"]): row for row in rows}
    assert by[(LONG_PROMPT, "llama-server")]["ttft_ratio"] == pytest.approx(0.25)
    assert by[(LONG_PROMPT, "llama-server-nocache")]["ttft_ratio"] == pytest.approx(0.4)
    assert by[(FOLLOW_UP, "llama-server")]["ttft_ratio"] == pytest.approx(0.5)
    assert by[(FOLLOW_UP, "llama-server")]["follow_up_ttft_ratio"] == pytest.approx(2.0)
    assert (FOLLOW_UP, "llama-server-nocache") not in by  # it did not run that level


def test_issue_13s_targets_are_judged_and_missing_figures_are_not_guessed() -> None:
    met = issue_targets(LEVELS)
    assert [t["met"] for t in met] == [True, True]  # 1.0/2.5 <= 0.5; 0.3 s < 0.5 s
    assert met[0]["value"] == pytest.approx(0.4)
    slow = [level(LONG_PROMPT, "batching", 2.0), level(LONG_PROMPT, "llama-server-nocache", 2.5)]
    assert issue_targets(slow)[0]["met"] is False
    alone = issue_targets([level(LONG_PROMPT, "batching", 1.0)])
    assert alone[0]["met"] is None
    assert "not measured" in format_issue_targets(alone)
    assert "NOT met" in format_issue_targets(issue_targets(slow))


def test_the_prompt_tables_and_ratio_matrix_show_every_target() -> None:
    text = format_prompt_tables(LEVELS)
    lines = text.splitlines()
    assert lines[0].startswith("long prompt") and "prefill/s" in lines[0]
    assert any(line.startswith("follow-up") and "TTFT warm" in line for line in lines)
    assert sum("batching" in line for line in lines) == 2
    assert "0.300s" in text  # the follow-up's warm TTFT
    rows = prompt_ratios(LEVELS, ["batching"], ["llama-server", "llama-server-nocache"])
    matrix = format_prompt_ratios(rows, ["llama-server", "llama-server-nocache"])
    assert "x0.25" in matrix and "x0.40" in matrix
    assert "x0.50/x2.00" in matrix  # follow-up: cold / warm
    assert format_prompt_ratios([], ["llama-server"]).startswith("(no prompt-level ratios")
