//! `rs-llama-server`'s `/cors-proxy` (`--ui-mcp-proxy`) over loopback, against a stub upstream
//! on a std listener that records every request it gets: off by default (llama-server's 403),
//! GET and POST forwarded with only the `X-Llama-Server-Proxy-Header-*` headers (renamed), the
//! upstream's status, headers and body passed back, redirects followed as cpp-httplib follows
//! them, and llama-server's answers to bad URLs and unreachable upstreams.

mod server_support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

use server_support::*;

/// One request as the upstream read it: request line, headers (names lowercased), body.
struct Seen {
    line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

struct Upstream {
    port: u16,
    seen: Receiver<Seen>,
}

impl Upstream {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn next(&self) -> Seen {
        self.seen.recv_timeout(TIMEOUT).expect("the upstream got a request")
    }

    /// Nothing more reached the upstream.
    fn assert_idle(&self) {
        let late = self.seen.recv_timeout(Duration::from_millis(300));
        assert!(late.is_err(), "unexpected upstream request: {}", late.map(|s| s.line).unwrap_or_default());
    }
}

/// The stub upstream: one thread answering a connection at a time by path (see [`answer`]).
fn upstream() -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, seen) = channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { continue };
            let _ = s.set_read_timeout(Some(TIMEOUT));
            let Some(req) = read_request(&mut s) else { continue };
            let reply = answer(&req.line);
            if tx.send(req).is_err() {
                return;
            }
            let _ = s.write_all(&reply);
        }
    });
    Upstream { port, seen }
}

fn read_request(s: &mut TcpStream) -> Option<Seen> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let split = loop {
        if let Some(p) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        let n = s.read(&mut buf).ok().filter(|&n| n > 0)?;
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let line = lines.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string())))
        .collect();
    let len =
        headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    let mut body = raw[split + 4..].to_vec();
    while body.len() < len {
        let n = s.read(&mut buf).ok().filter(|&n| n > 0)?;
        body.extend_from_slice(&buf[..n]);
    }
    Some(Seen { line, headers, body })
}

const HELLO: &str = "hello from upstream";

/// The upstream's answer to a request line, by its path.
fn answer(line: &str) -> Vec<u8> {
    let path = line.split(' ').nth(1).unwrap_or_default();
    let redirect = |status: &str, to: &str| {
        format!("HTTP/1.1 {status}\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    };
    let text = if path.starts_with("/echo") {
        format!(
            "HTTP/1.1 201 Created\r\nContent-Type: text/x-test\r\nX-Upstream: yes\r\nServer: upstream-stub\r\n\
             Access-Control-Allow-Origin: http://evil.test\r\nKeep-Alive: timeout=5\r\nSet-Cookie: a=1\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{HELLO}",
            HELLO.len()
        )
    } else if path == "/redirect" {
        redirect("302 Found", "/echo?from=redirect")
    } else if path == "/see-other" {
        redirect("303 See Other", "/echo?from=303")
    } else if path == "/loop" {
        redirect("302 Found", "/loop")
    } else if path == "/chunked" {
        // No Content-Type, a chunked body.
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n2\r\nab\r\n2\r\ncd\r\n0\r\n\r\n".into()
    } else if path == "/truncated" {
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\nConnection: close\r\n\r\nhello"
            .into()
    } else {
        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into()
    };
    text.into_bytes()
}

/// A SmolLM2 server with `flags` (one slot, small context: the proxy needs no model work).
fn start(flags: &[&str]) -> Option<Server> {
    let m = model("smollm2-135m-f16.gguf")?;
    Some(Server::ready(&m, &[&["-np", "1", "-c", "512", "-t", "1"][..], flags].concat()))
}

/// `url` as a query parameter, percent-encoded as a browser's `encodeURIComponent` would.
fn proxy_path(url: &str) -> String {
    let mut q = String::new();
    for b in url.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
            q.push(b as char);
        } else {
            q.push_str(&format!("%{b:02X}"));
        }
    }
    format!("/cors-proxy?url={q}")
}

const KEY: &str = "proxy-key";
const BEARER: &str = "Bearer proxy-key";

fn props(s: &Server) -> serde_json::Value {
    try_request(s.port, "GET", "/props", &[("Authorization", BEARER)], b"").unwrap().json()
}

