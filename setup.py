"""Build script: metadata lives in setup.cfg; this file only adds what setup.cfg cannot say.

- the optional C chunker (gitext/storage/_cdc.c): a failed compile is not fatal, gitext.storage.chunker falls
  back to its pure-Python twin (same boundaries, much slower) and `git mlx env` says so;
- the hook shims from the top-level hooks/ folder, copied into the package so an installed
  git-mlx can write them into repositories.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

HERE = Path(__file__).parent


class OptionalBuildExt(build_ext):
    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - any compiler failure means "use the fallback"
            print(f"warning: C chunker not built ({exc}); using the pure-Python one", file=sys.stderr)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            print(f"warning: {ext.name} not built ({exc}); using the pure-Python one", file=sys.stderr)


class BuildPyWithHooks(build_py):
    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "gitext" / "hooks"
        target.mkdir(parents=True, exist_ok=True)
        for shim in (HERE / "hooks").iterdir():
            if shim.is_file():
                shutil.copy2(shim, target / shim.name)


setup(
    ext_modules=[Extension("gitext.storage._cdc", ["gitext/storage/_cdc.c"], extra_compile_args=["-O3"])],
    cmdclass={"build_ext": OptionalBuildExt, "build_py": BuildPyWithHooks},
)
