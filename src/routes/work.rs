//! Scheduled work's routes (seed 001; `/api/v1/schedule` is its singular
//! path): schedules, tasks, notes and missions, each in the key's workspace.

use super::{route, Access, Answer, Call, Handler, Route, Verb};
use crate::api;
use crate::app::{App, RequestContext};
use crate::scope::Scope;
use Verb::{Delete, Get, Post};

/// Scheduled work: schedules, tasks, notes and missions of the key's workspace.
const WORK: Access = Access::Key {
    scopes: &[Scope::Full, Scope::Admin],
    workspace: true,
    what: "manage schedules, tasks, notes or missions",
};
pub(super) static ROUTES: &[Route] = &[
    route(Post, "/schedules", WORK, handler!(|app, ctx, call| api::work::create_schedule(app, ctx, call.req).await)),
    route(Post, "/schedule", WORK, handler!(|app, ctx, call| api::work::create_schedule(app, ctx, call.req).await)),
    route(Get, "/schedules", WORK, handler!(|app, ctx, call| api::work::list_schedules(app, ctx, call.query()).await)),
    route(Get, "/schedule", WORK, handler!(|app, ctx, call| api::work::list_schedules(app, ctx, call.query()).await)),
    route(
        Get,
        "/schedules/{id}",
        WORK,
        handler!(|app, ctx, call| api::work::get_schedule(app, ctx, call.param("id")).await),
    ),
    route(
        Verb::Patch,
        "/schedules/{id}",
        WORK,
        handler!(|app, ctx, call| {
            let id = call.param("id").to_owned();
            api::work::update_schedule(app, ctx, &id, call.req).await
        }),
    ),
    route(
        Delete,
        "/schedules/{id}",
        WORK,
        handler!(|app, ctx, call| api::work::delete_schedule(app, ctx, call.param("id")).await),
    ),
    route(
        Post,
        "/schedules/{id}/run",
        WORK,
        handler!(|app, ctx, call| api::work::run_schedule(app, ctx, call.param("id")).await),
    ),
    route(Post, "/tasks", WORK, handler!(|app, ctx, call| api::work::create_task(app, ctx, call.req).await)),
    route(Get, "/tasks", WORK, handler!(|app, ctx, call| api::work::list_tasks(app, ctx, call.query()).await)),
    route(Get, "/tasks/{id}", WORK, handler!(|app, ctx, call| api::work::get_task(app, ctx, call.param("id")).await)),
    route(Post, "/notes", WORK, handler!(|app, ctx, call| api::work::create_note(app, ctx, call.req).await)),
    route(Get, "/notes", WORK, handler!(|app, ctx, call| api::work::list_notes(app, ctx, call.query()).await)),
    route(Get, "/notes/{id}", WORK, handler!(|app, ctx, call| api::work::get_note(app, ctx, call.param("id")).await)),
    route(
        Delete,
        "/notes/{id}",
        WORK,
        handler!(|app, ctx, call| api::work::delete_note(app, ctx, call.param("id")).await),
    ),
    route(Post, "/missions", WORK, handler!(|app, ctx, call| api::work::create_mission(app, ctx, call.req).await)),
    route(Get, "/missions", WORK, handler!(|app, ctx, call| api::work::list_missions(app, ctx, call.query()).await)),
    route(
        Get,
        "/missions/{id}",
        WORK,
        handler!(|app, ctx, call| api::work::get_mission(app, ctx, call.param("id")).await),
    ),
    route(
        Delete,
        "/missions/{id}",
        WORK,
        handler!(|app, ctx, call| api::work::delete_mission(app, ctx, call.param("id")).await),
    ),
    route(
        Post,
        "/missions/{id}/run",
        WORK,
        handler!(|app, ctx, call| api::work::run_mission(app, ctx, call.param("id")).await),
    ),
];
