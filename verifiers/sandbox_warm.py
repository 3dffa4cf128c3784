"""Imported by VerifierPool's forkserver: finds the sandbox tier (and the sandbox root's file list)
once there, so every worker forked from it starts with them instead of paying for the probe (an ldd
scan and a trial run, a fraction of a second) under its first code sample's deadline."""

from verifiers import sandbox

try:
    sandbox.isolation()
except Exception:  # noqa: BLE001 - a worker probes again on first use and reports it there
    pass
