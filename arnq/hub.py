"""Hugging Face Hub access shared by model weights and datasets: the offline switch and a reachability probe."""

from __future__ import annotations

import os
import socket
import threading
from urllib.parse import urlparse

HUB_PROBE_TIMEOUT_S = 3.0
UNREACHABLE = f"the Hugging Face Hub is unreachable (no connection within {HUB_PROBE_TIMEOUT_S:.0f} s)"
_TRUE = {"1", "true", "yes", "on"}
_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


def hub_offline() -> bool:
    """Whether the Hugging Face hub is switched off by HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE (read now)."""
    return any(
        os.environ.get(k, "").strip().lower() in _TRUE for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def behind_proxy() -> bool:
    """Whether an HTTP(S) proxy is configured (a direct TCP probe would then say nothing)."""
    return any(os.environ.get(k) for k in _PROXY_VARS)


def hub_reachable(timeout: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the HF endpoint opens within `timeout` s (True behind a proxy)."""
    if behind_proxy():
        return True  # let the download decide
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    result: list[bool] = []

    def probe() -> None:  # in a thread so that a hanging DNS lookup is bounded too
        try:
            with socket.create_connection((url.hostname or "huggingface.co", port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return bool(result and result[0])
