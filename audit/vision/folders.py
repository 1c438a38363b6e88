"""Publishing a finished model folder: built in a private temp folder beside its destination, given the
permissions a plain mkdir would have, then renamed into place in one step."""
from __future__ import annotations

import os
import shutil
from pathlib import Path


def publish(tmp: Path, final: Path) -> Path:
    """Rename tmp to final. An empty final folder is replaced; if another process published a non-empty
    final first, its copy is kept and ours dropped (same content key => same content)."""
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)
    for p in tmp.iterdir():
        p.chmod((0o777 if p.is_dir() else 0o666) & ~umask)
    if final.is_dir() and not any(final.iterdir()):
        final.rmdir()
    if final.exists():
        shutil.rmtree(tmp)
    else:
        os.replace(tmp, final)
    return final
