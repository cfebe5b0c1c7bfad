"""The real libvirt lab for tests and benchmarks: see harness.py."""
