"""Reload through the gRPC ModuleService: validated, atomic, and gentle with running requests."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from ailb.config import load_settings
from tests.fakes.server import Reply
from tests.gateway import RunningGateway, env_for
from tests.waiting import wait_for

HI = [{"role": "user", "content": "hi"}]


def deployments(*specs: tuple[str, object, str]) -> str:
    """YAML for deployments given as (name, fake server, 'models, comma-separated')."""
    lines = ["deployments:"]
    for name, server, models in specs:
        lines.append(
            f"  - {{name: {name}, provider: openai, base_url: '{server.url}/v1', "
            f"models: [{models}]}}"
        )
    return "\n".join(lines) + "\n"


def route_names(ctl) -> list[str]:
    return [r.name for r in ctl.routes().routes]


def logged(caplog, event: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == event]


def test_good_reload_changes_routes_and_keeps_unchanged_deployments(
    upstreams, gateway_factory, control, client_for, tmp_path, caplog
):
    caplog.set_level(logging.INFO, logger="ailb.reload")
    a, b = upstreams(2)
    gw = gateway_factory(deployments(("a", a, "m")))
    ctl, client = control(gw), client_for(gw)
    client.chat.completions.create(model="m", messages=HI)
    kept = gw.runtime.router.deployments["a"]
    first = ctl.routes()
    assert route_names(ctl) == ["m"]

    (tmp_path / "ailb.yaml").write_text(deployments(("a", a, "m"), ("b", b, "m2")))
    answer = ctl.reload()
    assert answer.success, answer.message
    assert "added: b" in answer.message
    assert abs(answer.reload_timestamp - time.time()) < 5
    routes = ctl.routes()
    assert [r.name for r in routes.routes] == ["m", "m2"]
    assert routes.version == first.version + 1
    assert client.chat.completions.create(model="m2", messages=HI).choices[0].message.content
    assert len(b.calls("/v1/chat/completions")) == 1
    # "a" did not change: the same deployment, with its connections and figures, carries on.
    assert gw.runtime.router.deployments["a"] is kept
    assert kept.requests == 1
    (event,) = logged(caplog, "config_reloaded")
    assert event.source == "grpc" and event.added == ["b"] and event.kept == ["a"]

    again = ctl.reload()
    assert again.success and "unchanged" in again.message
    assert again.reload_timestamp == answer.reload_timestamp


@pytest.mark.parametrize(
    ("broken", "named"),
    [
        ("deployments:\n  - {name: a, provider: openai, weight: -1}\n", "deployments[0].weight"),
        ("deployments: [\n", "not valid YAML"),
        (
            "deployments:\n  - {name: a, provider: openai, api_key_env: AILB_TEST_UNSET_VAR}\n",
            "AILB_TEST_UNSET_VAR is not set",
        ),
        ("deployments:\n  - {name: a, provider: carrier-pigeon}\n", "deployments[0].provider"),
    ],
)
def test_broken_config_keeps_the_running_one(
    upstreams, gateway_factory, control, client_for, tmp_path, caplog, broken, named
):
    caplog.set_level(logging.INFO, logger="ailb.reload")
    (a,) = upstreams(1)
    gw = gateway_factory(deployments(("a", a, "m")))
    ctl, client = control(gw), client_for(gw)
    before = ctl.routes()
    live = gw.runtime.live

    (tmp_path / "ailb.yaml").write_text(broken)
    answer = ctl.reload()
    assert not answer.success
    assert named in answer.message
    assert "running one is kept" in answer.message
    assert answer.reload_timestamp == int(live.loaded_at)
    assert gw.runtime.live is live
    assert ctl.routes() == before
    assert client.chat.completions.create(model="m", messages=HI).choices[0].message.content
    (event,) = logged(caplog, "config_reload_failed")
    assert named in event.detail
    assert gw.runtime.metrics.reloads == {"success": 0, "failure": 1}  # ailb_config_reloads_total


def test_in_flight_requests_finish_on_the_configuration_they_started_with(
    upstreams, gateway_factory, control, client_for, tmp_path, caplog
):
    caplog.set_level(logging.INFO, logger="ailb.reload")
    old, new = upstreams(2)
    gw = gateway_factory(deployments(("a", old, "m")))
    ctl, client = control(gw), client_for(gw)
    text = "one two three four five six"
    old.script(Reply(text=text, pieces=6, chunk_delay=0.25), Reply(text="slow", delay=1.5))
    results: dict[str, str] = {}

    def stream() -> None:
        chunks = client.chat.completions.create(model="m", messages=HI, stream=True)
        results["stream"] = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    def plain() -> None:
        results["plain"] = (
            client.chat.completions.create(model="m", messages=HI).choices[0].message.content
        )

    threads = [threading.Thread(target=stream), threading.Thread(target=plain)]
    for n, t in enumerate(threads, 1):  # one after the other: each takes its scripted reply
        t.start()
        wait_for(lambda n=n: len(old.calls("/v1/chat/completions")) == n, what="upstream call")
    retiring = gw.runtime.router.deployments["a"]

    # "a" moves to another upstream: a changed deployment replaces the old one.
    (tmp_path / "ailb.yaml").write_text(deployments(("a", new, "m")))
    answer = ctl.reload()
    assert answer.success, answer.message
    assert "changed: a" in answer.message
    assert gw.runtime.router.deployments["a"] is not retiring
    assert retiring.in_flight == 2
    assert not logged(caplog, "deployments_retired")  # its connections are still in use

    for t in threads:
        t.join(20)
    assert results == {"stream": text, "plain": "slow"}
    wait_for(lambda: logged(caplog, "deployments_retired"), what="the old deployment closed")
    assert client.chat.completions.create(model="m", messages=HI).choices[0].message.content
    assert len(new.calls("/v1/chat/completions")) == 1
    assert len(old.calls("/v1/chat/completions")) == 2


def test_weights_survive_a_reload(upstreams, gateway_factory, control, tmp_path):
    a, b, c = upstreams(3)
    gw = gateway_factory(deployments(("a", a, "m"), ("b", b, "m")))
    ctl = control(gw)
    assert ctl.weights("m", a=(0, "blue"), b=100).success

    (tmp_path / "ailb.yaml").write_text(deployments(("a", a, "m"), ("b", b, "m"), ("c", c, "m")))
    assert ctl.reload().success
    assert gw.runtime.router.weights("m") == {"a": 0, "b": 100, "c": 1}
    answer = ctl.weights("m", c=5)
    assert [(w.backend_name, w.weight, w.version) for w in answer.applied_weights] == [
        ("a", 0, "blue"),
        ("b", 100, ""),
        ("c", 5, ""),
    ]

    # A deployment that is gone takes its weight with it; one added again starts afresh.
    (tmp_path / "ailb.yaml").write_text(deployments(("a", a, "m"), ("c", c, "m")))
    assert ctl.reload().success
    assert gw.runtime.router.weights("m") == {"a": 0, "c": 5}


def test_settings_that_need_a_restart_are_named_and_only_forced_reloads_apply_the_rest(
    upstreams, tmp_path, control
):
    a, b = upstreams(2)
    values = env_for(deployments(("a", a, "m")), tmp_path, {"ENABLE_MEMORY": "false"})
    gw = RunningGateway(load_settings(values), lambda: load_settings(values)).start()
    try:
        ctl = control(gw)
        values.update(AILB_MAX_BODY_BYTES="1000", HTTP_PORT="1", ROUTING_STRATEGY="round_robin")
        (tmp_path / "ailb.yaml").write_text(deployments(("a", a, "m"), ("b", b, "m")))
        refused = ctl.reload()
        assert not refused.success
        assert "HTTP_PORT, AILB_MAX_BODY_BYTES" in refused.message
        assert "force" in refused.message
        assert list(gw.runtime.router.deployments) == ["a"]

        forced = ctl.reload(force=True)
        assert forced.success, forced.message
        assert "needs a restart (kept as running): HTTP_PORT, AILB_MAX_BODY_BYTES" in (
            forced.message
        )
        settings = gw.runtime.settings
        assert settings.env.max_body_bytes == 20 * 1024 * 1024
        assert settings.env.routing_strategy.value == "round_robin"
        assert gw.runtime.router.strategy.value == "round_robin"
        assert list(gw.runtime.router.deployments) == ["a", "b"]
    finally:
        gw.stop()
