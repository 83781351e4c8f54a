"""The matcher runtime: the bridge between committed order commands and the pure engine."""
