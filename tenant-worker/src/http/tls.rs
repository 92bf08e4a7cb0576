//! HTTPS on the tenant's port, for deployments without a reverse proxy:
//! the admin's certificate and key (`bulkhead tenant tls`), kept in the
//! tenant's encrypted store and swapped in live. Connections already open
//! keep the configuration they started with.

use std::sync::{Arc, RwLock};

use bulkhead_shared::tls::TlsPem;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use tokio_rustls::TlsAcceptor;

use crate::store::writer::{Store, Write};

/// The store document that holds the PEM (JSON; `null` when off).
pub const DOCUMENT: &str = "tls";

/// The acceptor in effect (None: plain HTTP), read at each connection.
pub type SharedTls = Arc<RwLock<Option<TlsAcceptor>>>;

/// A checked certificate and key, ready to serve.
pub struct Loaded {
    pub acceptor: TlsAcceptor,
    /// SHA-256 of the leaf certificate, hex.
    pub fingerprint: String,
}

/// The acceptor holds the key: print only the fingerprint.
impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// Parses and checks the PEM: a chain, a key, and the key belongs to the
/// leaf (rustls refuses a mismatch).
pub fn load(pem: &TlsPem) -> Result<Loaded, String> {
    pem.check()?;
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(pem.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("the certificate file is not valid PEM: {e}"))?;
    let leaf = certs
        .first()
        .ok_or("the certificate file holds no certificate")?;
    let fingerprint = Sha256::digest(leaf.as_ref())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let key = PrivateKeyDer::from_pem_slice(pem.key_pem.as_bytes())
        .map_err(|e| format!("the key file holds no usable private key: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("the key does not fit the certificate, or is unsupported: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Loaded {
        acceptor: TlsAcceptor::from(Arc::new(config)),
        fingerprint,
    })
}

/// The stored certificate, if the admin set one. One that no longer loads
/// is logged and the port serves plain HTTP rather than nothing.
pub fn stored(doc: Option<crate::store::Document>) -> Option<TlsAcceptor> {
    let doc = doc?;
    let pem: Option<TlsPem> = serde_json::from_str(&doc.json).ok()?;
    match load(&pem?) {
        Ok(loaded) => Some(loaded.acceptor),
        Err(e) => {
            tracing::error!(error = %e, "the stored TLS certificate does not load; serving plain HTTP");
            None
        }
    }
}

/// `ControlOp::SetTls`: checks, stores durably, then swaps. Returns the
/// leaf's fingerprint (None when TLS was turned off).
pub async fn set(
    store: &Store,
    shared: &SharedTls,
    pem: Option<TlsPem>,
) -> Result<Option<String>, String> {
    let loaded = pem.as_ref().map(load).transpose()?;
    let json = serde_json::to_string(&pem).expect("serializable");
    store
        .write_durable(Write::PutDocument {
            name: DOCUMENT,
            json,
        })
        .await
        .map_err(|e| format!("failed to store the certificate: {e}"))?;
    let (acceptor, fingerprint) = match loaded {
        Some(l) => (Some(l.acceptor), Some(l.fingerprint)),
        None => (None, None),
    };
    *shared.write().expect("tls lock") = acceptor;
    Ok(fingerprint)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pem_for(name: &str) -> TlsPem {
        let cert = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
        TlsPem {
            cert_pem: cert.cert.pem(),
            key_pem: cert.key_pair.serialize_pem(),
        }
    }

    #[test]
    fn loads_a_matching_pair_and_refuses_a_mismatch() {
        let a = pem_for("a.test");
        let loaded = load(&a).unwrap();
        assert_eq!(loaded.fingerprint.len(), 64);
        let b = pem_for("b.test");
        let mixed = TlsPem {
            cert_pem: a.cert_pem.clone(),
            key_pem: b.key_pem.clone(),
        };
        let err = load(&mixed).unwrap_err();
        assert!(err.contains("does not fit"), "{err}");
        let garbage = TlsPem {
            cert_pem: "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n".into(),
            key_pem: a.key_pem.clone(),
        };
        assert!(load(&garbage).is_err());
    }
}
