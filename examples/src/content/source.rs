//! Where a request's image comes from, and the checks on it: the host
//! allow-list for URLs, the size limit, and that the bytes are an image.
//! Pure, but for [`download`].

use std::time::Duration;

use base64::Engine;
use serde::{Deserialize, Serialize};

/// An image as a request gives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ImageSource {
    /// Fetched with a GET (http only, from an allowed host).
    Url(String),
    /// Base64 text (standard alphabet).
    Base64(String),
    /// The bytes themselves.
    Bytes(#[serde(with = "serde_bytes")] Vec<u8>),
}

/// A stage's refusal, with the HTTP status the client gets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct StageError {
    pub status: u16,
    pub message: String,
}

impl StageError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        StageError {
            status: 400,
            message: message.into(),
        }
    }

    pub fn too_large(limit: usize) -> Self {
        StageError {
            status: 413,
            message: format!("the image is larger than {limit} bytes; send a smaller one"),
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        StageError {
            status: 500,
            message: message.into(),
        }
    }
}

/// What a request's body means: raw image bytes (any content type but
/// JSON), or JSON `{"url": "..."}` / `{"image_base64": "..."}`.
pub fn parse_request(content_type: Option<&str>, body: &[u8]) -> Result<ImageSource, StageError> {
    let is_json = content_type.is_some_and(|t| t.starts_with("application/json"));
    if !is_json {
        if body.is_empty() {
            return Err(StageError::bad_request(
                "the body is empty: POST an image (JPEG or PNG), or JSON {\"url\": ...} or {\"image_base64\": ...}",
            ));
        }
        return Ok(ImageSource::Bytes(body.to_vec()));
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Json {
        url: Option<String>,
        image_base64: Option<String>,
    }
    let json: Json = serde_json::from_slice(body).map_err(|e| {
        StageError::bad_request(format!(
            "the JSON body must be {{\"url\": \"http://...\"}} or {{\"image_base64\": \"...\"}}: {e}"
        ))
    })?;
    match (json.url, json.image_base64) {
        (Some(url), None) => Ok(ImageSource::Url(url)),
        (None, Some(b64)) => Ok(ImageSource::Base64(b64)),
        _ => Err(StageError::bad_request(
            "give exactly one of \"url\" and \"image_base64\"",
        )),
    }
}

/// The host of an `http://` URL, if it is on `allowed` (exact names or
/// addresses, compared without case).
pub fn allowed_host(url: &str, allowed: &[String]) -> Result<String, StageError> {
    let uri: ureq::http::Uri = url
        .parse()
        .map_err(|e| StageError::bad_request(format!("{url:?} is not a URL: {e}")))?;
    if uri.scheme_str() != Some("http") {
        return Err(StageError::bad_request(format!(
            "only http:// URLs are fetched, got {url:?}"
        )));
    }
    let host = uri
        .host()
        .ok_or_else(|| StageError::bad_request(format!("{url:?} has no host")))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    if !allowed.iter().any(|a| a.eq_ignore_ascii_case(&host)) {
        return Err(StageError::bad_request(format!(
            "host {host:?} is not on the downloader's allow-list ({}); add it to the application's `allowed_hosts`",
            allowed.join(", ")
        )));
    }
    Ok(host)
}

/// Checks the bytes are a JPEG or PNG no larger than `limit`.
pub fn check_image(bytes: &[u8], limit: usize) -> Result<(), StageError> {
    if bytes.len() > limit {
        return Err(StageError::too_large(limit));
    }
    let jpeg = bytes.starts_with(&[0xFF, 0xD8, 0xFF]);
    let png = bytes.starts_with(b"\x89PNG\r\n\x1a\n");
    if !(jpeg || png) {
        return Err(StageError::bad_request(
            "the data is not a JPEG or PNG image",
        ));
    }
    Ok(())
}

/// Decodes base64 text, refusing more than `limit` bytes of image.
pub fn decode_base64(text: &str, limit: usize) -> Result<Vec<u8>, StageError> {
    // 4 characters per 3 bytes: refuse before decoding what is too long.
    if text.len() / 4 * 3 > limit + 3 {
        return Err(StageError::too_large(limit));
    }
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| StageError::bad_request(format!("image_base64 is not base64: {e}")))
}

