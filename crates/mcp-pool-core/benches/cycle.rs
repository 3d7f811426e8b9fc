//! A warm acquire -> grant -> release cycle through the core, on one key and
//! spread over 1,000 keys: the cost the pool adds to every call. The peer,
//! measured in the same run, is the least any keyed pool must do: a
//! `HashMap<key, Vec<session>>` pop and push with no policy at all.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mcp_pool_core::{Action, Config, Outcome, Pool, Time};

fn warm_pool(keys: u64) -> Pool<u64> {
    let config = Config {
        max_sessions_total: keys as usize,
        max_keys: keys as usize,
        ..Config::default()
    };
    let mut pool = Pool::new(config).expect("valid config");
    let now = Time::ZERO;
    for key in 0..keys {
        pool.acquire(&key, None, now).expect("acquire");
        let Some(Action::Connect { session, .. }) = pool.poll_action() else {
            panic!("expected a connect")
        };
        pool.connected(session, Ok(()), now).expect("connected");
        let Some(Action::Grant { lease, .. }) = pool.poll_action() else {
            panic!("expected a grant")
        };
        pool.release(lease, Outcome::Ok, now).expect("release");
    }
    pool
}

fn cycle(pool: &mut Pool<u64>, key: u64, now: Time) {
    pool.acquire(&key, None, now).expect("acquire");
    let Some(Action::Grant { lease, .. }) = pool.poll_action() else {
        panic!("a warm session is granted at once")
    };
    pool.release(black_box(lease), Outcome::Ok, now)
        .expect("release");
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("core_cycle");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(3));
    group.warm_up_time(Duration::from_secs(1));

    let mut pool = warm_pool(1);
    group.bench_function("one_key", |b| {
        b.iter(|| cycle(&mut pool, black_box(0), Time::ZERO));
    });

    let mut pool = warm_pool(1000);
    let mut key = 0u64;
    group.bench_function("1000_keys", |b| {
        b.iter(|| {
            key = (key + 7) % 1000;
            cycle(&mut pool, black_box(key), Time::ZERO);
        });
    });
    let mut bare: HashMap<u64, Vec<u64>> = (0..1000).map(|k| (k, vec![k])).collect();
    let mut key = 0u64;
    group.bench_function("peer_bare_hashmap_1000_keys", |b| {
        b.iter(|| {
            key = (key + 7) % 1000;
            let idle = bare.get_mut(&black_box(key)).expect("key");
            let session = idle.pop().expect("idle session");
            idle.push(black_box(session));
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
