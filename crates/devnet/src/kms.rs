//! A fake AWS KMS for offline tests of the sidecar's `aws_kms` signer: it
//! speaks the real wire protocol of the two calls the signer makes, so the
//! real AWS SDK and alloy's `AwsSigner` run unchanged against it.
//!
//! - `POST /`, `Content-Type: application/x-amz-json-1.1`, `X-Amz-Target:
//!   TrentService.GetPublicKey` / `TrentService.Sign`, a SigV4
//!   `Authorization` header (present; not verified: any credentials do).
//! - `GetPublicKey` answers the SPKI DER of its secp256k1 key (`KeySpec
//!   ECC_SECG_P256K1`, `KeyUsage SIGN_VERIFY`).
//! - `Sign` takes a base64 `Message` with `MessageType` `DIGEST` (exactly
//!   32 bytes, signed as given) or `RAW` (hashed with SHA-256 first) and
//!   `SigningAlgorithm ECDSA_SHA_256`; answers a DER signature. RFC 6979,
//!   so the same key signs the same digest as alloy's local signer does,
//!   except that every other signature is given high-S (n - s), as a KMS
//!   may: the client must normalise.
//! - Errors as HTTP 400 with a JSON `__type` (`ThrottlingException`,
//!   `NotFoundException`, `DisabledException`, `KMSInvalidStateException`,
//!   `ValidationException`, `InvalidKeyUsageException`...) and a `message`.
//!
//! The test controls it: throttle or fail the next N calls, delay answers,
//! or sign like moto does ([`SignMode::Sha256OfDigest`]: moto ignores
//! `MessageType=DIGEST` and signs sha256(digest)). It counts calls by
//! operation. It binds 127.0.0.1 only.

