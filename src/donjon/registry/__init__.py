"""The vault: datasets and models in immutable, content-addressed versions.

Every call is authorised per dataset and per model (deny by default) and
recorded as a security event; models enter at ``dev`` and move through
``staging`` and ``prod`` only past their admission gates; nothing is
overwritten and deletion is an audited tombstone.
"""

from donjon.registry.attachments import (
    Attachment,
    AttachmentInspector,
    AttachmentKind,
    parse_kind,
)
from donjon.registry.errors import GateFailed, Gone, Quarantined, TooLarge
from donjon.registry.gates import RequireAdmittedLineage, RequireCleanScan
from donjon.registry.model import GateResult, Stage, Status, Version, VersionRef
from donjon.registry.names import (
    MAX_VERSION,
    NAME_PATTERN,
    PREFIX_PATTERN,
    VERSION_PATTERN,
    Kind,
    check_name,
    check_version,
    resource,
)
from donjon.registry.ports import (
    BlobReader,
    GateContext,
    PromotionGate,
    RegistryStore,
    ScanGate,
    ScanVerdict,
)
from donjon.registry.service import Registry

__all__ = [
    "MAX_VERSION",
    "NAME_PATTERN",
    "PREFIX_PATTERN",
    "VERSION_PATTERN",
    "Attachment",
    "AttachmentInspector",
    "AttachmentKind",
    "BlobReader",
    "GateContext",
    "GateFailed",
    "GateResult",
    "Gone",
    "Kind",
    "PromotionGate",
    "Quarantined",
    "Registry",
    "RegistryStore",
    "RequireAdmittedLineage",
    "RequireCleanScan",
    "ScanGate",
    "ScanVerdict",
    "Stage",
    "Status",
    "TooLarge",
    "Version",
    "VersionRef",
    "check_name",
    "check_version",
    "parse_kind",
    "resource",
]
