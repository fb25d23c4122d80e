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
            Err(ureq::Error::Timeout(_)) => {
                Err(format!("no answer within {:.0} s", limit.as_secs_f64()))
            }
            Err(e) => Err(e.to_string()),
        }
    }
}
