//! [`InProcessSigner`]: OpenPGP signatures made inside slipway with rPGP (the `pgp` crate), and
//! [`load_signer`], which picks it or falls back to [`GpgSigner`].
//!
//! A publish signs a CHECKSUM and every file of each new release; through gpg each signature costs a
//! process and agent round trip of about 15 ms, which a simulated decade of releases cannot afford. The
//! signatures are the ones gpg makes with the same key (v4, SHA-256, the same subpackets and packet framing,
//! the cleartext framework byte for byte), so gpgv and `gpg --verify` read them alike.

use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use digest::DynDigest;
use pgp::composed::{ArmorOptions, Deserializable, SignedPublicKey, SignedSecretKey};
use pgp::crypto::hash::HashAlgorithm;
use pgp::crypto::public_key::PublicKeyAlgorithm;
use pgp::packet::{Signature, SignatureConfig, SignatureType, Subpacket, SubpacketData};
use pgp::ser::Serialize;
use pgp::types::{
    EcdsaPublicParams, EddsaLegacyPublicParams, KeyDetails, KeyVersion, Password, PublicParams,
    SigningKey, Tag, Timestamp,
};
use slipway_exec::CommandRunner;

use crate::cleartext;
use crate::sign::{read_key_file, GpgSigner, SignError, Signer};

/// The digest of every signature, as `GpgSigner` asks gpg for (`--digest-algo SHA256`).
const HASH: HashAlgorithm = HashAlgorithm::Sha256;

/// The name of [`HASH`] in a cleartext message's `Hash:` header.
const HASH_NAME: &str = "SHA256";

/// A [`Signer`] that signs in process with the secret key of an armored (or binary) key file, the file
/// `slipway keys init` writes.
///
/// It takes the keys gpg makes and gpgv reads that it can sign with exactly as gpg would: an unprotected
/// OpenPGP v4 key whose primary key may sign, of type Ed25519 (EdDSA, what `keys init` makes), RSA or
/// ECDSA on NIST P-256. Anything else is [`SignError::Unsupported`], and [`load_signer`] leaves it to gpg.
pub struct InProcessSigner {
    key: Arc<SignedSecretKey>,
    key_file: PathBuf,
    fingerprint: String,
    public_key: String,
}

impl fmt::Debug for InProcessSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InProcessSigner")
            .field("key_file", &self.key_file)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl InProcessSigner {
    /// Loads the secret key in `key_file` and checks, with a test signature, that it can sign.
    ///
    /// A missing, unreadable or empty file is [`SignError::KeyFile`], as with [`GpgSigner::load`]; a file
    /// this signer cannot use (not a key it reads, a public key only, a passphrase, a key type it does not
    /// sign with) is [`SignError::Unsupported`], which gpg may still accept or explain.
    pub async fn load(key_file: &Path) -> Result<InProcessSigner, SignError> {
        let bytes = read_key_file(key_file).await?;
        let path = key_file.to_path_buf();
        // Parsing is quick, but the test signature with an RSA key takes milliseconds.
        tokio::task::spawn_blocking(move || InProcessSigner::from_key_bytes(path, &bytes))
            .await
            .map_err(|e| SignError::Sign {
                action: "load the signing key".into(),
                reason: e.to_string(),
            })?
    }

    /// The key file this signer was made from.
    pub fn key_file(&self) -> &Path {
        &self.key_file
    }

    fn from_key_bytes(key_file: PathBuf, bytes: &[u8]) -> Result<InProcessSigner, SignError> {
        let unsupported = |reason: String| SignError::Unsupported {
            path: key_file.clone(),
            reason,
        };
        let key = read_secret_key(bytes).map_err(&unsupported)?;
        check_usable(&key, Timestamp::now()).map_err(&unsupported)?;
        let fingerprint = upper_hex(key.fingerprint().as_bytes());
        let public_key = key
            .to_public_key()
            .to_armored_string(ArmorOptions {
                headers: None,
                include_checksum: true,
            })
            .map_err(|e| unsupported(format!("its public key cannot be exported ({e})")))?;
        let signer = InProcessSigner {
            key: Arc::new(key),
            key_file: key_file.clone(),
            fingerprint,
            public_key,
        };
        // A key whose secret part does not match its public part would sign, and every signature would fail
        // to verify for the users; find that out now.
        let probe = b"slipway key check";
        let signature = sign_packet(&signer.key, SignatureType::Binary, |h| {
            h.update(probe);
            Ok(())
        })
        .map_err(|e| unsupported(format!("it cannot make a signature ({e})")))?;
        signature
            .verify(signer.key.primary_key.public_key(), &probe[..])
            .map_err(|e| unsupported(format!("its test signature does not verify ({e})")))?;
        tracing::debug!(key_file = %key_file.display(), fingerprint = %signer.fingerprint, "loaded the signing key for in-process signing");
        Ok(signer)
    }
}

