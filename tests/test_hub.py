"""The shared Hugging Face Hub checks: the offline switch and the reachability probe."""

from __future__ import annotations

import time

from arnq import hub


def test_hub_offline_reads_env_at_call_time(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    assert not hub.hub_offline()
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "true")
    assert hub.hub_offline()


def test_hub_reachable_probe(monkeypatch):
    from huggingface_hub import constants

    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens
    start = time.monotonic()
    assert not hub.behind_proxy() and not hub.hub_reachable(timeout=1.0)
    assert time.monotonic() - start < 2.0
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    assert hub.behind_proxy() and hub.hub_reachable()  # behind a proxy the download decides
