"""Thin stage commands: parse arguments, load params, call the library, write outputs."""