/// Files up to this size are signed on the calling thread (well under a millisecond of hashing).
const SIGN_IN_PLACE_BYTES: u64 = 256 * 1024;

#[async_trait]
impl Signer for InProcessSigner {
    async fn clearsign(&self, text: &[u8]) -> Result<Vec<u8>, SignError> {
        let action = "make a cleartext signature";
        let signed = cleartext::signed_text(text);
        let signature = sign_packet(&self.key, SignatureType::Text, |h| {
            h.update(&signed);
            Ok(())
        })
        .map_err(|e| sign_error(action, e))?;
        let armored = armor_signature(&signature).map_err(|e| sign_error(action, e))?;
        Ok(cleartext::message(HASH_NAME, text, &armored))
    }

    async fn detach_sign(&self, file: &Path, signature_out: &Path) -> Result<(), SignError> {
        // Hashing a small file costs less than handing it to another thread and back.
        if std::fs::metadata(file).is_ok_and(|m| m.len() <= SIGN_IN_PLACE_BYTES) {
            return detach_sign_blocking(&self.key, file, signature_out);
        }
        let key = Arc::clone(&self.key);
        let (file, signature_out) = (file.to_path_buf(), signature_out.to_path_buf());
        // Reading and hashing a file of gigabytes blocks; keep it off the async workers.
        tokio::task::spawn_blocking(move || detach_sign_blocking(&key, &file, &signature_out))
            .await
            .map_err(|e| SignError::Sign {
                action: "sign a file".into(),
                reason: e.to_string(),
            })?
    }

    fn public_key_armored(&self) -> &str {
        &self.public_key
    }

    fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

/// The signer publishing uses, and how it was chosen.
#[derive(Debug)]
#[non_exhaustive]
pub struct LoadedSigner {
    /// The signer.
    pub signer: Box<dyn Signer>,
    /// Why gpg signs instead of the in-process signer, when it does: the caller says so once.
    pub gpg_fallback: Option<String>,
}

/// Loads the signing key in `key_file` for publishing: signed in process when [`InProcessSigner`] can use the
/// key, through gpg ([`GpgSigner`]) when it cannot.
///
/// A key neither can use gives gpg's error, the one slipway has always given for it (no secret key, a
/// passphrase, not an OpenPGP key); a missing, unreadable or empty file gives the same error without
/// running gpg.
pub async fn load_signer(
    runner: Arc<dyn CommandRunner>,
    key_file: &Path,
) -> Result<LoadedSigner, SignError> {
    match InProcessSigner::load(key_file).await {
        Ok(signer) => Ok(LoadedSigner {
            signer: Box::new(signer),
            gpg_fallback: None,
        }),
        Err(SignError::Unsupported { reason, .. }) => {
            tracing::debug!(key_file = %key_file.display(), %reason, "the in-process signer cannot use the key; trying gpg");
            let signer = GpgSigner::load(runner, key_file).await?;
            Ok(LoadedSigner {
                signer: Box::new(signer),
                gpg_fallback: Some(reason),
            })
        }
        Err(e) => Err(e),
    }
}

/// The one secret key in `bytes`, armored or binary; the error says why there is none.
fn read_secret_key(bytes: &[u8]) -> Result<SignedSecretKey, String> {
    let parsed = SignedSecretKey::from_reader_many(bytes).and_then(|(mut keys, _)| {
        let first = keys.next().transpose()?;
        Ok((first, keys.next().is_some()))
    });
    match parsed {
        Ok((Some(key), false)) => Ok(key),
        Ok((Some(_), true)) => Err("it holds more than one key".into()),
        Ok((None, _)) | Err(_) if SignedPublicKey::from_reader_single(bytes).is_ok() => {
            Err("it holds a public key and no secret key".into())
        }
        Ok((None, _)) => Err("it holds no secret key".into()),
        Err(e) => Err(format!(
            "it is not a secret key the OpenPGP library reads ({e})"
        )),
    }
}

/// Checks that `key` is of a kind this signer signs with exactly as gpg would, and that gpg would sign with
/// it at `now`: v4, unprotected, a supported algorithm, not revoked, and a valid self-signature that lets the
/// primary key sign and has not let it expire. Anything unusual is left to gpg to judge.
fn check_usable(key: &SignedSecretKey, now: Timestamp) -> Result<(), String> {
    let primary = key.primary_key.public_key();
    if primary.version() != KeyVersion::V4 {
        return Err(format!(
            "it is an OpenPGP {:?} key; only v4 keys are signed with in process",
            primary.version()
        ));
    }
    let supported = match primary.public_params() {
        PublicParams::EdDSALegacy(EddsaLegacyPublicParams::Ed25519 { .. }) => true,
        PublicParams::RSA(_) => primary.algorithm() == PublicKeyAlgorithm::RSA,
        PublicParams::ECDSA(EcdsaPublicParams::P256 { .. }) => true,
        _ => false,
    };
    if !supported {
        return Err(format!(
            "its primary key is of type {:?}, which is not signed with in process (Ed25519, RSA and ECDSA P-256 are)",
            primary.algorithm()
        ));
    }
    if key.primary_key.secret_params().is_encrypted() {
        return Err("its secret key is protected by a passphrase".into());
    }
    if !key.details.revocation_signatures.is_empty() {
        return Err("it carries a revocation signature".into());
    }
    let own_key_id = primary.legacy_key_id();
    let own_fingerprint = primary.fingerprint();
    let by_self = |sig: &Signature| {
        sig.issuer_fingerprint().contains(&&own_fingerprint)
            || sig.issuer_key_id().contains(&&own_key_id)
    };
    let mut newest: Option<&Signature> = None;
    for user in &key.details.users {
        for sig in user.signatures.iter().filter(|s| by_self(s)) {
            let certification = matches!(
                sig.typ(),
                Some(
                    SignatureType::CertGeneric
                        | SignatureType::CertPersona
                        | SignatureType::CertCasual
                        | SignatureType::CertPositive
                )
            );
            if !certification {
                return Err("one of its user ids carries a self-signature that is not a certification (a revocation?)".into());
            }
            if sig
                .verify_certification(primary, Tag::UserId, &user.id)
                .is_err()
            {
                continue;
            }
            if newest.is_none_or(|n| sig.created() > n.created()) {
                newest = Some(sig);
            }
        }
    }
    let Some(self_signature) = newest else {
        return Err("none of its user ids has a valid self-signature".into());
    };
    let has_key_flags = self_signature.config().is_some_and(|c| {
        c.hashed_subpackets()
            .any(|p| matches!(p.data, SubpacketData::KeyFlags(_)))
    });
    if has_key_flags && !self_signature.key_flags().sign() {
        return Err("its primary key is not marked for signing".into());
    }
    if let Some(lifetime) = self_signature
        .key_expiration_time()
        .filter(|d| d.as_secs() > 0)
    {
        let expires = u64::from(primary.created_at().as_secs()) + u64::from(lifetime.as_secs());
        if expires <= u64::from(now.as_secs()) {
            return Err("it has expired".into());
        }
    }
    Ok(())
}

/// A v4 signature packet of type `typ` over what `feed` hashes, framed as gpg frames it: an old-format
/// packet header, the issuer fingerprint and the creation time hashed, the issuer key id not.
fn sign_packet(
    key: &SignedSecretKey,
    typ: SignatureType,
    feed: impl FnOnce(&mut Box<dyn DynDigest + Send>) -> io::Result<()>,
) -> Result<Signature, pgp::errors::Error> {
    let mut config = SignatureConfig::v4(typ, key.algorithm(), HASH);
    config.hashed_subpackets = vec![
        Subpacket::regular(SubpacketData::IssuerFingerprint(key.fingerprint()))?,
        Subpacket::regular(SubpacketData::SignatureCreationTime(Timestamp::now()))?,
    ];
    config.unhashed_subpackets = vec![Subpacket::regular(SubpacketData::IssuerKeyId(
        key.legacy_key_id(),
    ))?];
    // The data is hashed here rather than through the library's text-mode hasher, which would also turn a
    // carriage return inside a line into a line ending; the cleartext framework has already made the text
    // canonical, exactly as gpg hashes it.
    let mut hasher = HASH.new_hasher()?;
    feed(&mut hasher)?;
    let length = config.hash_signature_data(&mut hasher)?;
    hasher.update(&config.trailer(length)?);
    let digest = hasher.finalize();
    let signed_hash_value = [digest[0], digest[1]];
    let bytes = key.sign(&Password::empty(), HASH, &digest)?;
    Signature::from_config(config, signed_hash_value, bytes)
}

/// The packet bytes of `signature` with an old-format header, as gpg writes signature packets.
fn old_format_packet(signature: &Signature) -> Result<Vec<u8>, pgp::errors::Error> {
    let body = signature.to_bytes()?;
    let mut packet = old_format_signature_header(body.len()).map_err(io::Error::other)?;
    packet.extend(body);
    Ok(packet)
}

/// The old-format header (RFC 4880 4.2.1) of a signature packet (tag 2) whose body has `len` bytes, with
/// the shortest length field that holds it.
fn old_format_signature_header(len: usize) -> Result<Vec<u8>, std::num::TryFromIntError> {
    const SIGNATURE: u8 = 0x80 | (2 << 2);
    Ok(if let Ok(n) = u8::try_from(len) {
        vec![SIGNATURE, n]
    } else if let Ok(n) = u16::try_from(len) {
        let [a, b] = n.to_be_bytes();
        vec![SIGNATURE | 1, a, b]
    } else {
        let [a, b, c, d] = u32::try_from(len)?.to_be_bytes();
        vec![SIGNATURE | 2, a, b, c, d]
    })
}

/// Already-framed packet bytes, for the library's armor writer.
struct RawPackets(Vec<u8>);

impl Serialize for RawPackets {
    fn to_writer<W: Write>(&self, writer: &mut W) -> pgp::errors::Result<()> {
        writer.write_all(&self.0)?;
        Ok(())
    }

