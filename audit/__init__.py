"""transfer-audit: audit a transfer-learned classifier next to its base and a no-pretraining control."""
from .errors import AuditError, ExitCode

__all__ = ["AuditError", "ExitCode", "__version__"]
__version__ = "0.1.0"
