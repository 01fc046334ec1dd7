//! The text log of a real `tollgate serve` process (issue 10, item 2): what a
//! client puts in a request cannot forge a log line, a field or a terminal
//! escape. The unknown model names below reach the log in the `request
//! refused` line's error.

mod common;
#[path = "support/served.rs"]
mod served;

use std::path::Path;

use common::{client, within};
use serde_json::json;
use served::serve_in_stdout_apart;

const DEMO_KEY: &str = "tg_demo_key_change_me";

/// A line that would pass for one of the gateway's own.
const FORGED: &str = "2026-12-01T20:20:00.000000Z  INFO model request key=\"admin\" model=demo";

/// `2026-11-22T10:30:00.123456Z  LEVEL ` at the start of every line.
fn starts_with_a_timestamp(line: &str) -> bool {
    let b = line.as_bytes();
    let digits = |r: std::ops::Range<usize>| b.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    let fraction = b.get(20..).map_or(0, |s| s.iter().take_while(|c| c.is_ascii_digit()).count());
    digits(0..4)
        && b.get(4) == Some(&b'-')
        && digits(5..7)
        && b.get(10) == Some(&b'T')
        && digits(11..13)
        && b.get(19) == Some(&b'.')
        && fraction > 0
        && line[20 + fraction..].starts_with("Z ")
}

#[tokio::test]
async fn client_chosen_values_cannot_forge_log_lines_fields_or_escapes() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("logging-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // No config file: the embedded default (demo key, demo agent, text log).
    let served = serve_in_stdout_apart(&dir, &[], "tollgate").await;
    let http = client();
    let models = [
        format!("nope\n{FORGED}"),
        format!("nope\r\n{FORGED}"),
        "\u{1b}[31mred\r\u{1b}[0m".to_owned(),
        "c1\u{9b}31m ls\u{2028}ps\u{2029}".to_owned(),
        "nope key=\"admin\"".to_owned(),
    ];
    for model in &models {
        let body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
        let request = http.post(format!("{}/v1/chat/completions", served.base)).bearer_auth(DEMO_KEY).json(&body);
        let response = within("a chat completion", request.send()).await.unwrap();
        assert_eq!(response.status(), 404, "an unknown model");
    }
    // SIGTERM flushes the workers' batched lines.
    let log = served.terminate().await;

    assert!(!log.contains('\u{1b}'), "no raw ESC: {log:?}");
    assert!(!log.contains('\r'), "no raw CR: {log:?}");
    for c in ['\u{9b}', '\u{2028}', '\u{2029}'] {
        assert!(!log.contains(c), "no raw {c:?}: {log:?}");
    }
    for line in log.lines() {
        assert!(starts_with_a_timestamp(line), "a line that is not the gateway's: {line:?}\nlog:\n{log}");
        assert!(!line.starts_with("2026-12-01T20:20:00.000000Z"), "a forged line: {line:?}");
        assert!(!line.contains(r#" key="admin""#), "a forged field: {line:?}");
    }
    let refused: Vec<&str> = log.lines().filter(|l| l.contains(" request refused ")).collect();
    assert_eq!(refused.len(), models.len(), "one line per request:\n{log}");
    // Workers batch their lines, so the order of the lines is not the order of the requests.
    let has = |needle: &str| assert!(refused.iter().any(|l| l.contains(needle)), "no line with {needle}:\n{log}");
    let escaped_forged = FORGED.replace('"', "\\\"");
    has(&format!(r"nope\n{escaped_forged}"));
    has(&format!(r"nope\r\n{escaped_forged}"));
    has(r"\u{1b}[31mred\r\u{1b}[0m");
    has(r"c1\u{9b}31m ls\u{2028}ps\u{2029}");
    // The error is one quoted value, so its words cannot pass for fields.
    has(r#" error="The model `nope key=\"admin\"` does not exist"#);
}
