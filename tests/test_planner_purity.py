"""planner/ is the pure core: it must import with libvirt, typer and rich unimportable. So must the pure
halves of the collector (executor/assemble.py, executor/usage.py): they are tested without a daemon."""

import subprocess
import sys
import textwrap

_BLOCK = textwrap.dedent(
    """
    import importlib, pkgutil, sys
    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split('.')[0] in ('libvirt', 'libvirt_qemu', 'typer', 'rich'):
                raise ImportError('blocked: ' + name)
            return None
    sys.meta_path.insert(0, Block())
    """
)


def _imports_blocked(code: str) -> None:
    out = subprocess.run([sys.executable, "-c", _BLOCK + textwrap.dedent(code) + "\nprint('ok')\n"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_planner_imports_without_libvirt_typer_rich() -> None:
    _imports_blocked(
        """
        import planner
        for m in pkgutil.walk_packages(planner.__path__, 'planner.'):
            importlib.import_module(m.name)
        """
    )


def test_collector_pure_half_imports_without_libvirt() -> None:
    _imports_blocked("import executor.assemble, executor.usage")
