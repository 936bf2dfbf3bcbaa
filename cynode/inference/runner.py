"""llama.cpp behind one thread: loads at most one model and runs one generation at a time.

llama.cpp objects are not thread-safe, so every call that touches them runs on a single dedicated worker thread;
the executor's FIFO queue is what serializes requests. Tokens travel to the event loop through an asyncio queue as
they are sampled, so streaming is real. `llama_cpp` is imported on first load only: an idle node stays small.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import logging
import os
import random
import threading
import time
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cynode.inference.generation import Event, Finished, Grammar, InvalidRequest, Job, Piece, Started
from cynode.inference.prompt import gemma_prompt, template_prompt
from cynode.inference.stops import StopScanner

if TYPE_CHECKING:
    from llama_cpp import Llama, LlamaGrammar

log = logging.getLogger(__name__)

MIN_CTX = 256


class ModelLoadError(Exception):
    def __init__(self, name: str, detail: str) -> None:
        super().__init__(f"model '{name}' failed to load: {detail}")
        self.name = name
        self.detail = detail


@dataclass(frozen=True, slots=True)
class LoadRequest:
    name: str
    path: Callable[[], Path]  # blocking (the packaged model is assembled on first use), so resolved on the thread
    n_ctx: int
    chat_template: str | None = None


@dataclass(frozen=True, slots=True)
class LoadedModel:
    name: str
    path: Path
    n_ctx: int
    loaded_at: float


class LlamaRunner:
    def __init__(self, *, n_threads: int = 0) -> None:
        self.n_threads = n_threads or os.cpu_count() or 1
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama")
        self._llm: Llama | None = None
        self._template: str | None = None
        # Read by the event loop for status reports; written only on the model thread.
        self.loaded: LoadedModel | None = None
        self.loading: str | None = None

    # ------------------------------------------------------------------ event-loop API

    async def load(self, req: LoadRequest) -> int:
        """Load (or keep) the model; returns the nanoseconds spent loading (0 if it was already loaded)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._ensure, req)

    async def unload(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._unload)

    async def close(self) -> None:
        await self.unload()  # queued behind any running generation, so the thread is idle afterwards
        self._executor.shutdown(wait=False)

    async def generate(self, load: LoadRequest, job: Job) -> AsyncGenerator[Event, None]:
        """Started, then Piece per decoded token, then Finished. Closing the iterator stops generation."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Event | BaseException] = asyncio.Queue()
        cancel = threading.Event()

        def emit(item: Event | BaseException) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                cancel.set()

        loop.run_in_executor(self._executor, self._run, load, job, emit, cancel)  # never raises: errors are queued
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if isinstance(item, Finished):
                    return
        finally:
            cancel.set()  # a client that went away frees the model at the next token

    # ------------------------------------------------------------------ model thread

    def _ensure(self, req: LoadRequest) -> int:
        if self._llm is not None and self.loaded and self.loaded.name == req.name and self.loaded.n_ctx == req.n_ctx:
            return 0
        self._unload()
        self.loading = req.name
        t0 = time.perf_counter_ns()
        try:
            from llama_cpp import Llama

            path = req.path()
            self._llm = Llama(
                model_path=str(path), n_ctx=req.n_ctx, n_threads=self.n_threads, n_threads_batch=self.n_threads,
                verbose=False,
            )
        except Exception as e:  # llama.cpp says ValueError("Failed to load model from file: ..."); keep the reason
            log.warning("model load failed", extra={"model": req.name, "error": str(e)})
            raise ModelLoadError(req.name, str(e) or type(e).__name__) from None
        finally:
            self.loading = None
        self._template = req.chat_template
        self.loaded = LoadedModel(req.name, path, req.n_ctx, time.time())
        elapsed = time.perf_counter_ns() - t0
        log.info("model loaded", extra={"model": req.name, "n_ctx": req.n_ctx, "load_ms": elapsed // 1_000_000})
        return elapsed

    def _unload(self) -> None:
        if self._llm is not None:
            self._llm.close()
            self._llm = None
            log.info("model unloaded", extra={"model": self.loaded.name if self.loaded else ""})
        self.loaded = None

    def _run(
        self, load: LoadRequest, job: Job, emit: Callable[[Event | BaseException], None], cancel: threading.Event
    ) -> None:
        try:
            if not cancel.is_set():
                self._generate(load, job, emit, cancel)
        except BaseException as e:  # handed to the awaiting coroutine, which raises it there
            emit(e)

    def _generate(
        self, load: LoadRequest, job: Job, emit: Callable[[Event | BaseException], None], cancel: threading.Event
    ) -> None:
        import llama_cpp

        load_ns = self._ensure(load)
        llm = self._llm
        assert llm is not None
        n_ctx = load.n_ctx
        reserve = job.max_tokens if job.max_tokens >= 0 else min(256, n_ctx // 4)
        prompt = _fit(self._tokens(llm, job), n_ctx, reserve)
        max_tokens = min(job.max_tokens if job.max_tokens >= 0 else n_ctx, n_ctx - len(prompt))
        grammar = _grammar(job.grammar)
        s = job.sampling
        llm.set_seed(s.seed if s.seed is not None else random.randrange(2**31))
        emit(Started(len(prompt), load_ns))

        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")  # a character may span tokens
        stops = StopScanner(job.stop)
        out: list[int] = []
        held: list[str] = []  # text not handed over yet (all of it, when the caller does not stream)
        reason = "length"
        t0 = time.perf_counter_ns()
        t_first = t0
        if max_tokens > 0:
            for token in llm.generate(
                prompt, top_k=s.top_k, top_p=s.top_p, min_p=s.min_p, typical_p=s.typical_p, temp=s.temperature,
                repeat_penalty=s.repeat_penalty, frequency_penalty=s.frequency_penalty,
                presence_penalty=s.presence_penalty, mirostat_mode=s.mirostat, mirostat_tau=s.mirostat_tau,
                mirostat_eta=s.mirostat_eta, grammar=grammar,
            ):
                if not out:
                    t_first = time.perf_counter_ns()
                if cancel.is_set():
                    reason = "cancel"
                    break
                if llama_cpp.llama_vocab_is_eog(llm._model.vocab, token):  # end of turn / end of text
                    reason = "stop"
                    break
                out.append(token)
                text = stops.feed(decoder.decode(llm.detokenize([token])))
                if text:
                    if job.stream:
                        emit(Piece(text))
                    else:
                        held.append(text)
                if stops.stopped:
                    reason = "stop"
                    break
                if len(out) >= max_tokens:
                    break  # stop before the generator evaluates one more token
        held.append(stops.feed(decoder.decode(b"", final=True)) + stops.flush())
        if text := "".join(held):
            emit(Piece(text))
        t_end = time.perf_counter_ns()
        emit(Finished(
            done_reason=reason, prompt_tokens=len(prompt), eval_count=len(out), load_ns=load_ns,
            prompt_eval_ns=t_first - t0, eval_ns=t_end - t_first, context=tuple(prompt) + tuple(out),
        ))

    def _tokens(self, llm: Llama, job: Job) -> list[int]:
        if job.turns is not None:
            if self._template:
                bos = llm.detokenize([llm.token_bos()], special=True).decode("utf-8", "replace")
                eos = llm.detokenize([llm.token_eos()], special=True).decode("utf-8", "replace")
                text = template_prompt(self._template, job.turns, bos_token=bos, eos_token=eos)
                has_bos = bool(bos) and text.startswith(bos)  # most templates write the BOS token themselves
            else:
                text, has_bos = gemma_prompt(job.turns), False
        else:
            text, has_bos = job.raw_prompt or "", False
        continuing = bool(job.context)
        tokens = llm.tokenize(text.encode("utf-8"), add_bos=not (has_bos or continuing), special=True)
        return list(job.context) + tokens


def _fit(prompt: list[int], n_ctx: int, reserve: int) -> list[int]:
    """Keep room to answer: a prompt that leaves less than `reserve` tokens (capped at half the context) loses its
    oldest tokens; the first one, BOS, is kept."""
    room = min(max(reserve, 1), n_ctx // 2)
    if len(prompt) + room <= n_ctx:
        return prompt
    keep = n_ctx - room
    return prompt[:1] + prompt[len(prompt) - keep + 1 :]


def _grammar(spec: Grammar | None) -> LlamaGrammar | None:
    if spec is None:
        return None
    from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

    try:
        if spec.kind == "json":
            return LlamaGrammar.from_string(JSON_GBNF, verbose=False)
        return LlamaGrammar.from_json_schema(json.dumps(spec.schema), verbose=False)
    except Exception as e:  # a schema llama.cpp cannot turn into a grammar is the caller's problem
        raise InvalidRequest(f"unsupported format schema: {e}") from None


def clamp_ctx(n_ctx: int, trained: int) -> int:
    top = trained if trained > 0 else n_ctx
    return max(MIN_CTX, min(n_ctx, top))


__all__: list[Any] = ["LlamaRunner", "LoadRequest", "LoadedModel", "ModelLoadError", "clamp_ctx"]
