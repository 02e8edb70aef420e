"""Logging, configured once at start-up."""

from __future__ import annotations

import logging


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # aioimaplib's DEBUG log prints raw protocol data (passwords, letters): never below INFO
    logging.getLogger("aioimaplib").setLevel(max(logging.INFO, logging.getLogger().level))
    logging.getLogger("aiosmtplib").setLevel(max(logging.INFO, logging.getLogger().level))
    logging.getLogger("aiogram.event").setLevel(logging.WARNING)