#[test]
fn cors_proxy_is_off_by_default() {
    let Some(s) = start(&[]) else { return };
    let up = upstream();
    let path = proxy_path(&up.url("/echo"));
    for method in ["GET", "POST"] {
        let r = try_request(s.port, method, &path, &[], b"{}").unwrap();
        assert_eq!(r.status, 403, "{method}: {}", r.text());
        assert_eq!(r.text(), r#"{"error":{"message":"this feature is disabled","type":"feature_disabled"}}"#);
        assert_eq!(r.header("content-type"), Some("application/json; charset=utf-8"));
    }
    up.assert_idle();
    assert_eq!(props(&s)["cors_proxy_enabled"], false);
    // Other methods are not routes at all, whichever way the proxy is set.
    let r = try_request(s.port, "PUT", &path, &[], b"").unwrap();
    assert_eq!((r.status, r.error().1.as_str()), (404, "File Not Found"));
}

#[test]
fn cors_proxy_forwards_get_and_post_with_only_prefixed_headers() {
    let Some(s) = start(&["--ui-mcp-proxy", "--api-key", KEY]) else { return };
    assert!(s.log_tail(200).contains("security: MCP proxy (experimental) enabled"), "{}", s.log_tail(30));
    assert_eq!(props(&s)["cors_proxy_enabled"], true);
    let up = upstream();

    // The proxy sits behind the API key like every other endpoint.
    let r = try_request(s.port, "GET", &proxy_path(&up.url("/echo")), &[], b"").unwrap();
    assert_eq!(r.status, 401, "{}", r.text());
    up.assert_idle();

    let headers = [
        ("Authorization", BEARER),
        ("Cookie", "ours=1"),
        ("Origin", "http://page.test"),
        ("X-Other", "not forwarded"),
        ("X-Llama-Server-Proxy-Header-X-Custom", "v1"),
        ("X-Llama-Server-Proxy-Header-Authorization", "Bearer upstream-token"),
        ("X-Llama-Server-Proxy-Header-Accept-Encoding", "gzip"),
        ("X-Llama-Server-Proxy-Header-Host", "elsewhere.test"),
    ];
    let r = try_request(s.port, "GET", &proxy_path(&up.url("/echo?q=1&r=a%20b")), &headers, b"").unwrap();
    let got = up.next();
    assert_eq!(got.line, "GET /echo?q=1&r=a%20b HTTP/1.1");
    assert_eq!(got.header("host"), Some(format!("127.0.0.1:{}", up.port).as_str()));
    assert_eq!(got.header("x-custom"), Some("v1"));
    assert_eq!(got.header("authorization"), Some("Bearer upstream-token"), "not our API key");
    assert_eq!(got.header("accept"), Some("*/*"));
    for absent in ["cookie", "origin", "x-other", "accept-encoding", "content-length", "content-type"] {
        assert_eq!(got.header(absent), None, "{absent} reached the upstream: {:?}", got.headers);
    }
    assert!(
        !got.headers.iter().any(|(k, _)| k.starts_with("x-llama-server-proxy-header")),
        "{:?}",
        got.headers
    );
    assert!(got.body.is_empty());

    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.text(), HELLO);
    assert_eq!(r.header("content-type"), Some("text/x-test"));
    assert_eq!(r.header("x-upstream"), Some("yes"));
    assert_eq!(r.header("set-cookie"), Some("a=1"));
    assert_eq!(r.header("server"), Some("llama.cpp"), "the upstream's Server is dropped");
    assert_eq!(r.header("access-control-allow-origin"), Some("http://page.test"), "ours, not the upstream's");
    assert_eq!(r.header("keep-alive"), None);
    assert_eq!(r.header("x-accel-buffering"), Some("no"));
    assert_eq!(r.header("transfer-encoding"), Some("chunked"), "streamed as it arrives");

    // POST: the body as sent, under the forwarded Content-Type, else cpp-httplib's text/plain.
    let body = br#"{"jsonrpc":"2.0","id":1,"method":"initialize"}"#;
    let typed = [("Authorization", BEARER), ("X-Llama-Server-Proxy-Header-Content-Type", "application/json")];
    let r = try_request(s.port, "POST", &proxy_path(&up.url("/echo")), &typed, body).unwrap();
    let got = up.next();
    assert_eq!(got.line, "POST /echo HTTP/1.1");
    assert_eq!(got.body, body);
    assert_eq!(got.header("content-type"), Some("application/json"));
    assert_eq!(got.header("content-length"), Some(body.len().to_string().as_str()));
    assert_eq!((r.status, r.text().as_str()), (201, HELLO));
    let r = try_request(s.port, "POST", &proxy_path(&up.url("/echo")), &[("Authorization", BEARER)], b"x")
        .unwrap();
    let got = up.next();
    assert_eq!((got.header("content-type"), got.body.as_slice()), (Some("text/plain"), &b"x"[..]));
    assert_eq!(r.status, 201);
}

