//! Downloading a file from the Hugging Face Hub: `GET {endpoint}/{repo}/resolve/main/{file}`,
//! streamed to disk with progress. `HF_ENDPOINT` (a mirror) and `HF_TOKEN` (gated repositories)
//! mean what they mean to the Hub's own tools.

use std::time::Duration;

use crate::error::FetchError;
use crate::progress::{CopyError, Progress, Reporter};
use crate::verify::HashingWriter;

pub(crate) const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Where the Hub is and how to authenticate to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HfConfig {
    pub endpoint: String,
    pub token: Option<String>,
}

impl Default for HfConfig {
    fn default() -> Self {
        Self {
            endpoint: DEFAULT_ENDPOINT.into(),
            token: None,
        }
    }
}

pub(crate) fn url(endpoint: &str, repo: &str, file: &str) -> String {
    format!(
        "{}/{repo}/resolve/main/{file}",
        endpoint.trim_end_matches('/')
    )
}

/// Rejects names that are not `OWNER/NAME` + a relative file path, since both become parts of a
/// local path and of a URL (`..` would escape the store, `?` or `#` would change the request).
pub(crate) fn validate(repo: &str, file: &str) -> Result<(), FetchError> {
    let bad = |reason| {
        Err(FetchError::BadHfName {
            repo: repo.to_string(),
            file: file.to_string(),
            reason,
        })
    };
    let segment_ok = |s: &str| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && !s.chars().any(|c| c.is_control() || "\\?#%:".contains(c))
    };
    let repo_parts: Vec<&str> = repo.split('/').collect();
    if repo_parts.len() != 2 || !repo_parts.iter().all(|s| segment_ok(s)) {
        return bad("the repository must be OWNER/NAME");
    }
    if !file.split('/').all(segment_ok) {
        return bad("the file must be a relative path inside the repository");
    }
    Ok(())
}

/// GETs the file into `out`, reporting progress against `size_hint` until the server announces a
/// length; returns the length the server announced.
pub(crate) fn download(
    config: &HfConfig,
    repo: &str,
    file: &str,
    out: &mut HashingWriter,
    size_hint: Option<u64>,
    progress: &mut dyn FnMut(Progress),
) -> Result<Option<u64>, FetchError> {
    let url = url(&config.endpoint, repo, file);
    let http_error = |message: String| FetchError::Http {
        url: url.clone(),
        message,
    };
    progress(Progress {
        stage: format!("connecting to {}", config.endpoint),
        done_bytes: 0,
        total_bytes: size_hint,
    });
    let client = reqwest::blocking::Client::builder()
        .user_agent(concat!("tandem/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(30))
        // Bounds the wait for headers and for each read of the body: a stalled transfer fails, a
        // slow but moving one does not.
        .timeout(Duration::from_secs(120))
        .build()
        .map_err(|e| http_error(error_chain(&e)))?;
    let mut request = client.get(&url);
    if let Some(token) = &config.token {
        request = request.bearer_auth(token);
    }
    let mut response = request
        .send()
        .map_err(|e| http_error(error_chain(&e.without_url())))?;
    let status = response.status();
    if !status.is_success() {
        let hint = match status.as_u16() {
            401 | 403 => " (gated or private repository: accept its terms and set HF_TOKEN)",
            404 => " (no such repository or file)",
            _ => "",
        };
        return Err(http_error(format!("HTTP {status}{hint}")));
    }
    let length = response.content_length();
    let mut reporter = Reporter {
        stage: format!("downloading {repo}/{file}"),
        base: 0,
        total: length.or(size_hint),
        sink: progress,
    };
    reporter.copy(&mut response, out).map_err(|e| match e {
        CopyError::Read(e) => http_error(format!("download interrupted: {}", error_chain(&e))),
        CopyError::Write(e) => FetchError::io(format!("writing {}", out.path().display()), e),
    })?;
    Ok(length)
}

/// An error and its causes on one line: reqwest's own message omits the cause (DNS, TLS, ...).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// A one-request HTTP server on 127.0.0.1 for tests; the thread returns the request head.
#[cfg(test)]
pub(crate) fn serve_once(response: Vec<u8>) -> (String, std::thread::JoinHandle<String>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let endpoint = format!(
        "http://{}",
        listener.local_addr().unwrap_or_else(|e| panic!("{e}"))
    );
    let handle = std::thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else {
            return String::new();
        };
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).is_ok_and(|n| n == 1) {
            head.push(byte[0]);
        }
        let _ = stream.write_all(&response);
        String::from_utf8_lossy(&head).into_owned()
    });
    (endpoint, handle)
}