use std::{
    collections::BTreeMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use alloy::primitives::B256;
use base64::{Engine, engine::general_purpose::STANDARD as B64};
use http_body_util::{BodyExt, Full};
use hyper::{
    Request, Response, StatusCode,
    body::{Bytes, Incoming},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::TokioIo;
use k256::ecdsa::{Signature, SigningKey, signature::hazmat::PrehashSigner};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::{net::TcpListener, task::JoinHandle};

/// The SPKI `AlgorithmIdentifier` (id-ecPublicKey, secp256k1) and the
/// BIT STRING header of a 65-byte uncompressed point.
const SPKI_PREFIX: [u8; 23] = [
    0x30, 0x56, 0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05, 0x2b,
    0x81, 0x04, 0x00, 0x0a, 0x03, 0x42, 0x00,
];

/// What `Sign` signs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignMode {
    /// As AWS KMS: a `DIGEST` message is signed as given.
    Digest,
    /// As moto (its PR 10202 still open): sha256(message) whatever
    /// `MessageType` says.
    Sha256OfDigest,
}

struct State {
    key: SigningKey,
    key_id: String,
    arn: String,
    mode: SignMode,
    /// Calls answered by operation (`GetPublicKey`, `Sign`), errors included.
    calls: BTreeMap<String, u64>,
    /// Signatures given.
    signed: u64,
    /// The next calls (any operation) answered with this error type.
    fail: Vec<String>,
    /// Errors given, by `__type`.
    errors: BTreeMap<String, u64>,
    delay: Duration,
}

/// The fake KMS; stops when dropped.
pub struct FakeKms {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl Drop for FakeKms {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeKms {
    /// Serves on 127.0.0.1 a key holding `secret` (the same secp256k1 secret
    /// a local signer would hold), known as `key_id` (a UUID-like id; its
    /// ARN works too).
    pub async fn start(secret: B256, key_id: &str) -> std::io::Result<FakeKms> {
        let key = SigningKey::from_slice(secret.as_slice())
            .map_err(|e| std::io::Error::other(format!("not a secp256k1 secret: {e}")))?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State {
            key,
            key_id: key_id.to_string(),
            arn: format!("arn:aws:kms:us-east-1:111122223333:key/{key_id}"),
            mode: SignMode::Digest,
            calls: BTreeMap::new(),
            signed: 0,
            fail: Vec::new(),
            errors: BTreeMap::new(),
            delay: Duration::ZERO,
        }));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = shared.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(handle(&state, req).await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(FakeKms { addr, state, task })
    }

    /// The endpoint URL (`wallet.aws_kms.endpoint_url`, `AWS_ENDPOINT_URL_KMS`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The key's ARN.
    pub fn arn(&self) -> String {
        self.lock().arn.clone()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Calls of `operation` (`GetPublicKey`, `Sign`) received, errors included.
    pub fn calls(&self, operation: &str) -> u64 {
        self.lock().calls.get(operation).copied().unwrap_or(0)
    }

    /// Signatures given.
    pub fn signed(&self) -> u64 {
        self.lock().signed
    }

    /// Errors given of `error_type`.
    pub fn errors(&self, error_type: &str) -> u64 {
        self.lock().errors.get(error_type).copied().unwrap_or(0)
    }

    /// The next `n` calls answer `ThrottlingException`.
    pub fn throttle_next(&self, n: usize) {
        self.fail_next("ThrottlingException", n);
    }

    /// The next `n` calls answer HTTP 400 with `__type` `error_type`.
    pub fn fail_next(&self, error_type: &str, n: usize) {
        let mut s = self.lock();
        s.fail = vec![error_type.to_string(); n];
    }

    /// Errors still queued are dropped: the next call succeeds.
    pub fn recover(&self) {
        self.lock().fail.clear();
    }

    pub fn set_mode(&self, mode: SignMode) {
        self.lock().mode = mode;
    }

    /// Every answer waits `delay` first.
    pub fn set_delay(&self, delay: Duration) {
        self.lock().delay = delay;
    }
}

fn answer(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amzn-requestid", "00000000-0000-0000-0000-000000000000")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a valid response")
}

fn error(error_type: &str, message: &str) -> Response<Full<Bytes>> {
    answer(
        StatusCode::BAD_REQUEST,
        json!({ "__type": error_type, "message": message }),
    )
}

async fn handle(state: &Mutex<State>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let target = header("x-amz-target");
    let content_type = header("content-type");
    let authorization = header("authorization");
    let post_root = req.method() == hyper::Method::POST && req.uri().path() == "/";
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return error("SerializationException", &e.to_string()),
    };
    let delay = lock(state).delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if !post_root {
        return error("UnknownOperationException", "POST / only");
    }
    if content_type != "application/x-amz-json-1.1" {
        return error(
            "SerializationException",
            &format!("unexpected content type {content_type:?}"),
        );
    }
    if !authorization.starts_with("AWS4-HMAC-SHA256 Credential=") {
        return error(
            "MissingAuthenticationTokenException",
            "Missing Authentication Token",
        );
    }
    let Some(operation) = target.strip_prefix("TrentService.") else {
        return error("UnknownOperationException", &target);
    };
    let mut s = lock(state);
    *s.calls.entry(operation.to_string()).or_default() += 1;
    if !s.fail.is_empty() {
        let t = s.fail.remove(0);
        *s.errors.entry(t.clone()).or_default() += 1;
        let message = match t.as_str() {
            "ThrottlingException" => "Rate exceeded".to_string(),
            _ => format!("{} is not usable (injected {t})", s.arn),
        };
        return error(&t, &message);
    }
    let input: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return error("SerializationException", &e.to_string()),
    };
    let key_id = input["KeyId"].as_str().unwrap_or_default();
    if key_id != s.key_id && key_id != s.arn {
        return error(
            "NotFoundException",
            &format!("Key '{key_id}' does not exist"),
        );
    }
    match operation {
        "GetPublicKey" => {
            let point = s.key.verifying_key().to_encoded_point(false);
            let mut der = SPKI_PREFIX.to_vec();
            der.extend_from_slice(point.as_bytes());
            answer(
                StatusCode::OK,
                json!({
                    "CustomerMasterKeySpec": "ECC_SECG_P256K1",
                    "KeyId": s.arn,
                    "KeySpec": "ECC_SECG_P256K1",
                    "KeyUsage": "SIGN_VERIFY",
                    "PublicKey": B64.encode(der),
                    "SigningAlgorithms": ["ECDSA_SHA_256"],
                }),
            )
        }
        "Sign" => sign(&mut s, &input),
        other => error("UnknownOperationException", other),
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

fn sign(s: &mut State, input: &Value) -> Response<Full<Bytes>> {
    if input["SigningAlgorithm"] != "ECDSA_SHA_256" {
        return error(
            "InvalidKeyUsageException",
            &format!(
                "signing algorithm {} is not valid for this key",
                input["SigningAlgorithm"]
            ),
        );
    }
    let message = match input["Message"].as_str().map(|m| B64.decode(m)) {
        Some(Ok(m)) => m,
        _ => return error("ValidationException", "Message must be base64"),
    };
    let digest: [u8; 32] = match (input["MessageType"].as_str().unwrap_or("RAW"), s.mode) {
        (_, SignMode::Sha256OfDigest) | ("RAW", _) => Sha256::digest(&message).into(),
        ("DIGEST", SignMode::Digest) => match message.try_into() {
            Ok(d) => d,
            Err(_) => {
                return error(
                    "ValidationException",
                    "Digest is invalid length for algorithm ECDSA_SHA_256.",
                );
            }
        },
        (other, _) => {
            return error(
                "ValidationException",
                &format!("MessageType {other:?} is not DIGEST or RAW"),
            );
        }
    };
    let sig: Signature = match s.key.sign_prehash(&digest) {
        Ok(sig) => sig,
        Err(e) => return error("KMSInternalException", &e.to_string()),
    };
    s.signed += 1;
    // Every other signature high-S, as KMS does not normalise.
    let sig = if s.signed.is_multiple_of(2) {
        Signature::from_scalars(sig.r(), -*sig.s()).unwrap_or(sig)
    } else {
        sig
    };
    answer(
        StatusCode::OK,
        json!({
            "KeyId": s.arn,
            "Signature": B64.encode(sig.to_der().as_bytes()),
            "SigningAlgorithm": "ECDSA_SHA_256",
        }),
    )
}

#[cfg(test)]
mod tests {
    use alloy::{primitives::b256, transports::http::reqwest};
    use k256::ecdsa::{VerifyingKey, signature::hazmat::PrehashVerifier};

    use super::*;

    const SECRET: B256 =
        b256!("0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d");

    async fn call(kms: &FakeKms, op: &str, body: Value, signed: bool) -> (u16, Value) {
        let mut req = reqwest::Client::new()
            .post(kms.url())
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", format!("TrentService.{op}"));
        if signed {
            req = req.header(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=AKID/20261205/us-east-1/kms/aws4_request, SignedHeaders=host, Signature=00",
            );
        }
        let resp = req.body(body.to_string()).send().await.unwrap();
        let status = resp.status().as_u16();
        (
            status,
            serde_json::from_str(&resp.text().await.unwrap()).unwrap(),
        )
    }

    fn sign_body(kms: &FakeKms, message: &[u8]) -> Value {
        json!({
            "KeyId": kms.arn(),
            "Message": B64.encode(message),
            "MessageType": "DIGEST",
            "SigningAlgorithm": "ECDSA_SHA_256",
        })
    }

    #[tokio::test]
    async fn speaks_get_public_key_and_sign_as_aws_kms_does() {
        let kms = FakeKms::start(SECRET, "k1").await.unwrap();
        let key = SigningKey::from_slice(SECRET.as_slice()).unwrap();

        let (status, pk) = call(&kms, "GetPublicKey", json!({"KeyId": "k1"}), true).await;
        assert_eq!(status, 200, "{pk}");
        assert_eq!(pk["KeySpec"], "ECC_SECG_P256K1");
        let der = B64.decode(pk["PublicKey"].as_str().unwrap()).unwrap();
        assert_eq!(der.len(), 88);
        let vk = VerifyingKey::from_sec1_bytes(&der[SPKI_PREFIX.len()..]).unwrap();
        assert_eq!(&vk, key.verifying_key());

        // The digest as given; every other answer high-S, both valid.
        let digest = [7u8; 32];
        let mut high = Vec::new();
        for _ in 0..2 {
            let (status, out) = call(&kms, "Sign", sign_body(&kms, &digest), true).await;
            assert_eq!(status, 200, "{out}");
            let der = B64.decode(out["Signature"].as_str().unwrap()).unwrap();
            let sig = Signature::from_der(&der).unwrap();
            vk.verify_prehash(&digest, &sig.normalize_s().unwrap_or(sig))
                .unwrap();
            high.push(sig.normalize_s().is_some());
        }
        assert_eq!(high, [false, true]);
        assert_eq!(kms.calls("Sign"), 2);
        assert_eq!(kms.calls("GetPublicKey"), 1);

        // moto's way: sha256(digest) is signed, not the digest.
        kms.set_mode(SignMode::Sha256OfDigest);
        let (_, out) = call(&kms, "Sign", sign_body(&kms, &digest), true).await;
        let sig =
            Signature::from_der(&B64.decode(out["Signature"].as_str().unwrap()).unwrap()).unwrap();
        let sig = sig.normalize_s().unwrap_or(sig);
        assert!(vk.verify_prehash(&digest, &sig).is_err());
        let hashed: [u8; 32] = Sha256::digest(digest).into();
        vk.verify_prehash(&hashed, &sig).unwrap();
    }

    #[tokio::test]
    async fn errors_are_http_400_with_their_type() {
        let kms = FakeKms::start(SECRET, "k1").await.unwrap();
        let t = |v: &Value| v["__type"].as_str().unwrap_or_default().to_string();
        let (status, out) = call(&kms, "Sign", sign_body(&kms, &[1; 32]), false).await;
        assert_eq!(
            (status, t(&out)),
            (400, "MissingAuthenticationTokenException".into())
        );
        let (status, out) = call(&kms, "Sign", sign_body(&kms, &[1; 31]), true).await;
        assert_eq!((status, t(&out)), (400, "ValidationException".into()));
        let (_, out) = call(&kms, "GetPublicKey", json!({"KeyId": "other"}), true).await;
        assert_eq!(t(&out), "NotFoundException");
        kms.throttle_next(2);
        for _ in 0..2 {
            let (status, out) = call(&kms, "Sign", sign_body(&kms, &[1; 32]), true).await;
            assert_eq!((status, t(&out)), (400, "ThrottlingException".into()));
        }
        let (status, _) = call(&kms, "Sign", sign_body(&kms, &[1; 32]), true).await;
        assert_eq!(status, 200);
        assert_eq!(kms.errors("ThrottlingException"), 2);
        kms.fail_next("KMSInvalidStateException", 5);
        kms.recover();
        let (status, _) = call(&kms, "Sign", sign_body(&kms, &[1; 32]), true).await;
        assert_eq!(status, 200);
    }
}