#[test]
fn cors_proxy_follows_redirects_and_relays_bodies_as_they_come() {
    let Some(s) = start(&["--webui-mcp-proxy"]) else { return };
    let up = upstream();
    let get = |path: &str, headers: &[(&str, &str)], method: &str, body: &[u8]| {
        try_request(s.port, method, &proxy_path(&up.url(path)), headers, body).unwrap()
    };

    let r = get("/redirect", &[("X-Llama-Server-Proxy-Header-X-Custom", "v1")], "GET", b"");
    assert_eq!(up.next().line, "GET /redirect HTTP/1.1");
    let hop = up.next();
    assert_eq!(hop.line, "GET /echo?from=redirect HTTP/1.1");
    assert_eq!(hop.header("x-custom"), Some("v1"), "a same-origin redirect keeps the headers");
    assert_eq!((r.status, r.text().as_str()), (201, HELLO));

    // 303 turns a POST into a GET without body or forwarded headers.
    let r = get("/see-other", &[("X-Llama-Server-Proxy-Header-X-Custom", "v1")], "POST", b"payload");
    assert_eq!(up.next().body, b"payload");
    let hop = up.next();
    assert_eq!(hop.line, "GET /echo?from=303 HTTP/1.1");
    assert!(hop.body.is_empty() && hop.header("x-custom").is_none(), "{:?}", hop.headers);
    assert_eq!(r.status, 201);

    // cpp-httplib follows 20 redirects and gives up on the 21st.
    let r = get("/loop", &[], "GET", b"");
    for i in 0..21 {
        assert_eq!(up.next().line, "GET /loop HTTP/1.1", "request {i}");
    }
    up.assert_idle();
    assert_eq!((r.status, r.text().as_str()), (500, "proxy error: Maximum redirect count exceeded"));

    // An upstream without Content-Type gets llama-server's default; a chunked body is passed on.
    let r = get("/chunked", &[], "GET", b"");
    up.next();
    assert_eq!((r.status, r.text().as_str()), (200, "abcd"));
    assert_eq!(r.header("content-type"), Some("application/json; charset=utf-8"));

    // A body cut short ends with the proxy's error, as llama-server's does.
    let r = get("/truncated", &[], "GET", b"");
    up.next();
    assert_eq!((r.status, r.text().as_str()), (200, "helloproxy error: Failed to read connection"));
    assert_eq!(r.header("content-type"), Some("text/plain"));

    // The upstream's own error status comes back as it is.
    let r = get("/missing", &[], "GET", b"");
    up.next();
    assert_eq!((r.status, r.text().as_str()), (404, ""));
}

#[test]
fn cors_proxy_refuses_bad_urls_and_reports_unreachable_upstreams() {
    let Some(s) = start(&["--ui-mcp-proxy"]) else { return };
    let ask = |path: &str| try_request(s.port, "GET", path, &[], b"").unwrap();
    let server_error =
        |msg: &str| format!(r#"{{"error":{{"code":500,"message":"{msg}","type":"server_error"}}}}"#);
    let cases = [
        ("/cors-proxy", 500, server_error("invalid URL: no scheme")),
        ("/cors-proxy?url=", 500, server_error("invalid URL: no scheme")),
        ("/cors-proxy?url=ftp%3A%2F%2Fexample.test%2F", 500, server_error("unsupported URL scheme: ftp")),
        ("/cors-proxy?url=http%3A%2F%2F%2Fpath", 500, server_error("invalid target URL: missing host")),
        (
            "/cors-proxy?url=http%3A%2F%2Fu%3Ap%40127.0.0.1%2F",
            500,
            server_error("authentication in target URL is not supported"),
        ),
        (
            "/cors-proxy?url=http%3A%2F%2F127.0.0.1%3Aabc%2F",
            400,
            r#"{"error":{"code":400,"message":"stoi","type":"invalid_request_error"}}"#.to_string(),
        ),
        (
            "/cors-proxy?url=https%3A%2F%2F127.0.0.1%3A1%2F",
            500,
            server_error("HTTPS requested but rs-llama-server is built without TLS support"),
        ),
    ];
    for (path, status, body) in cases {
        let r = ask(path);
        assert_eq!((r.status, r.text()), (status, body), "{path}");
        assert_eq!(r.header("content-type"), Some("application/json; charset=utf-8"), "{path}");
    }

    // A port nobody listens on: the proxy's 500 with cpp-httplib's error, as text.
    let closed = free_port();
    let r = ask(&proxy_path(&format!("http://127.0.0.1:{closed}/mcp")));
    assert_eq!((r.status, r.text().as_str()), (500, "proxy error: Could not establish connection"));
    assert_eq!(r.header("content-type"), Some("application/json; charset=utf-8"));
    assert_eq!(r.header("x-accel-buffering"), Some("no"));
    let r = ask(&proxy_path("http://127.0.0.1:70000/"));
    assert_eq!((r.status, r.text().as_str()), (500, "proxy error: Could not establish connection"));
    assert!(
        s.log_tail(50).contains("http client error: Could not establish connection"),
        "{}",
        s.log_tail(20)
    );

    // The server is still up after all of it.
    assert_eq!(ask("/health").status, 200);
}
