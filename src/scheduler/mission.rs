//! A mission's run (`POST /v1/missions/{id}/run`, or a schedule of kind
//! `mission`): its steps in turn, each a task of its own.

use serde_json::json;

use super::run::{emit_end, finish, now_s, prompt_task, Ended};
use crate::app::App;
use crate::events::EventType;
use crate::schedules::{Mission, Note, Task, TaskKind, TaskStatus, TaskUsage, MISSIONS, NOTES, TASKS};
use crate::store::StoreError;
use std::sync::Arc;

/// A mission's run: its steps in turn, each a task of its own whose prompt
/// follows the steps before it and their answers. A retried run goes on
/// from the first step that has not completed.
pub(super) async fn mission(app: &App, ws: &str, parent: &Task) -> Result<Ended, StoreError> {
    let s = &app.schedules;
    let Some(mission_id) = &parent.mission_id else {
        return Ok(Ended::failed("mission_not_found", "the task names no mission".into()));
    };
    let Some(mission) = s.get::<Mission>(ws, MISSIONS, mission_id).await?.map(|v| v.record) else {
        return Ok(Ended::failed("mission_not_found", format!("no mission {mission_id:?}")));
    };
    let mut messages = Vec::new();
    if let Some(goal) = &mission.goal {
        messages.push(json!({"role": "system", "content": format!("Mission: {}. Goal: {goal}", mission.name)}));
    }
    let (mut usage, mut credits, mut last_note) = (TaskUsage::default(), 0, None);
    for (i, prompt) in mission.steps.iter().enumerate() {
        let step = step_task(parent, &mission, i, prompt, now_s(s));
        s.put(ws, TASKS, &step.id, None, &step, s.expires_at()).await?;
        let current = s.get::<Task>(ws, TASKS, &step.id).await?.map(|v| v.record).unwrap_or(step);
        messages.push(json!({"role": "user", "content": prompt}));
        let (ended, answer) = if current.status == TaskStatus::Completed {
            let note = current.note_id.as_deref().unwrap_or_default();
            let answer = s.get::<Note>(ws, NOTES, note).await?.map(|n| n.record.content).unwrap_or_default();
            (Ended::completed(current.note_id.clone(), current.usage, current.credits), answer)
        } else {
            let started = now_s(s);
            s.change_task(ws, &current.id, |t| {
                t.status = TaskStatus::Running;
                t.attempts += 1;
                t.started_at.get_or_insert(started);
            })
            .await?;
            let (ended, answer) = prompt_task(app, ws, &current, messages.clone()).await?;
            if let Some(task) = finish(s, ws, &current.id, ended.clone()).await? {
                emit_end(app, ws, &task);
            }
            if ended.status != TaskStatus::Completed {
                usage.add(ended.usage);
                let error = format!(
                    "step {} of {} did not complete: {}",
                    i + 1,
                    mission.steps.len(),
                    ended.error.unwrap_or_default()
                );
                return Ok(Ended { error: Some(error), note_id: None, usage, credits, ..ended });
            }
            (ended, answer)
        };
        usage.add(ended.usage);
        credits += ended.credits;
        last_note = ended.note_id.clone().or(last_note);
        messages.push(json!({"role": "assistant", "content": answer}));
    }
    let data = json!({
        "mission_id": mission.id,
        "task_id": parent.id,
        "steps": mission.steps.len(),
        "note_id": last_note,
        "schedule_id": parent.schedule_id,
    });
    app.events.emit(&Arc::from(ws), EventType::MissionCompleted, &data);
    Ok(Ended::completed(last_note, usage, credits))
}

/// The task of step `i` of a mission's run.
fn step_task(parent: &Task, mission: &Mission, i: usize, prompt: &str, now_s: i64) -> Task {
    let title = format!("{} — step {} of {}", mission.name, i + 1, mission.steps.len());
    Task {
        schedule_id: parent.schedule_id.clone(),
        mission_id: Some(mission.id.clone()),
        parent_id: Some(parent.id.clone()),
        step: Some(i),
        prompt: Some(prompt.to_owned()),
        agent: mission.agent.clone().or_else(|| parent.agent.clone()),
        ..Task::queued(format!("{}.{i}", parent.id), TaskKind::Step, title, now_s)
    }
}
