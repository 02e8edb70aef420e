"""What the use cases need from the outside world, built once per process."""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from mail.discovery import DiscoveryEnv
from mail.netguard import HostGuard
from storage.crypto import SecretBox


@dataclass(frozen=True, slots=True)
class MailDeps:
    ssl_context: ssl.SSLContext
    guard: HostGuard
    discovery_env: DiscoveryEnv
    secrets: SecretBox
    timeout: float = 15.0
    import_limit: int = 50
