//! Scheduled prompts, tasks, notes and missions (issue 13, seed 001), on a
//! manual clock, against the embedded store and a real Redis: the API and
//! its refusals; a due run through the pipeline to its note and events;
//! time zones and both DST edges; missed runs after a simulated downtime;
//! zero credits → a skipped task → a top-up → the next due time runs; a
//! mission whose steps see the answers before them; reminders; three
//! replicas on one store running every due time exactly once.

mod common;
#[macro_use]
#[path = "support/backends.rs"]
mod backends;
#[allow(dead_code)]
#[path = "support/credits_env.rs"]
mod credits_env;
#[path = "support/redis_server.rs"]
mod redis_server;
#[path = "support/tools.rs"]
mod tools;

use std::time::{Duration, Instant};

use common::mock::Reply;
use common::*;
use credits_env::*;
use serde_json::{json, Value};
use tollgate::scope::Scope;

on_both_backends!(
    schedules_are_created_read_changed_and_refused_by_field,
    a_due_run_goes_through_the_pipeline_to_a_note_and_its_events,
    time_zones_and_both_dst_edges,
    missed_runs_follow_each_schedules_policy,
    zero_credits_skip_a_run_and_a_top_up_resumes_the_next,
    a_mission_runs_its_steps_in_turn_each_seeing_the_last_answer,
    one_off_tasks_notes_and_their_lists,
    a_reminder_calls_no_model,
    three_replicas_run_every_due_time_exactly_once,
);

/// The workspace of every test, its zone and its `full` key.
const WS: &str = "acme";

/// Fast polling and a short lease, so tests wait milliseconds, not seconds.
const SCHEDULER: &str = "[schedules]\npoll_ms = 20\nlease_ms = 1000\n";

async fn start(backend: Backend, test: &str, now: &str) -> Option<(Env, String)> {
    let env = Env::start_with(backend, test, now, SCHEDULER).await?;
    env.workspace(WS, "default", Some("Europe/Berlin")).await;
    let (_, key) = env.key(WS, Scope::Full, None, None).await;
    Some((env, key))
}

/// Moves the shared manual clock.
fn set_clock(env: &Env, rfc3339: &str) {
    env.clock.set(at(rfc3339));
}

fn prompt_schedule(cron: &str, zone: &str) -> Value {
    json!({"name": "daily report", "cron": cron, "time_zone": zone, "prompt": "Summarise the day", "agent": AGENT})
}

