//! The end-to-end smoke test: leger-sim installs a deployment the way leger
//! does, Quadlet and the user manager start it, its page answers on the
//! host, and `plan` names its volume.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::testbed::Testbed;

const SIM: &str = "/src/tests/support/leger-sim";

/// GET / from the host, retrying while the server starts.
fn http_get(port: u16, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let attempt = TcpStream::connect(("127.0.0.1", port)).and_then(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
            let mut body = String::new();
            s.read_to_string(&mut body)?;
            Ok(body)
        });
        match attempt {
            Ok(body) if body.contains("200") => return body,
            other if Instant::now() >= deadline => panic!("no page on 127.0.0.1:{port}: {other:?}"),
            _ => std::thread::sleep(Duration::from_millis(300)),
        }
    }
}

#[test]
fn leger_sim_install_serves_page_and_plan_lists_volume() {
    let tb = Testbed::get();
    tb.sh(&format!(
        "{SIM} remove smoke --no-backup >/dev/null 2>&1; true"
    ));
    tb.ok(&format!(
        "{SIM} install smoke /src/tests/fixtures/deployments/smoke"
    ));
    tb.ok("systemctl --user is-active smoke-web.service");
    tb.ok(
        "d=$(mktemp -d) && echo hello-from-smoke > $d/index.html && \
         tar -C $d -cf - . | podman volume import systemd-smoke-www - && rm -r $d",
    );

    let page = http_get(18181, Duration::from_secs(30));
    assert!(page.contains("hello-from-smoke"), "{page}");

    let plan: serde_json::Value =
        serde_json::from_str(&tb.ok("leger-backup plan smoke --json")).expect("plan --json");
    assert_eq!(plan["kind"], "leger");
    let volumes: Vec<&str> = plan["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(volumes, ["systemd-smoke-www"]);
    assert_eq!(
        plan["volumes"][0]["used_by"],
        serde_json::json!(["smoke-web.service"])
    );
    // The volume plan names is the one Podman really has.
    tb.ok("podman volume exists systemd-smoke-www");

    tb.ok(&format!("{SIM} remove smoke --no-backup"));
}
