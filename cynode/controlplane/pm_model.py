"""Project Manager model selection, warmup and monitoring (orchestrator.md §8.3).

Deterministic: the same candidates, settings and failures give the same choice; ties go to the smallest slug.
One addition to the spec's tier walk (local-first, no surprise downloads): when no tier candidate is already
available on the chosen node, a model that IS available there (e.g. the built-in model) is used before asking the
node to pull a tier candidate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from cynode.controlplane import queries as q
from cynode.db.pool import Database, log_failure
from cynode.http.health import PASS, GateResult

log = logging.getLogger("cynode.controlplane.pm_model")

PREFIX = "agents.project_manager.model."
KEYS = {
    "execution_mode": (PREFIX + "selection.execution_mode", "auto"),
    "mode": (PREFIX + "selection.mode", "auto_sliding_scale"),
    "prefer_orchestrator_host": (PREFIX + "selection.prefer_orchestrator_host", True),
    "pin": (PREFIX + "local_default_ollama_model", None),
    "warmup_timeout_s": (PREFIX + "warmup_timeout_s", 1800),
}
TIERS: list[tuple[int, list[str]]] = [
    (24000, ["qwen3.5:35b", "qwen2.5:32b", "qwen2.5:14b", "qwen3.5:9b", "qwen3.5:0.8b"]),
    (16000, ["qwen3.5:9b", "qwen2.5:14b", "qwen3.5:0.8b"]),
    (8000, ["qwen3.5:9b", "qwen3.5:0.8b"]),
    (0, ["qwen3.5:0.8b"]),
]
DEFAULT_MODEL = "qwen3.5:0.8b"


@dataclass(frozen=True)
class Candidate:
    node_slug: str
    labels: tuple[str, ...] = ()
    vram_mb: int = 0
    available: tuple[str, ...] = ()  # model names with status available
    loading: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()


@dataclass(frozen=True)
class Selection:
    execution_mode: str  # local | external
    model_ref: str
    local_node_slug: str | None = None
    selection_reason: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"execution_mode": self.execution_mode, "model_ref": self.model_ref,
                               "selection_reason": list(self.selection_reason)}
        if self.local_node_slug:
            out["local_node_slug"] = self.local_node_slug
        return out


class SelectionFailed(Exception):
    pass


def candidate_from_snapshot(slug: str, snapshot: dict[str, Any]) -> Candidate:
    inf = snapshot.get("inference") or {}
    models = inf.get("models") or []
    available = set(inf.get("available_models") or []) | {m["name"] for m in models if m.get("status") == "available"}
    devices = (snapshot.get("gpu") or {}).get("devices") or []
    return Candidate(
        node_slug=slug, labels=tuple((snapshot.get("node") or {}).get("labels") or []),
        vram_mb=sum(int(d.get("vram_mb") or 0) for d in devices), available=tuple(sorted(available)),
        loading=tuple(sorted(m["name"] for m in models if m.get("status") in ("loading", "pulling"))),
        failed=tuple(sorted(m["name"] for m in models if m.get("status") == "failed")),
    )


def select(settings: dict[str, Any], candidates: list[Candidate], *, external_model: str | None = None,
           failed: frozenset[tuple[str, str]] = frozenset()) -> Selection:
    """orchestrator.md §8.3 steps 1-6. `external_model` is the routing preference's model when a path exists."""
    mode = settings["execution_mode"]
    reasons: list[str] = []
    if mode == "force_external":
        if external_model:
            return Selection("external", external_model, None, ("force_external",))
        raise SelectionFailed("force_external requires an external provider credential")
    if not candidates:
        if mode == "auto" and external_model:
            return Selection("external", external_model, None, ("auto_external_fallback",))
        raise SelectionFailed("no dispatchable inference-capable node" +
                              (" (force_local)" if mode == "force_local" else ""))
    reasons.append("force_local" if mode == "force_local" else "auto_local")

    hosts = sorted((c for c in candidates if "orchestrator_host" in c.labels), key=lambda c: c.node_slug)
    if settings["prefer_orchestrator_host"] and hosts:
        node = hosts[0]
        reasons.append("prefer_orchestrator_host")
    else:
        node = min(candidates, key=lambda c: (-c.vram_mb, c.node_slug))
        reasons.append("max_vram")

    failed_here = {m for slug, m in failed if slug == node.node_slug} | set(node.failed)
    pin = settings.get("pin")
    if settings["mode"] == "fixed_model":
        if not pin:
            raise SelectionFailed("fixed_model requires agents.project_manager.model.local_default_ollama_model")
        if pin in failed_here:
            raise SelectionFailed(f"the pinned model {pin} failed to load on {node.node_slug}")
        return Selection("local", pin, node.node_slug, (*reasons, "fixed_model"))
    if pin:
        if pin not in failed_here:
            return Selection("local", pin, node.node_slug, (*reasons, "pinned_model"))
        reasons.append(f"candidate_failed:{pin}")

    tier, names = next((t, n) for t, n in TIERS if node.vram_mb >= t)
    reasons.append(f"vram_tier_{tier}")
    for name in names:
        if name in node.available and name not in failed_here:
            return Selection("local", name, node.node_slug, (*reasons, "already_loaded"))
    for name in node.available:  # local-first addition: a model the node already has
        if name not in failed_here:
            return Selection("local", name, node.node_slug, (*reasons, "already_loaded"))
    for name in names:
        if name not in failed_here:
            return Selection("local", name, node.node_slug, (*reasons, "load_requested"))
        reasons.append(f"candidate_failed:{name}")
    if external_model and mode == "auto":
        return Selection("external", external_model, None, ("auto_external_fallback",))
    raise SelectionFailed(f"no usable model on {node.node_slug}: every candidate failed to load")


