//! One streamed response over several generations: their events merged in the order they come,
//! each turned into server-sent-event text by an endpoint's own renderer. The first event is
//! awaited before the response starts, so that an error reported at once is a plain JSON error
//! with its status (as llama-server does). A client that goes away drops the body and with it
//! the receivers, which cancels the generations.

use std::convert::Infallible;

use axum::body::Body;
use axum::http::{header, HeaderValue};
use axum::response::Response;
use futures_util::stream::{self, BoxStream, StreamExt};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::server::api::{ApiError, ErrorKind, Final, GenerateEvent};

/// What an endpoint's stream writes.
pub trait SseRender: Send + 'static {
    /// The SSE text for event `ev` of generation `index`, and whether the stream ends after it.
    fn render(&mut self, index: usize, ev: GenerateEvent) -> (String, bool);
    /// What closes the stream once every generation has ended (OpenAI's `[DONE]`).
    fn closing(&self) -> Option<String> {
        None
    }
}

pub fn lost() -> ApiError {
    ApiError::new(ErrorKind::Server, "the generation ended without a result")
}

/// A generation answered whole (no stream): its final result, skipping the partials.
pub async fn wait_final(mut rx: UnboundedReceiver<GenerateEvent>) -> Result<Box<Final>, ApiError> {
    loop {
        match rx.recv().await {
            Some(GenerateEvent::Final(f)) => return Ok(f),
            Some(GenerateEvent::Error(e)) => return Err(e),
            Some(GenerateEvent::Partial(_)) => continue,
            None => return Err(lost()),
        }
    }
}

struct State<R> {
    renderer: R,
    events: BoxStream<'static, (usize, GenerateEvent)>,
    finished: bool,
}

impl<R: SseRender> State<R> {
    async fn next_chunk(&mut self) -> Option<String> {
        if self.finished {
            return None;
        }
        match self.events.next().await {
            Some((index, ev)) => {
                let (text, end) = self.renderer.render(index, ev);
                self.finished = end;
                Some(text)
            }
            None => {
                self.finished = true;
                self.renderer.closing()
            }
        }
    }
}

/// The streamed response for generations `(index, events)`.
pub async fn sse_response<R: SseRender>(
    mut renderer: R,
    generations: Vec<(usize, UnboundedReceiver<GenerateEvent>)>,
) -> Result<Response, ApiError> {
    let per_task = generations.into_iter().map(|(index, rx)| {
        // A generation's events end with its final or error; the channel closing without one
        // is reported once as a server error.
        stream::unfold((rx, false), move |(mut rx, done)| async move {
            if done {
                return None;
            }
            let ev = rx.recv().await.unwrap_or(GenerateEvent::Error(lost()));
            let last = !matches!(ev, GenerateEvent::Partial(_));
            Some(((index, ev), (rx, last)))
        })
        .boxed()
    });
    let mut events = stream::select_all(per_task).boxed();
    let (index, ev) = events.next().await.ok_or_else(lost)?;
    if let GenerateEvent::Error(e) = ev {
        return Err(e);
    }
    let (text, finished) = renderer.render(index, ev);
    let state = State { renderer, events, finished };
    let body = stream::once(async move { text })
        .chain(stream::unfold(state, |mut s| async move { s.next_chunk().await.map(|c| (c, s)) }))
        .filter(|chunk| std::future::ready(!chunk.is_empty()))
        .map(Ok::<_, Infallible>);
    let mut res = Response::new(Body::from_stream(body));
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    res.headers_mut().insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(res)
}
