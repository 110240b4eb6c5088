"""Native code: every ``collectors/_native/<name>.c`` is the extension ``collectors._native_<name>`` (the
decoders), every ``netobs/_native/<name>.c`` the extension ``netobs._native_<name>`` (the counting model),
every ``pipeline/_native/<name>.c`` the extension ``pipeline._native_<name>`` (the enrichment's gathers).

The project metadata is in pyproject.toml; this file only lists the C extensions, which
setuptools builds in place for the editable install (`make setup`). Each extension is
optional at run time: the pure-Python decoders stay the reference and the fallback
(``NETOBS_NATIVE=0`` forces them), and the tests compare the two on every capture.
"""

from glob import glob
from pathlib import Path

from setuptools import Extension, setup

HEADERS = sorted(glob("collectors/_native/*.h"))
EXTENSIONS = [
    Extension(
        f"{Path(source).parent.parent.name}._native_{Path(source).stem}",
        sources=[source],
        depends=HEADERS,
        extra_compile_args=[
            "-O2",
            "-std=c11",
            "-Wall",
            "-Wextra",
            "-Wno-unused-parameter",
            "-fno-strict-aliasing",
        ],
    )
    for source in sorted(
        glob("collectors/_native/*.c") + glob("netobs/_native/*.c") + glob("pipeline/_native/*.c")
    )
]

setup(ext_modules=EXTENSIONS)