/// GETs `url` (already allowed), no redirects, at most `limit` bytes,
/// within `timeout`. Blocking: call it off the event loop.
pub fn download(url: &str, limit: usize, timeout: Duration) -> Result<Vec<u8>, StageError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .max_redirects(0)
        .http_status_as_error(false)
        .build()
        .into();
    let mut response = agent
        .get(url)
        .call()
        .map_err(|e| StageError::bad_request(format!("fetching {url} failed: {e}")))?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(StageError::bad_request(format!(
            "fetching {url} answered HTTP {status}, not 200"
        )));
    }
    response
        .body_mut()
        .with_config()
        .limit(limit as u64 + 1)
        .read_to_vec()
        .map_err(|e| match e {
            ureq::Error::BodyExceedsLimit(_) => StageError::too_large(limit),
            e => StageError::bad_request(format!("reading {url} failed: {e}")),
        })
        .and_then(|bytes| match bytes.len() > limit {
            true => Err(StageError::too_large(limit)),
            false => Ok(bytes),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_into_sources() {
        assert_eq!(
            parse_request(Some("image/jpeg"), b"\xFF\xD8\xFF").unwrap(),
            ImageSource::Bytes(vec![0xFF, 0xD8, 0xFF])
        );
        assert_eq!(
            parse_request(Some("application/json"), br#"{"url": "http://x/a.jpg"}"#).unwrap(),
            ImageSource::Url("http://x/a.jpg".into())
        );
        assert_eq!(
            parse_request(Some("application/json"), br#"{"image_base64": "AA=="}"#).unwrap(),
            ImageSource::Base64("AA==".into())
        );
        for bad in [
            &b"{}"[..],
            br#"{"url": "a", "image_base64": "b"}"#,
            br#"{"uri": "a"}"#,
            b"nope",
        ] {
            assert_eq!(
                parse_request(Some("application/json"), bad)
                    .unwrap_err()
                    .status,
                400
            );
        }
        assert_eq!(parse_request(None, b"").unwrap_err().status, 400);
    }

    #[test]
    fn only_allowed_http_hosts_pass() {
        let allowed = vec!["127.0.0.1".to_string(), "localhost".to_string()];
        assert_eq!(
            allowed_host("http://127.0.0.1:8080/cat.jpg", &allowed).unwrap(),
            "127.0.0.1"
        );
        assert_eq!(
            allowed_host("http://LOCALHOST/x", &allowed).unwrap(),
            "localhost"
        );
        let e = allowed_host("http://example.com/cat.jpg", &allowed).unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.message.contains("allow-list"), "{e}");
        assert!(allowed_host("https://127.0.0.1/x", &allowed).is_err());
        assert!(allowed_host("file:///etc/passwd", &allowed).is_err());
        // Userinfo cannot smuggle another host past the check.
        assert!(allowed_host("http://127.0.0.1@example.com/x", &allowed).is_err());
    }

    #[test]
    fn images_are_sniffed_and_bounded() {
        assert!(check_image(b"\xFF\xD8\xFF\xE0rest", 100).is_ok());
        assert!(check_image(b"\x89PNG\r\n\x1a\nrest", 100).is_ok());
        assert_eq!(check_image(b"GIF89a", 100).unwrap_err().status, 400);
        assert_eq!(check_image(&[0xFF; 200], 100).unwrap_err().status, 413);
        assert_eq!(decode_base64("/9j/", 10).unwrap(), vec![0xFF, 0xD8, 0xFF]);
        assert_eq!(decode_base64("!!!!", 10).unwrap_err().status, 400);
        assert_eq!(
            decode_base64(&"A".repeat(400), 100).unwrap_err().status,
            413
        );
    }
}
