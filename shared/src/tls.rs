//! A tenant's HTTPS certificate and key, as the admin gives them (PEM). They
//! travel supervisor → worker once, over the socketpair, and are kept only
//! in the tenant's encrypted store, so shredding the tenant's key destroys
//! them with everything else.

use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

/// Largest PEM accepted for either part (a long chain fits easily).
pub const MAX_PEM: usize = 32 * 1024;

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsPem {
    /// The certificate chain, leaf first.
    pub cert_pem: String,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key_pem: String,
}

impl TlsPem {
    /// Cheap checks before anything parses the PEM: sizes and markers.
    pub fn check(&self) -> Result<(), String> {
        if self.cert_pem.len() > MAX_PEM || self.key_pem.len() > MAX_PEM {
            return Err(format!(
                "a certificate or key file is larger than {MAX_PEM} bytes"
            ));
        }
        if !self.cert_pem.contains("-----BEGIN CERTIFICATE-----") {
            return Err("the certificate file holds no PEM certificate".into());
        }
        if !self.key_pem.contains("PRIVATE KEY-----") {
            return Err("the key file holds no PEM private key".into());
        }
        Ok(())
    }
}

/// Never prints the key.
impl std::fmt::Debug for TlsPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsPem")
            .field("cert_pem", &format_args!("{} bytes", self.cert_pem.len()))
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

impl Drop for TlsPem {
    fn drop(&mut self) {
        self.key_pem.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_shape_and_never_prints_the_key() {
        let pem = TlsPem {
            cert_pem: "-----BEGIN CERTIFICATE-----\nMII\n-----END CERTIFICATE-----\n".into(),
            key_pem: "-----BEGIN PRIVATE KEY-----\nsecret\n-----END PRIVATE KEY-----\n".into(),
        };
        assert!(pem.check().is_ok());
        assert!(!format!("{pem:?}").contains("secret"));
        let swapped = TlsPem {
            cert_pem: pem.key_pem.clone(),
            key_pem: pem.cert_pem.clone(),
        };
        assert!(swapped.check().is_err());
    }
}
