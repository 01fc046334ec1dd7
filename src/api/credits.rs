//! Credits and usage: `GET /v1/credits`, `POST /v1/credits/topup`,
//! `GET /v1/usage` (and their `/api/v1` aliases).
//!
//! Any key of a workspace may read its own balances and usage; `admin` keys
//! read any workspace's (`?workspace=`) and are the only ones that top up.
//! Amounts are integer micro-credits (1 credit = 1,000,000).

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};

use super::management::{json, parse};
use super::openai::read_body;
use super::Query;
use crate::admin::ManagementError;
use crate::app::{App, RequestContext};
use crate::body::Body;
use crate::credits::{days, Balances, Kind, Meter, MeterError, Period, UsageRow, MAX_BALANCE};
use crate::error::Error;
use crate::scope::Scope;

/// The workspace a read is about: the caller's own, or any for an admin key.
fn readable<'a>(ctx: &'a RequestContext, query: &'a Query<'_>) -> Result<&'a str, ManagementError> {
    let own = ctx.principal.workspace.as_deref().ok_or(ManagementError::InsufficientScope("read credits"))?;
    match (ctx.principal.scope, query.get("workspace")) {
        (Scope::Admin, Some(ws)) => Ok(ws),
        (_, Some(ws)) if ws != own => Err(ManagementError::InsufficientScope("read another workspace's credits")),
        _ => Ok(own),
    }
}

#[derive(Serialize)]
struct CreditsView {
    object: &'static str,
    unit: &'static str,
    time_zone: String,
    period_start_ms: i64,
    next_refresh_ms: i64,
    #[serde(flatten)]
    balances: Balances,
}

async fn view(meter: &Meter, balances: Balances) -> Result<CreditsView, MeterError> {
    let terms = meter.terms.get_existing(&balances.workspace).await?;
    let period = Period::at(meter.clock.now_ms(), terms.time_zone);
    Ok(CreditsView {
        object: "credits",
        unit: "micro-credits",
        time_zone: terms.time_zone.name().to_owned(),
        period_start_ms: period.start_ms,
        next_refresh_ms: period.next_ms,
        balances,
    })
}

pub async fn get_credits(app: &App, ctx: &RequestContext, query: Option<&str>) -> Result<Response<Body>, Error> {
    let query = Query::parse(query);
    let workspace = readable(ctx, &query)?;
    let meter = &app.meter;
    let balances = meter.balances(workspace).await?;
    Ok(json(StatusCode::OK, &view(meter, balances).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TopUp {
    workspace: String,
    /// `message` or `integration`.
    #[serde(rename = "type")]
    kind: String,
    /// Micro-credits to add.
    amount: u64,
}

pub async fn top_up(app: &App, ctx: &RequestContext, req: Request<Incoming>) -> Result<Response<Body>, Error> {
    if ctx.principal.scope != Scope::Admin || ctx.principal.workspace.is_none() {
        return Err(ManagementError::InsufficientScope("top up credits").into());
    }
    let body = read_body(app, req).await?;
    let top_up: TopUp = parse(&body)?;
    let kind = Kind::parse(&top_up.kind).ok_or_else(|| ManagementError::Invalid {
        param: "type",
        message: format!("{:?} is not \"message\" or \"integration\"", top_up.kind),
    })?;
    if top_up.amount == 0 || top_up.amount > MAX_BALANCE {
        let message = format!("must be 1 to {MAX_BALANCE} micro-credits");
        return Err(ManagementError::Invalid { param: "amount", message }.into());
    }
    let meter = &app.meter;
    // Credits of a kind the plan does not meter would never be spent or shown.
    let terms = meter.terms.get_existing(&top_up.workspace).await?;
    if terms.allowance[kind.index()].is_none() {
        let message = format!(
            "workspace {:?} is on a plan that does not meter {} credits, so they would never be spent; \
             move it to a plan that does first",
            top_up.workspace,
            kind.as_str()
        );
        return Err(ManagementError::Invalid { param: "type", message }.into());
    }
    let balances = meter.top_up(&top_up.workspace, kind, top_up.amount).await?;
    tracing::info!(
        target: "tollgate::audit",
        workspace = %top_up.workspace,
        kind = kind.as_str(),
        amount = top_up.amount,
        by = %ctx.principal.name,
        "credits topped up"
    );
    Ok(json(StatusCode::OK, &view(meter, balances).await?))
}

/// `?from=YYYY-MM-DD&to=YYYY-MM-DD` (UTC days, default: the last 30),
/// optionally `&key_id=` and `&agent=`.
pub async fn get_usage(app: &App, ctx: &RequestContext, query: Option<&str>) -> Result<Response<Body>, Error> {
    let query = Query::parse(query);
    let workspace = readable(ctx, &query)?;
    let meter = &app.meter;
    let today = Period::utc_day(meter.clock.now_ms());
    let month_ago = Period::utc_day(meter.clock.now_ms() - 29 * 86_400_000);
    let from = query.get("from").unwrap_or(&month_ago);
    let to = query.get("to").unwrap_or(&today);
    let range = days(from, to);
    if range.is_empty() || range.last().map(String::as_str) != Some(to) {
        let message = format!(
            "from and to are UTC days (YYYY-MM-DD), from <= to, at most {} days apart",
            crate::credits::period::MAX_DAYS
        );
        return Err(ManagementError::Invalid { param: "from", message }.into());
    }
    let mut rows = meter.usage(workspace, from, to).await?;
    if let Some(key) = query.get("key_id") {
        rows.retain(|r| r.key_id == key);
    }
    if let Some(agent) = query.get("agent") {
        rows.retain(|r| r.agent == agent);
    }
    #[derive(Serialize)]
    struct UsageView<'a> {
        object: &'static str,
        workspace: &'a str,
        from: &'a str,
        to: &'a str,
        data: Vec<UsageRow>,
        total: Totals,
    }
    #[derive(Serialize, Default)]
    struct Totals {
        requests: u64,
        input_tokens: u64,
        output_tokens: u64,
        credits: u64,
    }
    let total = rows.iter().fold(Totals::default(), |t, r| Totals {
        requests: t.requests + r.requests,
        input_tokens: t.input_tokens + r.input_tokens,
        output_tokens: t.output_tokens + r.output_tokens,
        credits: t.credits + r.credits,
    });
    Ok(json(StatusCode::OK, &UsageView { object: "list", workspace, from, to, data: rows, total }))
}
