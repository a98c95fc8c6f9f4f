//! Bearer-token check for the control service. Health is served outside this check so that
//! probes (Kubernetes, systemd) need no secret.

use subtle::ConstantTimeEq;
use tonic::metadata::MetadataMap;
use tonic::{Request, Status};

use super::ControlError;

/// Checks `authorization: Bearer <token>` on each request when a token is configured.
#[derive(Clone)]
pub(crate) struct TokenCheck {
    token: Option<Vec<u8>>,
}

impl std::fmt::Debug for TokenCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("TokenCheck")
            .field("required", &self.token.is_some())
            .finish()
    }
}

impl TokenCheck {
    pub(crate) fn new(token: Option<String>) -> Self {
        Self {
            token: token.map(String::into_bytes),
        }
    }

    pub(crate) fn check(&self, metadata: &MetadataMap) -> Result<(), ControlError> {
        let Some(expected) = &self.token else {
            return Ok(());
        };
        let header = metadata
            .get("authorization")
            .ok_or(ControlError::Unauthenticated(
                "this server requires a token: send 'authorization: Bearer <token>'",
            ))?;
        let given =
            header
                .as_bytes()
                .strip_prefix(b"Bearer ")
                .ok_or(ControlError::Unauthenticated(
                    "the authorization header must be 'Bearer <token>'",
                ))?;
        // Constant-time, so response timing does not reveal how much of a guess was right.
        // (A length mismatch returns early; the length is not the secret.)
        if bool::from(given.ct_eq(expected)) {
            Ok(())
        } else {
            Err(ControlError::Unauthenticated("invalid token"))
        }
    }
}

impl tonic::service::Interceptor for TokenCheck {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        self.check(request.metadata())?;
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(value: Option<&str>) -> MetadataMap {
        let mut map = MetadataMap::new();
        if let Some(value) = value {
            map.insert("authorization", value.parse().unwrap());
        }
        map
    }

    #[test]
    fn no_token_configured_lets_everything_through() {
        assert!(TokenCheck::new(None).check(&metadata(None)).is_ok());
    }

    #[test]
    fn token_must_match_exactly() {
        let check = TokenCheck::new(Some("s3cret".into()));
        assert!(check.check(&metadata(Some("Bearer s3cret"))).is_ok());
        for bad in [
            None,
            Some("s3cret"),
            Some("Bearer s3cre"),
            Some("Bearer s3cretX"),
        ] {
            let err = check.check(&metadata(bad)).unwrap_err();
            assert_eq!(err.code(), tonic::Code::Unauthenticated, "{bad:?}");
        }
        assert!(!format!("{check:?}").contains("s3cret"));
    }
}
