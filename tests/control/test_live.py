"""build_live: what a reload carries over from the running configuration, and what it rebuilds."""

from __future__ import annotations

from ailb.config import load_settings
from ailb.live import build_live
from ailb.providers.base import UpstreamError
from ailb.routing.router import Needs


def settings(tmp_path, yaml: str, **env: str):
    path = tmp_path / "ailb.yaml"
    path.write_text(yaml)
    return load_settings({"AILB_CONFIG": str(path), **env})


BASE = """
deployments:
  - {name: a, provider: openai, base_url: "http://127.0.0.1:9/v1", api_key_env: A_KEY, models: [m]}
  - {name: b, provider: openai, base_url: "http://127.0.0.1:9/v1", models: [m]}
  - {name: c, provider: mock, models: [m]}
"""


def test_unchanged_deployments_are_carried_over_changed_ones_rebuilt(tmp_path):
    running = build_live(settings(tmp_path, BASE, A_KEY="key-1"))
    a, b, c = (running.deployments[n] for n in "abc")
    changed = BASE.replace("models: [m]}\n  - {name: c", "models: [m], weight: 5}\n  - {name: c")
    new = build_live(settings(tmp_path, changed, A_KEY="key-2"), previous=running)
    assert new.deployments["c"] is c  # same configuration, same credential (none)
    assert new.deployments["b"] is not b  # its weight changed
    assert new.deployments["a"] is not a  # its credential changed
    assert new.deployments["a"].provider is not a.provider


def test_run_time_weights_affinity_and_counts_carry_over(tmp_path):
    running = build_live(settings(tmp_path, BASE, A_KEY="k"))
    running.router.set_weights("m", {"a": 0, "b": 7})
    first = running.router.plan("m", Needs(), session_id="s1").first.deployment.name
    retuned = BASE + "models: {m: {strategy: round_robin}}\n"
    new = build_live(settings(tmp_path, retuned, A_KEY="k"), previous=running)
    assert new.router.weights("m") == {"a": 0, "b": 7, "c": 1}
    again = new.router.plan("m", Needs(), session_id="s1")
    assert (again.first.deployment.name, again.reason) == (first, "session_affinity")
    assert new.router.selections["m"][first] == 2

    without_b = BASE.replace(
        '  - {name: b, provider: openai, base_url: "http://127.0.0.1:9/v1", models: [m]}\n', ""
    )
    newer = build_live(settings(tmp_path, without_b, A_KEY="k"), previous=new)
    assert newer.router.weights("m") == {"a": 0, "c": 1}  # b is gone, and its weight with it


def test_health_changes_reach_the_router_in_service(tmp_path):
    running = build_live(settings(tmp_path, BASE, A_KEY="k"))
    c = running.deployments["c"]
    new = build_live(
        settings(tmp_path, BASE + "models: {m: {strategy: failover}}\n", A_KEY="k"),
        previous=running,
    )
    assert new.deployments["c"] is c
    running.router.attach()  # the reloader does this until the swap
    before = running.router._epoch.n
    for _ in range(3):
        c.record_failure(UpstreamError("connect", "refused"))
    assert running.router._epoch.n > before  # the running router rebuilds its pools
    new.router.attach()  # the swap
    before = new.router._epoch.n
    c.record_probe(False, "down")
    assert new.router._epoch.n > before
