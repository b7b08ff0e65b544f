//! A stand-in judge: a tiny local HTTP server speaking the OpenAI chat-completions shape, whose
//! verdicts the test decides. It stands in for a 72B judge model that cannot run here.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A running stand-in judge.
pub struct StandInJudge {
    /// Its base URL (`http://127.0.0.1:PORT/v1`).
    pub url: String,
    /// Requests served.
    #[allow(dead_code)] // read by the tests that count requests
    pub requests: Arc<AtomicUsize>,
}

/// Start a stand-in judge that answers each prompt with `reply(prompt)` as the message content.
pub fn start(reply: impl Fn(&str) -> String + Send + Sync + 'static) -> StandInJudge {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/v1", listener.local_addr().expect("addr"));
    let requests = Arc::new(AtomicUsize::new(0));
    let served = Arc::clone(&requests);
    let reply = Arc::new(reply);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let reply = Arc::clone(&reply);
            served.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut len = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; len];
                let _ = reader.read_exact(&mut body);
                let req: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                let prompt = req["messages"][0]["content"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                let content = reply(&prompt);
                let resp = serde_json::json!({"choices": [{"message": {"role": "assistant", "content": content}}]}).to_string();
                let mut stream = stream;
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{resp}",
                    resp.len()
                );
            });
        }
    });
    StandInJudge { url, requests }
}

/// A URL where nothing listens (a judge that is down).
pub fn unreachable_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    format!("http://127.0.0.1:{port}/v1")
}
