//! Redaction: what of a secret-bearing value may appear in logs, metrics,
//! span attributes and error messages. RPC URLs carry API keys in their
//! paths and query strings; only scheme, host and port are ever shown.

use url::Url;

/// An endpoint's name safe to log: scheme, host and port, nothing else.
pub fn url(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{}://{h}:{p}", url.scheme()),
        (Some(h), None) => format!("{}://{h}", url.scheme()),
        _ => format!("{}://<no host>", url.scheme()),
    }
}

/// [`url`] of a URL given as text (`"<invalid URL>"` when it does not
/// parse: the text itself may be a secret).
pub fn url_str(text: &str) -> String {
    Url::parse(text)
        .map(|u| url(&u))
        .unwrap_or_else(|_| "<invalid URL>".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_keeps_only_scheme_host_port() {
        let u =
            Url::parse("https://user:pw@arb-mainnet.example.com/v2/SECRETKEY?apikey=XYZ").unwrap();
        assert_eq!(url(&u), "https://arb-mainnet.example.com");
        let u = Url::parse("http://127.0.0.1:8545/abc").unwrap();
        assert_eq!(url(&u), "http://127.0.0.1:8545");
        assert_eq!(url_str("SECRET not a url"), "<invalid URL>");
    }
}
