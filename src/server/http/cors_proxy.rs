//! `GET`/`POST /cors-proxy?url=…`: llama-server's experimental proxy for its web UI's MCP
//! client (`--ui-mcp-proxy`, off by default), which lets a browser page reach an MCP server that
//! sends no CORS headers of its own.
//!
//! As llama-server does it: the request goes to `url` with the same method and body, carrying
//! only the request headers named `X-Llama-Server-Proxy-Header-NAME` (sent as `NAME`, so that
//! the client's own cookies and API key never leave); redirects are followed (up to 20); the
//! upstream's status, headers (less those the server sets itself) and body come back, the body
//! streamed as it arrives. A URL it refuses is a JSON error; an upstream it cannot reach is a
//! 500 whose body is `proxy error: …`, as text. Off, both methods answer 403.
//!
//! Only `http://` upstreams are reached: rs-llama-server has no TLS stack, so an `https://` one
//! is refused with a 500 naming that.

use std::pin::Pin;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::Response;
use hyper::body::Incoming;

use super::cors_proxy_url::Target;
use super::json::obj;
use crate::server::api::{ApiError, ErrorKind};

/// The request headers forwarded are those named with this prefix (compared without case),
/// sent under the rest of their name.
const HEADER_PREFIX: &str = "x-llama-server-proxy-header-";

/// llama-server's proxy gives its connection, each write and each read 10 minutes.
const TIMEOUT: Duration = Duration::from_secs(600);

/// cpp-httplib's limit on the redirects one request follows.
const MAX_REDIRECTS: usize = 20;

/// What llama-server answers on `/cors-proxy` when the proxy is off.
pub fn disabled() -> Response {
    let err = obj! { "message" => "this feature is disabled", "type" => "feature_disabled" };
    super::json_response(StatusCode::FORBIDDEN, &obj! { "error" => err })
}

/// One proxied request: `Err` for a `url` llama-server refuses before connecting (its JSON
/// error), else the upstream's answer or the proxy's own 500.
pub async fn handle(
    method: &Method,
    query: &str,
    headers: &HeaderMap,
    body: Vec<u8>,
) -> Result<Response, ApiError> {
    let target = Target::parse(&url_param(query))?;
    crate::log_info!("srv  {:>12.12}: proxying {method} request to {}\n", "proxy_request", target.shown());
    if target.is_https() {
        return Err(no_tls());
    }
    Ok(forward(method.clone(), target, forwarded(headers), Bytes::from(body)).await)
}

fn no_tls() -> ApiError {
    ApiError::new(ErrorKind::Server, "HTTPS requested but rs-llama-server is built without TLS support")
}

/// The `url` parameter, percent-decoded; llama-server keeps the last of repeated ones, and an
/// absent one reads as empty (then refused as having no scheme).
fn url_param(query: &str) -> String {
    let named_url = |kv: &str| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (super::slot_actions::decode(k) == "url").then(|| super::slot_actions::decode(v))
    };
    query.rsplit('&').find_map(named_url).unwrap_or_default()
}

/// The prefixed request headers under their own names (the last value of a repeated one, as
/// llama-server keeps one per name), less those about the body's framing and encoding, which
/// the proxy sets itself. Names and values are hyper's, already checked: none can carry a line
/// break into the upstream request.
fn forwarded(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in headers {
        let Some(rest) = name.as_str().strip_prefix(HEADER_PREFIX) else { continue };
        let Ok(name) = HeaderName::from_bytes(rest.as_bytes()) else { continue };
        if [header::ACCEPT_ENCODING, header::TRANSFER_ENCODING, header::CONTENT_LENGTH, header::HOST]
            .contains(&name)
        {
            continue;
        }
        out.insert(name, value.clone());
    }
    out
}

