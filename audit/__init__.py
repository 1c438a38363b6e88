"""transfer-audit: audit a transfer-learned classifier next to its base and a no-pretraining control.

    import transfer_audit as ta
    result = ta.run("audit.yaml")            # or a dict spec, with data={"train": df, ...}
    result.verdict, result.measurements, result.report_path

Importing the package is cheap and changes nothing in the process (no environment variables, no threads):
heavy libraries load when a run starts.
"""
from .errors import AuditError, ExitCode

__all__ = ["AuditError", "ExitCode", "__version__", "run"]
__version__ = "0.1.0"


def run(spec, *, data=None, models=None, policy=None, out=None, device="auto", allow_pickle=False):
    """Run one audit and return an AuditResult (.verdict, .exit_code, .measurements, .run_dir, .report_path).
    See transfer_audit.api.run for the arguments."""
    from .api import run as _run

    return _run(spec, data=data, models=models, policy=policy, out=out, device=device, allow_pickle=allow_pickle)
