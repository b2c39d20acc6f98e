"""Sans-IO protocol core: pure functions and state machines, no sockets, no database, no clock."""
