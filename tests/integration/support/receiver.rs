//! A real HTTP receiver on loopback for the notification tests: a
//! `TcpListener` on a free port of 127.0.0.1 that records every request
//! (method, path, headers, body) and answers with a given status — or
//! never answers, to test the time limits. The testbed shares the host's
//! network, so leger-backup inside it reaches `127.0.0.1:PORT` too.
//!
//! One thread accepts and reads; it stops when the receiver drops.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// With this status code and an empty body.
    Status(u16),
    /// Not at all: the request is read and the connection held open.
    Hang,
}

/// One request received.
#[derive(Debug, Clone)]
pub struct Request {
    /// `POST`, `GET`, ...
    pub method: String,
    /// The path and query, as requested.
    pub path: String,
    /// Header names in lower case, with their values.
    pub headers: Vec<(String, String)>,
    /// The body, as text.
    pub body: String,
}

impl Request {
    /// The value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (panics, naming it, when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} {}: body is not JSON ({e}): {}",
                self.method, self.path, self.body
            )
        })
    }
}

/// The receiver; stopped when dropped.
pub struct Receiver {
    port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// The longest the receiver waits for a request's bytes.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

impl Receiver {
    /// Listen on a free port of 127.0.0.1, answering `answer`.
    pub fn start(answer: Answer) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (requests, stop) = (requests.clone(), stop.clone());
            std::thread::spawn(move || serve(&listener, answer, &requests, &stop))
        };
        Receiver {
            port,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    /// A loopback URL on which nothing listens: a receiver that is down.
    pub fn down_url(path: &str) -> String {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        format!("http://127.0.0.1:{port}{path}")
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// The requests once there are at least `n`, waiting up to `limit`
    /// (panics, listing those received, when they do not come).
    pub fn wait_for(&self, n: usize, limit: Duration) -> Vec<Request> {
        let start = Instant::now();
        loop {
            let got = self.requests();
            if got.len() >= n {
                return got;
            }
            assert!(
                start.elapsed() < limit,
                "the receiver got {} request(s) within {limit:?}, not {n}: {got:#?}",
                got.len()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The paths requested, in order.
    pub fn paths(&self) -> Vec<String> {
        self.requests().into_iter().map(|r| r.path).collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Accept until stopped; connections left unanswered (`Hang`) are held
/// until then.
fn serve(
    listener: &TcpListener,
    answer: Answer,
    requests: &Mutex<Vec<Request>>,
    stop: &AtomicBool,
) {
    let mut held = Vec::new();
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(mut stream) = stream else { continue };
        let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
        if let Some(request) = read_request(&stream) {
            requests.lock().unwrap().push(request);
        }
        match answer {
            Answer::Status(code) => {
                let _ = write!(
                    stream,
                    "HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
            Answer::Hang => held.push(stream),
        }
    }
}

/// Read one request: its head, then `Content-Length` bytes of body.
fn read_request(stream: &TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_owned(), parts.next()?.to_owned());
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).ok()?;
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        let (k, v) = trimmed.split_once(':')?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
    }
    let length: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        path,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}
