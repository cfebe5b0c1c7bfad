"""evac's planner: the pure core. It never imports libvirt, typer or rich and does no network I/O.

Everything here takes values (an `Inventory`, a drain set) and returns values (a `Plan`, a list of
violations); the executor and the CLI in `executor/` are the only code that touches the world.
"""
