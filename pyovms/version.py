"""The installed version of pyovms, and the check that the installed protobuf can run its generated code."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("pyovms")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

PROTOBUF_MAJOR = 7
"""The protobuf major version pyovms's generated code (and grpcio-health-checking's) needs."""


def protobuf_mismatch(installed: str | None = None) -> str | None:
    """Why the installed protobuf (or `installed`) cannot run pyovms, or None. A package installed after pyovms may
    downgrade it: tritonclient 2.42 and later pin protobuf below 7, and protobuf's own error names no culprit."""
    installed = installed or version("protobuf")
    if int(installed.split(".")[0]) >= PROTOBUF_MAJOR:
        return None
    return (
        f"pyovms needs protobuf {PROTOBUF_MAJOR}, but protobuf {installed} is installed: a package installed later "
        "downgraded it (tritonclient 2.42 and later pin protobuf<7). pip install 'pyovms[client]' restores it, with a "
        "tritonclient that runs beside pyovms; later tritonclient releases need an environment of their own"
    )
