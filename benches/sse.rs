//! Criterion micro-benchmark: the SSE relay's rewriter over a 32-chunk stream,
//! with the model rewrite (agent) and without (pass-through), delivered as one
//! frame per event (the common case) and as small frames that split events,
//! and with the transcript events collect (text and tool calls).
//!
//! Run: `cargo bench --bench sse`

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use tollgate::sse::SseRewriter;

fn stream() -> Vec<Bytes> {
    let mut events = Vec::new();
    for i in 0..32 {
        events.push(Bytes::from(format!(
            "data: {{\"id\":\"chatcmpl-abc123\",\"object\":\"chat.completion.chunk\",\"created\":1704369000,\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_1\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\" word{i}\"}},\"logprobs\":null,\"finish_reason\":null}}],\"usage\":null}}\n\n"
        )));
    }
    events.push(Bytes::from_static(b"data: {\"id\":\"chatcmpl-abc123\",\"object\":\"chat.completion.chunk\",\"created\":1704369000,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[],\"usage\":{\"prompt_tokens\":58,\"completion_tokens\":32,\"total_tokens\":90}}\n\n"));
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    events
}

fn run(frames: &[Bytes], model: Option<Bytes>) -> usize {
    run_with(frames, SseRewriter::new(model, true))
}

fn run_with(frames: &[Bytes], mut rewriter: SseRewriter) -> usize {
    let mut out = Vec::with_capacity(4);
    let mut sent = 0;
    for frame in frames {
        rewriter.push(frame.clone(), &mut out).expect("valid stream");
        sent += out.drain(..).map(|b| b.len()).sum::<usize>();
    }
    sent
}

fn bench(c: &mut Criterion) {
    let events = stream();
    let total: usize = events.iter().map(Bytes::len).sum();
    let joined: Vec<u8> = events.iter().flat_map(|b| b.iter().copied()).collect();
    let split: Vec<Bytes> = joined.chunks(61).map(Bytes::copy_from_slice).collect();
    let agent = Bytes::from_static(b"\"demo\"");

    let mut group = c.benchmark_group("sse");
    group.throughput(Throughput::Bytes(total as u64));
    group.bench_function("event_per_frame_rewrite_model", |b| {
        b.iter_batched(|| events.clone(), |f| black_box(run(&f, Some(agent.clone()))), BatchSize::SmallInput)
    });
    group.bench_function("event_per_frame_pass_through", |b| {
        b.iter_batched(|| events.clone(), |f| black_box(run(&f, None)), BatchSize::SmallInput)
    });
    // What events add: the text and tool calls collected for `ai_message`
    // and `tool.invoked` (only when the gateway has events).
    group.bench_function("event_per_frame_rewrite_model_transcript", |b| {
        b.iter_batched(
            || events.clone(),
            |f| black_box(run_with(&f, SseRewriter::new(Some(agent.clone()), true).with_transcript())),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("split_frames_rewrite_model", |b| {
        b.iter_batched(|| split.clone(), |f| black_box(run(&f, Some(agent.clone()))), BatchSize::SmallInput)
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
