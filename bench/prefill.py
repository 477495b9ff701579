"""The prompt levels, issue 13's prefill and prefix-cache targets: one request at a time per
target, interleaved over the targets round by round so a drift of the machine touches all.

- long prompt: a ~4,000-token prompt no cache has seen (bench/long_prompts.py), a few
  answer tokens: its TTFT is the cold prefill;
- follow-up: a ~7,000-token document as a chat, a question, then at once a follow-up
  question after the answer, whose prompt starts with the first one's: cold TTFT, then
  the follow-up's (warm, where the server keeps a prefix cache).

Prompts are sized with the model API's /tokenize (every target serves the same tokenizer
and chat template), and each server's own usage.prompt_tokens is reported beside it.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass

import requests

from bench.load import CONNECT_TIMEOUT, RequestResult, percentile, stream_messages
from bench.long_prompts import (
    Document,
    document,
    fit_to_tokens,
    long_prompt_messages,
    nonce,
)
from bench.servers import MODEL, Target, settle

LONG_PROMPT = "long-prompt"
FOLLOW_UP = "follow-up"
LONG_PROMPT_ANSWER_TOKENS = 8  # only the first token's time matters
ANSWER_TOKENS = 32  # the document's answers: a sentence, then carried into the follow-up
# The follow-up question and the chat template's markers around it and the answer.
FOLLOW_UP_OVERHEAD_TOKENS = 32


@dataclass
class PromptLevel:
    """One target's figures at one prompt level; the follow_up_* fields only for
    FOLLOW_UP. Token counts are the server's own; cached tokens None where it reports none."""

    level: str
    target: str
    engine: str
    requests: int  # rounds: prompts, or conversations of two requests
    errors: int
    prompt_tokens: int | None
    ttft_p50_s: float | None  # the first (cold) request
    ttft_max_s: float | None
    cached_tokens: int | None  # the first request's, the most of any round (0 when cold)
    follow_up_prompt_tokens: int | None = None
    follow_up_ttft_p50_s: float | None = None
    follow_up_ttft_max_s: float | None = None
    follow_up_cached_tokens: int | None = None  # p50
    load_after: float = 0.0
    first_error: str = ""

    @property
    def prefill_tok_s(self) -> float | None:
        """Prompt tokens over the cold TTFT: the prefill's speed, the first token included."""
        if self.prompt_tokens and self.ttft_p50_s:
            return self.prompt_tokens / self.ttft_p50_s
        return None

    def to_dict(self) -> dict:
        return {**asdict(self), "prefill_tok_s": self.prefill_tok_s}


def _median(values: list[int]) -> int | None:
    return statistics.median_low(values) if values else None


def summarise(
    level: str,
    target: Target,
    firsts: list[RequestResult],
    follow_ups: list[RequestResult] | None = None,
) -> PromptLevel:
    """A level's figures from its requests (a follow-up per first request, for FOLLOW_UP;
    a round counts as an error when either of its requests failed)."""
    pairs = list(zip(firsts, follow_ups, strict=True)) if follow_ups is not None else []
    failed = [r for r in (*firsts, *(follow_ups or ())) if not r.ok]
    ok = [r for r in firsts if r.ok]
    ttfts = [r.ttft for r in ok]
    cached = [r.cached_tokens for r in ok if r.cached_tokens is not None]
    result = PromptLevel(
        level=level,
        target=target.name,
        engine=target.engine,
        requests=len(firsts),
        errors=sum(1 for r in firsts if not r.ok)
        if follow_ups is None
        else sum(1 for a, b in pairs if not (a.ok and b.ok)),
        prompt_tokens=_median([r.prompt_tokens for r in ok]),
        ttft_p50_s=percentile(ttfts, 50),
        ttft_max_s=max(ttfts) if ttfts else None,
        cached_tokens=max(cached) if cached else None,
        first_error=failed[0].error if failed else "",
    )
    if follow_ups is not None:
        warm = [b for a, b in pairs if a.ok and b.ok]
        warm_ttfts = [r.ttft for r in warm]
        result.follow_up_prompt_tokens = _median([r.prompt_tokens for r in warm])
        result.follow_up_ttft_p50_s = percentile(warm_ttfts, 50)
        result.follow_up_ttft_max_s = max(warm_ttfts) if warm_ttfts else None
        result.follow_up_cached_tokens = _median(
            [r.cached_tokens for r in warm if r.cached_tokens is not None]
        )
    return result


# --- building the prompts -------------------------------------------------------------


