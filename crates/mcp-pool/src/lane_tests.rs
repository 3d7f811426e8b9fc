//! The lanes' tests: racing takes, give-backs and handles, and where
//! cells and slots sit in memory.

use super::*;
use crate::cell::Cell;
use crate::slots::Owned;
use crate::test_connector::Nothing;
use mcp_pool_core::SessionId;
use std::time::Duration;

/// `n` session ids, as the core hands them out.
fn session_ids(n: usize) -> Vec<SessionId> {
    use mcp_pool_core::{Action, Config, Pool};
    let mut pool: Pool<u32> = Pool::new(Config {
        max_sessions_per_key: n,
        max_sessions_total: n,
        lanes: false,
        ..Config::default()
    })
    .unwrap();
    for _ in 0..n {
        pool.acquire(&0, None, Time::ZERO).unwrap();
    }
    std::iter::from_fn(|| pool.poll_action())
        .filter_map(|action| match action {
            Action::Connect { session, .. } => Some(session),
            _ => None,
        })
        .collect()
}

/// A cell for session `id` lent to `lane`, fresh until far away.
fn lent_cell(lane: &Arc<Lane<Nothing>>, id: SessionId, session: Arc<u32>) -> CellRef<Nothing> {
    let forever = Time::from_nanos(u64::MAX / 2);
    CellRef::new(Cell::new(
        id,
        session,
        lane.clone(),
        forever,
        Duration::from_secs(3600),
        forever,
    ))
}

/// A lane for one session, and a cell for `session` lent to it, held by
/// the lender (fresh until far away).
fn one_lent(session: Arc<u32>) -> (Arc<Lane<Nothing>>, CellRef<Nothing>) {
    let lane = Arc::new(Lane::new(Weak::new(), Arc::new(Nothing), 1));
    let cell = lent_cell(&lane, session_ids(1)[0], session);
    (lane, cell)
}

/// Four threads take sessions from one lane and give them back, as
/// callers do, 50,000 times each: every take is counted once, on the
/// cell taken, though the count is a plain load and store (only the
/// caller that claimed a cell writes it), and no cell is held twice.
#[test]
fn racing_takes_are_each_counted_once_on_their_cell() {
    const CELLS: u64 = 3;
    const ROUNDS: u64 = 50_000;
    let lane = Arc::new(Lane::new(Weak::new(), Arc::new(Nothing), CELLS as usize));
    let ids = session_ids(CELLS as usize);
    assert_eq!(ids.len(), CELLS as usize);
    let cells: Vec<CellRef<Nothing>> = (0..CELLS)
        .map(|n| {
            let cell = lent_cell(&lane, ids[n as usize], Arc::new(n as u32));
            assert!(matches!(
                lane.lend(cell.clone(), Time::from_nanos(0)),
                GiveBack::Done
            ));
            cell
        })
        .collect();
    let held: Arc<Vec<AtomicBool>> = Arc::new((0..CELLS).map(|_| AtomicBool::new(false)).collect());
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (lane, held) = (lane.clone(), held.clone());
            std::thread::spawn(move || {
                let mut took = 0u64;
                for i in 0..ROUNDS {
                    let now = Time::from_nanos(i + 1);
                    match lane.take(now) {
                        Take::Hit(cell) => {
                            took += 1;
                            let n = *cell.session as usize;
                            assert!(!held[n].swap(true, Ordering::SeqCst), "held twice");
                            held[n].store(false, Ordering::SeqCst);
                            assert!(matches!(lane.give_back(&cell, now), GiveBack::Done));
                        }
                        Take::Stale(_) => panic!("nothing goes stale here"),
                        Take::Miss => {}
                    }
                }
                took
            })
        })
        .collect();
    let took: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let counted: u64 = cells.iter().map(|c| c.takes()).sum();
    assert!(took > ROUNDS, "the threads took sessions: {took}");
    assert_eq!(counted, took, "a take counted twice or lost");
    lane.clear();
}

