"""planner/ is the pure core: it must import with libvirt, typer and rich unimportable."""

import subprocess
import sys
import textwrap


def test_planner_imports_without_libvirt_typer_rich() -> None:
    code = textwrap.dedent(
        """
        import importlib, pkgutil, sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split('.')[0] in ('libvirt', 'libvirt_qemu', 'typer', 'rich'):
                    raise ImportError('blocked: ' + name)
                return None
        sys.meta_path.insert(0, Block())
        import planner
        for m in pkgutil.walk_packages(planner.__path__, 'planner.'):
            importlib.import_module(m.name)
        print('ok')
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
