//! Criterion micro-benchmark: a chat stream of 32 text chunks (and one with a
//! tool call's arguments in 32 pieces) through the Responses translation,
//! start to `[DONE]`, and the fixed part alone (the three events that carry
//! the whole Response): (stream − fixed) / 32 is the cost of one delta.
//!
//! Run: `cargo bench --bench responses`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use tollgate::api::responses::{translate_request, ResponseMeta, ResponsesStream};

fn chunks(tool: bool) -> Vec<String> {
    let head = r#"{"id":"chatcmpl-abc123","object":"chat.completion.chunk","created":1704369000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_1","choices":[{"index":0,"delta":"#;
    let mut chunks = Vec::new();
    for i in 0..32 {
        let delta = match (tool, i) {
            (false, _) => format!(r#"{{"content":" word{i}"}}"#),
            (true, 0) => r#"{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"lookup","arguments":""}}]}"#.to_owned(),
            (true, _) => format!(r#"{{"tool_calls":[{{"index":0,"function":{{"arguments":"\"k{i}\":"}}}}]}}"#),
        };
        chunks.push(format!(r#"{head}{delta},"logprobs":null,"finish_reason":null}}],"usage":null}}"#));
    }
    chunks.push(format!(r#"{head}{{}},"logprobs":null,"finish_reason":"stop"}}],"usage":null}}"#));
    chunks.push(r#"{"id":"chatcmpl-abc123","object":"chat.completion.chunk","created":1704369000,"model":"gpt-4o-mini-2024-07-18","choices":[],"usage":{"prompt_tokens":58,"completion_tokens":32,"total_tokens":90}}"#.to_owned());
    chunks
}

fn meta() -> ResponseMeta {
    let t = translate_request(br#"{"model":"demo","input":"hi","stream":true}"#, &[]).expect("a valid request");
    ResponseMeta { id: "resp_0123456789abcdef01234567".into(), created_at: 1_704_369_000, model: t.model, echo: t.echo }
}

fn run(chunks: &[String], meta: ResponseMeta) -> usize {
    let mut stream = ResponsesStream::new(meta);
    let mut out = Vec::with_capacity(16 * 1024);
    stream.start(&mut out);
    for chunk in chunks {
        stream.push_chunk(chunk.as_bytes(), &mut out).expect("a valid chunk");
    }
    let response = stream.finish(1_704_369_001, None, &mut out);
    black_box(response);
    out.len()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("responses_stream");
    for (name, tool) in [("text_32_chunks", false), ("tool_call_32_chunks", true)] {
        let chunks = chunks(tool);
        group.throughput(Throughput::Elements(chunks.len() as u64));
        group.bench_function(name, |b| b.iter_batched(meta, |m| black_box(run(&chunks, m)), BatchSize::SmallInput));
    }
    // The fixed part: response.created, response.in_progress and
    // response.completed, each with the whole Response.
    let finish_only = &chunks(false)[32..];
    group.throughput(Throughput::Elements(1));
    group.bench_function("start_and_finish_only", |b| {
        b.iter_batched(meta, |m| black_box(run(finish_only, m)), BatchSize::SmallInput)
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
