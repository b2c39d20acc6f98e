"""Use-cases.  Depend on protocol, store and bus; never on HTTP or MQTT."""
