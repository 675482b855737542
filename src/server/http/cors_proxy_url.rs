//! Where a `/cors-proxy` request goes: its `url` query parameter read as llama-server reads it
//! (scheme, optional `user[:password]@`, host or `[IPv6]`, optional port, then the rest as the
//! path), the request target written the way cpp-httplib's client writes it, and a redirect's
//! `Location` resolved against the request it answers.
//!
//! The reading is deliberately llama-server's, quirks included (the first `@` anywhere ends the
//! user part; the port is read as `std::stoi` reads it), so that a URL it refuses is refused here
//! with the same message and status.

use crate::server::api::{ApiError, ErrorKind};

/// The upstream of one proxied request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `http` or `https`.
    pub scheme: String,
    /// Without brackets for an IPv6 literal.
    pub host: String,
    /// As `std::stoi` read it: may be out of the TCP range (the connection then fails).
    pub port: i64,
    /// Everything from the first `/` after the authority (query included), `/` when none.
    pub path: String,
}

impl Target {
    /// `url` as llama-server's proxy accepts it; its errors are llama-server's (500 for every
    /// refusal but a port without digits, which `std::stoi` reports as an invalid argument: 400).
    pub fn parse(url: &str) -> Result<Target, ApiError> {
        let server = |m: String| ApiError::new(ErrorKind::Server, m);
        let Some(scheme_end) = url.find("://") else {
            return Err(server("invalid URL: no scheme".into()));
        };
        let scheme = &url[..scheme_end];
        if scheme != "http" && scheme != "https" {
            return Err(server(format!("unsupported URL scheme: {scheme}")));
        }
        let mut rest = &url[scheme_end + 3..];
        let mut password = "";
        if let Some(at) = rest.find('@') {
            password = rest[..at].split_once(':').map_or("", |(_, p)| p);
            rest = &rest[at + 1..];
        }
        let (mut host, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let mut port_text = "";
        if let Some(inner) = host.strip_prefix('[') {
            let Some(close) = inner.find(']') else {
                return Err(server(format!("invalid IPv6 URL authority: {host}")));
            };
            port_text = inner[close + 1..].strip_prefix(':').unwrap_or("");
            host = &inner[..close];
        } else if let Some((h, p)) = host.split_once(':') {
            (host, port_text) = (h, p);
        }
        let port = if !port_text.is_empty() {
            stoi(port_text)?
        } else if scheme == "http" {
            80
        } else {
            443
        };
        if host.is_empty() {
            return Err(server("invalid target URL: missing host".into()));
        }
        if !password.is_empty() {
            return Err(server("authentication in target URL is not supported".into()));
        }
        let path = if path.is_empty() { "/" } else { path };
        Ok(Target { scheme: scheme.into(), host: host.into(), port, path: path.into() })
    }

    pub fn is_https(&self) -> bool {
        self.scheme == "https"
    }

    /// The port as a TCP port, None when `std::stoi` read something no socket can use.
    pub fn tcp_port(&self) -> Option<u16> {
        u16::try_from(self.port).ok().filter(|&p| p != 0)
    }

    /// The `Host` header's value: the port only when it is not the scheme's default, an IPv6
    /// literal in brackets.
    pub fn host_header(&self) -> String {
        let default = (self.port == 80 && !self.is_https()) || (self.port == 443 && self.is_https());
        let host = bracketed(&self.host);
        if default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// `scheme://host:port/path` as llama-server logs it.
    pub fn shown(&self) -> String {
        format!("{}://{}:{}{}", self.scheme, bracketed(&self.host), self.port, self.path)
    }

    /// Where a redirect's `Location` leads from this target, as cpp-httplib follows one; None
    /// when it does not follow it (no usable URL, a scheme other than http(s), a bad port).
    pub fn redirected(&self, location: &str) -> Option<Target> {
        let resolved = resolve_relative(location, &self.path);
        let parts = split_url(&resolved)?;
        if !parts.scheme.is_empty() && parts.scheme != "http" && parts.scheme != "https" {
            return None;
        }
        let port = if !parts.port.is_empty() {
            let p: u16 = parts.port.parse().ok()?;
            i64::from(p)
        } else if parts.scheme.is_empty() {
            self.port
        } else if parts.scheme == "https" {
            443
        } else {
            80
        };
        let scheme = if parts.scheme.is_empty() { self.scheme.clone() } else { parts.scheme };
        let host = if parts.host.is_empty() { self.host.clone() } else { parts.host };
        let path = if parts.path.is_empty() { "/".to_string() } else { parts.path };
        Some(Target { scheme, host, port, path: path + &parts.query })
    }

    /// Whether a redirect to `next` leaves this scheme, host and port (cpp-httplib then drops
    /// the credentials it was sending).
    pub fn same_origin(&self, next: &Target) -> bool {
        self.scheme == next.scheme && self.host == next.host && self.port == next.port
    }

    /// The request target sent upstream: the path with the bytes cpp-httplib escapes in it (and
    /// those no request line may carry) percent-encoded, the query with the latter only, no
    /// fragment.
    pub fn request_target(&self) -> String {
        let (before_fragment, _) = self.path.split_once('#').unwrap_or((&self.path, ""));
        let (path, query) = match before_fragment.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (before_fragment, None),
        };
        let mut out = String::with_capacity(self.path.len() + 8);
        for &b in path.as_bytes() {
            escape_into(&mut out, b, matches!(b, b' ' | b'+' | b'\'' | b',' | b';'));
        }
        if let Some(q) = query {
            out.push('?');
            for &b in q.as_bytes() {
                escape_into(&mut out, b, false);
            }
        }
        out
    }
}

/// An IPv6 literal in brackets, anything else as it is.
fn bracketed(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// `b` as it may stand in a request line, `%XX` when `always` or when no URI may hold it as is.
fn escape_into(out: &mut String, b: u8, always: bool) {
    let unsafe_byte = b <= 0x20 || b >= 0x7f || b"\"<>\\^`{|}".contains(&b);
    if always || unsafe_byte {
        out.push_str(&format!("%{b:02X}"));
    } else {
        out.push(b as char);
    }
}

/// `std::stoi`: leading white space, an optional sign, then digits; what follows them is
/// ignored. No digits is an invalid argument (400), a value beyond `int` out of range (500),
/// both with the message libstdc++ gives them.
fn stoi(text: &str) -> Result<i64, ApiError> {
    let t = text.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (negative, rest) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(ApiError::new(ErrorKind::InvalidRequest, "stoi"));
    }
    let out_of_range = || ApiError::new(ErrorKind::Server, "stoi");
    let magnitude: i64 = rest[..digits].parse().map_err(|_| out_of_range())?;
    let value = if negative { -magnitude } else { magnitude };
    i32::try_from(value).map(i64::from).map_err(|_| out_of_range())
}

/// A URL or reference cut into its parts (cpp-httplib's reading of a `Location`).
#[derive(Debug, Default, PartialEq)]
struct UrlParts {
    scheme: String,
    host: String,
    port: String,
    path: String,
    /// With its `?`.
    query: String,
}

fn split_url(url: &str) -> Option<UrlParts> {
    let mut uc = UrlParts::default();
    let mut pos = 0;
    if let Some(sep) = url.find("://") {
        uc.scheme = url[..sep].to_string();
        if uc.scheme.is_empty() || !uc.scheme.bytes().all(|c| c.is_ascii_lowercase()) {
            return None;
        }
        pos = sep + 3;
    } else if url.starts_with("//") {
        pos = 2;
    }
    let has_prefix = pos > 0;
    let has_authority = has_prefix || (!url.is_empty() && !url.starts_with(['/', '?', '#']));
    if has_authority {
        let after = &url[pos..];
        if let Some(inner) = after.strip_prefix('[') {
            let close = inner.find(']')?;
            let host = &inner[..close];
            if host.is_empty() || !host.bytes().all(|c| c.is_ascii_hexdigit() || c == b':') {
                return None;
            }
            uc.host = host.to_string();
            pos += close + 2;
            if url[pos..].bytes().next().is_some_and(|c| !b":/?#".contains(&c)) {
                return None;
            }
        } else {
            let end = after.find([':', '/', '?', '#']).map_or(url.len(), |e| pos + e);
            uc.host = url[pos..end].to_string();
            pos = end;
        }
        if url[pos..].starts_with(':') {
            pos += 1;
            let end = url[pos..].find(['/', '?', '#']).map_or(url.len(), |e| pos + e);
            uc.port = url[pos..end].to_string();
            pos = end;
        }
        // Without `//` the whole text must be `host[:port]`; otherwise it is a path.
        if !has_prefix && pos < url.len() {
            (uc.host, uc.port, pos) = (String::new(), String::new(), 0);
        }
    }
    let rest = &url[pos..];
    let path_end = rest.find(['?', '#']).unwrap_or(rest.len());
    uc.path = rest[..path_end].to_string();
    let rest = &rest[path_end..];
    if rest.starts_with('?') {
        uc.query = rest[..rest.find('#').unwrap_or(rest.len())].to_string();
    }
    Some(uc)
}

/// A relative `Location` merged with the path of the request it answers (RFC 3986 5.2, dot
/// segments removed); an absolute URL or an absolute path comes back as it is.
fn resolve_relative(location: &str, base: &str) -> String {
    if location.is_empty() || location.starts_with('/') {
        return location.to_string();
    }
    let first_delim = location.find(['/', '?', '#']).unwrap_or(usize::MAX);
    if location.find(':').is_some_and(|c| c < first_delim) {
        return location.to_string();
    }
    if location.starts_with('#') {
        return format!("{}{location}", &base[..base.find('#').unwrap_or(base.len())]);
    }
    let mut base_path = &base[..base.find(['?', '#']).unwrap_or(base.len())];
    if location.starts_with('?') {
        return format!("{base_path}{location}");
    }
    if !base_path.starts_with('/') {
        base_path = "/";
    }
    let merged = format!("{}{location}", &base_path[..base_path.rfind('/').map_or(0, |i| i + 1)]);
    let path_end = merged.find(['?', '#']).unwrap_or(merged.len());
    let segments: Vec<&str> = merged[1..path_end].split('/').collect();
    let mut path = String::new();
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *seg {
            "." | ".." => {
                if *seg == ".." {
                    path.truncate(path.rfind('/').unwrap_or(0));
                }
                if last {
                    path.push('/');
                }
            }
            s => {
                path.push('/');
                path.push_str(s);
            }
        }
    }
    if path.is_empty() {
        path.push('/');
    }
    path + &merged[path_end..]
}

#[cfg(test)]
#[path = "cors_proxy_url_tests.rs"]
mod tests;
