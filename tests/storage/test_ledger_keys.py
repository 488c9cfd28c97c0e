"""The ledger's signing key across replicas: one identity, registered, never silently forked."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from donjon.audit import Ledger
from donjon.cli.main import main
from donjon.errors import ConfigError, DonjonError
from donjon.storage.ledger import SqlLedgerStore
from donjon.storage.ledger_keys import LedgerKey, key_id_of
from donjon.storage.sql import Database, open_database
from tests.audit.helpers import event


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = open_database(database_url)
    yield db
    db.dispose()


def replica(db: Database, home: Path, **options: object) -> Ledger:
    """A replica's ledger as ``build_ledger`` wires it: its own home, the shared database."""
    store = SqlLedgerStore(db)
    key = LedgerKey(store, default_file=home / "keys" / "ledger.key.pem", **options)  # type: ignore[arg-type]
    return Ledger(store, keys=key, key_id=None, checkpoint_every=5)


def pem_of(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def test_the_key_id_is_the_hash_of_the_public_key(database: Database, tmp_path: Path) -> None:
    first = replica(database, tmp_path / "a")
    first.append_many(event("a", i) for i in range(5))
    public = (tmp_path / "a" / "keys" / "ledger.pub.pem").read_bytes()
    der = serialization.load_pem_public_key(public).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert first.key_id == key_id_of(public) == hashlib.sha256(der).hexdigest()
    assert SqlLedgerStore(database).public_keys() == {first.key_id: public}
    assert (tmp_path / "a" / "keys" / "ledger.key.pem").stat().st_mode & 0o777 == 0o600
    verified = Ledger(SqlLedgerStore(database)).verify()  # no private key needed
    assert (verified.ok, verified.checkpoints) == (True, 1)


def test_a_replica_never_creates_its_own_key_when_the_database_names_one(
    database: Database, tmp_path: Path
) -> None:
    replica(database, tmp_path / "a").start_anchoring()
    second = replica(database, tmp_path / "b")
    with pytest.raises(ConfigError, match=r"registers ledger key.*this process has no private"):
        second.start_anchoring()
    assert not (tmp_path / "b" / "keys").exists(), "no key was created"
    # its appends are kept; the checkpoint it cannot sign is logged, not forged
    second.append_many(event("b", i) for i in range(5))
    assert Ledger(SqlLedgerStore(database)).verify().ok


def test_a_replica_with_another_key_file_is_refused(database: Database, tmp_path: Path) -> None:
    replica(database, tmp_path / "a").start_anchoring()
    own = tmp_path / "b.pem"
    own.write_text(pem_of(ec.generate_private_key(ec.SECP256R1())))
    own.chmod(0o600)
    with pytest.raises(ConfigError, match="is not the one the database registers"):
        replica(database, tmp_path / "b", key_file=own).start_anchoring()
    assert len(SqlLedgerStore(database).public_keys()) == 1


def test_replicas_sharing_the_key_through_the_environment_verify_as_one(
    database: Database, tmp_path: Path
) -> None:
    first = replica(database, tmp_path / "a")
    first.append_many(event("a", i) for i in range(5))
    shared = (tmp_path / "a" / "keys" / "ledger.key.pem").read_text()
    second = replica(database, tmp_path / "b", environ={"DONJON_LEDGER_KEY": shared})
    second.append_many(event("b", i) for i in range(5))
    assert second.key_id == first.key_id
    result = Ledger(SqlLedgerStore(database)).verify()
    assert (result.ok, result.entries, result.checkpoints) == (True, 10, 2)
    assert not (tmp_path / "b" / "keys").exists()


def test_replicas_starting_at_once_on_an_empty_database_register_one_key(
    database: Database, tmp_path: Path
) -> None:
    replicas = [replica(database, tmp_path / f"r{i}") for i in range(4)]
    barrier = threading.Barrier(len(replicas))
    outcomes: list[str] = []

    def start(ledger: Ledger) -> None:
        barrier.wait()
        try:
            outcomes.append(ledger.start_anchoring())
        except DonjonError as e:
            outcomes.append(f"refused: {e}")

    threads = [threading.Thread(target=start, args=(r,)) for r in replicas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [o for o in outcomes if not o.startswith("refused")]
    assert len(winners) == 1, outcomes
    assert list(SqlLedgerStore(database).public_keys()) == winners
    # a loser either saw the winner's key registered first, or lost the registration race
    assert all(winners[0][:16] in o for o in outcomes if o not in winners), outcomes
    made = list(tmp_path.glob("r*/keys/ledger.key.pem"))
    assert len(made) == 1, "the losers kept no key file"
    for ledger in replicas:
        ledger.close()


class SlowRegistry:
    """The ``KeyRegistry`` port on the real store, where another replica of the same home
    starts in full while this one is between writing its key and registering it (the
    window in which replicas starting at once used to race)."""

    def __init__(self, store: SqlLedgerStore, meanwhile: Callable[[], object]) -> None:
        self.store = store
        self.meanwhile: Callable[[], object] | None = meanwhile

    def public_keys(self) -> dict[str, bytes]:
        return self.store.public_keys()

    def register_key(self, key_id: str, public_key_pem: bytes, *, first: bool = False) -> bool:
        if self.meanwhile is not None:
            run, self.meanwhile = self.meanwhile, None
            run()
        return self.store.register_key(key_id, public_key_pem, first=first)


def test_replicas_of_one_home_starting_at_once_share_the_key_they_create(
    database: Database, tmp_path: Path
) -> None:
    home_key = tmp_path / "home" / "keys" / "ledger.key.pem"
    store = SqlLedgerStore(database)
    other = LedgerKey(store, default_file=home_key)
    first = LedgerKey(SlowRegistry(store, other.key_ids), default_file=home_key)
    ids = first.key_ids()  # the other replica starts in full in the middle of this
    assert ids == other.key_ids()
    assert list(store.public_keys()) == ids
    assert key_id_of(home_key.with_name("ledger.pub.pem").read_bytes()) == ids[0]
    assert sorted(p.name for p in home_key.parent.iterdir()) == [
        "ledger.key.pem", "ledger.pub.pem",
    ]  # fmt: skip
    for key in (first, other):  # both sign checkpoints that verify as one ledger
        ledger = Ledger(store, keys=key, key_id=None)
        ledger.append(event("r", 1))
        ledger.checkpoint()
    assert Ledger(store).verify().ok


def test_a_key_readable_by_others_or_malformed_is_refused(
    database: Database, tmp_path: Path
) -> None:
    loose = tmp_path / "loose.pem"
    loose.write_text(pem_of(ec.generate_private_key(ec.SECP256R1())))
    loose.chmod(0o644)
    with pytest.raises(DonjonError, match="readable by others"):
        replica(database, tmp_path / "a", key_file=loose).start_anchoring()
    with pytest.raises(ConfigError, match="not an unencrypted PEM"):
        replica(database, tmp_path / "a", environ={"DONJON_LEDGER_KEY": "junk"}).key_id  # noqa: B018
    with pytest.raises(ConfigError, match="does not exist"):
        replica(database, tmp_path / "a", key_file=tmp_path / "none.pem").key_id  # noqa: B018
    other_curve = tmp_path / "p384.pem"
    other_curve.write_text(pem_of(ec.generate_private_key(ec.SECP384R1())))
    other_curve.chmod(0o600)
    with pytest.raises(ConfigError, match="P-256"):
        replica(database, tmp_path / "a", key_file=other_curve).key_id  # noqa: B018


def test_cli_lists_and_registers_keys_and_the_server_refuses_a_foreign_key(
    donjon_home: Path,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DONJON_DATABASE_URL", database_url)
    db = open_database(database_url)
    try:
        first = replica(db, tmp_path / "a")
        first.append_many(event("a", i) for i in range(5))
    finally:
        db.dispose()
    own = tmp_path / "b.pem"
    own.write_text(pem_of(ec.generate_private_key(ec.SECP256R1())))
    own.chmod(0o600)
    monkeypatch.setenv("DONJON_AUDIT__KEY_FILE", str(own))
    (donjon_home / "policies.cedar").parent.mkdir(parents=True, exist_ok=True)
    (donjon_home / "policies.cedar").write_text("permit(principal, action, resource);\n")
    assert main(["server", "--port", "0"]) == 2
    assert "is not the one the database registers" in capsys.readouterr().err
    assert main(["audit", "keys"]) == 0
    assert capsys.readouterr().out.split() == [first.key_id]
    assert main(["audit", "keys", "--register"]) == 0
    private = serialization.load_pem_private_key(own.read_bytes(), password=None)
    own_id = key_id_of(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    listed = capsys.readouterr().out.split()
    assert sorted(listed) == sorted([first.key_id, own_id])
    assert main(["audit", "checkpoint"]) == 0  # now signs with the registered second key
    assert main(["audit", "verify"]) == 0
