//! Authentication of API calls: a bearer token checked in an interceptor
//! before any handler runs. Unauthenticated calls get UNAUTHENTICATED and do
//! no work. Health is served without it (kubelet probes carry no token).

use tonic::{Request, Status, service::Interceptor};

use crate::keys::BearerToken;

/// Checks `authorization: Bearer <token>` when a token is configured;
/// lets every call through otherwise (the API is then on loopback only, or
/// behind mTLS: enforced by config validation).
#[derive(Clone, Debug)]
pub struct BearerAuth {
    token: Option<BearerToken>,
}

impl BearerAuth {
    pub fn new(token: Option<BearerToken>) -> Self {
        BearerAuth { token }
    }
}

impl Interceptor for BearerAuth {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(token) = &self.token else {
            return Ok(request);
        };
        let presented = request
            .metadata()
            .get("authorization")
            .map(|v| v.as_bytes())
            .and_then(|v| {
                v.strip_prefix(b"Bearer ")
                    .or_else(|| v.strip_prefix(b"bearer "))
            });
        match presented {
            Some(p) if token.matches(p) => Ok(request),
            Some(_) => Err(Status::unauthenticated("invalid bearer token")),
            None => Err(Status::unauthenticated(
                "missing `authorization: Bearer <token>` metadata",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef-x";

    fn call(auth: &mut BearerAuth, header: Option<&str>) -> Result<(), tonic::Code> {
        let mut r = Request::new(());
        if let Some(h) = header {
            r.metadata_mut().insert("authorization", h.parse().unwrap());
        }
        auth.call(r).map(|_| ()).map_err(|s| s.code())
    }

    #[test]
    fn bearer_tokens_are_checked() {
        let mut auth = BearerAuth::new(Some(BearerToken::new(TOKEN).unwrap()));
        assert_eq!(call(&mut auth, Some(&format!("Bearer {TOKEN}"))), Ok(()));
        assert_eq!(call(&mut auth, None), Err(tonic::Code::Unauthenticated));
        assert_eq!(
            call(&mut auth, Some("Bearer nope")),
            Err(tonic::Code::Unauthenticated)
        );
        assert_eq!(
            call(&mut auth, Some(TOKEN)),
            Err(tonic::Code::Unauthenticated)
        );
        let wrong_last = format!("Bearer {}y", &TOKEN[..TOKEN.len() - 1]);
        assert_eq!(
            call(&mut auth, Some(&wrong_last)),
            Err(tonic::Code::Unauthenticated)
        );
        assert!(BearerToken::new("short").is_err());
        assert!(format!("{:?}", BearerToken::new(TOKEN).unwrap()).contains("REDACTED"));
        let mut open = BearerAuth::new(None);
        assert_eq!(call(&mut open, None), Ok(()));
    }
}
