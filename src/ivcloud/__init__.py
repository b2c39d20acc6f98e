"""ivcloud: a self-hosted cloud for consumer smart cameras and door locks.

Speaks the device and app wire protocols of Tencent IoT Video / IoT Explorer so that devices
and apps built on Tencent's public SDKs can point at it.  See ``docs/architecture.md``.
"""

__version__ = "0.1.0"
