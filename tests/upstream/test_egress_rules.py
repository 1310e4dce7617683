"""Which proxy a deployment's calls take: the environment's variables (as httpx reads them),
NO_PROXY matching, the per-deployment override, and refused proxy URLs."""

from __future__ import annotations

import base64
import re

import pytest

from ailb.config import ConfigError, DeploymentConfig, load_settings
from ailb.upstream.egress import bypassed, env_proxy, parse_proxy, resolve, validate_proxy_url

P = "http://proxy.corp:3128"


@pytest.mark.parametrize(
    ("url", "no_proxy", "direct"),
    [
        ("https://api.openai.com/v1", "", False),
        ("https://api.openai.com/v1", "*", True),
        ("https://api.openai.com/v1", "openai.com", True),  # subdomains included
        ("https://api.openai.com/v1", ".openai.com", True),
        ("https://api.openai.com/v1", "*.openai.com", True),
        ("https://openai.com/v1", ".openai.com", True),  # the domain itself too
        ("https://notopenai.com/v1", "openai.com", False),  # a suffix is not a subdomain
        ("https://api.openai.com/v1", "example.com, api.openai.com", True),
        ("https://API.OpenAI.com./v1", "api.openai.com", True),  # case, trailing dot
        ("https://api.openai.com/v1", "api.openai.com:443", True),
        ("https://api.openai.com/v1", "api.openai.com:8443", False),  # another port
        ("http://10.1.2.3:11434", "10.0.0.0/8", True),
        ("http://10.1.2.3:11434", "10.1.2.3", True),
        ("http://10.1.2.3:11434", "10.1.2.3:11434", True),
        ("http://10.1.2.3:11434", "10.1.2.4", False),
        ("http://11.0.0.1", "10.0.0.0/8", False),
        ("http://[::1]:8000", "::1", True),
        ("http://[::1]:8000", "[::1]:8000", True),
        ("http://[::1]:8000", "[::1]:9000", False),
        ("http://localhost:11434", "localhost", True),
        ("http://localhost:11434", "http://localhost", True),  # httpx's scheme:// form
        ("http://ollama:11434", " , ", False),
    ],
)
def test_no_proxy_matching(url: str, no_proxy: str, direct: bool) -> None:
    assert bypassed(url, no_proxy) is direct


@pytest.mark.parametrize(
    ("env", "url", "proxy"),
    [
        ({"HTTPS_PROXY": P}, "https://api.openai.com/v1", P),
        ({"HTTPS_PROXY": P}, "http://ollama:11434", ""),  # https proxy only for https
        ({"HTTP_PROXY": P}, "http://ollama:11434", P),
        ({"HTTP_PROXY": P}, "https://api.openai.com/v1", ""),
        ({"https_proxy": P, "HTTPS_PROXY": "http://other:1"}, "https://a.b", P),  # lowercase wins
        ({"HTTPS_PROXY": P, "no_proxy": "a.b"}, "https://a.b", ""),
        ({"HTTPS_PROXY": P, "NO_PROXY": "*"}, "https://a.b", ""),
    ],
)
def test_environment_proxy(env: dict[str, str], url: str, proxy: str) -> None:
    assert env_proxy(url, env) == proxy


def test_a_deployment_proxy_overrides_the_environment() -> None:
    env = {"HTTPS_PROXY": P, "NO_PROXY": "*"}
    assert resolve("http://mine:8080", "https://a.b", env) == "http://mine:8080"  # NO_PROXY too
    assert resolve("none", "https://a.b", {"HTTPS_PROXY": P}) == ""
    assert resolve("", "https://a.b", {"HTTPS_PROXY": P}) == ""
    assert resolve(None, "https://a.b", {"HTTPS_PROXY": P}) == P


def test_credentials_become_a_basic_proxy_authorization() -> None:
    p = parse_proxy("http://us%40er:p%3Ass@proxy.corp:3128")
    assert (p.host, p.port, p.address) == ("proxy.corp", 3128, "proxy.corp:3128")
    assert p.authorization == "Basic " + base64.b64encode(b"us@er:p:ss").decode()
    assert parse_proxy("http://proxy.corp").port == 80
    assert parse_proxy("http://proxy.corp").authorization is None


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://proxy.corp:3128", "must be an http:// URL"),
        ("socks5://proxy.corp:1080", "must be an http:// URL"),
        ("http://", "has no host"),
        ("http://proxy.corp:3128/path", "host[:port] only"),
        ("http://proxy.corp:99999", "not a valid URL"),
        ("http://proxy.corp:3128\r\nX: y", "control characters"),
    ],
)
def test_unusable_proxy_urls_are_refused(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        validate_proxy_url(url)


def test_settings_resolve_each_deployments_proxy_and_keep_credentials_secret(tmp_path) -> None:
    cfg = tmp_path / "ailb.yaml"
    cfg.write_text(
        "deployments:\n"
        "  - {name: a, provider: openai, base_url: 'https://api.openai.com/v1'}\n"
        "  - {name: b, provider: ollama, base_url: 'http://10.0.0.5:11434'}\n"
        "  - {name: c, provider: openai, base_url: 'https://x.example/v1', proxy: none}\n"
        "  - {name: d, provider: openai, base_url: 'https://y.example/v1',"
        " proxy: 'http://u:deploy-secret-123@p2:8080'}\n"
    )
    s = load_settings(
        {
            "AILB_CONFIG": str(cfg),
            "HTTPS_PROXY": "http://user:env-secret-456@p1:3128",
            "NO_PROXY": "10.0.0.0/8",
        }
    )
    proxies = {d.name: d.proxy for d in s.deployments}
    assert proxies == {
        "a": "http://user:env-secret-456@p1:3128",
        "b": None,
        "c": None,
        "d": "http://u:deploy-secret-123@p2:8080",
    }
    assert {"env-secret-456", "deploy-secret-123"} <= set(s.secrets())
    shown = {d.name: d.redacted()["proxy"] for d in s.deployments}
    assert shown["a"] == "http://p1:3128" and shown["d"] == "http://p2:8080"


@pytest.mark.parametrize("var", ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"])
def test_a_bad_proxy_variable_is_refused_by_name(var: str) -> None:
    with pytest.raises(ConfigError, match=f"^{var}: must be an http:// URL"):
        load_settings({var: "socks5://proxy:1080"})


def test_a_bad_deployment_proxy_is_refused() -> None:
    with pytest.raises(ValueError, match="proxy must be an http:// URL"):
        DeploymentConfig(name="x", provider="openai", proxy="https://p:1")