class TokenCounter:
    """Counts a chat's prompt tokens (generation prompt included) with a model API's
    /tokenize; `max_model_len` is the context it reports."""

    def __init__(self, model_api_url: str, api_key: str) -> None:
        self.url = model_api_url + "/tokenize"
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.headers["Authorization"] = f"Bearer {api_key}"
        self.max_model_len = 0

    def __call__(self, messages: list[dict]) -> int:
        reply = self.session.post(
            self.url, json={"model": MODEL, "messages": messages}, timeout=(CONNECT_TIMEOUT, 60)
        )
        reply.raise_for_status()
        body = reply.json()
        self.max_model_len = body.get("max_model_len") or self.max_model_len
        return body["count"]

    def close(self) -> None:
        self.session.close()


def long_prompts(
    count_tokens: Callable[[list[dict]], int], tokens: int, rounds: int, first_seed: int = 0
) -> list[list[dict]]:
    """`rounds` prompts of at most `tokens` tokens, each with a nonce of its own and its
    own sentences."""
    prompts = []
    for seed in range(first_seed, first_seed + rounds):
        tag = nonce()
        messages, _ = fit_to_tokens(
            lambda n, tag=tag, seed=seed: long_prompt_messages(tag, seed, n), count_tokens, tokens
        )
        prompts.append(messages)
    return prompts


def check_fits(tokens: int, max_model_len: int) -> None:
    """ValueError unless a document of `tokens`, both answers and the follow-up question
    fit the context."""
    needed = tokens + 2 * ANSWER_TOKENS + FOLLOW_UP_OVERHEAD_TOKENS
    if max_model_len and needed > max_model_len:
        raise ValueError(
            f"a {tokens}-token document conversation needs ~{needed} tokens, over the "
            f"model's {max_model_len}-token context: ask for at most "
            f"{max_model_len - 2 * ANSWER_TOKENS - FOLLOW_UP_OVERHEAD_TOKENS}"
        )


def documents(
    count_tokens: Callable[[list[dict]], int], tokens: int, rounds: int
) -> list[Document]:
    """`rounds` documents whose first request's prompt is at most `tokens` tokens."""
    found = []
    for seed in range(100, 100 + rounds):
        tag = nonce()
        doc, _ = fit_to_tokens(
            lambda n, tag=tag, seed=seed: document(tag, seed, n),
            lambda doc: count_tokens(doc.first()),
            tokens,
        )
        found.append(doc)
    return found


# --- running them ---------------------------------------------------------------------


def _session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    return session


def warm_up_long_prompt(targets: list[Target], prompt: list[dict]) -> dict[str, str]:
    """One long prompt, unmeasured, on every target (the first pays for lazy initialisation
    of long shapes); what went wrong per target that failed it."""
    session = _session()
    failed = {}
    for target in targets:
        warm = stream_messages(session, target, prompt, LONG_PROMPT_ANSWER_TOKENS)
        if not warm.ok:
            failed[target.name] = warm.error
    session.close()
    return failed


def run_long_prompt_level(targets: list[Target], prompts: list[list[dict]]) -> list[PromptLevel]:
    """Each prompt on each target in turn, one request at a time."""
    session = _session()
    results: dict[str, list[RequestResult]] = {target.name: [] for target in targets}
    loads: dict[str, float] = {}
    for prompt in prompts:
        for target in targets:
            results[target.name].append(
                stream_messages(session, target, prompt, LONG_PROMPT_ANSWER_TOKENS)
            )
            loads[target.name] = os.getloadavg()[0]
            settle(0.5)
    session.close()
    levels = []
    for target in targets:
        level = summarise(LONG_PROMPT, target, results[target.name])
        level.load_after = loads.get(target.name, 0.0)
        levels.append(level)
    return levels


def run_follow_up_level(targets: list[Target], docs: list[Document]) -> list[PromptLevel]:
    """For each document, on each target in turn: the first request, then at once the
    follow-up with that target's own answer."""
    session = _session()
    firsts: dict[str, list[RequestResult]] = {target.name: [] for target in targets}
    follow_ups: dict[str, list[RequestResult]] = {target.name: [] for target in targets}
    loads: dict[str, float] = {}
    for doc in docs:
        for target in targets:
            first = stream_messages(session, target, doc.first(), ANSWER_TOKENS)
            if first.ok:
                second = stream_messages(
                    session, target, doc.follow_up(first.text.strip()), ANSWER_TOKENS
                )
            else:
                second = RequestResult(False, error="its first request failed")
            firsts[target.name].append(first)
            follow_ups[target.name].append(second)
            loads[target.name] = os.getloadavg()[0]
            settle(0.5)
    session.close()
    levels = []
    for target in targets:
        level = summarise(FOLLOW_UP, target, firsts[target.name], follow_ups[target.name])
        level.load_after = loads.get(target.name, 0.0)
        levels.append(level)
    return levels