/// Sends the request, following redirects as cpp-httplib does: a 303 turns a POST into a GET
/// without body or headers; leaving the origin drops the credentials.
async fn forward(
    mut method: Method,
    mut target: Target,
    mut headers: HeaderMap,
    mut body: Bytes,
) -> Response {
    let mut redirects_left = MAX_REDIRECTS;
    loop {
        let (res, conn) = match exchange(&method, &target, &headers, &body).await {
            Ok(answer) => answer,
            Err(e) => return proxy_error(e),
        };
        let status = res.status().as_u16();
        let location = res.headers().get(header::LOCATION).and_then(|v| v.to_str().ok());
        let next = location.filter(|_| (301..400).contains(&status) && status != 304);
        let Some(next) = next.and_then(|l| target.redirected(l)) else {
            return relay(res, conn);
        };
        if redirects_left == 0 {
            return proxy_error("Maximum redirect count exceeded");
        }
        redirects_left -= 1;
        if next.is_https() {
            // What cpp-httplib built without TLS says; rs-llama-server has none either.
            return proxy_error("SSL connection failed");
        }
        if status == 303 && method != Method::GET && method != Method::HEAD {
            (method, body) = (Method::GET, Bytes::new());
            headers.clear();
        }
        if !target.same_origin(&next) {
            for h in [header::AUTHORIZATION, header::PROXY_AUTHORIZATION, header::COOKIE] {
                headers.remove(h);
            }
            headers.remove("cookie2");
        }
        target = next;
    }
}

/// Aborts the task driving an upstream connection once its answer is no longer read (the body
/// ended, or the client went away).
struct Conn(tokio::task::JoinHandle<()>);

impl Drop for Conn {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One request on a fresh connection, up to the upstream's status and headers; `Err` is
/// cpp-httplib's name for what failed.
async fn exchange(
    method: &Method,
    target: &Target,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(hyper::Response<Incoming>, Conn), &'static str> {
    const NO_CONNECTION: &str = "Could not establish connection";
    let port = target.tcp_port().ok_or(NO_CONNECTION)?;
    let stream =
        match tokio::time::timeout(TIMEOUT, tokio::net::TcpStream::connect((target.host.as_str(), port)))
            .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(_)) => return Err(NO_CONNECTION),
            Err(_) => return Err("Connection timed out"),
        };
    let _ = stream.set_nodelay(true);
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.map_err(|_| NO_CONNECTION)?;
    let conn = Conn(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let req = request(method, target, headers, body).ok_or("Invalid request line")?;
    match tokio::time::timeout(TIMEOUT, sender.send_request(req)).await {
        Ok(Ok(res)) => Ok((res, conn)),
        Ok(Err(_)) | Err(_) => Err("Failed to read connection"),
    }
}

/// The upstream request with cpp-httplib's defaults beside the forwarded headers: `Host` of
/// the target, `Accept: */*`, `Connection: close`, `text/plain` for a body of no stated type,
/// and a `Content-Length` for any body (0 for an empty POST).
fn request(
    method: &Method,
    target: &Target,
    headers: &HeaderMap,
    body: &Bytes,
) -> Option<hyper::Request<Body>> {
    let uri: hyper::Uri = target.request_target().parse().ok()?;
    let mut req =
        hyper::Request::builder().method(method.clone()).uri(uri).body(Body::from(body.clone())).ok()?;
    let h = req.headers_mut();
    h.insert(header::HOST, HeaderValue::from_str(&target.host_header()).ok()?);
    h.extend(headers.iter().map(|(k, v)| (k.clone(), v.clone())));
    let defaults = [(header::ACCEPT, "*/*"), (header::CONNECTION, "close")];
    for (name, value) in defaults {
        h.entry(name).or_insert(HeaderValue::from_static(value));
    }
    if !body.is_empty() {
        h.entry(header::CONTENT_TYPE).or_insert(HeaderValue::from_static("text/plain"));
    }
    if !body.is_empty() || *method == Method::POST {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    }
    Some(req)
}

/// Response headers llama-server's proxy does not pass on: its own server and framing headers
/// and CORS, which it sets itself.
fn stripped(name: &HeaderName) -> bool {
    [header::SERVER, header::TRANSFER_ENCODING, header::CONTENT_LENGTH].contains(name)
        || name.as_str() == "keep-alive"
        || name.as_str().starts_with("access-control-")
}

