"""App API Actions, one module per area of spec §2; each exposes ``register(registry)``."""

from __future__ import annotations

from ivcloud.api.appapi.registry import ActionRegistry


def build_registry() -> ActionRegistry:
    registry = ActionRegistry()
    for module in _modules():
        module.register(registry)
    return registry


def _modules() -> list:  # type: ignore[type-arg]
    import importlib
    import pkgutil

    found = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "register"):
            found.append(module)
    return found