/// Cells lent to one lane, allocated one after the other as a pool
/// lends them, never share a cache line: a line holding the end of one
/// cell and the start of the next would pass between the cores of two
/// threads each using its own session (every take and give-back writes
/// its cell), which halved the throughput of two workers on one key.
#[test]
fn no_two_cells_share_a_cache_line() {
    const LINE: usize = 64;
    const CELLS: usize = 32;
    let lane = Arc::new(Lane::new(Weak::new(), Arc::new(Nothing), CELLS));
    let sessions: Vec<(SessionId, Arc<u32>)> = session_ids(CELLS)
        .into_iter()
        .map(|id| (id, Arc::new(0)))
        .collect();
    // One right after the other, as the allocator places them.
    let cells: Vec<CellRef<Nothing>> = sessions
        .into_iter()
        .map(|(id, session)| lent_cell(&lane, id, session))
        .collect();
    let mut lines = std::collections::HashMap::new();
    for (n, cell) in cells.iter().enumerate() {
        // The handles' count is inside the cell.
        let start = Owned::as_ptr(cell) as usize;
        let end = start + std::mem::size_of::<Cell<Nothing>>();
        for line in start / LINE..end.div_ceil(LINE) {
            if let Some(other) = lines.insert(line, n) {
                panic!(
                    "cells {other} and {n} share the cache line at {:#x}",
                    line * LINE
                );
            }
        }
    }
}
/// Each thread's region of a lane's slots is whole cache lines, whatever
/// the key's limit, so threads parking in their own regions never pass
/// a line of slots between their cores.
#[test]
fn regions_of_slots_are_whole_cache_lines() {
    for max_sessions in [1, 3, 8, 16, 20] {
        let lane: Lane<Nothing> = Lane::new(Weak::new(), Arc::new(Nothing), max_sessions);
        let slot = std::mem::size_of::<usize>();
        assert_eq!(lane.hot.parked.address() % 64, 0, "{max_sessions}");
        assert_eq!(lane.hot.region * slot % 64, 0, "{max_sessions}");
        assert!(lane.hot.region >= max_sessions, "{max_sessions}");
    }
}
/// Everything a take and a give-back touch on a cell, the handles'
/// count included, is on the cell's first cache line (with `Arc`, the
/// count was a line of its own, a miss per give-back with many keys).
#[test]
fn a_take_and_a_give_back_touch_one_line_of_a_cell() {
    let (_lane, cell) = one_lent(Arc::new(0));
    assert_eq!(Owned::as_ptr(&cell) as usize % 64, 0, "line-aligned");
    assert!(
        Cell::<Nothing>::first_line_ends() <= 64,
        "the fields a take and a give-back touch end at byte {}",
        Cell::<Nothing>::first_line_ends()
    );
}

