"""A pipeline module whose top level fails, as one with a bad dependency would."""

raise RuntimeError("cannot reach the licence server")
