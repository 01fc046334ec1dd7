//! The OpenAI-compatible model routes: chat completions, completions,
//! embeddings — the front door that speaks the upstream's own dialect, so
//! the answer's bytes go out as the pipeline relays them (no translation, no
//! re-serialisation).

use bytes::Bytes;
use http::{header, HeaderValue, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;

use crate::app::{App, RequestContext};
use crate::body::Body;
use crate::error::Error;
use crate::limits::RateHeaders;
use crate::pipeline::{self, Answer, ModelCall};
use crate::request::{Endpoint, RequestError};

pub async fn model_call(
    app: &App,
    ctx: &RequestContext,
    endpoint: Endpoint,
    req: http::Request<Incoming>,
) -> Result<Response<Body>, Error> {
    let body = read_body(app, req).await?;
    let call = ModelCall { endpoint, door: endpoint.name(), body, translates: false, target: None };
    forward(app, ctx, call).await
}

/// Runs a call whose answer goes out in the upstream's own dialect, as relayed.
pub(crate) async fn forward(app: &App, ctx: &RequestContext, call: ModelCall) -> Result<Response<Body>, Error> {
    Ok(match pipeline::run(app, ctx, call).await? {
        Answer::Stream { body, rate } => event_stream(Body::Stream(Box::into_pin(body)), &rate),
        Answer::Whole { status, json, rate } => {
            let mut response = Response::new(Body::full(json));
            *response.status_mut() = status;
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            rate.apply(response.headers_mut());
            response
        }
    })
}

/// A `text/event-stream` response with the headers every stream carries.
pub(crate) fn event_stream(body: Body, rate: &RateHeaders) -> Response<Body> {
    let mut response = Response::new(body);
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tells nginx-style proxies in front of the gateway not to buffer.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    rate.apply(h);
    response
}

/// Reads the request body within the size limit and the body timeout. A
/// declared `Content-Length` over the limit is refused before reading.
pub(crate) async fn read_body(app: &App, req: http::Request<Incoming>) -> Result<Bytes, RequestError> {
    let limit = app.server.max_body_bytes;
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(RequestError::BodyTooLarge(limit));
    }
    let timeout = app.server.body_read_timeout;
    match tokio::time::timeout(timeout, Limited::new(req.into_body(), limit).collect()).await {
        Err(_) => Err(RequestError::BodyTimeout(timeout.as_millis() as u64)),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(RequestError::BodyTooLarge(limit)),
        Ok(Err(_)) => Err(RequestError::BodyRead),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}