/// Polls `path` until `done` holds for its JSON (bounded); the last answer.
async fn until(env: &Env, key: &str, path: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let answer = env.get(key, path).await;
        if answer.status == 200 && done(&answer.body) {
            return answer.body;
        }
        assert!(Instant::now() < deadline, "{what}: still not after {WAIT:?}; last answer: {}", answer.text);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The workspace's tasks once `n` of them have ended.
async fn ended_tasks(env: &Env, key: &str, n: usize) -> Vec<Value> {
    let body = until(env, key, "/v1/tasks?limit=100", &format!("{n} ended tasks"), |b| {
        b["data"].as_array().unwrap().iter().filter(|t| is_final(t)).count() >= n
    })
    .await;
    body["data"].as_array().unwrap().clone()
}

fn is_final(task: &Value) -> bool {
    matches!(task["status"].as_str(), Some("completed" | "failed" | "skipped"))
}

/// The event log's events of `kind` once there are `n` (bounded wait).
async fn events(env: &Env, key: &str, kind: &str, n: usize) -> Vec<Value> {
    let path = format!("/v1/events?type={kind}&order=asc&limit=100");
    let body =
        until(env, key, &path, &format!("{n} {kind} events"), |b| b["data"].as_array().unwrap().len() >= n).await;
    body["data"].as_array().unwrap().clone()
}

/// Waits until the workspace's available message credits are `expected`
/// (a settle lands on the balance shortly after the answer).
async fn available_becomes(env: &Env, ws: &str, expected: i64) {
    let path = format!("/v1/credits?workspace={ws}");
    until(env, &env.admin, &path, "the settled balance", |c| message(c).3 == expected).await;
}

/// Lets the scheduler look a few times, then says how many tasks exist.
async fn settled_task_count(env: &Env, key: &str) -> usize {
    tokio::time::sleep(Duration::from_millis(300)).await;
    env.get(key, "/v1/tasks?limit=100").await.ok()["data"].as_array().unwrap().len()
}

// ---------------------------------------------------------------------------

async fn schedules_are_created_read_changed_and_refused_by_field(backend: Backend) {
    let Some((env, key)) = start(backend, "crud", "2026-12-02T08:10:00Z").await else { return };
    let created =
        env.post(&key, "/v1/schedules", &json!({"cron": "0 9 * * 1-5", "prompt": "Plan", "agent": AGENT})).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let s = &created.body;
    assert_eq!(s["object"], "schedule");
    assert_eq!(s["time_zone"], "Europe/Berlin", "the workspace's zone by default");
    assert_eq!(s["enabled"], true);
    assert_eq!(s["missed"], "run_once");
    assert_eq!(s["kind"], "prompt");
    // 08:10 UTC is 09:10 in Berlin: today's 09:00 has passed.
    let runs: Vec<&str> = s["next_runs"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    assert_eq!(
        runs,
        [
            "2026-12-03T09:00:00+01:00",
            "2026-12-04T09:00:00+01:00",
            "2026-12-07T09:00:00+01:00",
            "2026-12-08T09:00:00+01:00",
            "2026-12-09T09:00:00+01:00"
        ],
        "weekdays only"
    );
    assert_eq!(s["next_run_at"], runs[0]);
    let id = s["id"].as_str().unwrap().to_owned();

    // Seed 001's path and the shorthand.
    let seed = env.post(&key, "/api/v1/schedule", &json!({"cron": "@hourly", "prompt": "Tick", "agent": AGENT})).await;
    assert_eq!(seed.status, 201, "{}", seed.text);
    assert_eq!(seed.body["next_run_at"], "2026-12-02T10:00:00+01:00");

    assert_eq!(env.get(&key, &format!("/v1/schedules/{id}")).await.ok()["prompt"], "Plan");
    let list = env.get(&key, "/v1/schedules?limit=1").await;
    assert_eq!(list.ok()["data"][0]["id"], id.as_str(), "oldest first");
    assert_eq!(list.body["has_more"], true);
    let rest = env.get(&key, &format!("/v1/schedules?after={}", list.body["last_id"].as_str().unwrap())).await;
    assert_eq!(rest.ok()["data"].as_array().unwrap().len(), 1);
    assert_eq!(rest.body["has_more"], false);

    // PATCH: a disabled schedule shows no next runs; a new zone moves them.
    let url = format!("{}/v1/schedules/{id}", env.replicas[0].base);
    let patch = |body: Value| env.send(env.http.patch(&url).bearer_auth(&key).json(&body));
    let off = patch(json!({"enabled": false})).await;
    assert_eq!(off.ok()["next_runs"], json!([]));
    let moved = patch(json!({"enabled": true, "time_zone": "Asia/Tokyo", "cron": "30 2 * * *"})).await;
    assert_eq!(moved.ok()["next_run_at"], "2026-12-03T02:30:00+09:00");
    patch(json!({"cron": "61 * * * *"})).await.error(400, "invalid_request_error", "invalid_value");

    // Refusals name their field.
    for (body, param) in [
        (json!({"cron": "* * * *", "prompt": "p", "agent": AGENT}), "cron"),
        (json!({"cron": "*/5 * * * * *", "prompt": "p", "agent": AGENT}), "cron"),
        (json!({"cron": "@fortnightly", "prompt": "p", "agent": AGENT}), "cron"),
        (json!({"cron": "0 9 * * *", "time_zone": "Mars/Olympus", "prompt": "p", "agent": AGENT}), "time_zone"),
        (json!({"cron": "0 9 * * *", "agent": AGENT}), "prompt"),
        (json!({"cron": "0 9 * * *", "prompt": "  ", "agent": AGENT}), "prompt"),
        (json!({"prompt": "p", "agent": AGENT}), "cron"),
        (json!({"cron": "0 9 * * *", "prompt": "p", "agent": "nobody"}), "agent"),
        (json!({"cron": "0 9 * * *", "prompt": "p"}), "agent"),
        (json!({"cron": "0 9 * * *", "kind": "reminder"}), "text"),
        (json!({"cron": "0 9 * * *", "kind": "mission", "mission": "msn_nope"}), "mission"),
        (json!({"cron": "0 9 * * *", "prompt": "p", "agent": AGENT, "colour": "red"}), ""),
        (json!({"cron": "0 9 * * *", "prompt": "p", "agent": AGENT, "kind": "poem"}), "kind"),
    ] {
        let refused = env.post(&key, "/v1/schedules", &body).await;
        assert_eq!(refused.status, 400, "{body}: {}", refused.text);
        if !param.is_empty() {
            assert_eq!(refused.body["error"]["param"], param, "{body}: {}", refused.text);
        }
    }
    env.post_raw(&key, "/v1/schedules", "{\"cron\": ").await.error(400, "invalid_request_error", "invalid_json");

    // Another workspace sees none of it; a chat key may not manage schedules.
    env.workspace("other", "default", None).await;
    let (_, other) = env.key("other", Scope::Full, None, None).await;
    env.get(&other, &format!("/v1/schedules/{id}")).await.error(404, "not_found_error", "not_found");
    assert_eq!(env.get(&other, "/v1/schedules").await.ok()["data"], json!([]));
    let (_, chat) = env.key(WS, Scope::Chat, None, None).await;
    env.get(&chat, "/v1/schedules").await.error(403, "permission_error", "insufficient_scope");

    let deleted = env.send(env.http.delete(&url).bearer_auth(&key)).await;
    assert_eq!(deleted.ok()["deleted"], true);
    env.get(&key, &format!("/v1/schedules/{id}")).await.error(404, "not_found_error", "not_found");
    env.send(env.http.delete(&url).bearer_auth(&key)).await.error(404, "not_found_error", "not_found");
}

async fn a_due_run_goes_through_the_pipeline_to_a_note_and_its_events(backend: Backend) {
    let Some((env, _)) = start(backend, "due", "2026-12-02T08:59:58Z").await else { return };
    env.workspace("paying", "hundred", None).await;
    let (_, key) = env.key("paying", Scope::Full, None, None).await;
    let body = json!({"name": "morning", "cron": "0 9 * * *", "prompt": "Summarise the day", "agent": "per_request"});
    let schedule = env.post(&key, "/v1/schedules", &body).await;
    assert_eq!(schedule.status, 201, "{}", schedule.text);
    let id = schedule.body["id"].as_str().unwrap().to_owned();
    assert_eq!(schedule.body["time_zone"], "UTC", "a workspace without a zone is UTC");
    assert_eq!(settled_task_count(&env, &key).await, 0, "nothing runs before its time");

    set_clock(&env, "2026-12-02T09:00:00.200Z");
    let tasks = ended_tasks(&env, &key, 1).await;
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    let task = &tasks[0];
    assert_eq!(task["status"], "completed", "{task}");
    assert_eq!(task["kind"], "schedule");
    assert_eq!(task["title"], "morning");
    assert_eq!(task["schedule_id"], id.as_str());
    assert_eq!(task["due_at_ms"], at("2026-12-02T09:00:00Z"));
    assert_eq!(task["attempts"], 1);
    assert_eq!(task["usage"]["input_tokens"], common::mock::PROMPT_TOKENS);
    assert_eq!(task["usage"]["output_tokens"], common::mock::COMPLETION_TOKENS);
    assert_eq!(task["credits"], SMALL_PRICE);
    let task_id = task["id"].as_str().unwrap();

    // The prompt went upstream as a chat completion of the agent.
    let sent = env.mock.only_request().json();
    assert_eq!(sent["model"], "per-request-up");
    assert_eq!(sent["messages"], json!([{"role": "user", "content": "Summarise the day"}]));
    assert!(sent.get("stream").is_none_or(|s| s == false), "{sent}");

    // The answer is a note of the schedule and the task.
    let notes = env.get(&key, &format!("/v1/notes?schedule_id={id}")).await;
    let note = &notes.ok()["data"][0];
    assert_eq!(note["content"], "Hello from upstream");
    assert_eq!(note["task_id"], task_id);
    assert_eq!(note["source"], "task");
    assert_eq!(note["id"], task["note_id"]);
    let one = env.get(&key, &format!("/api/v1/notes/{}", note["id"].as_str().unwrap())).await;
    assert_eq!(one.ok()["title"], "morning", "seed 001's path");

    // Paid like a chat call, from the workspace's credits.
    available_becomes(&env, "paying", 100 * CREDIT as i64 - SMALL_PRICE as i64).await;

    // Its events, in the seed's order of things.
    let trigger = &events(&env, &key, "scheduled_trigger", 1).await[0];
    assert_eq!(trigger["data"]["schedule_id"], id.as_str());
    assert_eq!(trigger["data"]["run_id"], task_id);
    assert_eq!(trigger["data"]["due_at"], "2026-12-02T09:00:00.000Z");
    let created = &events(&env, &key, "note_created", 1).await[0];
    assert_eq!(created["data"]["note_id"], note["id"]);
    let completed = &events(&env, &key, "task_completed", 1).await[0];
    assert_eq!(completed["data"]["task_id"], task_id);
    assert_eq!(completed["data"]["status"], "completed");
    let request = &events(&env, &key, "request.completed", 1).await[0];
    assert_eq!(request["data"]["agent"], "per_request", "{request}");
    assert_eq!(request["data"]["endpoint"], "scheduled_task");
    assert_eq!(request["data"]["request_id"], task_id, "the run's id names its request");

    // Once per due time: the next run is tomorrow's.
    assert_eq!(settled_task_count(&env, &key).await, 1);
    let schedule = env.get(&key, &format!("/v1/schedules/{id}")).await;
    assert_eq!(schedule.ok()["next_run_at"], "2026-12-03T09:00:00+00:00");
    set_clock(&env, "2026-12-03T09:00:00.100Z");
    assert_eq!(ended_tasks(&env, &key, 2).await.len(), 2);
    assert_eq!(env.mock.attempts(), 2);
}

async fn time_zones_and_both_dst_edges(backend: Backend) {
    // Spring forward in New York: 02:00 EST becomes 03:00 EDT on 8 March 2026.
    let Some((env, _)) = start(backend, "dst", "2026-03-08T06:59:00Z").await else { return };
    env.workspace("ny", "default", Some("America/New_York")).await;
    let (_, key) = env.key("ny", Scope::Full, None, None).await;
    let spring = env.post(&key, "/v1/schedules", &prompt_schedule("30 2 * * *", "America/New_York")).await;
    assert_eq!(spring.status, 201, "{}", spring.text);
    assert_eq!(spring.body["next_run_at"], "2026-03-08T03:00:00-04:00", "02:30 does not exist: just after the gap");
    assert_eq!(spring.body["next_runs"][1], "2026-03-09T02:30:00-04:00");
    set_clock(&env, "2026-03-08T07:00:00.100Z");
    let tasks = ended_tasks(&env, &key, 1).await;
    assert_eq!(tasks[0]["due_at_ms"], at("2026-03-08T07:00:00Z"));
    assert_eq!(settled_task_count(&env, &key).await, 1, "once on the short day");
    let id = spring.body["id"].as_str().unwrap();
    let url = format!("{}/v1/schedules/{id}", env.replicas[0].base);
    env.send(env.http.delete(url).bearer_auth(&key)).await.ok();

    // Fall back: 02:00 EDT becomes 01:00 EST on 1 November 2026.
    set_clock(&env, "2026-11-01T05:00:00Z");
    let fall = env.post(&key, "/v1/schedules", &prompt_schedule("30 1 * * *", "America/New_York")).await;
    assert_eq!(fall.body["next_run_at"], "2026-11-01T01:30:00-04:00", "{}", fall.text);
    set_clock(&env, "2026-11-01T05:30:00.100Z");
    let tasks = ended_tasks(&env, &key, 2).await;
    assert_eq!(tasks[1]["due_at_ms"], at("2026-11-01T05:30:00Z"), "the first 01:30 (EDT)");
    // The second 01:30 (EST) an hour later is the same wall time: no second run.
    set_clock(&env, "2026-11-01T06:30:00.100Z");
    assert_eq!(settled_task_count(&env, &key).await, 2, "01:30 runs once on the long day");
    let schedule = env.get(&key, &format!("/v1/schedules/{}", fall.body["id"].as_str().unwrap())).await;
    assert_eq!(schedule.ok()["next_run_at"], "2026-11-02T01:30:00-05:00");

    // Another zone's schedule in the same workspace runs on its own clock.
    let tokyo = env.post(&key, "/v1/schedules", &prompt_schedule("0 16 * * *", "Asia/Tokyo")).await;
    assert_eq!(tokyo.body["next_run_at"], "2026-11-01T16:00:00+09:00", "{}", tokyo.text);
    set_clock(&env, "2026-11-01T07:00:00.100Z");
    let tasks = ended_tasks(&env, &key, 3).await;
    assert_eq!(tasks[2]["due_at_ms"], at("2026-11-01T07:00:00Z"));
}

async fn missed_runs_follow_each_schedules_policy(backend: Backend) {
    let Some((mut env, key)) = start(backend, "missed", "2026-12-02T09:59:00Z").await else { return };
    let mut once = prompt_schedule("0 * * * *", "UTC");
    once["name"] = json!("once");
    let mut skip = once.clone();
    skip["name"] = json!("skip");
    skip["missed"] = json!("skip");
    let once = env.post(&key, "/v1/schedules", &once).await.body["id"].as_str().unwrap().to_owned();
    let skip = env.post(&key, "/v1/schedules", &skip).await.body["id"].as_str().unwrap().to_owned();

    // The only replica goes down before 10:00 and comes back at 15:20.
    drop(env.replicas.remove(0));
    set_clock(&env, "2026-12-02T15:20:00Z");
    env.add_replica().await;
    let tasks = ended_tasks(&env, &key, 1).await;
    assert_eq!(settled_task_count(&env, &key).await, 1, "one catch-up, never a burst: {tasks:?}");
    let task = &env.get(&key, "/v1/tasks").await.body["data"][0];
    assert_eq!(task["schedule_id"], once.as_str(), "run_once catches up, skip does not");
    assert_eq!(task["due_at_ms"], at("2026-12-02T10:00:00Z"), "named after the first missed time");
    for id in [&once, &skip] {
        let s = env.get(&key, &format!("/v1/schedules/{id}")).await;
        assert_eq!(s.ok()["next_run_at"], "2026-12-02T16:00:00+00:00");
    }

    // Back on schedule: both run at 16:00.
    set_clock(&env, "2026-12-02T16:00:00.100Z");
    let tasks = ended_tasks(&env, &key, 3).await;
    let at_16: Vec<_> = tasks.iter().filter(|t| t["due_at_ms"] == at("2026-12-02T16:00:00Z")).collect();
    assert_eq!(at_16.len(), 2, "{tasks:?}");
    assert_eq!(settled_task_count(&env, &key).await, 3);
}

async fn zero_credits_skip_a_run_and_a_top_up_resumes_the_next(backend: Backend) {
    let Some((env, _)) = start(backend, "broke", "2026-12-02T09:59:59Z").await else { return };
    env.workspace("broke", "empty", None).await;
    let (_, key) = env.key("broke", Scope::Full, None, None).await;
    let body = json!({"cron": "0 * * * *", "prompt": "Report", "agent": "per_request"});
    let id = env.post(&key, "/v1/schedules", &body).await.body["id"].as_str().unwrap().to_owned();

    set_clock(&env, "2026-12-02T10:00:00.100Z");
    let tasks = ended_tasks(&env, &key, 1).await;
    assert_eq!(tasks[0]["status"], "skipped", "{:?}", tasks[0]);
    assert_eq!(tasks[0]["reason"], "insufficient_quota");
    assert_eq!(env.mock.attempts(), 0, "no model call that cannot be paid");
    let skipped = &events(&env, &key, "task_skipped", 1).await[0];
    assert_eq!(skipped["data"]["reason"], "insufficient_quota");
    assert_eq!(skipped["data"]["schedule_id"], id.as_str());

    // A top-up, and the next due time runs: nothing restarted or recreated.
    let topup = json!({"workspace": "broke", "type": "message", "amount": 1500});
    assert_eq!(env.post(&env.admin, "/v1/credits/topup", &topup).await.status, 200);
    set_clock(&env, "2026-12-02T11:00:00.100Z");
    let tasks = ended_tasks(&env, &key, 2).await;
    assert_eq!(tasks[1]["status"], "completed", "{:?}", tasks[1]);
    assert_eq!(tasks[1]["credits"], SMALL_PRICE);
    available_becomes(&env, "broke", 1500 - SMALL_PRICE as i64).await;
}

/// A whole chat completion saying `content`.
fn completion(content: &str) -> Reply {
    let body = json!({
        "id": "chatcmpl-m", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    });
    Reply::status(200, body.to_string())
}

async fn a_mission_runs_its_steps_in_turn_each_seeing_the_last_answer(backend: Backend) {
    let Some((env, key)) = start(backend, "mission", "2026-12-02T09:00:00Z").await else { return };
    for answer in ["first answer", "second answer", "third answer"] {
        env.mock.push(completion(answer));
    }
    let steps = ["Find the facts", "Draft the report", "Shorten it"];
    let body = json!({"name": "launch", "agent": ALIAS, "steps": steps});
    let mission = env.post(&key, "/api/v1/missions", &body).await;
    assert_eq!(mission.status, 201, "{}", mission.text);
    let id = mission.body["id"].as_str().unwrap().to_owned();
    assert_eq!(events(&env, &key, "mission_created", 1).await[0]["data"]["mission_id"], id.as_str());
    assert_eq!(env.get(&key, "/v1/missions").await.ok()["data"][0]["steps"], json!(steps));

    let run = env.post(&key, &format!("/v1/missions/{id}/run"), &json!({})).await;
    assert_eq!(run.status, 202, "{}", run.text);
    assert_eq!(run.body["status"], "queued");
    let parent_id = run.body["id"].as_str().unwrap().to_owned();
    let parent = until(&env, &key, &format!("/v1/tasks/{parent_id}"), "the mission's run", is_final).await;
    assert_eq!(parent["status"], "completed", "{parent}");
    assert_eq!(parent["usage"]["total_tokens"], 21, "three steps of 7 tokens");

    // Each step's prompt followed the steps before it and their answers.
    let sent: Vec<Value> = env.mock.requests().iter().map(|r| r.json()["messages"].clone()).collect();
    assert_eq!(sent.len(), 3);
    assert_eq!(sent[0], json!([{"role": "user", "content": steps[0]}]));
    assert_eq!(
        sent[2],
        json!([
            {"role": "user", "content": steps[0]}, {"role": "assistant", "content": "first answer"},
            {"role": "user", "content": steps[1]}, {"role": "assistant", "content": "second answer"},
            {"role": "user", "content": steps[2]},
        ])
    );
    // Every step is a task with its note; the run's note is the last answer.
    let step_tasks = env.get(&key, &format!("/v1/tasks?mission_id={id}")).await;
    let step_tasks: Vec<&Value> =
        step_tasks.ok()["data"].as_array().unwrap().iter().filter(|t| t["kind"] == "step").collect();
    assert_eq!(step_tasks.len(), 3);
    assert!(step_tasks.iter().all(|t| t["status"] == "completed" && t["parent_id"] == parent_id.as_str()));
    let last = env.get(&key, &format!("/v1/notes/{}", parent["note_id"].as_str().unwrap())).await;
    assert_eq!(last.ok()["content"], "third answer");
    let done = &events(&env, &key, "mission.completed", 1).await[0];
    assert_eq!(done["data"]["mission_id"], id.as_str());
    assert_eq!(done["data"]["steps"], 3);
    assert_eq!(events(&env, &key, "note_created", 3).await.len(), 3);

    // A schedule may run the mission.
    let body = json!({"cron": "0 10 * * *", "time_zone": "UTC", "kind": "mission", "mission": id});
    assert_eq!(env.post(&key, "/v1/schedules", &body).await.status, 201);
    env.mock.push(completion("a"));
    set_clock(&env, "2026-12-02T10:00:00.100Z");
    let runs = until(&env, &key, "/v1/tasks?status=completed", "the scheduled mission", |b| {
        b["data"].as_array().unwrap().iter().filter(|t| t["kind"] == "mission").count() == 2
    })
    .await;
    assert!(runs["data"].as_array().unwrap().iter().any(|t| t["kind"] == "mission" && t["schedule_id"].is_string()));

    for (body, param) in [
        (json!({"agent": ALIAS, "steps": ["a"]}), "name"),
        (json!({"name": "m", "agent": ALIAS}), "steps"),
        (json!({"name": "m", "agent": ALIAS, "steps": []}), "steps"),
        (json!({"name": "m", "agent": ALIAS, "steps": vec!["s"; 21]}), "steps"),
        (json!({"name": "m", "agent": ALIAS, "steps": [""]}), "steps"),
    ] {
        let refused = env.post(&key, "/v1/missions", &body).await;
        assert_eq!(refused.status, 400, "{body}: {}", refused.text);
        assert_eq!(refused.body["error"]["param"], param, "{body}: {}", refused.text);
    }
    env.post(&key, "/v1/missions/msn_nope/run", &json!({})).await.error(404, "not_found_error", "not_found");
}

async fn one_off_tasks_notes_and_their_lists(backend: Backend) {
    let Some((env, key)) = start(backend, "tasks", "2026-12-02T09:00:00Z").await else { return };
    let queued = env.post(&key, "/api/v1/tasks", &json!({"prompt": "What is 2+2?", "agent": AGENT})).await;
    assert_eq!(queued.status, 202, "{}", queued.text);
    assert_eq!(queued.body["status"], "queued");
    assert_eq!(queued.body["title"], "What is 2+2?");
    let id = queued.body["id"].as_str().unwrap().to_owned();
    let task = until(&env, &key, &format!("/v1/tasks/{id}"), "the task", is_final).await;
    assert_eq!(task["status"], "completed", "{task}");
    let notes = env.get(&key, &format!("/v1/notes?task_id={id}")).await;
    assert_eq!(notes.ok()["data"][0]["content"], "Hello from upstream");

    // Notes written by a client.
    for i in 0..3 {
        let note = env.post(&key, "/v1/notes", &json!({"title": format!("n{i}"), "content": "by hand"})).await;
        assert_eq!(note.status, 201, "{}", note.text);
        assert_eq!(note.body["source"], "client");
    }
    assert_eq!(events(&env, &key, "note_created", 4).await.len(), 4);
    let first = env.get(&key, "/v1/notes?limit=2").await;
    assert_eq!(first.ok()["data"].as_array().unwrap().len(), 2);
    assert_eq!(first.body["has_more"], true);
    let after = first.body["last_id"].as_str().unwrap();
    let second = env.get(&key, &format!("/v1/notes?limit=2&after={after}")).await;
    let titles: Vec<_> = second.ok()["data"].as_array().unwrap().iter().map(|n| n["title"].clone()).collect();
    assert_eq!(titles, [json!("n1"), json!("n2")], "oldest first, no gap, no repeat");
    assert_eq!(second.body["has_more"], false);
    let gone = second.body["data"][1]["id"].as_str().unwrap().to_owned();
    let url = format!("{}/v1/notes/{gone}", env.replicas[0].base);
    assert_eq!(env.send(env.http.delete(&url).bearer_auth(&key)).await.ok()["deleted"], true);
    env.get(&key, &format!("/v1/notes/{gone}")).await.error(404, "not_found_error", "not_found");
    assert_eq!(env.get(&key, "/v1/notes?schedule_id=sch_none").await.ok()["data"], json!([]));

    // Another workspace's ids are not found; bad input names its field.
    env.workspace("other", "default", None).await;
    let (_, other) = env.key("other", Scope::Full, None, None).await;
    env.get(&other, &format!("/v1/tasks/{id}")).await.error(404, "not_found_error", "not_found");
    assert_eq!(env.get(&other, "/v1/notes").await.ok()["data"], json!([]));
    for (path, body, param) in [
        ("/v1/tasks", json!({"agent": AGENT}), "prompt"),
        ("/v1/tasks", json!({"prompt": "x", "agent": "nobody"}), "agent"),
        ("/v1/tasks", json!({"prompt": "x".repeat(40_000), "agent": AGENT}), "prompt"),
        ("/v1/notes", json!({"title": "t"}), "content"),
        ("/v1/notes", json!({"content": "c", "title": "t".repeat(201)}), "title"),
    ] {
        let refused = env.post(&key, path, &body).await;
        assert_eq!(refused.status, 400, "{path} {}", refused.text);
        assert_eq!(refused.body["error"]["param"], param, "{path} {}", refused.text);
    }
    env.get(&key, "/v1/tasks?status=done").await.error(400, "invalid_request_error", "invalid_value");
    assert_eq!(env.get(&key, "/v1/tasks?limit=0").await.status, 400);
    env.get(&key, "/v1/tasks/..%2F..").await.error(404, "not_found_error", "not_found");
}

async fn a_reminder_calls_no_model(backend: Backend) {
    let Some((env, key)) = start(backend, "reminder", "2026-12-02T09:59:59Z").await else { return };
    let body = json!({"kind": "reminder", "cron": "0 10 * * *", "time_zone": "UTC", "text": "Stand up"});
    let reminder = env.post(&key, "/v1/schedules", &body).await;
    assert_eq!(reminder.status, 201, "{}", reminder.text);
    set_clock(&env, "2026-12-02T10:00:00.100Z");
    let tasks = ended_tasks(&env, &key, 1).await;
    assert_eq!(tasks[0]["kind"], "reminder");
    assert_eq!(tasks[0]["status"], "completed");
    assert_eq!(tasks[0]["credits"], 0);
    let triggered = &events(&env, &key, "reminder_triggered", 1).await[0];
    assert_eq!(triggered["data"]["text"], "Stand up");
    assert_eq!(env.mock.attempts(), 0, "free: no model");
}

async fn three_replicas_run_every_due_time_exactly_once(backend: Backend) {
    let Some((mut env, key)) = start(backend, "replicas", "2026-12-02T09:00:30Z").await else { return };
    env.add_replica().await;
    env.add_replica().await;
    for i in 0..10 {
        let body = json!({"name": format!("s{i}"), "cron": "* * * * *", "prompt": "Tick", "agent": AGENT});
        assert_eq!(env.post(&key, "/v1/schedules", &body).await.status, 201);
    }
    // Ten minutes, ten schedules: 100 due times, each seen by three replicas.
    for minute in 1..=10 {
        set_clock(&env, &format!("2026-12-02T09:{minute:02}:00.050Z"));
        ended_tasks(&env, &key, minute * 10).await;
    }
    assert_eq!(settled_task_count(&env, &key).await, 100);
    let tasks = env.get(&key, "/v1/tasks?limit=100").await.ok()["data"].as_array().unwrap().clone();
    assert!(tasks.iter().all(|t| t["status"] == "completed" && t["attempts"] == 1), "{tasks:?}");
    let mut notes = Vec::new();
    let mut after = String::new();
    loop {
        let page = env.get(&key, &format!("/v1/notes?limit=100&after={after}")).await.ok().clone();
        notes.extend(page["data"].as_array().unwrap().iter().map(|n| n["task_id"].as_str().unwrap().to_owned()));
        if page["has_more"] != true {
            break;
        }
        after = page["last_id"].as_str().unwrap().to_owned();
    }
    notes.sort();
    notes.dedup();
    assert_eq!(notes.len(), 100, "one note per due time");
    assert_eq!(env.mock.attempts(), 100, "one model call per due time");
    assert_eq!(events(&env, &key, "scheduled_trigger", 100).await.len(), 100);
}
