"""evac's shell: everything that touches libvirt, files of the user, the terminal and the clock.

`executor.hypervisor` is the one interface to libvirt (a real implementation and a simulated one);
the collector, the migration runner, the journal and the CLI live here. The pure planning core
is `planner`.
"""