@dataclass
class PmModelState:
    selection: Selection | None = None
    error: str | None = None
    warm: bool = False
    loading_since: float | None = None
    failed: set[tuple[str, str]] = field(default_factory=set)
    inference_nodes: int = 0  # dispatchable inference-capable nodes at the last pass


class PmModelService:
    """Re-selects on every pass (cheap: one query) and pushes the choice into the chosen node's config."""

    def __init__(self, db: Database, stale_s: float, *, on_selection_change: Callable[[], Awaitable[None]],
                 interval_s: float = 2.0) -> None:
        self.db = db
        self.stale_s = stale_s
        self.on_selection_change = on_selection_change
        self.interval_s = interval_s
        self.state = PmModelState()
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def selected_model_for(self, node_slug: str) -> str | None:
        sel = self.state.selection
        return sel.model_ref if sel and sel.local_node_slug == node_slug else None

    async def _settings(self) -> dict[str, Any]:
        out = {name: default for name, (_key, default) in KEYS.items()}
        async with self.db.connection() as conn:
            rows = await (await conn.execute("SELECT key, value FROM system_settings WHERE key = ANY(%s)",
                                             ([k for k, _ in KEYS.values()],))).fetchall()
        by_key = {r["key"]: r["value"] for r in rows}
        for name, (key, _default) in KEYS.items():
            if key in by_key and by_key[key] is not None:
                out[name] = by_key[key]
        return out

    async def refresh(self) -> None:
        settings = await self._settings()
        async with self.db.connection() as conn:
            rows = await (await conn.execute(q.PM_CANDIDATE_NODES, {"stale_s": self.stale_s})).fetchall()
        candidates = [candidate_from_snapshot(r["node_slug"], r["capability_snapshot"] or {})
                      for r in rows if r["inference_ok"]]
        st = self.state
        st.inference_nodes = len(candidates)
        previous = st.selection
        try:
            sel = select(settings, candidates, failed=frozenset(st.failed))
            st.error = None
        except SelectionFailed as e:
            sel, st.error = None, str(e)
        if sel != previous:
            st.selection, st.warm, st.loading_since = sel, False, None
            log.info("PM model selection", extra={"selection": sel.as_dict() if sel else None, "error": st.error})
            await self.on_selection_change()
        if sel is None or sel.execution_mode == "external":
            st.warm = sel is not None
            return
        node = next((c for c in candidates if c.node_slug == sel.local_node_slug), None)
        if node is not None and sel.model_ref in node.failed:
            st.failed.add((node.node_slug, sel.model_ref))  # model_load_failed: choose again next pass
            self._wake.set()
            return
        st.warm = node is not None and sel.model_ref in node.available
        if st.warm:
            st.loading_since = None
        else:
            st.loading_since = st.loading_since or time.monotonic()
            if time.monotonic() - st.loading_since > float(settings["warmup_timeout_s"]):
                log.warning("PM model warmup timed out", extra={"model": sel.model_ref})
                st.failed.add((sel.local_node_slug or "", sel.model_ref))
                self._wake.set()

    # -- readiness gates 3 and 4 -----------------------------------------------------------------------------------

    async def selection_gate(self) -> GateResult:
        if self.state.selection is None:
            return GateResult(False, "pm_model_selection_failed",
                              f"PM model selection failed: {self.state.error or 'not run yet'}")
        return PASS

    async def warm_gate(self) -> GateResult:
        sel = self.state.selection
        if sel is not None and not self.state.warm:
            return GateResult(False, "pm_model_loading",
                              f"the PM model {sel.model_ref} is loading on {sel.local_node_slug}")
        return PASS

    # -- loop -------------------------------------------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="pm-model")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log_failure(log, "PM model selection pass failed", e)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval_s)
