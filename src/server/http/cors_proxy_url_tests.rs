use super::*;

fn ok(url: &str) -> Target {
    Target::parse(url).unwrap_or_else(|e| panic!("{url}: {}", e.message))
}

fn err(url: &str) -> (u16, String) {
    let e = Target::parse(url).expect_err(url);
    (e.kind.status(), e.message)
}

#[test]
fn urls_are_read_as_llama_server_reads_them() {
    let t = ok("http://example.org:8081/mcp?x=1#f");
    assert_eq!(
        (t.scheme.as_str(), t.host.as_str(), t.port, t.path.as_str()),
        ("http", "example.org", 8081, "/mcp?x=1#f")
    );
    assert_eq!(ok("https://example.org").port, 443);
    assert_eq!(ok("http://example.org").path, "/");
    assert_eq!(ok("http://example.org:").port, 80, "an empty port is the default");
    let v6 = ok("http://[::1]:9000/a");
    assert_eq!((v6.host.as_str(), v6.port, v6.host_header()), ("::1", 9000, "[::1]:9000".to_string()));
    assert_eq!(ok("http://[::1]/").port, 80);
    // A user without a password is accepted (and not sent).
    assert_eq!(ok("http://bob@example.org/").host, "example.org");
    // The first '@' anywhere ends the user part, as in llama.cpp.
    assert_eq!(ok("http://example.org/a@b.test/c").host, "b.test");
    assert_eq!(ok("http://h:80abc/").port, 80, "stoi stops at the first non-digit");
    assert_eq!(ok("http://h:99999/").tcp_port(), None);
    assert_eq!(ok("http://h:-1/").tcp_port(), None);
}

#[test]
fn refused_urls_get_llama_server_messages() {
    assert_eq!(err(""), (500, "invalid URL: no scheme".into()));
    assert_eq!(err("example.org/x"), (500, "invalid URL: no scheme".into()));
    assert_eq!(err("ftp://example.org/"), (500, "unsupported URL scheme: ftp".into()));
    assert_eq!(err("HTTP://example.org/"), (500, "unsupported URL scheme: HTTP".into()));
    assert_eq!(err("http:///x"), (500, "invalid target URL: missing host".into()));
    assert_eq!(err("http://u:p@example.org/"), (500, "authentication in target URL is not supported".into()));
    assert_eq!(err("http://[::1/"), (500, "invalid IPv6 URL authority: [::1".into()));
    assert_eq!(err("http://h:abc/"), (400, "stoi".into()));
    assert_eq!(err("http://h:99999999999/"), (500, "stoi".into()));
    // The port is read before the host is checked.
    assert_eq!(err("http://:x/"), (400, "stoi".into()));
}

#[test]
fn host_header_and_request_target() {
    assert_eq!(ok("http://h/").host_header(), "h");
    assert_eq!(ok("http://h:81/").host_header(), "h:81");
    assert_eq!(ok("https://h:443/").host_header(), "h");
    assert_eq!(ok("https://h:80/").host_header(), "h:80");
    assert_eq!(
        ok("http://h/a b+c,d;e'f?q=a b&r=é#frag").request_target(),
        "/a%20b%2Bc%2Cd%3Be%27f?q=a%20b&r=%C3%A9"
    );
    assert_eq!(ok("http://h/x\r\nInjected: 1").request_target(), "/x%0D%0AInjected:%201");
    assert_eq!(ok("http://[::1]:1/p").shown(), "http://[::1]:1/p");
}

#[test]
fn redirects_resolve_as_cpp_httplib_resolves_them() {
    let from = ok("http://h:8000/a/b/c?q=1");
    let to = |loc: &str| from.redirected(loc).map(|t| (t.scheme, t.host, t.port, t.path));
    let at = |s: &str, h: &str, p: i64, path: &str| Some((s.to_string(), h.to_string(), p, path.to_string()));
    assert_eq!(to("/x?y=2"), at("http", "h", 8000, "/x?y=2"));
    assert_eq!(to("d"), at("http", "h", 8000, "/a/b/d"));
    assert_eq!(to("../d"), at("http", "h", 8000, "/a/d"));
    assert_eq!(to("./"), at("http", "h", 8000, "/a/b/"));
    assert_eq!(to("?z=3"), at("http", "h", 8000, "/a/b/c?z=3"));
    assert_eq!(to("http://other/p"), at("http", "other", 80, "/p"));
    assert_eq!(to("https://other:8443"), at("https", "other", 8443, "/"));
    assert_eq!(to("//other:9/p"), at("http", "other", 9, "/p"));
    assert_eq!(to("http://[::1]:7/p"), at("http", "::1", 7, "/p"));
    assert_eq!(to("ftp://other/p"), None);
    assert_eq!(to("http://other:port/p"), None);
    assert!(from.same_origin(&from.redirected("/x").unwrap()));
    assert!(!from.same_origin(&from.redirected("http://h/x").unwrap()), "port 80 is another origin");
}
