"""Closed-loop streaming load: C clients each send streaming chat completions one after
another; per request TTFT, time per output token and the tokens the server counted
(stream_options.include_usage); per level the aggregates."""

from __future__ import annotations

import json
import statistics
import threading
import time
from dataclasses import asdict, dataclass

import requests

from bench.servers import MODEL, Target

# Open-ended tasks: the model rarely stops before a 64-token budget (there is no ignore-EOS),
# and the completion tokens are counted, never assumed.
PROMPTS = (
    "Write a long, detailed story about a lighthouse keeper who finds a message in a bottle.",
    "Explain in detail how a steam engine works, step by step, for a curious student.",
    "Describe a walk through a busy market in a large city, with every sight and smell.",
    "Write a long letter to a friend describing your journey across the mountains.",
    "Explain the water cycle in detail, covering evaporation, clouds, rain and rivers.",
    "Tell a long story about a robot who learns to paint, with many small adventures.",
    "Describe in detail how bread is made, from the wheat field to the bakery shelf.",
    "Write a detailed guide to planting a vegetable garden, season by season.",
)
CONNECT_TIMEOUT = 10
# A sequential server at C=16 holds the last request for a minute before its first token.
READ_TIMEOUT = 600


@dataclass
class RequestResult:
    ok: bool
    ttft: float = 0.0  # send → first content token, seconds
    tpot: float = 0.0  # (last token - first token) / (tokens - 1), seconds
    completion_tokens: int = 0
    latency: float = 0.0
    error: str = ""
    prompt_tokens: int = 0
    # Prompt tokens the server took from its prefix cache, where it says so: OpenAI's
    # usage.prompt_tokens_details.cached_tokens (vLLM, chatstack) or llama-server's
    # timings.cache_n; None when it reports neither.
    cached_tokens: int | None = None
    text: str = ""


@dataclass
class LevelResult:
    target: str
    engine: str
    path: str
    concurrency: int
    max_tokens: int
    requests: int
    errors: int
    wall_s: float
    completion_tokens: int
    throughput_tok_s: float
    ttft_p50_s: float | None
    ttft_p95_s: float | None
    tpot_p50_s: float | None
    peak_rss_bytes: int = 0
    # The machine's 1-minute load average after the level: above its core count, something
    # else competed for the CPU and the figures are not the server's alone.
    load_after: float = 0.0
    first_error: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..100); None for no values."""
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q) - 1]


def stream_chat(session: requests.Session, target: Target, prompt: str, max_tokens: int):
    """One streaming chat completion of a single user message at temperature 0, timed."""
    return stream_messages(session, target, [{"role": "user", "content": prompt}], max_tokens)


def cached_tokens(frame: dict) -> int | None:
    """The cached prompt tokens a stream's frame reports, if it reports them."""
    details = (frame.get("usage") or {}).get("prompt_tokens_details") or {}
    if details.get("cached_tokens") is not None:
        return details["cached_tokens"]
    timings = frame.get("timings") or {}
    return timings.get("cache_n")


def stream_messages(
    session: requests.Session, target: Target, messages: list[dict], max_tokens: int
) -> RequestResult:
    """One streaming chat completion of `messages` at temperature 0, timed, with its text."""
    body = {
        "model": MODEL,
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    started = time.perf_counter()
    first = last = None
    usage = None
    cached = None
    pieces: list[str] = []
    try:
        with session.post(
            target.base_url + "/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {target.api_key}"},
            stream=True,
            timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
            verify=target.verify,
        ) as reply:
            if reply.status_code != 200:
                return RequestResult(False, error=f"HTTP {reply.status_code}: {reply.text[:200]}")
            for line in reply.iter_lines():
                if not line.startswith(b"data: "):
                    continue  # keep-alive comments and blank separators
                data = line[6:]
                if data == b"[DONE]":
                    break
                frame = json.loads(data)
                if "error" in frame:
                    return RequestResult(False, error=f"stream error: {frame['error']}")
                if frame.get("usage"):
                    usage = frame["usage"]
                found = cached_tokens(frame)
                cached = cached if found is None else found
                for choice in frame.get("choices") or ():
                    content = (choice.get("delta") or {}).get("content")
                    if content:
                        now = time.perf_counter()
                        first = first or now
                        last = now
                        pieces.append(content)
    except (requests.RequestException, ValueError) as exc:
        return RequestResult(False, error=f"{type(exc).__name__}: {exc}")
    ended = time.perf_counter()
    if first is None or usage is None:
        return RequestResult(False, error="stream ended without content or usage")
    tokens = usage["completion_tokens"]
    tpot = (last - first) / (tokens - 1) if tokens > 1 else 0.0
    return RequestResult(
        True,
        first - started,
        tpot,
        tokens,
        ended - started,
        prompt_tokens=usage.get("prompt_tokens", 0),
        cached_tokens=cached,
        text="".join(pieces),
    )


def run_level(
    target: Target, concurrency: int, max_tokens: int, requests_total: int
) -> tuple[LevelResult, list[RequestResult]]:
    """`requests_total` requests through `concurrency` clients that each send their next
    request as soon as the previous one ends; wall time spans first send to last end."""
    results: list[RequestResult] = []
    lock = threading.Lock()
    counter = iter(range(requests_total))

    def client() -> None:
        session = requests.Session()
        session.trust_env = False
        while True:
            with lock:
                index = next(counter, None)
            if index is None:
                break
            result = stream_chat(session, target, PROMPTS[index % len(PROMPTS)], max_tokens)
            with lock:
                results.append(result)
        session.close()

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started

    ok = [r for r in results if r.ok]
    failed = [r for r in results if not r.ok]
    tokens = sum(r.completion_tokens for r in ok)
    ttfts = [r.ttft for r in ok]
    tpots = [r.tpot for r in ok if r.completion_tokens > 1]
    level = LevelResult(
        target=target.name,
        engine=target.engine,
        path=target.path,
        concurrency=concurrency,
        max_tokens=max_tokens,
        requests=len(results),
        errors=len(failed),
        wall_s=wall,
        completion_tokens=tokens,
        throughput_tok_s=tokens / wall if wall > 0 else 0.0,
        ttft_p50_s=percentile(ttfts, 50),
        ttft_p95_s=percentile(ttfts, 95),
        tpot_p50_s=percentile(tpots, 50),
        first_error=failed[0].error if failed else "",
    )
    return level, results