/// Four threads clone and drop handles to one cell 100,000 times each:
/// the count ends where it started, and the cell (and the session it
/// holds) is freed once, when the last handle goes.
#[test]
fn racing_clones_and_drops_free_a_cell_once() {
    let session = Arc::new(7);
    let (_lane, cell) = one_lent(session.clone());
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let mine = cell.clone();
            std::thread::spawn(move || {
                let mut held = Vec::new();
                for i in 0..100_000 {
                    held.push(mine.clone());
                    if i % 3 == 0 {
                        held.clear();
                    }
                }
                assert_eq!(*mine.session, 7);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(cell.count(), 1, "every clone dropped once");
    assert_eq!(Arc::strong_count(&session), 2, "the cell is alive");
    drop(cell);
    assert_eq!(Arc::strong_count(&session), 1, "the cell was freed");
}

/// A caller the pool moves to an open lane where a session was parked
/// before it came (given back between that caller's look and the pool's
/// move) gets that session at once, instead of waiting for the next
/// give-back or its deadline.
#[test]
fn a_caller_moved_to_a_lane_gets_a_session_parked_before_it_came() {
    let (lane, cell) = one_lent(Arc::new(0));
    let now = Time::from_nanos(1);
    lane.open();
    assert!(matches!(lane.lend(cell, now), GiveBack::Done), "parked");
    let (tx, _rx) = reply::channel();
    let found = lane.enqueue(
        LaneWaiter {
            token: 1,
            deadline: Time::from_nanos(1_000),
            tx,
        },
        now,
    );
    assert!(found.handoff.is_some(), "handed the parked session");
    assert!(found.stale.is_empty());
    assert!(!lane.has_waiters(), "no longer waiting");
    assert_eq!(lane.counts().handoffs, 1);
    assert!(matches!(lane.take(now), Take::Miss), "nothing left parked");
}

/// Behind a waiting caller, a caller who asks to wait is queued without a
/// look (the first one looked), and a session given back goes to the
/// first, then the next.
#[test]
fn callers_behind_the_first_wait_in_order_for_given_back_sessions() {
    let (lane, cell) = one_lent(Arc::new(0));
    let now = Time::from_nanos(1);
    let deadline = Time::from_nanos(1_000);
    lane.open();
    let mut queued = Vec::new();
    for token in [1, 2] {
        match lane.wait(now, deadline, token, 8) {
            Wait::Queued(t, rx, _) => queued.push((t, rx)),
            _ => panic!("caller {token} should wait: nothing is parked"),
        }
    }
    assert_eq!(lane.counts().waiting, 2);
    for (token, rx) in queued.iter_mut() {
        match lane.give_back(&cell, now) {
            GiveBack::Handoff(tx, given) => {
                assert!(tx.send(Answer::GrantedLane { cell: given }).is_ok());
            }
            _ => panic!("the session goes to a waiting caller"),
        }
        assert!(
            matches!(rx.try_recv(), Some(Answer::GrantedLane { .. })),
            "caller {token} is served in its turn"
        );
    }
    assert!(!lane.has_waiters());
}

/// A holder gives its session back while a caller, finding nothing, asks
/// to wait: 5,000 times, each pair started together on two threads. Of
/// the two, one always sees the other: the caller takes the session, or
/// is handed it, or the session is not parked. (Without the giver's look
/// at the waiting callers after its push, or the first waiter's look at
/// the slots after counting itself, a caller would wait beside a parked
/// session. On x86 every exchange is a full barrier, so this cannot tell
/// the orderings apart; the module's comment argues those.)
#[test]
fn a_give_back_racing_the_first_waiter_never_leaves_it_beside_a_parked_session() {
    let (lane, mut cell) = one_lent(Arc::new(0));
    let now = Time::from_nanos(1);
    let deadline = Time::from_nanos(1_000);
    lane.open();
    let (mut handed, mut taken) = (0, 0);
    for token in 0..5_000 {
        let start = std::sync::Barrier::new(2);
        let (given, asked) = std::thread::scope(|s| {
            let giver = s.spawn(|| {
                start.wait();
                lane.give_back(&cell, now)
            });
            let waiter = s.spawn(|| {
                start.wait();
                lane.wait(now, deadline, token, 8)
            });
            (giver.join().unwrap(), waiter.join().unwrap())
        });
        if let GiveBack::Handoff(tx, c) = given {
            assert!(tx.send(Answer::GrantedLane { cell: c }).is_ok());
        }
        cell = match asked {
            Wait::Take(Take::Hit(c)) => {
                taken += 1;
                c
            }
            Wait::Queued(_, mut rx, _) => match rx.try_recv() {
                Some(Answer::GrantedLane { cell: c }) => {
                    handed += 1;
                    c
                }
                _ => {
                    assert_eq!(
                        lane.parked(),
                        0,
                        "round {token}: a caller waits beside a parked session"
                    );
                    unreachable!("round {token}: the session is neither parked nor handed over");
                }
            },
            _ => panic!("round {token}: the open lane refused the caller"),
        };
        assert!(!lane.has_waiters(), "round {token}: nobody waits now");
        assert_eq!(lane.parked(), 0, "round {token}: held by the caller");
    }
    assert_eq!(taken + handed, 5_000);
}

thread_local! {
    /// What a test runs, once, between a give-back's park and its push.
    static BETWEEN_PARK_AND_PUSH: std::cell::RefCell<Option<Box<dyn FnOnce()>>> =
        const { std::cell::RefCell::new(None) };
}

/// Called by [`Lane::park`] in tests between its park and its push.
pub(super) fn between_park_and_push() {
    if let Some(run) = BETWEEN_PARK_AND_PUSH.with(|h| h.borrow_mut().take()) {
        run();
    }
}

/// Runs `run` at this thread's next give-back, between its park and its
/// push.
fn at_next_push(run: impl FnOnce() + 'static) {
    BETWEEN_PARK_AND_PUSH.with(|h| *h.borrow_mut() = Some(Box::new(run)));
}

/// The pool recalls a session just as its holder gives it back, after the
/// holder marked it parked and before it put it in a slot. The recall
/// finds it parked, so the pool takes it back at once; the holder must not
/// then leave it in a slot, where its handle would keep the session from
/// its close (a caller who pops it skips it, so with nobody taking from
/// the key it would stay there).
#[test]
fn a_recall_between_a_park_and_its_push_leaves_no_handle_in_the_slots() {
    let (lane, cell) = one_lent(Arc::new(0));
    let now = Time::from_nanos(1);
    // The pool's own handle, as its map of lent cells keeps.
    let pool = cell.clone();
    let recalled = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (l, p, r) = (lane.clone(), pool.clone(), recalled.clone());
    at_next_push(move || r.store(l.recall(&p), Ordering::SeqCst));
    assert!(matches!(lane.give_back(&cell, now), GiveBack::Done));
    assert!(
        recalled.load(Ordering::SeqCst),
        "the recall found the session parked: the pool has it back"
    );
    assert_eq!(lane.parked(), 0, "no recalled session left in a slot");
    assert_eq!(cell.count(), 2, "only the pool's handle and the holder's");
    assert!(matches!(lane.take(now), Take::Miss));
}

/// A caller queues (finding nothing) just as a holder gives its session
/// back, after the holder looked for waiting callers and before it put the
/// session in a slot: the holder sees the caller after its push and hands
/// it the session, counted once, as a handoff (not also as a take, which
/// would count one acquire too many).
#[test]
fn a_caller_queueing_during_a_give_back_is_handed_the_session_once() {
    let (lane, cell) = one_lent(Arc::new(0));
    let now = Time::from_nanos(1);
    lane.open();
    let queued = Arc::new(Mutex::new(None));
    let (l, q) = (lane.clone(), queued.clone());
    at_next_push(move || match l.wait(now, Time::from_nanos(1_000), 7, 8) {
        Wait::Queued(_, rx, _) => *q.lock().unwrap() = Some(rx),
        _ => panic!("nothing is parked yet: the caller queues"),
    });
    let given = match lane.give_back(&cell, now) {
        GiveBack::Handoff(_tx, given) => given,
        _ => panic!("the caller who queued meanwhile is handed the session"),
    };
    assert_eq!(given.id, cell.id);
    assert!(!lane.has_waiters());
    assert_eq!(lane.parked(), 0, "handed over, not left parked");
    let counts = lane.counts();
    assert_eq!((counts.waits, counts.handoffs), (1, 1));
    assert_eq!(cell.takes(), 0, "a handoff is not a take");
    drop(queued);
}

/// A caller queueing in a lane registers a reaper unless one runs; the
/// reaper unregisters, in the critical section that finds nobody waiting
/// (so a caller queueing after that registers another). A reaper whose
/// task ends early (its runtime shut down) unregisters and moves each
/// waiting caller, in its place, to a new channel sent on its old one:
/// a session given back then reaches the caller there.
#[test]
fn a_caller_queueing_registers_a_reaper_unless_one_runs() {
    let (lane, cell) = one_lent(Arc::new(0));
    let now = Time::from_nanos(1);
    let deadline = Time::from_nanos(1_000);
    lane.open();
    let queue = |token| match lane.wait(now, deadline, token, 8) {
        Wait::Queued(_, rx, reaper) => (rx, reaper),
        _ => panic!("nothing is parked: caller {token} waits"),
    };
    let (_rx1, reaper) = queue(1);
    assert_eq!(reaper, Some(1), "the first registers one");
    let (_rx2, reaper) = queue(2);
    assert_eq!(reaper, None, "one runs");
    assert_eq!(
        lane.expire(now, 1),
        Some(deadline),
        "callers wait: it goes on"
    );
    assert!(lane.leave(1, false) && lane.leave(2, false));
    assert_eq!(lane.expire(now, 1), None, "nobody waits: it ends");
    let (mut rx3, reaper) = queue(3);
    assert_eq!(reaper, Some(2), "and the next registers another");
    let (mut rx4, _) = queue(4);
    // A guard of reaper 1 (ended) does nothing to reaper 2's callers.
    drop(Reaping {
        lane: Arc::downgrade(&lane),
        id: 1,
        armed: true,
    });
    assert!(rx3.try_recv().is_none());
    // Reaper 2's task ends early.
    drop(Reaping {
        lane: Arc::downgrade(&lane),
        id: 2,
        armed: true,
    });
    let mut moved = Vec::new();
    for rx in [&mut rx3, &mut rx4] {
        match rx.try_recv() {
            Some(Answer::InLane { rx }) => moved.push(rx),
            _ => panic!("each waiting caller is moved to a new channel"),
        }
    }
    assert_eq!(lane.counts().waiting, 2, "in their places");
    match lane.give_back(&cell, now) {
        GiveBack::Handoff(tx, given) => {
            assert!(tx.send(Answer::GrantedLane { cell: given }).is_ok());
        }
        _ => panic!("the session goes to the first waiting caller"),
    }
    assert!(
        matches!(moved[0].try_recv(), Some(Answer::GrantedLane { .. })),
        "caller 3, first in line, gets it on its new channel"
    );
    let (_rx5, reaper) = queue(5);
    assert_eq!(reaper, Some(3), "reaper 2 is gone: the next registers one");
}
