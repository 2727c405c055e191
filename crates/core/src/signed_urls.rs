//! URLs that carry their own authorisation, for clients that follow a link without
//! credentials (the parts of a multipart upload, the files of a SQL result): an HMAC over the
//! fields the link names and its expiry, with a key every server on one store shares (kept in
//! the store by the first), so a link one replica made is honoured by the others.

use crate::store::MetaStore;
use crate::{Error, Result};
use hmac::Mac;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The name the link-signing key is kept under in the store.
const LINK_KEY: &str = "link-signing-key";

/// The key that signs links, the same for every server on `store`.
pub async fn shared_key(store: &dyn MetaStore) -> Result<[u8; 32]> {
    let candidate = hex::encode(rand::random::<[u8; 32]>());
    let kept = store
        .shared_secret(LINK_KEY, &candidate, crate::ids::now_millis())
        .await?;
    hex::decode(&kept)
        .ok()
        .and_then(|key| <[u8; 32]>::try_from(key).ok())
        .ok_or_else(|| Error::internal("the stored link-signing key is not 32 bytes of hex"))
}

/// Signs and checks links with one key.
pub struct UrlSigner {
    key: [u8; 32],
}

impl UrlSigner {
    pub fn new(key: [u8; 32]) -> Self {
        Self { key }
    }

    pub fn random() -> Self {
        Self::new(rand::random())
    }

    fn mac(&self, fields: &[&str], expires: i64) -> Result<HmacSha256> {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.key)
            .map_err(|e| Error::internal_from("HMAC key", e))?;
        let expires = expires.to_string();
        for field in fields.iter().copied().chain([expires.as_str()]) {
            // Length-prefixed so no two field lists sign the same bytes.
            mac.update(&(field.len() as u64).to_be_bytes());
            mac.update(field.as_bytes());
        }
        Ok(mac)
    }

    /// The signature (hex) of `fields` until `expires`.
    pub fn sign(&self, fields: &[&str], expires: i64) -> Result<String> {
        Ok(hex::encode(
            self.mac(fields, expires)?.finalize().into_bytes(),
        ))
    }

    /// Whether `signature` was made by [`Self::sign`] for these fields and has not expired at
    /// `now` (in the unit `expires` is in).
    pub fn is_valid(
        &self,
        fields: &[&str],
        expires: i64,
        signature: &str,
        now: i64,
    ) -> Result<bool> {
        let Ok(signature) = hex::decode(signature) else {
            return Ok(false);
        };
        Ok(self.mac(fields, expires)?.verify_slice(&signature).is_ok() && expires >= now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_bind_every_field_and_expire() {
        let signer = UrlSigner::random();
        let signature = signer.sign(&["a", "bc"], 100).expect("sign");
        assert!(
            signer
                .is_valid(&["a", "bc"], 100, &signature, 99)
                .expect("check")
        );
        assert!(
            signer
                .is_valid(&["a", "bc"], 100, &signature, 100)
                .expect("check")
        );
        for (fields, expires, now) in [
            (&["a", "bc"][..], 100, 101),
            (&["ab", "c"][..], 100, 0),
            (&["a", "bd"][..], 100, 0),
            (&["a", "bc"][..], 101, 0),
        ] {
            assert!(
                !signer
                    .is_valid(fields, expires, &signature, now)
                    .expect("check")
            );
        }
        assert!(
            !signer
                .is_valid(&["a", "bc"], 100, "not hex", 0)
                .expect("check")
        );
        assert!(
            !UrlSigner::random()
                .is_valid(&["a", "bc"], 100, &signature, 0)
                .expect("check")
        );
    }
}
