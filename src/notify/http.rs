//! The HTTP boundary of notifications: a trait, so that what is sent where
//! is tested with a fake, and its one real implementation on ureq (plain
//! http, and https with the system's certificate store).

use std::time::Duration;

/// Sends one POST request.
pub trait Http {
    /// POST `body` with `headers` to `url`, giving up after `limit`: the
    /// status code of the answer, or why there was none.
    fn post(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: &[u8],
        limit: Duration,
    ) -> Result<u16, String>;
}

/// [`Http`] through a ureq agent.
pub struct UreqHttp {
    agent: ureq::Agent,
}

impl UreqHttp {
    /// An agent that treats every status as an answer (the caller judges
    /// it) and trusts the certificates the system trusts, so that a
    /// self-hosted ntfy with the household's own CA works.
    pub fn new() -> UreqHttp {
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::PlatformVerifier)
            .build();
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .tls_config(tls)
            .user_agent(format!("leger-backup/{}", env!("CARGO_PKG_VERSION")))
            .build();
        UreqHttp {
            agent: config.into(),
        }
    }
}

impl Default for UreqHttp {
    fn default() -> Self {
        Self::new()
    }
}

impl Http for UreqHttp {
    fn post(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: &[u8],
        limit: Duration,
    ) -> Result<u16, String> {
        let mut request = self
            .agent
            .post(url)
            .config()
            .timeout_global(Some(limit))
            .build();
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        match request.send(body) {
            Ok(response) => Ok(response.status().as_u16()),
            Err(ureq::Error::Timeout(_)) => Err(format!(
                "no answer within {} s",
                (limit.as_secs_f64() * 10.0).round() / 10.0
            )),
            Err(e) => Err(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;

    use super::*;

    /// A one-shot server on loopback that reads a little and writes `reply`.
    fn serve_once(reply: &'static str) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            if let Ok((mut stream, _)) = listener.accept() {
                let mut buf = [0; 4096];
                let _ = stream.read(&mut buf);
                let _ = stream.write_all(reply.as_bytes());
            }
        });
        port
    }

    #[test]
    fn plain_http_gets_the_status_and_https_really_speaks_tls() {
        let http = UreqHttp::new();
        let limit = Duration::from_secs(5);
        let port = serve_once("HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n");
        let url = format!("http://127.0.0.1:{port}/hook");
        assert_eq!(http.post(&url, &[], b"{}", limit), Ok(204));
        let port = serve_once("HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n");
        let url = format!("http://127.0.0.1:{port}/hook");
        assert_eq!(http.post(&url, &[], b"{}", limit), Ok(500));
        // An https URL on a plain-text server: a TLS error, not a panic
        // and not an answer (the TLS stack and the trust store are there).
        let port = serve_once("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        let url = format!("https://127.0.0.1:{port}/hook");
        let err = http.post(&url, &[], b"{}", limit).unwrap_err();
        assert!(
            err.contains("corrupt message"),
            "rustls refused plain text: {err}"
        );
    }

    #[test]
    fn a_server_that_never_answers_is_given_up_on_at_the_limit() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let start = std::time::Instant::now();
        let err = UreqHttp::new()
            .post(
                &format!("http://127.0.0.1:{port}/"),
                &[],
                b"",
                Duration::from_millis(500),
            )
            .unwrap_err();
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(err, "no answer within 0.5 s");
        drop(listener);
    }
}