    fn write_len(&self) -> usize {
        self.0.len()
    }
}

/// `signature` as an armored `PGP SIGNATURE` block, as gpg writes it: no armor headers, 64 columns, a
/// CRC-24 line.
fn armor_signature(signature: &Signature) -> Result<Vec<u8>, pgp::errors::Error> {
    let packets = RawPackets(old_format_packet(signature)?);
    let mut out = Vec::with_capacity(packets.0.len() * 4 / 3 + 80);
    pgp::armor::write(
        &packets,
        pgp::armor::BlockType::Signature,
        &mut out,
        None,
        true,
    )?;
    Ok(out)
}

fn detach_sign_blocking(
    key: &SignedSecretKey,
    file: &Path,
    signature_out: &Path,
) -> Result<(), SignError> {
    let mut input = std::fs::File::open(file).map_err(|source| SignError::Io {
        action: "open the file to sign",
        path: file.to_path_buf(),
        source,
    })?;
    let read_failed = std::cell::Cell::new(false);
    let signature = sign_packet(key, SignatureType::Binary, |hasher| {
        let mut buffer = slipway_model::read_buffer_for(&input);
        loop {
            let n = match input.read(&mut buffer) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    read_failed.set(true);
                    return Err(e);
                }
            };
            hasher.update(&buffer[..n]);
        }
    });
    let signature = match signature {
        Ok(signature) => signature,
        Err(pgp::errors::Error::IO { source, .. }) if read_failed.get() => {
            return Err(SignError::Io {
                action: "read the file to sign",
                path: file.to_path_buf(),
                source,
            })
        }
        Err(e) => return Err(sign_error(&format!("sign {}", file.display()), e)),
    };
    let packet = old_format_packet(&signature)
        .map_err(|e| sign_error(&format!("sign {}", file.display()), e))?;
    // Replaces a leftover from an interrupted run, as gpg --yes does.
    std::fs::write(signature_out, packet).map_err(|source| SignError::Io {
        action: "write the signature",
        path: signature_out.to_path_buf(),
        source,
    })
}

fn sign_error(action: &str, e: pgp::errors::Error) -> SignError {
    SignError::Sign {
        action: action.to_string(),
        reason: e.to_string(),
    }
}

fn upper_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_get_the_shortest_old_format_header() {
        for (len, header) in [
            (0x75usize, vec![0x88u8, 0x75]),
            (0xff, vec![0x88, 0xff]),
            (0x100, vec![0x89, 0x01, 0x00]),
            (0xffff, vec![0x89, 0xff, 0xff]),
            (0x1_0000, vec![0x8a, 0x00, 0x01, 0x00, 0x00]),
        ] {
            assert_eq!(
                old_format_signature_header(len).expect("fits"),
                header,
                "length {len:#x}"
            );
        }
    }

    #[test]
    fn a_file_that_is_no_key_is_explained() {
        let err = read_secret_key(b"this is not a key\n").expect_err("garbage");
        assert!(err.contains("not a secret key"), "{err}");
    }
}
