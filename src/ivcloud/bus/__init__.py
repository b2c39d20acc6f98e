"""Internal event bus: in-process by default; Redis pub/sub for scale-out (later issue)."""
