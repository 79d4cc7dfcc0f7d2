"""Import costs and lazy submodules of the ``tcmcodec`` package (checked in fresh interpreters)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import tcmcodec


def _fresh_python(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_importing_the_package_cli_codec_and_bitstream_loads_neither_torch_nor_constriction():
    out = _fresh_python(
        "import sys\n"
        "import tcmcodec, tcmcodec.cli, tcmcodec.codec, tcmcodec.codec.container\n"
        "print(sorted(m for m in ('torch', 'constriction') if m in sys.modules))\n"
    )
    assert out == "[]"


def test_importing_the_package_and_the_cli_loads_no_numpy():
    out = _fresh_python("import sys, tcmcodec, tcmcodec.cli\nprint('numpy' in sys.modules)")
    assert out == "False"


def test_submodules_are_reachable_after_a_plain_import():
    out = _fresh_python(
        "import sys, tcmcodec\n"
        "before = 'tcmcodec.codec' in sys.modules\n"
        "print(before, tcmcodec.codec.Codec.__name__, tcmcodec.codec.container.MAX_DIMENSION, tcmcodec.zoo.__name__)\n"
    )
    assert out == "False Codec 65535 tcmcodec.zoo"


def test_unknown_attributes_are_attribute_errors():
    out = _fresh_python(
        "import tcmcodec\n"
        "try:\n"
        "    tcmcodec.no_such_module\n"
        "except AttributeError as e:\n"
        "    print(e)\n"
    )
    assert out == "module 'tcmcodec' has no attribute 'no_such_module'"


def test_every_public_submodule_is_listed_as_lazy():
    public = {m.name for m in pkgutil.iter_modules(tcmcodec.__path__) if not m.name.startswith("_")}
    assert public and public <= set(dir(tcmcodec))


def test_the_cli_registers_every_subcommand_in_help_order():
    out = _fresh_python("import tcmcodec.cli as cli\nprint(' '.join(cli.COMMANDS))")
    assert out == "compress decompress info models weights demo eval anchors bdrate plot train"