/// A full HTTP/1.1 response; `length` overrides the Content-Length to simulate a cut transfer.
#[cfg(test)]
pub(crate) fn http_response(status: &str, body: &[u8], length: Option<usize>) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        length.unwrap_or(body.len())
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_dir;

    fn config(endpoint: String) -> HfConfig {
        HfConfig {
            endpoint,
            token: Some("hf_test".into()),
        }
    }

    #[test]
    fn urls_and_names() {
        assert_eq!(
            url("https://huggingface.co/", "Qwen/R", "a/b.gguf"),
            "https://huggingface.co/Qwen/R/resolve/main/a/b.gguf"
        );
        assert!(validate("Qwen/R", "sub/x.gguf").is_ok());
        for (repo, file) in [
            ("Qwen", "x.gguf"),
            ("a/b/c", "x.gguf"),
            ("../b", "x.gguf"),
            ("a/b", "../x.gguf"),
            ("a/b", "/x.gguf"),
            ("a/b", "x.gguf?download=1"),
            ("a/b", ""),
        ] {
            assert!(validate(repo, file).is_err(), "{repo} {file}");
        }
    }

    #[test]
    fn streams_body_and_sends_token() {
        let body = b"GGUF and then some weights".repeat(1000);
        let (endpoint, server) = serve_once(http_response("200 OK", &body, None));
        let dir = test_dir("hf-ok");
        let mut out = HashingWriter::create(&dir.join("f")).unwrap_or_else(|e| panic!("{e}"));
        let mut last = None;
        let length = download(
            &config(endpoint),
            "o/r",
            "m.gguf",
            &mut out,
            None,
            &mut |p| last = Some(p),
        );
        assert_eq!(length.ok(), Some(Some(body.len() as u64)));
        assert_eq!(out.written(), body.len() as u64);
        assert_eq!(last.map(|p| p.done_bytes), Some(body.len() as u64));
        let head = server.join().unwrap_or_default();
        assert!(head.starts_with("GET /o/r/resolve/main/m.gguf "), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("authorization: bearer hf_test"),
            "{head}"
        );
    }

    #[test]
    fn http_errors_name_url_and_status() {
        let (endpoint, server) = serve_once(http_response("404 Not Found", b"nope", None));
        let dir = test_dir("hf-404");
        let mut out = HashingWriter::create(&dir.join("f")).unwrap_or_else(|e| panic!("{e}"));
        let err = download(
            &config(endpoint),
            "o/r",
            "m.gguf",
            &mut out,
            None,
            &mut |_| {},
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        let _ = server.join();
        assert!(
            err.contains("/o/r/resolve/main/m.gguf") && err.contains("404"),
            "{err}"
        );
    }

    #[test]
    fn cut_transfer_is_an_error() {
        let (endpoint, server) = serve_once(http_response("200 OK", b"GGUF", Some(1000)));
        let dir = test_dir("hf-cut");
        let mut out = HashingWriter::create(&dir.join("f")).unwrap_or_else(|e| panic!("{e}"));
        let result = download(
            &config(endpoint),
            "o/r",
            "m.gguf",
            &mut out,
            None,
            &mut |_| {},
        );
        let _ = server.join();
        assert!(matches!(result, Err(FetchError::Http { .. })), "{result:?}");
    }
}