/// The upstream's answer passed on: its status, its headers less [`stripped`] (one value per
/// name), its `Content-Type` (llama-server's JSON type when it has none), and its body as it
/// arrives. A read that fails midway ends the body with `proxy error: …`, as llama-server's does.
fn relay(res: hyper::Response<Incoming>, conn: Conn) -> Response {
    let (parts, incoming) = res.into_parts();
    let chunks = futures_util::stream::unfold(Some((incoming, conn)), |state| async move {
        let (mut incoming, conn) = state?;
        loop {
            let frame = std::future::poll_fn(|cx| hyper::body::Body::poll_frame(Pin::new(&mut incoming), cx));
            match tokio::time::timeout(TIMEOUT, frame).await {
                Ok(None) => return None,
                Ok(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) if !data.is_empty() => {
                        return Some((Ok::<_, std::io::Error>(data), Some((incoming, conn))))
                    }
                    _ => continue,
                },
                Ok(Some(Err(_))) | Err(_) => {
                    let msg = "Failed to read connection";
                    crate::log_error!("srv  {:>12.12}: http client error: {msg}\n", "operator()");
                    return Some((Ok(Bytes::from(format!("proxy error: {msg}"))), None));
                }
            }
        }
    });
    let mut out = Response::new(Body::from_stream(chunks));
    *out.status_mut() = parts.status;
    let json = HeaderValue::from_static("application/json; charset=utf-8");
    let mut content_type = json;
    for (name, value) in &parts.headers {
        if *name == header::CONTENT_TYPE {
            content_type = value.clone();
        } else if !stripped(name) {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out.headers_mut().insert(header::CONTENT_TYPE, content_type);
    streamed(out)
}

/// llama-server's answer when the upstream could not be reached or answered no headers: 500
/// with `proxy error: …` as the body (under its default JSON content type).
fn proxy_error(msg: &str) -> Response {
    crate::log_error!("srv  {:>12.12}: http client error: {msg}\n", "operator()");
    let text = Bytes::from(format!("proxy error: {msg}"));
    let body = Body::from_stream(futures_util::stream::once(async move { Ok::<_, std::io::Error>(text) }));
    let mut out = Response::new(body);
    *out.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    out.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
    streamed(out)
}

/// The header llama-server puts on every streamed answer, so that nginx does not buffer it.
fn streamed(mut res: Response) -> Response {
    res.headers_mut().insert("x-accel-buffering", HeaderValue::from_static("no"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_prefixed_headers_are_forwarded_renamed() {
        let mut h = HeaderMap::new();
        h.insert("x-llama-server-proxy-header-authorization", HeaderValue::from_static("Bearer up"));
        h.append("x-llama-server-proxy-header-x-twice", HeaderValue::from_static("1"));
        h.append("x-llama-server-proxy-header-x-twice", HeaderValue::from_static("2"));
        for dropped in ["accept-encoding", "transfer-encoding", "content-length", "host"] {
            h.insert(
                HeaderName::from_bytes(format!("{HEADER_PREFIX}{dropped}").as_bytes()).unwrap(),
                "x".parse().unwrap(),
            );
        }
        h.insert("x-llama-server-proxy-header-", HeaderValue::from_static("empty name"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer ours"));
        h.insert(header::COOKIE, HeaderValue::from_static("session=1"));
        let f = forwarded(&h);
        assert_eq!(f.len(), 2, "{f:?}");
        assert_eq!(f[header::AUTHORIZATION], "Bearer up");
        assert_eq!(f["x-twice"], "2", "the last of a repeated header");
    }

    #[test]
    fn the_url_parameter_is_decoded_and_the_last_one_wins() {
        assert_eq!(url_param("url=http%3A%2F%2Fh%2Fp%3Fa%3D1"), "http://h/p?a=1");
        assert_eq!(url_param("x=1&url=a&url=b+c"), "b c");
        assert_eq!(url_param("x=1"), "");
    }
}
