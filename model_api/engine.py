"""The generation engine: one thread owns the model; requests talk to it through queues.

The interface (`Engine.submit` → `GenerationHandle`) knows nothing of HTTP, so a
batching engine can replace the sequential one without touching the routes.
"""

from __future__ import annotations

import abc
import collections
import logging
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import torch

from chatstack.logs import current_request_id
from model_api.detokenize import IncrementalDetokenizer
from model_api.loading import LoadedModel
from model_api.runners import make_runner
from model_api.sampling import Sampler, SamplingParams
from model_api.stops import StopMatcher

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delta:
    """New text for the client."""

    text: str


@dataclass(frozen=True)
class Finished:
    """Generation ended normally; `reason` is OpenAI's finish_reason (stop or length)."""

    reason: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0  # of the prompt's, served by the prefix cache


@dataclass(frozen=True)
class Failed:
    """Generation ended with an error the client should see."""

    message: str


Event = Delta | Finished | Failed


class EngineBusy(Exception):
    """The engine's queue is full: the request was not accepted; retry later."""


class GenerationHandle:
    """The request side of one generation: read its events, or cancel it."""

    def __init__(self, prompt_ids: list[int], params: SamplingParams) -> None:
        self.prompt_ids = prompt_ids
        self.params = params
        self.events: queue.Queue[Event] = queue.Queue()
        self._cancelled = threading.Event()
        self.done = threading.Event()
        # Made in the request's thread: the engine's thread logs about it with this id.
        self.log_extra = {"request_id": current_request_id()}

    def cancel(self) -> None:
        """The client is gone: the engine stops this generation at its next token."""
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def stream(self, idle_timeout: float) -> Iterator[Event | None]:
        """Events until the generation ends; None after each idle_timeout without one."""
        while True:
            try:
                event = self.events.get(timeout=idle_timeout)
            except queue.Empty:
                yield None
                continue
            yield event
            if not isinstance(event, Delta):
                return


class Engine(Protocol):
    def start(self) -> None: ...
    def submit(self, prompt_ids: list[int], params: SamplingParams) -> GenerationHandle: ...
    @property
    def alive(self) -> bool: ...
    def stats(self) -> dict[str, int]: ...


class SequenceOutput:
    """Turns one sequence's tokens into events: detokenize, stop sequences, EOS, length."""

    def __init__(self, handle: GenerationHandle, tokenizer: object, eos_ids: frozenset[int]):
        self.handle = handle
        self.eos_ids = eos_ids
        self.detokenizer = IncrementalDetokenizer(tokenizer, handle.prompt_ids)
        self.stops = StopMatcher(handle.params.stop)
        self.completion_tokens = 0
        self.cached_tokens = 0  # set by the engine when the prefix cache gave some

    def push_token(self, token_id: int) -> bool:
        """Record one generated token; return True when the sequence has finished."""
        self.completion_tokens += 1
        if token_id in self.eos_ids:
            return self._finish("stop")
        text, stopped = self.stops.push(self.detokenizer.push(token_id))
        if text:
            self.handle.events.put(Delta(text))
        if stopped:
            return self._finish("stop", flush=False)
        if self.completion_tokens >= self.handle.params.max_tokens:
            return self._finish("length")
        return False

    def fail(self, message: str) -> None:
        self.handle.events.put(Failed(message))
        self.handle.done.set()

    def _finish(self, reason: str, flush: bool = True) -> bool:
        rest = self.stops.flush() if flush else ""
        if rest:
            self.handle.events.put(Delta(rest))
        prompt_tokens = len(self.handle.prompt_ids)
        self.handle.events.put(
            Finished(reason, prompt_tokens, self.completion_tokens, self.cached_tokens)
        )
        self.handle.done.set()
        return True


class GenerationThread(abc.ABC):
    """The one thread that owns the model, and the queue requests reach it through.

    An engine holds at most `capacity` generations (running and waiting); the request
    threads wait for theirs, so gunicorn's threads are sized from it (model_api/settings.py)
    and one request more is refused with EngineBusy (a 429) instead of waiting for a thread.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._waiting: collections.deque[GenerationHandle] = collections.deque()
        self._held: list[GenerationHandle] = []
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        self.thread = threading.Thread(target=self._loop, name="generation", daemon=True)

    def start(self) -> None:
        self.thread.start()

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()

    def submit(self, prompt_ids: list[int], params: SamplingParams) -> GenerationHandle:
        """Queue a request; EngineBusy when the engine already holds `capacity` of them."""
        handle = GenerationHandle(prompt_ids, params)
        with self._lock:
            if not self._has_room():
                # Clients that left while queued should not hold places in the queue.
                for gone in [h for h in self._waiting if h.cancelled]:
                    self._waiting.remove(gone)
                    gone.done.set()
            if not self._has_room():
                raise EngineBusy(f"{self.capacity} requests are already running or waiting")
            self._held.append(handle)
            self._waiting.append(handle)
            self._wakeup.notify()
        return handle

    def _has_room(self) -> bool:
        # Held until the engine is done with it, not while it sits in one list or another:
        # a request between the queue and the batch still holds its request thread.
        self._held = [h for h in self._held if not h.done.is_set()]
        return len(self._held) < self.capacity

    @abc.abstractmethod
    def _loop(self) -> None: ...


class SequentialEngine(GenerationThread):
    """Generates for one request at a time, in submission order, on its own thread."""

    def __init__(self, loaded: LoadedModel, max_waiting: int = 64) -> None:
        self.loaded = loaded
        self.runner = make_runner(loaded, max_rows=1, batched=False)
        self.busy = threading.Event()
        super().__init__(capacity=1 + max_waiting)

    def stats(self) -> dict[str, int]:
        """Requests generating now and requests queued behind them."""
        return {"running": int(self.busy.is_set()), "waiting": len(self._waiting)}

    def _next(self) -> GenerationHandle:
        with self._lock:
            while not self._waiting:
                self._wakeup.wait()
            self.busy.set()  # before the lock is let go, so stats() never sees it nowhere
            return self._waiting.popleft()

    def _loop(self) -> None:
        torch.set_grad_enabled(False)
        while True:
            handle = self._next()
            if handle.cancelled:
                handle.done.set()
                self.busy.clear()
                continue
            output = SequenceOutput(handle, self.loaded.tokenizer, self.loaded.eos_token_ids)
            try:
                self._generate(handle, output)
            except Exception as exc:  # the engine must outlive any one request
                log.exception("generation failed", extra=handle.log_extra)
                output.fail(f"Generation failed: {type(exc).__name__}: {exc}")
            finally:
                handle.done.set()
                self.busy.clear()

    def _generate(self, handle: GenerationHandle, output: SequenceOutput) -> None:
        runner = self.runner
        sampler = Sampler(handle.params, self.loaded.vocab_size, self.loaded.device)
        with torch.inference_mode():
            if handle.cancelled:
                return
            runner.open(handle, handle.prompt_ids)
            try:
                logits = runner.prefill([(handle, handle.prompt_ids)])[0]
                while not handle.cancelled:
                    token = sampler.next_token(logits)
                    if output.push_token(token):
                        return
                    logits = runner.decode([handle], [token])[0]
            finally:
                runner.close([handle])
        log.info(
            "generation cancelled after %d tokens",
            output.completion_tokens,
            extra=handle.log_extra,
        )
