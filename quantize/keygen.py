"""``quantize keygen --out KEY``: make the Ed25519 key pair that signs deploy bundles.

Writes ``KEY`` (the private key, PKCS#8 PEM, file mode 0600, created
exclusively so an existing key is never overwritten unless ``--force``) and
``KEY.pub`` (SubjectPublicKeyInfo PEM), which goes to every hub's
``trust/`` folder (``host provision``) and to ``host verify --trust``.
Uses the ``cryptography`` package.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Dict, Optional

from edge.errors import ConfigError

HELP = "make an Ed25519 key pair for signing bundles: KEY (private, 0600) and KEY.pub"

#: Environment variable holding an optional passphrase for the private key.
PASSPHRASE_ENV = "LIFTGUARD_KEY_PASSPHRASE"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``keygen``'s flags."""
    parser.add_argument("--out", required=True, type=Path, help="private key file to create; KEY.pub is written beside it")
    parser.add_argument("--force", action="store_true", help="overwrite an existing key pair")
    parser.add_argument("--passphrase-env", action="store_true",
                        help=f"encrypt the private key with the passphrase in ${PASSPHRASE_ENV}")


def run(args: argparse.Namespace) -> int:
    """Generate the key pair and print its id."""
    passphrase = None
    if args.passphrase_env:
        passphrase = os.environ.get(PASSPHRASE_ENV)
        if not passphrase:
            raise ConfigError(f"--passphrase-env given but ${PASSPHRASE_ENV} is empty or unset")
    info = generate_keypair(args.out, force=args.force, passphrase=passphrase)
    print(f"key id {info['key_id']}: private key {info['private']} (mode 0600), public key {info['public']}")
    return 0


def public_path(private_path: Path) -> Path:
    """``KEY`` -> ``KEY.pub``."""
    p = Path(private_path)
    return p.with_name(p.name + ".pub")


def generate_keypair(out: Path, *, force: bool = False, passphrase: Optional[str] = None) -> Dict[str, Any]:
    """Create ``out`` (private, 0600) and ``out.pub``.

    Args:
        out: Private key path.
        force: Replace an existing pair.
        passphrase: Encrypt the private key with it (``BestAvailableEncryption``).

    Returns:
        ``{"private", "public", "key_id"}``.

    Raises:
        ConfigError: The files exist (without ``force``) or cannot be written.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from edge.bundle import public_key_id

    out = Path(out)
    pub = public_path(out)
    if not force:
        for p in (out, pub):
            if p.exists():
                raise ConfigError(f"{p} already exists; refusing to overwrite a signing key (use --force)")
    if not out.parent.is_dir():
        raise ConfigError(f"folder {out.parent} does not exist; create it first")
    key = Ed25519PrivateKey.generate()
    encryption = (serialization.BestAvailableEncryption(passphrase.encode("utf-8")) if passphrase
                  else serialization.NoEncryption())
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    try:
        if force and out.exists():
            out.unlink()
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(private_pem)
        os.chmod(out, 0o600)  # in case the umask or an old file interfered
        pub.write_bytes(public_pem)
    except OSError as exc:
        raise ConfigError(f"cannot write key pair {out}: {exc.strerror or exc}") from None
    return {"private": str(out), "public": str(pub), "key_id": public_key_id(key.public_key())}


def load_private_key(path: Path, passphrase: Optional[str] = None) -> Any:
    """Read an Ed25519 private key written by :func:`generate_keypair`.

    The passphrase, when the key is encrypted, comes from ``passphrase`` or
    ``$LIFTGUARD_KEY_PASSPHRASE``.

    Raises:
        ConfigError: Missing file, wrong passphrase, or not an Ed25519 key.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"signing key {path}: cannot be read ({exc.strerror or exc}); "
                          f"make one with 'quantize keygen --out {path}'") from None
    secret = passphrase if passphrase is not None else os.environ.get(PASSPHRASE_ENV)
    try:
        key = serialization.load_pem_private_key(data, password=secret.encode("utf-8") if secret else None)
    except TypeError as exc:
        raise ConfigError(f"signing key {path}: {exc} (set ${PASSPHRASE_ENV})") from None
    except ValueError:
        raise ConfigError(f"signing key {path}: not a PEM private key, or the passphrase is wrong") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"signing key {path}: is a {type(key).__name__.lstrip('_')}; expected Ed25519")
    return key
