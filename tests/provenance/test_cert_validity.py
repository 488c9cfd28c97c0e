"""Certificate validity at verification time and offline CRLs, through the API and the CLI."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from donjon.cli.main import main
from donjon.provenance import CertificateTrust, SignatureMismatch, sign_model, verify_model
from donjon.provenance.certs import CertificateSigner
from donjon.provenance.keys import load_private_key
from donjon.provenance.validity import load_crls
from tests.provenance.pki import Ca, make_ca, make_crl, make_leaf, make_model, write_pem


def signed_with(
    tmp_path: Path, root: Ca, intermediate: Ca | None, leaf: tuple[Path, x509.Certificate]
) -> tuple[Path, Path]:
    """A model signed by ``leaf`` (the intermediate carried in the bundle): model, signature."""
    model = make_model(tmp_path / "model")
    chain = [intermediate.cert] if intermediate else []
    signer = CertificateSigner(load_private_key(leaf[0]), leaf[1], chain)
    sign_model(model, signer, tmp_path / "model.sig")
    write_pem(tmp_path / "root.pem", root.cert)
    return model, tmp_path / "model.sig"


def problems(e: pytest.ExceptionInfo[SignatureMismatch]) -> list[tuple[str, str]]:
    return [(p.code, p.message) for p in e.value.problems]


def test_an_expired_signing_certificate_fails_naming_it_and_its_window(tmp_path: Path) -> None:
    root = make_ca("Test Root")
    leaf = make_leaf(tmp_path, root, days=(-20, -2))
    model, sig = signed_with(tmp_path, root, None, leaf)
    with pytest.raises(SignatureMismatch) as e:
        verify_model(model, sig, CertificateTrust([root.cert]))
    [(code, message)] = problems(e)
    assert code == "expired-certificate"
    assert "signing certificate 'CN=model-release' has expired" in message
    start = leaf[1].not_valid_before_utc.strftime("%Y-%m-%d %H:%M:%S")
    end = leaf[1].not_valid_after_utc.strftime("%Y-%m-%d %H:%M:%S")
    assert f"valid from {start} UTC to {end} UTC" in message
    assert "--unsafe-ignore-cert-expiry" in message


def test_an_expired_intermediate_fails_even_when_the_leaf_is_current(tmp_path: Path) -> None:
    root = make_ca("Test Root")
    intermediate = make_ca("Test Intermediate", issuer=root, days=(-30, -1))
    leaf = make_leaf(tmp_path, intermediate, days=(-20, 10))
    model, sig = signed_with(tmp_path, root, intermediate, leaf)
    with pytest.raises(SignatureMismatch) as e:
        verify_model(model, sig, CertificateTrust([root.cert]))
    [(code, message)] = problems(e)
    assert code == "expired-certificate"
    assert message.startswith("intermediate certificate 'CN=Test Intermediate' has expired")


def test_certificates_not_yet_valid_are_each_named(tmp_path: Path) -> None:
    root = make_ca("Test Root")
    intermediate = make_ca("Test Intermediate", issuer=root, days=(1, 20))
    leaf = make_leaf(tmp_path, intermediate, days=(2, 10))
    model, sig = signed_with(tmp_path, root, intermediate, leaf)
    with pytest.raises(SignatureMismatch) as e:
        verify_model(model, sig, CertificateTrust([root.cert]))
    assert [(c, m.split(" (")[0]) for c, m in problems(e)] == [
        ("expired-certificate", "signing certificate 'CN=model-release' is not yet valid"),
        ("expired-certificate", "intermediate certificate 'CN=Test Intermediate' is not yet valid"),
    ]


def test_an_expired_trust_anchor_fails_too(tmp_path: Path) -> None:
    root = make_ca("Old Root", days=(-60, -1))
    leaf = make_leaf(tmp_path, root, days=(-30, 10))
    model, sig = signed_with(tmp_path, root, None, leaf)
    with pytest.raises(SignatureMismatch, match="trusted certificate 'CN=Old Root' has expired"):
        verify_model(model, sig, CertificateTrust([root.cert]))


def test_the_named_opt_out_verifies_an_old_bundle_and_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = make_ca("Test Root")
    intermediate = make_ca("Test Intermediate", issuer=root, days=(-30, -1))
    leaf = make_leaf(tmp_path, intermediate, days=(-20, -2))
    model, sig = signed_with(tmp_path, root, intermediate, leaf)
    with caplog.at_level(logging.WARNING, logger="donjon.provenance"):
        result = verify_model(
            model, sig, CertificateTrust([root.cert], unsafe_ignore_cert_expiry=True)
        )
    assert result.identity is not None
    assert result.identity.subject == "CN=model-release"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "validity periods are not checked" in warnings[0]
    assert any("signing certificate 'CN=model-release' is outside" in w for w in warnings)
    assert any("intermediate certificate 'CN=Test Intermediate' is outside" in w for w in warnings)


def test_the_opt_out_does_not_skip_the_chain_itself(tmp_path: Path) -> None:
    root, other = make_ca("Test Root"), make_ca("Other Root")
    leaf = make_leaf(tmp_path, root, days=(-20, -2))
    model, sig = signed_with(tmp_path, root, None, leaf)
    with pytest.raises(SignatureMismatch) as e:
        verify_model(model, sig, CertificateTrust([other.cert], unsafe_ignore_cert_expiry=True))
    assert [c for c, _ in problems(e)] == ["untrusted-certificate"]


@pytest.fixture
def chain(tmp_path: Path) -> tuple[Ca, Ca, tuple[Path, x509.Certificate], Path, Path]:
    root = make_ca("Test Root")
    intermediate = make_ca("Test Intermediate", issuer=root)
    leaf = make_leaf(tmp_path, intermediate)
    model, sig = signed_with(tmp_path, root, intermediate, leaf)
    return root, intermediate, leaf, model, sig


Chain = tuple[Ca, Ca, tuple[Path, x509.Certificate], Path, Path]


def test_current_crls_that_list_nothing_pass(chain: Chain) -> None:
    root, intermediate, _, model, sig = chain
    crls = [make_crl(root), make_crl(intermediate)]
    assert verify_model(model, sig, CertificateTrust([root.cert], crls=crls)).identity


def test_a_revoked_leaf_fails_with_serial_date_and_reason(chain: Chain) -> None:
    root, intermediate, leaf, model, sig = chain
    crls = [
        make_crl(root),
        make_crl(intermediate, (leaf[1],), reason=x509.ReasonFlags.key_compromise),
    ]
    with pytest.raises(SignatureMismatch) as e:
        verify_model(model, sig, CertificateTrust([root.cert], crls=crls))
    [(code, message)] = problems(e)
    assert code == "revoked-certificate"
    assert f"signing certificate 'CN=model-release' (serial {leaf[1].serial_number:#x})" in message
    assert "(reason: key_compromise) per the CRL of intermediate certificate" in message


def test_a_revoked_intermediate_fails(chain: Chain) -> None:
    root, intermediate, _, model, sig = chain
    crls = [make_crl(root, (intermediate.cert,)), make_crl(intermediate)]
    with pytest.raises(SignatureMismatch, match="intermediate certificate 'CN=Test Intermediate'"):
        verify_model(model, sig, CertificateTrust([root.cert], crls=crls))


def test_revocation_checks_fail_closed_when_a_crl_is_missing_stale_or_forged(
    chain: Chain,
) -> None:
    root, intermediate, _, model, sig = chain
    forged = make_crl(intermediate, signed_by=make_ca("Mallory").key)
    cases = {
        "no CRL from intermediate certificate": [make_crl(root)],
        "is out of date": [make_crl(root), make_crl(intermediate, days=(-10, -1))],
        "is not signed by its key": [make_crl(root), forged],
    }
    for expected, crls in cases.items():
        with pytest.raises(SignatureMismatch) as e:
            verify_model(model, sig, CertificateTrust([root.cert], crls=crls))
        assert [c for c, _ in problems(e)] == ["revocation-unchecked"], expected
        assert expected in problems(e)[0][1]
    # an old CRL next to a current one is fine
    crls = [make_crl(root), make_crl(intermediate, days=(-10, -1)), make_crl(intermediate)]
    verify_model(model, sig, CertificateTrust([root.cert], crls=crls))


def test_crl_files_load_as_pem_bundles_or_der(chain: Chain, tmp_path: Path) -> None:
    root, intermediate, _, _, _ = chain
    pem = write_pem(tmp_path / "crls.pem", make_crl(root), make_crl(intermediate))
    der = tmp_path / "one.crl"
    der.write_bytes(make_crl(root).public_bytes(serialization.Encoding.DER))
    assert [c.issuer for c in load_crls([pem, der])] == [
        root.cert.subject,
        intermediate.cert.subject,
        root.cert.subject,
    ]


def test_the_command_line_checks_expiry_and_crls(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_ca("Test Root")
    intermediate = make_ca("Test Intermediate", issuer=root)
    key, leaf = make_leaf(tmp_path, intermediate, days=(-20, -2))
    model = make_model(tmp_path / "model")
    write_pem(tmp_path / "leaf.pem", leaf)
    write_pem(tmp_path / "intermediate.pem", intermediate.cert)
    write_pem(tmp_path / "root.pem", root.cert)
    sig = str(tmp_path / "model.sig")
    sign = ["sign", str(model), "--private-key", str(key), "--signature", sig]
    sign += ["--signing-certificate", str(tmp_path / "leaf.pem")]
    assert main([*sign, "--certificate-chain", str(tmp_path / "intermediate.pem")]) == 0
    capsys.readouterr()
    verify = ["verify", str(model), "--signature", sig, "--certificate-chain"]
    verify.append(str(tmp_path / "root.pem"))

    assert main(verify) == 1
    err = capsys.readouterr().err
    assert "signing certificate 'CN=model-release' has expired (valid from" in err

    assert main([*verify, "--unsafe-ignore-cert-expiry"]) == 0
    assert "Verification succeeded" in capsys.readouterr().out

    good = write_pem(tmp_path / "good.pem", make_crl(root), make_crl(intermediate))
    assert main([*verify, "--unsafe-ignore-cert-expiry", "--crl", str(good)]) == 0
    capsys.readouterr()
    write_pem(tmp_path / "revoked.pem", make_crl(intermediate, (leaf,)))
    argv = [*verify, "--unsafe-ignore-cert-expiry", "--crl", str(good)]
    assert main([*argv, "--crl", str(tmp_path / "revoked.pem")]) == 1
    assert "'CN=model-release' (serial" in capsys.readouterr().err

    (tmp_path / "junk.crl").write_bytes(b"not a crl")
    assert main([*verify, "--crl", str(tmp_path / "junk.crl")]) == 2
    assert "holds no valid CRL" in capsys.readouterr().err


def test_crl_and_opt_out_flags_need_a_certificate_chain(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = make_model(tmp_path / "model")
    (tmp_path / "x.sig").write_text("{}")
    (tmp_path / "pub.pem").write_text("")
    argv = ["verify", str(model), "--signature", str(tmp_path / "x.sig")]
    assert main([*argv, "--public-key", str(tmp_path / "pub.pem"), "--crl", "c.pem"]) == 2
    assert "apply to --certificate-chain only" in capsys.readouterr().err
    assert main([*argv, "--policy", str(tmp_path / "x.sig"), "--unsafe-ignore-cert-expiry"]) == 2
    assert "do not apply" in capsys.readouterr().err
