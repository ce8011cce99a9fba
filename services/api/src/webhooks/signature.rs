//! Standard Webhooks signatures (<https://www.standardwebhooks.com>): the receiver
//! checks `webhook-signature` = `v1,` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")),
//! with the key decoded from a `whsec_…` secret, as the Standard Webhooks and Svix
//! libraries do.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const PREFIX: &str = "whsec_";

#[derive(Clone)]
pub struct Signer {
    /// Keyed once; each signature starts from a clone.
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(..)") // never the key
    }
}

impl Signer {
    /// `whsec_` + base64 is decoded; any other secret is used as its bytes.
    pub fn new(secret: &str) -> Result<Self, String> {
        let key = match secret.strip_prefix(PREFIX) {
            Some(b64) => STANDARD.decode(b64).map_err(|_| "api.webhook_secret: after whsec_ must come base64".to_string())?,
            None => secret.as_bytes().to_vec(),
        };
        if key.len() < 16 {
            return Err("api.webhook_secret must hold at least 16 bytes of key".into());
        }
        let mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|e| format!("api.webhook_secret: {e}"))?;
        Ok(Self { mac })
    }

    /// The `webhook-signature` header value for one attempt.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = self.mac.clone();
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_standard_webhooks_reference_signature() {
        // The test vector of the Standard Webhooks / Svix libraries.
        let signer = Signer::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = signer.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn bad_secrets_are_refused() {
        assert!(Signer::new("whsec_not base64!").is_err());
        assert!(Signer::new("short").is_err());
        assert!(Signer::new("a plain secret of enough bytes").is_ok());
    }
}
