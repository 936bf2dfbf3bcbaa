"""PM model selection (orchestrator.md §8.3): deterministic rules, and the service's warmup/failure handling."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cynode.controlplane.pm_model import (
    Candidate,
    PmModelService,
    Selection,
    SelectionFailed,
    candidate_from_snapshot,
    select,
)

AUTO = {"execution_mode": "auto", "mode": "auto_sliding_scale", "prefer_orchestrator_host": True, "pin": None}


def test_no_candidates_fails_or_goes_external() -> None:
    with pytest.raises(SelectionFailed, match="no dispatchable"):
        select(AUTO, [])
    assert select(AUTO, [], external_model="gpt-x") == Selection("external", "gpt-x", None,
                                                                  ("auto_external_fallback",))
    with pytest.raises(SelectionFailed, match="force_local"):
        select({**AUTO, "execution_mode": "force_local"}, [], external_model="gpt-x")
    with pytest.raises(SelectionFailed, match="credential"):
        select({**AUTO, "execution_mode": "force_external"}, [Candidate("a")])
    assert select({**AUTO, "execution_mode": "force_external"}, [Candidate("a")], external_model="m").model_ref == "m"


def test_node_choice_prefers_the_orchestrator_host_then_vram_then_slug() -> None:
    nodes = [Candidate("b", vram_mb=8000), Candidate("c", labels=("orchestrator_host",)), Candidate("a", vram_mb=8000)]
    assert select(AUTO, nodes).local_node_slug == "c"
    assert select({**AUTO, "prefer_orchestrator_host": False}, nodes).local_node_slug == "a"


def test_model_choice_walks_the_vram_tier() -> None:
    big = Candidate("n", vram_mb=24000, available=("qwen2.5:14b", "other:1b"))
    sel = select(AUTO, [big])
    assert sel.model_ref == "qwen2.5:14b" and "vram_tier_24000" in sel.selection_reason
    assert "already_loaded" in sel.selection_reason
    builtin = Candidate("n", available=("gemma3:270m",))
    assert select(AUTO, [builtin]).model_ref == "gemma3:270m"  # what the node has, before asking for a pull
    empty = Candidate("n")
    sel = select(AUTO, [empty])
    assert sel.model_ref == "qwen3.5:0.8b" and "load_requested" in sel.selection_reason


def test_pins_fixed_models_and_failures() -> None:
    node = Candidate("n", available=("gemma3:270m",))
    assert select({**AUTO, "pin": "my:model"}, [node]).model_ref == "my:model"
    failed = frozenset({("n", "my:model")})
    sel = select({**AUTO, "pin": "my:model"}, [node], failed=failed)
    assert sel.model_ref == "gemma3:270m" and "candidate_failed:my:model" in sel.selection_reason
    with pytest.raises(SelectionFailed, match="requires"):
        select({**AUTO, "mode": "fixed_model"}, [node])
    with pytest.raises(SelectionFailed, match="failed to load"):
        select({**AUTO, "mode": "fixed_model", "pin": "p"}, [node], failed=frozenset({("n", "p")}))
    assert select({**AUTO, "mode": "fixed_model", "pin": "p"}, [node]).selection_reason[-1] == "fixed_model"
    everything_failed = Candidate("n", failed=("qwen3.5:0.8b",))
    with pytest.raises(SelectionFailed, match="every candidate failed"):
        select(AUTO, [everything_failed])
    assert select(AUTO, [everything_failed], external_model="ext").execution_mode == "external"


slugs = st.text(alphabet="abcdef", min_size=1, max_size=3)
models = st.sampled_from(["qwen3.5:0.8b", "qwen3.5:9b", "gemma3:270m", "x:1"])
candidates = st.lists(st.builds(Candidate, slugs, st.tuples(), st.sampled_from([0, 8000, 16000, 24000]),
                                st.lists(models, max_size=3).map(tuple)), min_size=1, max_size=4,
                      unique_by=lambda c: c.node_slug)


@given(candidates)
def test_selection_is_deterministic_and_order_independent(nodes: list[Candidate]) -> None:
    first = select(AUTO, nodes)
    assert select(AUTO, list(reversed(nodes))) == first
    assert first.local_node_slug in {n.node_slug for n in nodes}


def test_candidate_from_a_capability_snapshot() -> None:
    snap = {"node": {"labels": ["orchestrator_host"]}, "gpu": {"devices": [{"vram_mb": 4000}, {"vram_mb": 4000}]},
            "inference": {"available_models": ["a"], "models": [{"name": "b", "status": "available"},
                                                                {"name": "c", "status": "loading"},
                                                                {"name": "d", "status": "failed"}]}}
    c = candidate_from_snapshot("n", snap)
    assert c == Candidate("n", ("orchestrator_host",), 8000, ("a", "b"), ("c",), ("d",))


async def test_gates_report_selection_and_warmup() -> None:
    svc = PmModelService(None, 180, on_selection_change=lambda: None)  # type: ignore[arg-type]
    gate = await svc.selection_gate()
    assert not gate.ok and gate.reason_code == "pm_model_selection_failed"
    svc.state.selection = Selection("local", "m", "n", ())
    assert (await svc.selection_gate()).ok
    warm = await svc.warm_gate()
    assert not warm.ok and warm.reason_code == "pm_model_loading" and "m" in warm.message
    svc.state.warm = True
    assert (await svc.warm_gate()).ok
    assert svc.selected_model_for("n") == "m" and svc.selected_model_for("other") is None


async def test_refresh_reads_settings_pushes_the_model_and_reselects_after_a_failure(tmp_path, db_url, database):
    from cynode.config import load_settings
    from cynode.contracts.node import ConfigAck
    from cynode.controlplane.nodes import NodeRegistry
    from tests.support.nodes import capability

    s = load_settings(None, {"CYNODE_DATA_DIR": str(tmp_path), "CYNODE_DATABASE_URL": db_url})
    changes: list[Selection | None] = []

    async def changed() -> None:
        changes.append(svc.state.selection)

    svc = PmModelService(database, 180, on_selection_change=changed)
    registry = NodeRegistry(s, database, b"k" * 40, b"j" * 40, selected_model=svc.selected_model_for)

    async def report(models: list[dict]) -> str:
        node, _ = await registry.register(capability("gpu-node", models=models))
        cfg = await registry.get_config(node.node_id)
        await registry.ack(node.node_id, "gpu-node", ConfigAck(version=1, node_slug="gpu-node",
                                                               config_version=cfg.config_version,
                                                               ack_at="2026-11-25T00:00:00Z", status="applied"))
        return node.node_id

    node_id = await report([{"name": "gemma3:270m", "status": "available"}])
    async with database.connection() as conn:
        await conn.execute("INSERT INTO system_settings (key, value, value_type, updated_by) VALUES "
                           "('agents.project_manager.model.local_default_ollama_model', '\"pinned:1b\"', 'string', "
                           "'test')")
    await svc.refresh()
    assert svc.state.selection is not None and svc.state.selection.model_ref == "pinned:1b"
    assert changes and not svc.state.warm  # pinned model is not available on the node yet
    await registry.refresh_all()
    backend = (await registry.get_config(node_id)).inference_backend
    assert backend is not None and backend.selected_model == "pinned:1b"  # the node is asked to load it

    await report([{"name": "gemma3:270m", "status": "available"}, {"name": "pinned:1b", "status": "failed"}])
    await svc.refresh()  # the node says the load failed: remembered, and the next pass chooses again
    await svc.refresh()
    assert svc.state.selection is not None and svc.state.selection.model_ref == "gemma3:270m"
    assert svc.state.warm
