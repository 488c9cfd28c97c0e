"""Static model-file scanner: bytes in, findings out; never imports or unpickles.

from donjon.scan import scan_path
report = scan_path("models/", policy=ScanPolicy().with_extra(allow=["mypkg.Net"]))
"""

from donjon.scan.engine import scan_file, scan_path
from donjon.scan.policy import DEFAULT_POLICY, ScanPolicy, Verdict
from donjon.scan.report import FileReport, ScanReport

__all__ = [
    "DEFAULT_POLICY",
    "FileReport",
    "ScanPolicy",
    "ScanReport",
    "Verdict",
    "scan_file",
    "scan_path",
]
