"""Triggers: each is an async source of "fire now" events the runtime serves."""

from dataflow.triggers.base import Trigger, TriggerContext, TriggerSpec
from dataflow.triggers.cronjob import cronjob
from dataflow.triggers.mongo_change_listener import mongodb_change_stream
from dataflow.triggers.startup import startup

__all__ = [
    "Trigger",
    "TriggerContext",
    "TriggerSpec",
    "cronjob",
    "mongodb_change_stream",
    "startup",
]
